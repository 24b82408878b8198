//! The files that make an attach survive a reboot, as the packstack notes and
//! puppet-vswitch write them by hand: CentOS `ifcfg-<nic>` + `ifcfg-<bridge>` (initscripts'
//! `ifup-ovs`) and Debian/Ubuntu `/etc/network/interfaces` stanzas (openvswitch-switch's
//! ifupdown hooks, `README.Debian`). Pure text from a [`HostIp`]: no syscalls.

use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// Which persistent configuration to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `/etc/sysconfig/network-scripts/ifcfg-*` (CentOS/RHEL initscripts).
    Ifcfg,
    /// `/etc/network/interfaces` (Debian/Ubuntu ifupdown).
    Interfaces,
}

/// The host's IP configuration that moves between the NIC and the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostIp {
    pub bridge: String,
    pub nic: String,
    /// The NIC's MAC address (`aa:bb:…`), kept on the bridge for a DHCP NIC.
    pub mac: String,
    /// Global addresses, primary first.
    pub addresses: Vec<IpNet>,
    /// The IPv4 default gateway.
    pub gateway: Option<IpAddr>,
    /// The IPv6 default gateway.
    pub gateway6: Option<IpAddr>,
    /// The addresses came from DHCP (they have a finite lifetime).
    pub dhcp: bool,
    /// The bridge's datapath (`netdev` without the openvswitch kernel module).
    pub datapath_type: String,
}

impl HostIp {
    fn v4(&self) -> impl Iterator<Item = &IpNet> {
        self.addresses.iter().filter(|a| matches!(a, IpNet::V4(_)))
    }

    fn v6(&self) -> impl Iterator<Item = &IpNet> {
        self.addresses.iter().filter(|a| matches!(a, IpNet::V6(_)))
    }

    /// ovs-vsctl commands run when the bridge comes up (`OVS_EXTRA` / `ovs_extra`).
    fn extra(&self) -> Vec<String> {
        let mut extra = Vec::new();
        if !self.datapath_type.is_empty() {
            extra.push(format!(
                "set bridge {} datapath_type={}",
                self.bridge, self.datapath_type
            ));
        }
        if self.dhcp && !self.mac.is_empty() {
            extra.push(format!(
                "set bridge {} other-config:hwaddr={}",
                self.bridge, self.mac
            ));
        }
        extra
    }

    /// The files, each headed by a `# PATH` comment line.
    pub fn render(&self, format: ConfigFormat) -> String {
        match format {
            ConfigFormat::Ifcfg => self.ifcfg(),
            ConfigFormat::Interfaces => self.interfaces(),
        }
    }

    fn ifcfg(&self) -> String {
        let (nic, br) = (&self.nic, &self.bridge);
        let mut out = format!(
            "# /etc/sysconfig/network-scripts/ifcfg-{nic}\n\
             TYPE=OVSPort\nDEVICETYPE=ovs\nOVS_BRIDGE={br}\nNM_CONTROLLED=no\n\
             BOOTPROTO=none\nONBOOT=yes\nDEVICE={nic}\nPEERDNS=no\n\n\
             # /etc/sysconfig/network-scripts/ifcfg-{br}\n\
             DEVICE={br}\nDEVICETYPE=ovs\nTYPE=OVSBridge\n"
        );
        if self.dhcp {
            out += &format!("OVSBOOTPROTO=dhcp\nOVSDHCPINTERFACES={nic}\n");
        } else {
            out += "BOOTPROTO=static\n";
            for (i, a) in self.v4().enumerate() {
                let n = if i == 0 { String::new() } else { i.to_string() };
                let _ = write!(out, "IPADDR{n}={}\nNETMASK{n}={}\n", a.addr(), a.netmask());
            }
            if let Some(gw) = self.gateway {
                let _ = writeln!(out, "GATEWAY={gw}");
            }
            let v6: Vec<String> = self.v6().map(IpNet::to_string).collect();
            if let Some((first, rest)) = v6.split_first() {
                let _ = write!(out, "IPV6INIT=yes\nIPV6ADDR={first}\n");
                if !rest.is_empty() {
                    let _ = writeln!(out, "IPV6ADDR_SECONDARIES=\"{}\"", rest.join(" "));
                }
                if let Some(gw) = self.gateway6 {
                    let _ = writeln!(out, "IPV6_DEFAULTGW={gw}");
                }
            }
        }
        let extra = self.extra();
        if !extra.is_empty() {
            let _ = writeln!(out, "OVS_EXTRA=\"{}\"", extra.join(" -- "));
        }
        out += "ONBOOT=yes\n";
        out
    }

