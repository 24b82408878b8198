//! `stackplumb demo` — the README's main job — builds, checks and removes the guide's
//! cloud in its own sandbox: every check holds and nothing is left on the machine.

use std::process::Command;

use sp_testenv::{lvm, require};

#[test]
fn the_demo_holds_every_check_and_leaves_nothing() {
    require::root();
    require::program("dnsmasq", "dnsmasq-base");
    let child = Command::new(sp_testenv::workspace_bin("stackplumb"))
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The demo works in a directory made by mkdtemp (0700) and says which.
    let work = std::path::PathBuf::from(
        text.lines()
            .find_map(|l| l.trim().strip_prefix("· work directory "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("no work directory line in\n{text}")),
    );
    assert!(
        work.starts_with(std::env::temp_dir())
            && work
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("stackplumb-demo-")),
        "{}",
        work.display()
    );
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "✓ 10-5: vm1 (compute) gets 192.168.0.3/24 from dnsmasq on the controller, across VXLAN; router 192.168.0.1, MTU 1450",
        "✓ vm1 pings its router 192.168.0.1",
        "✓ vm1 reaches the external PC 10.0.0.1 (SNAT)",
        "✓ 10-4: the external PC pings the router's gateway 10.0.0.200",
        "✓ the external PC reaches vm1 on its floating IP 10.0.0.201",
        "✓ 12-x: volume group stackplumb-demo-",
        "every check held",
    ] {
        assert!(text.contains(check), "{check:?} not in\n{text}");
    }
    assert!(!text.contains('✗'), "{text}");
    // The demo's VG is its own, named after its work directory: never the host's.
    let vg = work.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text.contains(&format!("✓ 12-x: volume group {vg} on loop files")),
        "{vg} not named in\n{text}"
    );
    assert!(!text.contains("cinder-volumes"), "{text}");
    // The demo's work directory and its loop devices are gone.
    assert!(
        lvm::bound_under(&work).is_empty(),
        "loop devices of the demo left"
    );
    assert!(!work.exists(), "{} left", work.display());
}
