//! Size arguments: `20G`, `+5G`, `5GiB`, `5g`, `512M` — binary units as lvm2 reads them.

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
    fn human_sizes() {
        assert_eq!(human(5 << 30), "5.00 GiB");
        assert_eq!(human(100), "100 B");
    }
}
