//! Realising one node's desired state ([`sp_config::desired::NodePlan`]) in the calling
//! thread's network namespace, in the agents' order, with the operations of layer 3:
//!
//! 1. flat networks: bridge, then the uplink NIC moved under it (its address and
//!    default route with it) — before VXLAN, so `vxlan-N` is bound to the device that
//!    holds `local_ip` afterwards;
//! 2. tenant networks: bridge + `vxlan-N`;
//! 3. router, DHCP and instance ports (namespaces made when missing);
//! 4. l2population entries towards the other nodes;
//! 5. dnsmasq per DHCP network, in its `qdhcp-` namespace;
//! 6. each router's NAT in its `qrouter-` namespace.
//!
//! Every step is ensure-style: realising twice changes nothing the second time.
//! [`take_down`] removes what [`realise`] made, and nothing else.

use std::path::Path;

use sp_bridge::network::{self, NetworkSpec, VxlanConfig};
use sp_bridge::port::{self, PortSpec};
use sp_bridge::{input, l2pop, teardown, uplink, Faults};
use sp_config::desired::{L2Entry, NodePlan};
use sp_kernel::netlink::Netlink;
use sp_kernel::Change;
use sp_neutron::bridge_name;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bridge(#[from] sp_bridge::Error),
    #[error(transparent)]
    Dhcp(#[from] sp_dhcp::Error),
    #[error(transparent)]
    Nat(#[from] sp_l3::Error),
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn port_specs(plan: &NodePlan) -> Result<Vec<PortSpec>> {
    plan.ports
        .iter()
        .map(|p| {
            Ok(PortSpec {
                port_id: p.port_id.clone(),
                kind: p.kind,
                namespace: p.namespace.clone(),
                bridge: bridge_name(&p.network_id),
                mac: Some(input::mac(&p.mac)?),
                mtu: None,
                addresses: p.addresses.clone(),
                gateway: p.gateway,
                ip_forward: p.ip_forward,
            })
        })
        .collect()
}

/// Realises `plan` in the calling thread's namespace (that namespace is the node);
/// `state` is the agents' `state_path` (dnsmasq files, NAT records).
pub async fn realise(nl: &Netlink, plan: &NodePlan, state: &Path) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    // 1. Flat networks and their uplinks.
    for n in plan.networks.iter().filter(|n| n.vxlan.is_none()) {
        network::ensure_network(nl, &n.network_id, None, &mut changes).await?;
        if let Some(nic) = &n.uplink {
            uplink::attach(nl, &n.bridge, nic, &mut Faults::none(), &mut changes).await?;
        }
    }
    // 2. Tenant networks.
    let specs: Vec<NetworkSpec> = plan
        .networks
        .iter()
        .filter_map(|n| {
            let v = n.vxlan.as_ref()?;
            Some(NetworkSpec {
                network_id: n.network_id.clone(),
                vxlan: Some(VxlanConfig {
                    vni: v.vni,
                    local_ip: v.local_ip,
                    l2_population: v.l2_population,
                    group: v.group,
                    port: None,
                }),
            })
        })
        .collect();
    network::ensure_networks(nl, &specs, &mut changes).await?;
    // 3. Ports.
    port::plug(nl, &port_specs(plan)?, &mut changes).await?;
    // 4. l2population.
    for e in &plan.l2pop {
        match e {
            L2Entry::Flood { vni, vtep } => l2pop::flood_add(nl, *vni, *vtep, &mut changes).await?,
            L2Entry::Port { vni, mac, ip, vtep } => {
                l2pop::port_add(nl, *vni, input::mac(mac)?, *ip, *vtep, &mut changes).await?
            }
        }
    }
    // 5. DHCP.
    for d in &plan.dhcp {
        sp_dhcp::ensure(d, &sp_neutron::qdhcp_namespace(&d.network_id), &mut changes)?;
    }
    // 6. NAT.
    for r in &plan.routers {
        sp_l3::ensure_nat(state, &r.namespace, &r.nat, &mut changes)?;
    }
    Ok(changes)
}

/// Takes down what [`realise`] made on this node: dnsmasq ended, the namespaces of
/// its ports deleted (their veths with them), uplinks given their addresses back,
/// bridges and VXLAN devices deleted in one batch.
pub async fn take_down(nl: &Netlink, plan: &NodePlan, state: &Path) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for d in &plan.dhcp {
        sp_dhcp::stop(d, &sp_neutron::qdhcp_namespace(&d.network_id), &mut changes)?;
    }
    for r in &plan.routers {
        sp_l3::forget(state, &r.namespace)?;
    }
    let mut namespaces: Vec<String> = plan.ports.iter().map(|p| p.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    teardown::delete_namespaces(&namespaces, &mut changes)?;
    let ids: Vec<String> = plan.networks.iter().map(|n| n.network_id.clone()).collect();
    teardown::delete_networks(nl, &ids, &mut changes).await?;
    Ok(changes)
}
