//! The DHCP agent's dnsmasq: its command line and the files it reads, exactly as
//! Liberty's `neutron/agent/linux/dhcp.py` writes them (see the reference, §3).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

/// dnsmasq's `--domain` and the suffix of every host name.
pub const DOMAIN: &str = "openstacklocal";
/// The lease time of `--dhcp-range` (`dhcp_lease_duration`).
pub const LEASE_SECONDS: u32 = 86400;
/// The metadata address reached through the DHCP port on isolated subnets.
pub const METADATA_IP: &str = "169.254.169.254";

/// A DHCP-enabled subnet of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct DhcpSubnet {
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub dns_nameservers: Vec<IpAddr>,
    /// No router interface on it: instances reach metadata through the DHCP port.
    pub isolated: bool,
    /// The DHCP port's address on this subnet.
    pub dhcp_ip: IpAddr,
}

/// A port that gets a fixed address (`host` file entry).
#[derive(Debug, Clone, PartialEq)]
pub struct DhcpHost {
    pub mac: String,
    pub ip: IpAddr,
}

/// One network's dnsmasq.
#[derive(Debug, Clone, PartialEq)]
pub struct Dnsmasq {
    pub network_id: String,
    /// `$state_path/dhcp/<network id>` (pid, host, addn_hosts, opts, leases).
    pub dir: PathBuf,
    /// The `ns-…` device in `qdhcp-<network>`.
    pub interface: String,
    pub subnets: Vec<DhcpSubnet>,
    pub hosts: Vec<DhcpHost>,
    /// `dnsmasq_config_file` (the guide's carries `dhcp-option-force=26,1450`).
    pub conf_file: Option<PathBuf>,
    /// `enable_isolated_metadata`.
    pub isolated_metadata: bool,
}

impl Dnsmasq {
    /// Whether the network's namespace serves metadata (Liberty's
    /// `should_enable_metadata`): `enable_isolated_metadata` and an IPv4 subnet with no
    /// router interface on it.
    pub fn serves_metadata(&self) -> bool {
        self.isolated_metadata
            && self
                .subnets
                .iter()
                .any(|s| s.isolated && s.cidr.addr().is_ipv4())
    }
}

/// `host-10-0-0-5`: Neutron's name for an address.
pub fn hostname(ip: IpAddr) -> String {
    format!("host-{}", ip.to_string().replace(['.', ':'], "-"))
}

/// `host-10-0-0-5.openstacklocal.` (with the trailing dot).
pub fn fqdn(ip: IpAddr) -> String {
    format!("{}.{DOMAIN}.", hostname(ip))
}

