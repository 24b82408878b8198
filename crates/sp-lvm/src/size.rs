//! Size arguments: `20G`, `+5G`, `5GiB`, `5g`, `512M` — binary units as lvm2 reads them.

use std::fmt;

/// An absolute size checked by [`parse_size`]: more than zero bytes, a whole number of
/// KiB. Shown (and serialised) in the largest unit that holds it exactly (`20G`), which
/// parses back to the same size.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Size(u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        parse_size(s, false).map(Size)
    }
}

impl TryFrom<String> for Size {
    type Error = String;
    fn try_from(s: String) -> Result<Size, String> {
        s.parse()
    }
}

impl From<Size> for String {
    fn from(s: Size) -> String {
        s.to_string()
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A parsed size is a multiple of 1 KiB: some unit always divides it.
        let (unit, shift) = [('P', 50), ('T', 40), ('G', 30), ('M', 20), ('K', 10)]
            .into_iter()
            .find(|(_, shift)| self.0 % (1u64 << shift) == 0)
            .unwrap_or(('K', 10));
        write!(f, "{}{unit}", self.0 >> shift)
    }
}

/// Parses a size in bytes. `relative` allows (and ignores) a leading `+` (extend);
/// everything else (no number, no or unknown unit, zero, negative) is an error that says
/// what to write instead.
pub fn parse_size(input: &str, relative: bool) -> Result<u64, String> {
    let s = input.trim();
    let s = match s.strip_prefix('+') {
        Some(rest) if relative => rest,
        Some(_) => return Err("a new volume group takes an absolute size, e.g. 20G".into()),
        None => s,
    };
    if s.starts_with('-') {
        return Err("sizes cannot be negative (loopvg never shrinks a volume group)".into());
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected a number followed by a unit, e.g. 5G".into());
    }
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    let mut chars = unit.chars();
    let shift = match chars.next().map(|c| c.to_ascii_uppercase()) {
        None => return Err("missing unit: write K, M, G, T or P (binary, e.g. 5G = 5 GiB)".into()),
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some('P') => 50,
        Some(c) => {
            return Err(format!(
                "unknown unit {c:?}: write K, M, G, T or P (binary, e.g. 5G = 5 GiB)"
            ))
        }
    };
    if !matches!(
        chars.as_str().to_ascii_lowercase().as_str(),
        "" | "b" | "ib"
    ) {
        return Err(format!("unknown unit {unit:?}: write e.g. 5G or 5GiB"));
    }
    if n == 0 {
        return Err("the size must be more than zero".into());
    }
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| "size too large".to_string())
}

/// `5368709120` → `"5.00 GiB"`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lvm_style_sizes() {
        assert_eq!(parse_size("+5G", true), Ok(5 << 30));
        assert_eq!(parse_size("5GiB", false), Ok(5 << 30));
        assert_eq!(parse_size("5g", false), Ok(5 << 30));
        assert_eq!(parse_size("512M", true), Ok(512 << 20));
        assert_eq!(parse_size("20G", false), Ok(20 << 30));
        assert_eq!(parse_size("1t", false), Ok(1 << 40));
    }

    #[test]
    fn rejects_bad_sizes_with_reasons() {
        for (bad, relative, why) in [
            ("0", true, "missing unit"),
            ("0G", true, "more than zero"),
            ("-1G", true, "negative"),
            ("+", true, "expected a number"),
            ("5X", true, "unknown unit"),
            ("5GX", true, "unknown unit"),
            ("+5G", false, "absolute"),
            ("", false, "expected a number"),
            ("99999999999P", true, "too large"),
            ("1.5G", true, "unknown unit"),
        ] {
            let e = parse_size(bad, relative).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_show_in_the_largest_exact_unit_and_parse_back() {
        for (text, shown) in [
            ("20G", "20G"),
            ("1024m", "1G"),
            ("1536M", "1536M"),
            ("3KiB", "3K"),
        ] {
            let s: Size = text.parse().unwrap();
            assert_eq!(s.to_string(), shown);
            assert_eq!(shown.parse::<Size>().unwrap(), s);
        }
        assert_eq!("20G".parse::<Size>().unwrap().bytes(), 20 << 30);
        assert!("20X".parse::<Size>().unwrap_err().contains("unknown unit"));
        assert!("+5G".parse::<Size>().unwrap_err().contains("absolute"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(5 << 30), "5.00 GiB");
        assert_eq!(human(100), "100 B");
    }
}
