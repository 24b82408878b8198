//! Sizes as lvm2 reads and shows them.
//!
//! Read ([`parse_size`]) as lvm2 reads `--size` (`lvcreate -L`, `vgextend`…): a number,
//! whole or with a fraction (`20G`, `1.5G`, `.5g`), then a unit — `b` bytes, `s`
//! sectors, `k m g t p e` binary (KiB … EiB) in either case (for input, capitals are not
//! SI: `G` = GiB) — or no unit for MiB (`100` = 100 MiB). `5GiB`/`5Gb` are taken too.
//! The result is whole sectors of 512 bytes: a fraction rounds down, as in lvm2.
//!
//! Shown ([`Units::show`]) as lvm2's reports show them (`--units`, `dm_size_to_string`).

use std::fmt;

use crate::SECTOR;

/// An absolute size checked by [`parse_size`]: more than zero bytes, a whole number of
/// sectors. Shown (and serialised) in the largest unit that holds it exactly (`20G`),
/// which parses back to the same size.
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
        // A parsed size is a multiple of a sector: some unit always divides it.
        let (unit, div) = [
            ('P', 1u64 << 50),
            ('T', 1 << 40),
            ('G', 1 << 30),
            ('M', 1 << 20),
            ('K', 1 << 10),
        ]
        .into_iter()
        .find(|(_, div)| self.0 % div == 0)
        .unwrap_or(('S', SECTOR));
        write!(f, "{}{unit}", self.0 / div)
    }
}

/// Parses a size in bytes (see the module docs). `relative` allows (and ignores) a
/// leading `+` (extend); everything else (no number, an unknown unit, zero, negative,
/// bytes that are not whole sectors) is an error that says what to write instead.
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
    let (whole, frac, unit) = split_number(s)
        .ok_or_else(|| "expected a number, e.g. 5G, 1.5G or 100 (MiB)".to_string())?;
    let mut chars = unit.chars();
    let first = chars.next().map(|c| c.to_ascii_lowercase());
    // Bytes per unit; sectors and bytes take nothing after the letter.
    let (per_unit, binary) = match first {
        None => (1u64 << 20, false),
        Some('b') => (1, false),
        Some('s') => (SECTOR, false),
        Some('k') => (1 << 10, true),
        Some('m') => (1 << 20, true),
        Some('g') => (1 << 30, true),
        Some('t') => (1 << 40, true),
        Some('p') => (1 << 50, true),
        Some('e') => (1 << 60, true),
        Some(c) => {
            return Err(format!(
                "unknown unit {c:?}: write b, s, K, M, G, T, P or E (binary: 5G = 5 GiB; \
                 no unit = MiB)"
            ))
        }
    };
    let rest = chars.as_str().to_ascii_lowercase();
    if !(rest.is_empty() || binary && (rest == "b" || rest == "ib")) {
        return Err(format!(
            "unknown unit {unit:?}: write e.g. 5G, 5GiB or 1.5G"
        ));
    }
    let bytes = if frac.is_empty() {
        let n: u64 = whole.parse().map_err(|_| "size too large".to_string())?;
        let bytes = n
            .checked_mul(per_unit)
            .ok_or_else(|| "size too large".to_string())?;
        if per_unit == 1 && bytes % SECTOR != 0 {
            let down = bytes - bytes % SECTOR;
            return Err(format!(
                "{bytes} bytes is not a whole number of 512-byte sectors: try {down}b or {}b",
                down + SECTOR
            ));
        }
        bytes
    } else {
        if per_unit == 1 {
            return Err("bytes take a whole number, a multiple of 512".into());
        }
        // lvm2 computes in floating point and keeps whole sectors.
        let v: f64 = format!("{whole}.{frac}")
            .parse()
            .map_err(|_| "expected a number".to_string())?;
        let sectors = v * (per_unit / SECTOR) as f64;
        if !sectors.is_finite() || sectors >= (u64::MAX / SECTOR) as f64 {
            return Err("size too large".into());
        }
        sectors.floor() as u64 * SECTOR
    };
    let bytes = bytes - bytes % SECTOR;
    if bytes == 0 {
        return Err("the size must be more than zero (at least one 512-byte sector)".into());
    }
    Ok(bytes)
}

