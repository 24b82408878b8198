//! Probes that check a data plane the way its users would, without `ping` or a DHCP
//! client process: an ICMP echo exchange, and a DHCP exchange.

pub mod dhcp;
pub mod echo;
