//! LVM's config text (lvm2 `libdm/libdm-config.c`): sections `name { … }`, pairs
//! `key = value` with strings, integers and `[ … ]` lists, `#` comments. The parser keeps
//! blank lines, comments and each value's source text, so an unmodified document is
//! written back byte for byte; a value set through the API is written in lvm2's style.

use crate::FormatError;

/// Deepest nesting of sections and lists the parser follows. lvm2's own metadata nests
/// four deep at most (VG → `logical_volumes` → LV → segment, a list inside); a deeper
/// text is refused with an error instead of recursing until the stack runs out.
pub const MAX_DEPTH: usize = 64;

/// A value: a string (kept escaped as in the text), a number (kept as its token) or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Num(String),
    List(Vec<Value>),
}

impl Value {
    /// A string value from plain text (escapes `"` and `\`).
    pub fn string(s: &str) -> Self {
        Value::Str(s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    pub fn int(v: u64) -> Self {
        Value::Num(v.to_string())
    }

    /// The unescaped text of a string value.
    pub fn as_str(&self) -> Option<String> {
        let Value::Str(raw) = self else { return None };
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' {
                chars.next().unwrap_or('\\')
            } else {
                c
            });
        }
        Some(out)
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Value::Str(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            Value::Num(n) => out.push_str(n),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
        }
    }
}

/// One line-level item of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Blank,
    /// A whole-line comment, `#` included.
    Comment(String),
    Pair {
        key: String,
        value: Value,
        /// Source text of the value when parsed and not modified since.
        raw: Option<String>,
        /// Whatever followed the value on its line (spaces, a `# …` comment).
        trailer: String,
    },
    Section {
        name: String,
        items: Vec<Item>,
    },
}

impl Item {
    pub fn pair(key: &str, value: Value) -> Self {
        Item::Pair {
            key: key.to_string(),
            value,
            raw: None,
            trailer: String::new(),
        }
    }
}

/// A section body: the items in order, with lookups by key or section name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Items(pub Vec<Item>);

impl Items {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find_map(|i| match i {
            Item::Pair { key: k, value, .. } if k == key => Some(value),
            _ => None,
        })
    }

    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// Replaces the value of `key` (appending the pair when missing).
    pub fn set(&mut self, key: &str, new: Value) {
        for i in &mut self.0 {
            if let Item::Pair {
                key: k,
                value,
                raw,
                trailer,
            } = i
            {
                if k == key {
                    *value = new;
                    *raw = None;
                    trailer.clear();
                    return;
                }
            }
        }
        self.0.push(Item::pair(key, new));
    }

    pub fn section(&self, name: &str) -> Option<&[Item]> {
        self.sections().find(|(n, _)| *n == name).map(|(_, i)| i)
    }

    /// Every subsection, in order, as `(name, items)`.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &[Item])> {
        self.0.iter().filter_map(|i| match i {
            Item::Section { name, items } => Some((name.as_str(), items.as_slice())),
            _ => None,
        })
    }

    /// Writes the items in lvm2's on-disk style (no indentation).
    pub fn write(&self, out: &mut String) {
        for item in &self.0 {
            match item {
                Item::Blank => {}
                Item::Comment(c) => out.push_str(c),
                Item::Pair {
                    key,
                    value,
                    raw,
                    trailer,
                } => {
                    out.push_str(key);
                    out.push_str(" = ");
                    match raw {
                        Some(r) => out.push_str(r),
                        None => value.write(out),
                    }
                    out.push_str(trailer);
                }
                Item::Section { name, items } => {
                    out.push_str(name);
                    out.push_str(" {\n");
                    Items(items.clone()).write(out);
                    out.push('}');
                }
            }
            out.push('\n');
        }
    }

    /// Parses a whole document. Sections and lists nest at most [`MAX_DEPTH`] deep;
    /// time and memory are linear in the text's length.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
            line: 1,
            depth: 0,
        };
        let items = p.items(false)?;
        Ok(Items(items))
    }
}

/// Borrowed view so section bodies (`&[Item]`) get the same lookups.
impl From<&[Item]> for Items {
    fn from(items: &[Item]) -> Self {
        Items(items.to_vec())
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    line: usize,
    /// Sections and lists open around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> FormatError {
        FormatError::Syntax {
            line: self.line,
            msg: msg.into(),
        }
    }