    fn interfaces(&self) -> String {
        let (nic, br) = (&self.nic, &self.bridge);
        let mut out = "# /etc/network/interfaces\n".to_owned();
        let _ = writeln!(out, "allow-ovs {br}");
        if self.dhcp {
            let _ = writeln!(out, "iface {br} inet dhcp");
        } else {
            let mut v4 = self.v4();
            match v4.next() {
                Some(a) => {
                    let _ = write!(
                        out,
                        "iface {br} inet static\n    address {}\n    netmask {}\n",
                        a.addr(),
                        a.netmask()
                    );
                    if let Some(gw) = self.gateway {
                        let _ = writeln!(out, "    gateway {gw}");
                    }
                }
                None => {
                    let _ = writeln!(out, "iface {br} inet manual");
                }
            }
            for a in v4 {
                let _ = writeln!(out, "    up ip addr add {a} dev {br}");
                let _ = writeln!(out, "    down ip addr del {a} dev {br}");
            }
        }
        let _ = write!(out, "    ovs_type OVSBridge\n    ovs_ports {nic}\n");
        let extra = self.extra();
        if !extra.is_empty() {
            let _ = writeln!(out, "    ovs_extra {}", extra.join(" -- "));
        }
        if !self.dhcp {
            let mut v6 = self.v6();
            if let Some(a) = v6.next() {
                let _ = write!(
                    out,
                    "\nallow-ovs {br}\niface {br} inet6 static\n    address {a}\n"
                );
                if let Some(gw) = self.gateway6 {
                    let _ = writeln!(out, "    gateway {gw}");
                }
                for a in v6 {
                    let _ = writeln!(out, "    up ip -6 addr add {a} dev {br}");
                }
            }
        }
        let _ = write!(
            out,
            "\nallow-{br} {nic}\niface {nic} inet manual\n    ovs_bridge {br}\n    ovs_type OVSPort\n"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes() -> HostIp {
        HostIp {
            bridge: "br-ex".into(),
            nic: "eno1".into(),
            mac: "52:54:00:12:34:56".into(),
            addresses: vec!["10.50.14.50/24".parse().unwrap()],
            gateway: Some("10.50.14.1".parse().unwrap()),
            ..HostIp::default()
        }
    }

    #[test]
    fn ifcfg_is_the_notes_files() {
        assert_eq!(
            notes().render(ConfigFormat::Ifcfg),
            "# /etc/sysconfig/network-scripts/ifcfg-eno1
TYPE=OVSPort
DEVICETYPE=ovs
OVS_BRIDGE=br-ex
NM_CONTROLLED=no
BOOTPROTO=none
ONBOOT=yes
DEVICE=eno1
PEERDNS=no

# /etc/sysconfig/network-scripts/ifcfg-br-ex
DEVICE=br-ex
DEVICETYPE=ovs
TYPE=OVSBridge
BOOTPROTO=static
IPADDR=10.50.14.50
NETMASK=255.255.255.0
GATEWAY=10.50.14.1
ONBOOT=yes
"
        );
    }

    #[test]
    fn interfaces_follow_readme_debian() {
        assert_eq!(
            notes().render(ConfigFormat::Interfaces),
            "# /etc/network/interfaces
allow-ovs br-ex
iface br-ex inet static
    address 10.50.14.50
    netmask 255.255.255.0
    gateway 10.50.14.1
    ovs_type OVSBridge
    ovs_ports eno1

allow-br-ex eno1
iface eno1 inet manual
    ovs_bridge br-ex
    ovs_type OVSPort
"
        );
    }

    #[test]
    fn dhcp_nic_keeps_its_mac_on_the_bridge_and_netdev_is_kept() {
        let host = HostIp {
            dhcp: true,
            datapath_type: "netdev".into(),
            ..notes()
        };
        let ifcfg = host.render(ConfigFormat::Ifcfg);
        assert!(
            ifcfg.contains("OVSBOOTPROTO=dhcp\nOVSDHCPINTERFACES=eno1\n"),
            "{ifcfg}"
        );
        assert!(
            ifcfg.contains(
                "OVS_EXTRA=\"set bridge br-ex datapath_type=netdev -- \
                 set bridge br-ex other-config:hwaddr=52:54:00:12:34:56\"\n"
            ),
            "{ifcfg}"
        );
        assert!(!ifcfg.contains("IPADDR"), "{ifcfg}");
        let interfaces = host.render(ConfigFormat::Interfaces);
        assert!(
            interfaces.contains("iface br-ex inet dhcp\n"),
            "{interfaces}"
        );
        assert!(
            interfaces.contains("    ovs_extra set bridge br-ex datapath_type=netdev -- "),
            "{interfaces}"
        );
    }

    #[test]
    fn secondary_and_ipv6_addresses() {
        let host = HostIp {
            addresses: vec![
                "10.50.14.50/24".parse().unwrap(),
                "10.50.15.50/25".parse().unwrap(),
                "2001:db8::50/64".parse().unwrap(),
            ],
            gateway6: Some("2001:db8::1".parse().unwrap()),
            ..notes()
        };
        let ifcfg = host.render(ConfigFormat::Ifcfg);
        assert!(
            ifcfg.contains("IPADDR1=10.50.15.50\nNETMASK1=255.255.255.128\n"),
            "{ifcfg}"
        );
        assert!(
            ifcfg.contains("IPV6INIT=yes\nIPV6ADDR=2001:db8::50/64\nIPV6_DEFAULTGW=2001:db8::1\n"),
            "{ifcfg}"
        );
        let interfaces = host.render(ConfigFormat::Interfaces);
        assert!(
            interfaces.contains("    up ip addr add 10.50.15.50/25 dev br-ex\n"),
            "{interfaces}"
        );
        assert!(
            interfaces.contains(
                "iface br-ex inet6 static\n    address 2001:db8::50/64\n    gateway 2001:db8::1\n"
            ),
            "{interfaces}"
        );
    }
}
