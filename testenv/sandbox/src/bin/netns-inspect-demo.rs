//! The README's main job for now: builds the Liberty guide's controller namespaces
//! (qrouter + qdhcp with a real dnsmasq, veths onto brq bridges) inside a private
//! sandbox, shows what `netns-inspect` sees, adds the debris a crashed agent leaves and
//! shows the problems found, then tears everything down. The host's own interfaces
//! are never touched: the sandbox is a network + mount namespace of this process.

use std::path::PathBuf;
use std::process::Command;

use sp_testenv::scene::netns_add;
use sp_testenv::{guide, require, sandbox};

fn netns_inspect() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe.with_file_name("netns-inspect");
    assert!(
        bin.is_file(),
        "{} not built: run testenv/demo.sh",
        bin.display()
    );
    bin
}

fn show(title: &str, args: &[&str]) {
    println!("\n=== {title}\n$ netns-inspect {}\n", args.join(" "));
    let status = Command::new(netns_inspect())
        .args(args)
        .status()
        .expect("run netns-inspect");
    println!("(exit status {})", status.code().unwrap_or(-1));
}

fn main() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    println!("Sandbox: a private network + mount namespace; the host is not touched.");
    println!("Building the guide's controller (section 10-4) with iproute2 and dnsmasq…");
    let scene = guide::build();

    show("every namespace, as a tree", &[]);
    show(
        "one router, by the id prefix the guide shows",
        &["qrouter-006df4cc…"],
    );

    println!("\nAdding what a crashed agent leaves behind: a stale /run/netns entry and an");
    println!("empty qrouter namespace whose router was deleted; stopping dnsmasq.");
    std::fs::File::create("/run/netns/qrouter-dead0000-0000-4000-8000-000000000000")
        .expect("stale entry");
    netns_add("qrouter-99999999-8888-4777-8666-555555555555");
    drop(scene);
    show(
        "problems, checked the way a CI job would",
        &["--kind", "qdhcp", "--kind", "qrouter", "--check"],
    );
    println!("\nTearing down: the sandbox and everything in it ends with this process.");
}
