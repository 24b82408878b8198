//! The guide's vm1 (the compute node's firewall planned from the guide's files and
//! the built-in topology) loaded in a sandbox: `nft list ruleset` prints exactly the
//! listing of docs/security-groups.md, and Liberty's rules for the same port (beside
//! it there) are what the real `ipset restore` and `iptables-restore -n` take.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use sp_testenv::{require, sandbox};

fn guide_firewall() -> sp_neutron::sg::Firewall {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sp-config/tests/guide");
    let cfg = sp_config::GuideConfig::load(&dir).unwrap();
    let plans = sp_config::desired::plan(
        &sp_config::Topology::guide(),
        &cfg,
        Path::new("/var/lib/neutron"),
    )
    .unwrap();
    plans
        .into_iter()
        .find(|p| p.node == "compute")
        .unwrap()
        .firewall
}

/// The ```nft block of docs/security-groups.md.
fn documented() -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security-groups.md"),
    )
    .unwrap();
    let from = doc.find("```nft\n").expect("an nft block") + "```nft\n".len();
    let len = doc[from..].find("```").expect("its end");
    doc[from..from + len].to_owned()
}

fn feed(program: &str, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn nft_prints_the_guides_port_as_documented_and_libertys_rules_load() {
    sandbox::enter();
    require::program("nft", "nftables");
    require::program("iptables-restore", "iptables");
    require::program("ipset", "ipset");
    let fw = guide_firewall();
    sp_sg::load(&fw, &mut Vec::new()).unwrap();
    let printed = require::run(Command::new("nft").args(["list", "ruleset"]));
    let lines = |t: &str| -> Vec<String> { t.lines().map(|l| l.trim_end().to_owned()).collect() };
    assert_eq!(
        lines(&printed),
        lines(&documented()),
        "nft list ruleset:\n{printed}"
    );
    // What the kernel holds is what we wrote, by what the rules do.
    let cur = sp_sg::read().unwrap().expect("both tables");
    assert!(cur.matches(&sp_sg::SgRules::of(&fw).unwrap()));
    // Liberty's input for the same port loads (ipset first: the rules name its set).
    let out = feed(
        "ipset",
        &["restore"],
        &fw.ipset_restore(sp_neutron::sg::EtherType::Ipv4),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = feed(
        "iptables-restore",
        &["-n"],
        &fw.iptables_restore(sp_neutron::sg::EtherType::Ipv4),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
