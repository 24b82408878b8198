//! oslo.config-style INI files: `[section]`, `key = value`, `#`/`;` comments,
//! continuation lines (indented) appended to the previous value. Errors name the file
//! and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parse or value error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the whole file (missing, unreadable).
    pub line: usize,
    pub message: String,
}

/// One value and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub line: usize,
}

/// A parsed file: sections of keys (the last occurrence of a key wins, as in oslo).
#[derive(Debug, Clone, Default)]
pub struct Ini {
    pub file: PathBuf,
    sections: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Ini {
    /// Parses `text` as the content of `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Ini, ConfigError> {
        let err = |line: usize, message: String| ConfigError {
            file: file.to_owned(),
            line,
            message,
        };
        let mut ini = Ini {
            file: file.to_owned(),
            sections: BTreeMap::new(),
        };
        let mut section: Option<String> = None;
        let mut last_key: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if raw.starts_with([' ', '\t']) {
                // A continuation of the previous value.
                let (Some(s), Some(k)) = (&section, &last_key) else {
                    return Err(err(n, "indented line with no value to continue".into()));
                };
                let v = ini
                    .sections
                    .get_mut(s)
                    .and_then(|m| m.get_mut(k))
                    .expect("exists");
                v.text.push('\n');
                v.text.push_str(trimmed);
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| {
                        err(n, format!("section header {trimmed:?} has no closing ']'"))
                    })?
                    .trim();
                if name.is_empty() {
                    return Err(err(n, "empty section name".into()));
                }
                section = Some(name.to_owned());
                ini.sections.entry(name.to_owned()).or_default();
                last_key = None;
                continue;
            }
            let Some((k, v)) = trimmed.split_once(['=', ':']) else {
                return Err(err(n, format!("expected 'key = value', found {trimmed:?}")));
            };
            let Some(s) = &section else {
                return Err(err(n, format!("{:?} before any [section]", k.trim())));
            };
            let key = k.trim();
            if key.is_empty() {
                return Err(err(n, "empty key".into()));
            }
            ini.sections.get_mut(s).expect("exists").insert(
                key.to_owned(),
                Value {
                    text: v.trim().to_owned(),
                    line: n,
                },
            );
            last_key = Some(key.to_owned());
        }
        Ok(ini)
    }

    /// The raw value of `section.key`.
    pub fn get(&self, section: &str, key: &str) -> Option<&Value> {
        self.sections.get(section)?.get(key)
    }

    /// An error about `section.key`'s value, at its line.
    pub fn bad(&self, v: &Value, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: v.line,
            message,
        }
    }

    /// A string (empty values are `Some("")`, as oslo reads them).
    pub fn string(&self, section: &str, key: &str) -> Option<String> {
        self.get(section, key).map(|v| v.text.clone())
    }

    /// An oslo boolean: true/false, yes/no, on/off, 1/0 (any case).
    pub fn bool(&self, section: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.get(section, key) else {
            return Ok(None);
        };
        match v.text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Some(true)),
            "false" | "no" | "off" | "0" => Ok(Some(false)),
            other => Err(self.bad(
                v,
                format!("{section}.{key}: {other:?} is not a boolean (True/False)"),
            )),
        }
    }

    /// A comma-separated list, items trimmed, empty items dropped.
    pub fn list(&self, section: &str, key: &str) -> Option<Vec<String>> {
        self.get(section, key).map(|v| {
            v.text
                .split([',', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// A value parsed with `FromStr`.
    pub fn parsed<T: std::str::FromStr>(
        &self,
        section: &str,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(v) = self.get(section, key) else {
            return Ok(None);
        };
        v.text
            .parse()
            .map(Some)
            .map_err(|_| self.bad(v, format!("{section}.{key}: {:?} is not {what}", v.text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Ini, ConfigError> {
        Ini::parse(s, Path::new("x.ini"))
    }

    #[test]
    fn oslo_syntax() {
        let ini = parse(
            "# comment\n[DEFAULT]\ninterface_driver = neutron.agent.linux.interface.BridgeInterfaceDriver\n\
             external_network_bridge =\n; other comment\n[vxlan]\nenable_vxlan=True\nlocal_ip: 10.0.0.101\n\
             list = a,\n  b , c\n[vxlan]\nl2_population = yes\n",
        )
        .unwrap();
        assert_eq!(
            ini.string("DEFAULT", "external_network_bridge").as_deref(),
            Some("")
        );
        assert_eq!(ini.bool("vxlan", "enable_vxlan").unwrap(), Some(true));
        assert_eq!(ini.bool("vxlan", "l2_population").unwrap(), Some(true));
        assert_eq!(
            ini.string("vxlan", "local_ip").as_deref(),
            Some("10.0.0.101")
        );
        assert_eq!(ini.list("vxlan", "list").unwrap(), ["a", "b", "c"]);
        assert_eq!(ini.get("vxlan", "local_ip").unwrap().line, 8);
        assert_eq!(ini.bool("vxlan", "missing").unwrap(), None);
    }

    #[test]
    fn malformed_lines_are_named() {
        let e = parse("[ml2\n").unwrap_err();
        assert_eq!(
            (e.line, e.to_string().contains("no closing ']'")),
            (1, true)
        );
        let e = parse("[ml2]\ntype_drivers flat\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(
            e.to_string(),
            "x.ini:2: expected 'key = value', found \"type_drivers flat\""
        );
        let e = parse("key = 1\n").unwrap_err();
        assert!(e.to_string().contains("before any [section]"));
        let ini = parse("[vxlan]\nenable_vxlan = maybe\n").unwrap();
        let e = ini.bool("vxlan", "enable_vxlan").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.ini:2: vxlan.enable_vxlan: \"maybe\" is not a boolean (True/False)"
        );
    }
}
