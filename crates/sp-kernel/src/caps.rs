//! The capabilities this process holds, read from `/proc/self/status` (`CapEff`), so a
//! command can say before its first change which one a container left out, in the words
//! of the container tools (`--cap-add NET_ADMIN`).

/// The capabilities the tools need, with the kernel's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cap {
    Setgid = 6,
    Setuid = 7,
    NetBindService = 10,
    NetAdmin = 12,
    NetRaw = 13,
    SysPtrace = 19,
    SysAdmin = 21,
    Mknod = 27,
}

impl Cap {
    /// `NET_ADMIN`: the name `--cap-add` takes.
    pub fn short(self) -> &'static str {
        match self {
            Cap::Setgid => "SETGID",
            Cap::Setuid => "SETUID",
            Cap::NetBindService => "NET_BIND_SERVICE",
            Cap::NetAdmin => "NET_ADMIN",
            Cap::NetRaw => "NET_RAW",
            Cap::SysPtrace => "SYS_PTRACE",
            Cap::SysAdmin => "SYS_ADMIN",
            Cap::Mknod => "MKNOD",
        }
    }
}

/// The effective capability set, `None` when it cannot be read.
pub fn effective() -> Option<u64> {
    parse_cap_eff(&std::fs::read_to_string("/proc/self/status").ok()?)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Which of `wanted` this process lacks (none when the set cannot be read: the call that
/// needs it will say so itself).
pub fn missing(wanted: &[Cap]) -> Vec<Cap> {
    let Some(have) = effective() else {
        return vec![];
    };
    let mut out: Vec<Cap> = wanted
        .iter()
        .copied()
        .filter(|c| have & (1u64 << (*c as u32)) == 0)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// "needs CAP_NET_ADMIN, CAP_SYS_ADMIN (in a container: --cap-add NET_ADMIN --cap-add
/// SYS_ADMIN, or --privileged)".
pub fn explain(missing: &[Cap]) -> String {
    let names: Vec<String> = missing
        .iter()
        .map(|c| format!("CAP_{}", c.short()))
        .collect();
    let adds: Vec<String> = missing
        .iter()
        .map(|c| format!("--cap-add {}", c.short()))
        .collect();
    format!(
        "needs {} (in a container: {}, or --privileged)",
        names.join(", "),
        adds.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_set_is_read_and_explained() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffefff\n";
        let eff = parse_cap_eff(status).unwrap();
        assert_eq!(eff & (1 << 12), 0, "NET_ADMIN is the one left out");
        assert_ne!(eff & (1 << 21), 0);
        assert_eq!(
            explain(&[Cap::NetAdmin, Cap::Mknod]),
            "needs CAP_NET_ADMIN, CAP_MKNOD (in a container: --cap-add NET_ADMIN \
             --cap-add MKNOD, or --privileged)"
        );
        assert!(effective().is_some());
    }
}