/// `"1.5G"` → `("1", "5", "G")`; `None` without a digit.
fn split_number(s: &str) -> Option<(&str, &str, &str)> {
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let w = digits(s);
    let (whole, rest) = s.split_at(w);
    let (frac, unit) = match rest.strip_prefix('.') {
        Some(r) => r.split_at(digits(r)),
        None => ("", rest),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    Some((if whole.is_empty() { "0" } else { whole }, frac, unit))
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

/// How reports show sizes: lvm2's `--units [Number]r|R|h|H|b|B|s|S|k|K|m|M|g|G|t|T|p|P|e|E`
/// (lvm2's default is `r`). `h` picks the unit per value, `r` too with `<` where the shown
/// value is rounded up; lower case is powers of 1024, upper case of 1000 (lvm2's
/// `si_unit_consistency = 1`); `b`/`B` bytes, `s`/`S` sectors; a number before the letter
/// makes a custom unit (`3M`: 3 000 000 bytes, shown with `U`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    /// The unit letter, `U` for a custom unit.
    letter: char,
    /// Bytes per unit (0 for the human forms, which choose per value).
    factor: u64,
}

impl Default for Units {
    fn default() -> Self {
        Units {
            letter: 'r',
            factor: 0,
        }
    }
}

impl std::str::FromStr for Units {
    type Err = String;

    fn from_str(s: &str) -> Result<Units, String> {
        let bad = || {
            format!(
                "invalid units {s:?}: write [Number]r|R|h|H|b|B|s|S|k|K|m|M|g|G|t|T|p|P|e|E, \
                 e.g. m, G or 4m"
            )
        };
        let (whole, frac, unit) = match split_number(s) {
            Some(n) => n,
            None => ("1", "", s),
        };
        let mut chars = unit.chars();
        let (Some(letter), "") = (chars.next(), chars.as_str()) else {
            return Err(bad());
        };
        let per_unit: u64 = match letter {
            'h' | 'H' | 'r' | 'R' => return Ok(Units { letter, factor: 0 }),
            'b' | 'B' => 1,
            's' | 'S' => SECTOR,
            'k' => 1 << 10,
            'm' => 1 << 20,
            'g' => 1 << 30,
            't' => 1 << 40,
            'p' => 1 << 50,
            'e' => 1 << 60,
            'K' => 1000,
            'M' => 1_000_000,
            'G' => 1_000_000_000,
            'T' => 1_000_000_000_000,
            'P' => 1_000_000_000_000_000,
            'E' => 1_000_000_000_000_000_000,
            _ => return Err(bad()),
        };
        let n: u64 = whole.parse().map_err(|_| bad())?;
        let factor = if frac.is_empty() {
            n.checked_mul(per_unit).ok_or_else(bad)?
        } else {
            let v: f64 = format!("{whole}.{frac}").parse().map_err(|_| bad())?;
            let f = v * per_unit as f64;
            if !f.is_finite() || f >= u64::MAX as f64 {
                return Err(bad());
            }
            f as u64
        };
        if factor == 0 {
            return Err(bad());
        }
        // lvm2 keeps the letter when the whole part is 1 (`1.5g` shows `g`), else `U`.
        let letter = if n == 1 { letter } else { 'U' };
        Ok(Units { letter, factor })
    }
}

impl Units {
    /// Whether values are shown in a unit chosen per value (`h`, `r`): those always
    /// carry their suffix, `--nosuffix` or not.
    pub fn human(&self) -> bool {
        self.factor == 0
    }

    /// `bytes` as lvm2 shows it, with the unit's suffix when `suffix`.
    pub fn show(&self, bytes: u64, suffix: bool) -> String {
        let human = self.human();
        if bytes == 0 {
            // lvm2 prints a blank suffix for zero in the human forms.
            let s = match self.letter {
                _ if human => " ".to_string(),
                'b' | 'B' => "B".into(),
                's' | 'S' => "S".into(),
                c => c.to_string(),
            };
            return format!("0{}", if suffix { s.as_str() } else { "" });
        }
        let (divisor, suffix_text, prefix) = if human {
            let si = matches!(self.letter, 'H' | 'R');
            let base: u64 = if si { 1000 } else { 1024 };
            let letters = if si { "EPTGMKB" } else { "eptgmkb" };
            let mut divisor = base.pow(6);
            let mut s = 0;
            while s < 6 && bytes < divisor {
                divisor /= base;
                s += 1;
            }
            let mut prefix = "";
            if s < 6 && matches!(self.letter, 'r' | 'R') {
                let d = 100.0 * bytes as f64 / divisor as f64;
                if d.floor() != d.round_ties_even() {
                    prefix = "<";
                }
            }
            let letter = letters.chars().nth(s).unwrap_or('b');
            (divisor, letter.to_string(), prefix)
        } else {
            let text = match self.letter {
                'b' | 'B' => "B".to_string(),
                's' | 'S' => "S".to_string(),
                c => c.to_string(),
            };
            (self.factor, text, "")
        };
        let precision = if matches!(suffix_text.as_str(), "B" | "b" | "S") {
            0
        } else {
            2
        };
        let shown = if human || suffix {
            suffix_text.as_str()
        } else {
            ""
        };
        format!(
            "{prefix}{:.precision$}{shown}",
            bytes as f64 / divisor as f64
        )
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
        // lvm2's fractions, its default unit (MiB), sectors and bytes
        assert_eq!(parse_size("1.5G", false), Ok(3 << 29));
        assert_eq!(parse_size(".5g", false), Ok(1 << 29));
        assert_eq!(parse_size("100", false), Ok(100 << 20));
        assert_eq!(parse_size("+100", true), Ok(100 << 20));
        assert_eq!(parse_size("2048s", false), Ok(1 << 20));
        assert_eq!(parse_size("1048576b", false), Ok(1 << 20));
        // 1.1 GiB is not whole sectors: rounded down as lvm2 does (2306867.2 sectors)
        assert_eq!(parse_size("1.1G", false), Ok(2_306_867 * 512));
    }

    #[test]
    fn rejects_bad_sizes_with_reasons() {
        for (bad, relative, why) in [
            ("0", true, "more than zero"),
            ("0G", true, "more than zero"),
            ("0.0001k", true, "more than zero"),
            ("-1G", true, "negative"),
            ("+", true, "expected a number"),
            (".", true, "expected a number"),
            ("5X", true, "unknown unit"),
            ("5GX", true, "unknown unit"),
            ("5sb", true, "unknown unit"),
            ("+5G", false, "absolute"),
            ("", false, "expected a number"),
            ("99999999999P", true, "too large"),
            ("99999999999999999999", true, "too large"),
            ("1e300G", true, "unknown unit"),
            ("1000b", true, "try 512b or 1024b"),
            ("1.5b", true, "whole number"),
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
            ("1.5G", "1536M"),
            ("100", "100M"),
            ("3s", "3S"),
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

    /// What lvm2 2.03.16 printed for these sizes on this machine.
    #[test]
    fn units_show_as_lvm2_does() {
        let show = |units: &str, bytes: u64, suffix: bool| {
            units.parse::<Units>().unwrap().show(bytes, suffix)
        };
        let vg = 159_383_552; // 152 MiB
        assert_eq!(show("r", vg, true), "152.00m");
        assert_eq!(show("h", vg, false), "152.00m");
        assert_eq!(show("H", vg, true), "159.38M");
        assert_eq!(show("G", vg, true), "0.16G");
        assert_eq!(show("k", vg, true), "155648.00k");
        assert_eq!(show("b", vg, false), "159383552");
        assert_eq!(show("b", vg, true), "159383552B");
        assert_eq!(show("s", 37_748_736, true), "73728S");
        assert_eq!(show("3M", vg, true), "53.13U");
        assert_eq!(show("1.5g", vg, true), "0.10g");
        assert_eq!(show("r", 0, true), "0 ");
        assert_eq!(show("r", 0, false), "0");
        assert_eq!(show("m", 0, true), "0m");
        assert_eq!(show("b", 0, true), "0B");
        // `<` where rounding to two places went up: 2043 MiB is <2.00g
        assert_eq!(show("r", 2043 << 20, true), "<2.00g");
        assert_eq!(show("h", 2043 << 20, true), "2.00g");
        assert_eq!(show("r", 4 << 20, true), "4.00m");
        // ties round to even, as printf does: 0.125 GiB
        assert_eq!(show("g", 128 << 20, true), "0.12g");
        for bad in ["", "x", "mm", "0m", "3", "m3", "-1m"] {
            assert!(bad.parse::<Units>().is_err(), "{bad:?}");
        }
    }
}
