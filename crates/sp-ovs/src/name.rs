//! Bridge, port and interface names: each becomes a network device, so the kernel's
//! rules apply (`dev_valid_name`: 1–15 bytes, not `.`/`..`, no `/`, `:` or whitespace).

use crate::Error;

/// Longest device name (IFNAMSIZ − 1).
pub const MAX_NAME_LEN: usize = 15;

/// Checks that `name` can be a network device name.
pub fn validate(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 15 bytes (the kernel's IFNAMSIZ limit)"
    } else if name == "." || name == ".." {
        "not a device name"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains(':') {
        "contains ':'"
    } else if name.chars().any(char::is_whitespace) {
        "contains whitespace"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutron_names_pass_and_bad_ones_say_why() {
        for ok in [
            "br-ex",
            "qg-48cdaf68-67",
            "tap754104f3-90",
            "patch-int",
            "eno1",
        ] {
            validate(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("qg-48cdaf68-67xx", "15 bytes"),
            ("a/b", "'/'"),
            ("a:b", "':'"),
            ("a b", "whitespace"),
            ("..", "not a device"),
        ] {
            let e = validate(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