impl Dnsmasq {
    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The pid file dnsmasq writes.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// The command line, argv[0] included.
    pub fn argv(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "dnsmasq",
            "--no-hosts",
            "--no-resolv",
            "--strict-order",
            "--except-interface=lo",
        ]
        .map(String::from)
        .to_vec();
        a.push(format!("--pid-file={}", self.file("pid")));
        a.push(format!("--dhcp-hostsfile={}", self.file("host")));
        a.push(format!("--addn-hosts={}", self.file("addn_hosts")));
        a.push(format!("--dhcp-optsfile={}", self.file("opts")));
        a.push(format!("--dhcp-leasefile={}", self.file("leases")));
        a.push("--dhcp-match=set:ipxe,175".into());
        a.push("--bind-interfaces".into());
        a.push(format!("--interface={}", self.interface));
        let mut size: u64 = 0;
        for (i, s) in self.subnets.iter().enumerate() {
            a.push(format!(
                "--dhcp-range=set:tag{i},{},static,{LEASE_SECONDS}s",
                s.cidr.network()
            ));
            size += 1u64 << (s.cidr.max_prefix_len() - s.cidr.prefix_len()).min(63);
        }
        a.push(format!("--dhcp-lease-max={}", size.min(1 << 24)));
        a.push(format!(
            "--conf-file={}",
            self.conf_file
                .as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default()
        ));
        a.push(format!("--domain={DOMAIN}"));
        a
    }

    /// The `host` file: `mac,fqdn,ip` per port.
    pub fn hosts_file(&self) -> String {
        self.hosts
            .iter()
            .map(|h| format!("{},{},{}\n", h.mac, fqdn(h.ip), h.ip))
            .collect()
    }

    /// The `addn_hosts` file: `ip<TAB>fqdn hostname` per port.
    pub fn addn_hosts_file(&self) -> String {
        self.hosts
            .iter()
            .map(|h| format!("{}\t{} {}\n", h.ip, fqdn(h.ip), hostname(h.ip)))
            .collect()
    }

    /// The `opts` file: DNS servers, host routes (metadata through the DHCP port on
    /// isolated subnets, through the router on routed ones; then the default route) as
    /// option 121 and 249, the router.
    pub fn opts_file(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.subnets.iter().enumerate() {
            let tag = format!("tag:tag{i}");
            if !s.dns_nameservers.is_empty() {
                let dns: Vec<String> = s.dns_nameservers.iter().map(IpAddr::to_string).collect();
                out += &format!("{tag},option:dns-server,{}\n", dns.join(","));
            }
            // As Liberty's DHCP agent: metadata through the DHCP port on an isolated
            // subnet (with isolated metadata), through the router on a routed one.
            let mut routes = Vec::new();
            match (s.isolated, s.gateway) {
                _ if !s.cidr.addr().is_ipv4() => {}
                (true, _) if self.isolated_metadata => {
                    routes.push(format!("{METADATA_IP}/32,{}", s.dhcp_ip))
                }
                (false, Some(gw)) => routes.push(format!("{METADATA_IP}/32,{gw}")),
                _ => {}
            }
            if !routes.is_empty() {
                if let Some(gw) = s.gateway {
                    routes.push(format!("0.0.0.0/0,{gw}"));
                }
                let r = routes.join(",");
                out += &format!("{tag},option:classless-static-route,{r}\n{tag},249,{r}\n");
            }
            match s.gateway {
                Some(gw) => out += &format!("{tag},option:router,{gw}\n"),
                None => out += &format!("{tag},option:router\n"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guide(isolated: bool) -> Dnsmasq {
        Dnsmasq {
            network_id: "5b6a8b87-fd03-46b5-a968-72bac5091b7c".into(),
            dir: "/var/lib/neutron/dhcp/5b6a8b87-fd03-46b5-a968-72bac5091b7c".into(),
            interface: "ns-b5cfa271-71".into(),
            subnets: vec![DhcpSubnet {
                cidr: "192.168.0.0/24".parse().unwrap(),
                gateway: Some("192.168.0.1".parse().unwrap()),
                dns_nameservers: vec!["8.8.8.8".parse().unwrap()],
                isolated,
                dhcp_ip: "192.168.0.2".parse().unwrap(),
            }],
            hosts: vec![DhcpHost {
                mac: "fa:16:3e:5d:2c:01".into(),
                ip: "192.168.0.3".parse().unwrap(),
            }],
            conf_file: Some("/etc/neutron/dnsmasq-neutron.conf".into()),
            isolated_metadata: true,
        }
    }

    #[test]
    fn command_line_is_liberty_s() {
        let d = "/var/lib/neutron/dhcp/5b6a8b87-fd03-46b5-a968-72bac5091b7c";
        assert_eq!(
            guide(false).argv().join(" "),
            format!(
                "dnsmasq --no-hosts --no-resolv --strict-order --except-interface=lo \
                 --pid-file={d}/pid --dhcp-hostsfile={d}/host --addn-hosts={d}/addn_hosts \
                 --dhcp-optsfile={d}/opts --dhcp-leasefile={d}/leases --dhcp-match=set:ipxe,175 \
                 --bind-interfaces --interface=ns-b5cfa271-71 \
                 --dhcp-range=set:tag0,192.168.0.0,static,86400s --dhcp-lease-max=256 \
                 --conf-file=/etc/neutron/dnsmasq-neutron.conf --domain=openstacklocal"
            )
        );
        let mut no_conf = guide(false);
        no_conf.conf_file = None;
        assert!(
            no_conf.argv().contains(&"--conf-file=".to_owned()),
            "present even when empty"
        );
    }

    #[test]
    fn files_are_liberty_s() {
        let g = guide(false);
        assert_eq!(
            g.hosts_file(),
            "fa:16:3e:5d:2c:01,host-192-168-0-3.openstacklocal.,192.168.0.3\n"
        );
        assert_eq!(
            g.addn_hosts_file(),
            "192.168.0.3\thost-192-168-0-3.openstacklocal. host-192-168-0-3\n"
        );
        // A subnet with a router: metadata through the router, as Liberty writes it.
        assert_eq!(
            g.opts_file(),
            "tag:tag0,option:dns-server,8.8.8.8\n\
             tag:tag0,option:classless-static-route,169.254.169.254/32,192.168.0.1,0.0.0.0/0,192.168.0.1\n\
             tag:tag0,249,169.254.169.254/32,192.168.0.1,0.0.0.0/0,192.168.0.1\n\
             tag:tag0,option:router,192.168.0.1\n"
        );
        assert_eq!(
            guide(true).opts_file(),
            "tag:tag0,option:dns-server,8.8.8.8\n\
             tag:tag0,option:classless-static-route,169.254.169.254/32,192.168.0.2,0.0.0.0/0,192.168.0.1\n\
             tag:tag0,249,169.254.169.254/32,192.168.0.2,0.0.0.0/0,192.168.0.1\n\
             tag:tag0,option:router,192.168.0.1\n"
        );
    }
}