    /// Enters a section or list, refusing to go deeper than [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), FormatError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(format!(
                "sections and lists nest deeper than {MAX_DEPTH} levels"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    /// The source text between two positions (empty when they are out of order).
    fn text(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(self.s.get(start..end).unwrap_or_default()).into_owned()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    /// Skips whitespace including newlines (inside lists).
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.at += 1;
        }
    }

    fn rest_of_line(&mut self) -> String {
        let start = self.at;
        while !matches!(self.peek(), None | Some(b'\n')) {
            self.at += 1;
        }
        let out = self.text(start, self.at);
        if self.peek() == Some(b'\n') {
            self.at += 1;
            self.line += 1;
        }
        out
    }

    fn items(&mut self, nested: bool) -> Result<Vec<Item>, FormatError> {
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                None if nested => return Err(self.err("unterminated section")),
                None => return Ok(items),
                Some(b'\n') => {
                    self.rest_of_line();
                    items.push(Item::Blank);
                }
                Some(b'#') => items.push(Item::Comment(self.rest_of_line())),
                Some(b'}') if nested => {
                    self.at += 1;
                    let rest = self.rest_of_line();
                    if !rest.trim().is_empty() {
                        return Err(self.err("text after `}`"));
                    }
                    return Ok(items);
                }
                Some(_) => items.push(self.item()?),
            }
        }
    }

    fn item(&mut self) -> Result<Item, FormatError> {
        let start = self.at;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || c == b'=' || c == b'{' {
                break;
            }
            self.at += 1;
        }
        let key = self.text(start, self.at);
        if key.is_empty() {
            return Err(self.err("expected a key or section name"));
        }
        self.skip_spaces();
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                if !self.rest_of_line().trim().is_empty() {
                    return Err(self.err("text after `{`"));
                }
                self.enter()?;
                let items = self.items(true)?;
                self.depth -= 1;
                Ok(Item::Section { name: key, items })
            }
            Some(b'=') => {
                self.at += 1;
                self.skip_spaces();
                let vstart = self.at;
                let value = self.value()?;
                let raw = self.text(vstart, self.at);
                let trailer = self.rest_of_line();
                let t = trailer.trim_start();
                if !(t.is_empty() || t.starts_with('#')) {
                    return Err(self.err(format!("text after the value of {key}")));
                }
                Ok(Item::Pair {
                    key,
                    value,
                    raw: Some(raw),
                    trailer,
                })
            }
            _ => Err(self.err(format!("expected `=` or `{{` after {key}"))),
        }
    }

    fn value(&mut self) -> Result<Value, FormatError> {
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                let start = self.at;
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated string")),
                        Some(b'\\') => self.at += 2,
                        Some(b'"') => break,
                        Some(b'\n') => {
                            self.line += 1;
                            self.at += 1
                        }
                        Some(_) => self.at += 1,
                    }
                }
                let s = self.text(start, self.at);
                self.at += 1;
                Ok(Value::Str(s))
            }
            Some(b'[') => {
                self.at += 1;
                self.enter()?;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b']') => {
                            self.at += 1;
                            self.depth -= 1;
                            return Ok(Value::List(items));
                        }
                        Some(b',') if !items.is_empty() => self.at += 1,
                        None => return Err(self.err("unterminated list")),
                        _ => items.push(self.value()?),
                    }
                }
            }
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() => {
                let start = self.at;
                self.at += 1;
                while matches!(self.peek(), Some(c) if c.is_ascii_digit() || c == b'.') {
                    self.at += 1;
                }
                Ok(Value::Num(self.text(start, self.at)))
            }
            _ => Err(self.err("expected a string, number or list")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "vg {\nid = \"x\"\nseqno = 3\nstatus = [\"READ\", \"WRITE\"]\n\n\
        sub {\nstripes = [\n\"pv0\", 0,\n\"pv1\", 0\n]\n}\n}\n# comment\n\n\
        creation_host = \"h \\\"q\\\"\"\t# Linux h\nversion = 1\n\n";

    #[test]
    fn round_trips_byte_for_byte() {
        let doc = Items::parse(TEXT).unwrap();
        let mut out = String::new();
        doc.write(&mut out);
        assert_eq!(out, TEXT);
        assert_eq!(doc.get_str("creation_host").unwrap(), "h \"q\"");
        let vg = Items::from(doc.section("vg").unwrap());
        assert_eq!(vg.get_u64("seqno"), Some(3));
        let sub = Items::from(vg.section("sub").unwrap());
        assert_eq!(sub.get("stripes").unwrap().as_list().unwrap().len(), 4);
    }

    #[test]
    fn set_rewrites_in_lvm_style() {
        let mut doc = Items::parse(TEXT).unwrap();
        let Some(Item::Section { items, .. }) = doc.0.first_mut() else {
            panic!("vg section first")
        };
        let mut v = Items(std::mem::take(items));
        v.set("seqno", Value::int(4));
        v.set("flags", Value::List(Vec::new()));
        *items = v.0;
        doc.set("creation_host", Value::string("a\\b"));
        let mut out = String::new();
        doc.write(&mut out);
        assert!(out.contains("seqno = 4\n"));
        assert!(out.contains("flags = []\n}\n"));
        assert!(out.contains("creation_host = \"a\\\\b\"\n"));
    }

    #[test]
    fn reports_syntax_errors_with_lines() {
        for bad in [
            "vg {\nid = \n}\n",
            "vg {\nid = \"x\"\n",
            "a = [1, 2\n",
            "k \"v\"\n",
        ] {
            assert!(
                matches!(Items::parse(bad), Err(FormatError::Syntax { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let lists = |n: usize| format!("k = {}{}\n", "[".repeat(n), "]".repeat(n));
        assert!(Items::parse(&lists(MAX_DEPTH)).is_ok());
        let sections = |n: usize| format!("{}{}", "s {\n".repeat(n), "}\n".repeat(n));
        assert!(Items::parse(&sections(MAX_DEPTH)).is_ok());
        for deep in [
            lists(MAX_DEPTH + 1),
            sections(MAX_DEPTH + 1),
            format!("k = {}", "[".repeat(50_000)),
            format!("{}k = {}", "s {\n".repeat(40), "[".repeat(40)),
        ] {
            let e = Items::parse(&deep).unwrap_err();
            assert!(e.to_string().contains("nest deeper than 64"), "{e}");
        }
    }
}
