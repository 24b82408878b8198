//! Every operation against real lvm2 as the oracle, as root, on loop files in a private
//! directory (sp-testenv `Scratch` unbinds what it bound). Serialised in the nextest
//! `loop` test group.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use sp_loopvg::io::{FailAfter, RealIo, KILLED_EXIT};
use sp_loopvg::ondisk::{scan, write_new_pv, PvOnDisk};
use sp_loopvg::{Error, Loopvg, VgReport};
use sp_lvm::label::PvLabel;
use sp_lvm::uuid::Uuid;
use sp_testenv::lvm::{num, Lvm, Scratch};
use sp_testenv::require;

fn loopvg(s: &Scratch) -> Loopvg<'static> {
    Loopvg {
        dir: s.dir.clone(),
        description: "Write from loopvg tests".into(),
        ..Loopvg::default()
    }
}

/// A scratch directory with VG `name`: a 32 MiB file, then one PV more per size.
fn scene(tag: &str, name: &str, extends: &[&str]) -> (Scratch, Loopvg<'static>) {
    let s = Scratch::new(tag);
    let lv = loopvg(&s);
    lv.create(name, "32M", false).unwrap();
    for size in extends {
        lv.extend(name, size).unwrap();
    }
    (s, lv)
}

/// Our report and lvm2's agree on every number, and vgck/pvck accept the VG.
fn assert_agrees(s: &Scratch, ours: &VgReport) {
    let lvm = Lvm::of(s);
    lvm.check(&ours.name).unwrap();
    let vg = lvm.vgs(&ours.name);
    assert_eq!(vg["vg_uuid"], ours.uuid.as_str());
    assert_eq!(num(&vg, "vg_size"), ours.size);
    assert_eq!(num(&vg, "vg_free"), ours.free);
    assert_eq!(num(&vg, "vg_seqno"), ours.seqno);
    assert_eq!(num(&vg, "vg_extent_size"), ours.extent_size);
    assert_eq!(num(&vg, "vg_extent_count"), ours.extent_count);
    assert_eq!(num(&vg, "vg_free_count"), ours.free_count);
    assert_eq!(num(&vg, "pv_count"), ours.pvs.len() as u64);
    assert_eq!(num(&vg, "lv_count"), ours.lv_count as u64);
    let pvs = lvm.pvs(&ours.name);
    assert_eq!(pvs.len(), ours.pvs.len());
    for pv in &ours.pvs {
        let dev = pv.device.as_ref().expect("bound").display().to_string();
        let row = pvs
            .iter()
            .find(|r| r["pv_name"] == dev.as_str())
            .unwrap_or_else(|| panic!("pvs has no {dev}: {pvs:?}"));
        assert_eq!(row["pv_uuid"], pv.uuid.as_str());
        assert_eq!(num(row, "pv_size"), pv.size, "{dev}");
        assert_eq!(num(row, "dev_size"), pv.file_size.unwrap(), "{dev}");
        assert_eq!(num(row, "pv_free"), pv.free, "{dev}");
        assert_eq!(num(row, "pv_pe_count"), pv.pe_count, "{dev}");
        assert_eq!(num(row, "pv_pe_alloc_count"), pv.pe_alloc, "{dev}");
        assert_eq!(num(row, "pe_start"), pv.pe_start, "{dev}");
    }
}

/// Seqnos committed on each PV of `vg` (all equal after a clean run).
fn seqnos(s: &Scratch, vg: &str) -> Vec<u64> {
    let found = scan(&s.dir).unwrap();
    let v = found.iter().find(|v| v.name() == vg).unwrap();
    v.pvs
        .iter()
        .map(|p| {
            let d = p.disk.as_ref().unwrap();
            PvOnDisk::read(&d.file, d.dev)
                .unwrap()
                .unwrap()
                .meta
                .map_or(0, |m| m.seqno())
        })
        .collect()
}

#[test]
fn create_is_what_lvm2_would_have_made() {
    let s = Scratch::new("create");
    let vg = loopvg(&s).create("cinder-volumes", "64M", false).unwrap();
    assert_eq!((vg.seqno, vg.extent_count, vg.pvs.len()), (1, 15, 1));
    assert!(vg.active);
    let file = s.path("cinder-volumes");
    let meta = std::fs::symlink_metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.len(), 64 << 20);
    assert!(meta.blocks() * 512 < 1 << 20, "sparse by default");
    assert_agrees(&s, &vg);
    assert_eq!(vg.pvs[0].file.as_deref(), Some(file.as_path()));
}

#[test]
fn create_preallocate_reserves_the_blocks() {
    let s = Scratch::new("prealloc");
    let vg = loopvg(&s).create("prealloc-vg", "32M", true).unwrap();
    let meta = std::fs::metadata(s.path("prealloc-vg")).unwrap();
    assert!(meta.blocks() * 512 >= 32 << 20, "{} blocks", meta.blocks());
    assert_agrees(&s, &vg);
}

#[test]
fn extend_adds_numbered_files_as_pvs_on_every_pvs_metadata() {
    let (s, lv) = scene("extend", "cinder-volumes", &["+32M"]);
    let vg = lv.extend("cinder-volumes", "+16M").unwrap();
    assert_eq!(
        s.files(),
        ["cinder-volumes", "cinder-volumes02", "cinder-volumes03"]
    );
    assert_eq!(vg.seqno, 3);
    assert_eq!(vg.extent_count, 7 + 7 + 3);
    assert_eq!(seqnos(&s, "cinder-volumes"), [3, 3, 3]);
    for f in s.files() {
        let mode = std::fs::metadata(s.path(&f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600, "{f}");
    }
    assert_agrees(&s, &vg);
}

#[test]
fn extend_grow_resizes_the_last_pv_like_pvresize() {
    let (s, lv) = scene("grow", "growvg", &["+32M"]);
    let vg = lv.grow("growvg", "+64M").unwrap();
    assert_eq!(vg.seqno, 3);
    assert_eq!(vg.pvs[1].file_size, Some(96 << 20));
    assert_eq!(vg.pvs[1].pe_count, 23);
    assert_eq!(
        vg.pvs[1].recorded_size,
        (96 << 20) - (1 << 20),
        "pvresize's dev_size"
    );
    assert_eq!(vg.pvs[0].pe_count, 7);
    assert_agrees(&s, &vg);
    // lvm2's own pvresize finds nothing left to do.
    let lvm = Lvm::of(&s);
    let dev = vg.pvs[1].device.as_ref().unwrap().display().to_string();
    lvm.run(&["pvresize", &dev]);
    assert_eq!(num(&lvm.vgs("growvg"), "vg_extent_count"), vg.extent_count);
}

/// packstack's way: a loop file made into a VG by real lvm2, with an LV on it.
fn packstack_vg(s: &Scratch) -> Lvm {
    let file = s.path("cinder-volumes");
    require::run(Command::new("truncate").args(["-s", "64M"]).arg(&file));
    let dev = s.losetup(&file);
    let lvm = Lvm::new(vec![dev.clone()]);
    lvm.run(&["pvcreate", &dev]);
    lvm.run(&["vgcreate", "cinder-volumes", &dev]);
    lvm.lvcreate("cinder-volumes", "8M", "volume-1");
    lvm
}

#[test]
fn lvm2_made_vg_is_listed_extended_grown_and_lvm2_keeps_working() {
    let s = Scratch::new("packstack");
    packstack_vg(&s);
    let lv = loopvg(&s);
    let listed = lv.list(Some("cinder-volumes")).unwrap().remove(0);
    assert_eq!((listed.lv_count, listed.pvs[0].pe_alloc), (1, 2));
    assert_agrees(&s, &listed);
    let vg = lv.extend("cinder-volumes", "+32M").unwrap();
    assert_eq!(vg.seqno, listed.seqno + 1);
    assert_agrees(&s, &vg);
    let vg = lv.grow("cinder-volumes", "+8M").unwrap();
    assert_agrees(&s, &vg);
    // lvm2 goes on: another LV spanning PVs, then vgextend with a by-hand PV.
    let lvm = Lvm::of(&s);
    lvm.lvcreate("cinder-volumes", "60M", "volume-2");
    let extra = s.path("by-hand");
    require::run(Command::new("truncate").args(["-s", "32M"]).arg(&extra));
    let dev = s.losetup(&extra);
    let lvm = Lvm::of(&s);
    lvm.run(&["vgextend", "cinder-volumes", &dev]);
    let vg = lv.list(Some("cinder-volumes")).unwrap().remove(0);
    assert_eq!((vg.lv_count, vg.pvs.len()), (2, 3));
    assert_agrees(&s, &vg);
    // and we extend again on top of lvm2's latest version
    let vg = lv.extend("cinder-volumes", "+8M").unwrap();
    assert_eq!(vg.pvs.len(), 4);
    assert_agrees(&s, &vg);
}

#[test]
fn lvm2_vgextend_and_vgs_work_on_a_loopvg_vg() {
    let (s, lv) = scene("vgextend", "ours", &["+32M"]);
    let extra = s.path("by-hand");
    require::run(Command::new("truncate").args(["-s", "32M"]).arg(&extra));
    let dev = s.losetup(&extra);
    Lvm::of(&s).run(&["vgextend", "ours", &dev]);
    let vg = lv.list(Some("ours")).unwrap().remove(0);
    assert_eq!((vg.seqno, vg.pvs.len()), (3, 3));
    assert_agrees(&s, &vg);
    let vg = lv.grow("ours", "+16M").unwrap();
    assert_agrees(&s, &vg);
}

type Op = dyn Fn(&Loopvg) -> Result<VgReport, Error>;

/// Runs `op` on a fresh VG (made by `setup`) once per number of writes allowed before an
/// injected failure, until it succeeds. After every failure lvm2 must accept the VG with
/// the old or the new seqno, and a failure before the commit point must leave nothing of
/// the run behind. Returns the number of writes of a whole run.
fn crash_matrix(vg: &str, setup: &Op, op: &Op) -> usize {
    for writes in 0.. {
        let s = Scratch::new("crash");
        let before = setup(&loopvg(&s)).ok();
        let files_before = s.files();
        let fail = FailAfter::new(&RealIo, writes);
        let lv = Loopvg {
            io: &fail,
            ..loopvg(&s)
        };
        let result = op(&lv);
        let after = loopvg(&s).list(Some(vg)).map(|mut v| v.remove(0)).ok();
        match (&before, &after) {
            (None, None) => {
                assert!(result.is_err());
                assert!(s.files().is_empty(), "create left {:?}", s.files());
                assert!(s.bound().is_empty());
            }
            (None, Some(new)) => {
                assert!(result.is_ok(), "created although a write failed");
                assert_eq!(new.seqno, 1);
            }
            (Some(_), None) => panic!("{vg} vanished after {writes} writes"),
            (Some(old), Some(now)) => {
                assert!(
                    now.seqno == old.seqno || now.seqno == old.seqno + 1,
                    "seqno {} -> {}",
                    old.seqno,
                    now.seqno
                );
                if now.seqno == old.seqno {
                    assert_eq!(s.files(), files_before, "rollback left files");
                    assert_eq!(now, old, "rolled back to exactly the old VG");
                }
            }
        }
        if let Some(now) = &after {
            Lvm::of(&s)
                .check(vg)
                .unwrap_or_else(|e| panic!("after {writes} writes: {e}"));
            assert_agrees(&s, now);
        }
        match result {
            Ok(_) => {
                assert!(!fail.tripped());
                return writes;
            }
            Err(e) => assert!(fail.tripped(), "failed without the injection: {e}"),
        }
    }
    unreachable!()
}

fn two_pv_vg(lv: &Loopvg) -> Result<VgReport, Error> {
    lv.create("crashvg", "32M", false)?;
    lv.extend("crashvg", "+16M")
}

#[test]
fn crash_after_any_write_of_create_leaves_nothing_or_the_vg() {
    let writes = crash_matrix("crashvg", &|_| Err(Error::NotRoot), &|lv| {
        lv.create("crashvg", "32M", false)
    });
    // label, area header, text, committed header
    assert_eq!(writes, 4);
}

#[test]
fn crash_after_any_write_of_extend_leaves_old_or_new_metadata() {
    let writes = crash_matrix("crashvg", &two_pv_vg, &|lv| lv.extend("crashvg", "+16M"));
    // new PV: label + area header; then text on 3 PVs and 3 committed headers
    assert_eq!(writes, 8);
}

#[test]
fn crash_after_any_write_of_grow_leaves_old_or_new_metadata() {
    let writes = crash_matrix("crashvg", &two_pv_vg, &|lv| lv.grow("crashvg", "+8M"));
    // text on 2 PVs and 2 committed headers
    assert_eq!(writes, 4);
}

#[test]
fn concurrent_extends_serialise_and_both_land() {
    let (s, _) = scene("concurrent", "busyvg", &[]);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| loopvg(&s).extend("busyvg", "+16M"));
        let b = scope.spawn(|| loopvg(&s).extend("busyvg", "+16M"));
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    let vg = loopvg(&s).list(Some("busyvg")).unwrap().remove(0);
    assert_eq!((vg.seqno, vg.pvs.len()), (3, 3));
    assert_agrees(&s, &vg);
}

#[test]
fn lvm2_holding_the_vg_lock_makes_extend_wait() {
    use nix::fcntl::{Flock, FlockArg};
    let (s, _) = scene("lvmlock", "lockedvg", &[]);
    require::program("flock", "util-linux");
    // Hold lvm2's VG lock file the way lvm2 does (flock) for a while.
    let lock = "/run/lock/lvm/V_lockedvg";
    let mut holder = Command::new("flock")
        .args([lock, "sleep", "1"])
        .spawn()
        .unwrap();
    // until the holder has it
    let open = || {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(lock)
            .unwrap()
    };
    while let Ok(mine) = Flock::lock(open(), FlockArg::LockExclusiveNonblock) {
        drop(mine);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    loopvg(&s).extend("lockedvg", "+16M").unwrap();
    assert!(
        holder.try_wait().unwrap().is_some(),
        "extend went ahead while the lock was held"
    );
}

#[test]
fn activate_after_a_reboot_binds_every_file_again() {
    let (s, lv) = scene("activate", "bootvg", &["+32M"]);
    let vg = lv.deactivate("bootvg").unwrap();
    assert!(!vg.active);
    assert!(s.bound().is_empty(), "deactivate left {:?}", s.bound());
    // as after a reboot: files there, no loop devices
    let vg = lv.list(Some("bootvg")).unwrap().remove(0);
    assert!(vg
        .pvs
        .iter()
        .all(|p| p.device.is_none() && p.file.is_some()));
    let vg = lv.activate(Some("bootvg")).unwrap().remove(0);
    assert!(vg.active);
    assert_eq!(s.bound().len(), 2);
    assert_agrees(&s, &vg);
    // idempotent, and --all finds it too
    lv.deactivate("bootvg").unwrap();
    let all = lv.activate(None).unwrap();
    assert_eq!(all.len(), 1);
    let again = lv.activate(None).unwrap();
    assert_eq!(again, all);
    assert_eq!(s.bound().len(), 2);
    assert_agrees(&s, &all[0]);
}

#[test]
fn activate_refuses_when_a_file_is_missing_and_binds_nothing() {
    let (s, lv) = scene("missing", "partvg", &["+32M"]);
    lv.deactivate("partvg").unwrap();
    std::fs::rename(
        s.path("partvg02"),
        std::env::temp_dir().join(format!("partvg02-{}", std::process::id())),
    )
    .unwrap();
    let err = lv.activate(Some("partvg")).unwrap_err();
    assert!(matches!(err, Error::PvUnavailable { .. }), "{err}");
    assert!(s.bound().is_empty());
    let _ =
        std::fs::remove_file(std::env::temp_dir().join(format!("partvg02-{}", std::process::id())));
}

#[test]
fn remove_wipes_unbinds_and_deletes() {
    let (s, lv) = scene("remove", "gonevg", &["+32M"]);
    let r = lv.remove("gonevg", false).unwrap();
    assert_eq!(r.files.len(), 2);
    assert!(s.files().is_empty());
    assert!(s.bound().is_empty());
    assert!(matches!(
        lv.list(Some("gonevg")),
        Err(Error::VgNotFound { .. })
    ));

    lv.create("keptvg", "32M", false).unwrap();
    lv.remove("keptvg", true).unwrap();
    assert_eq!(s.files(), ["keptvg"]);
    assert!(s.bound().is_empty());
    assert!(
        PvOnDisk::read(&s.path("keptvg"), None).unwrap().is_none(),
        "label wiped"
    );
}

#[test]
fn remove_refuses_a_vg_with_lvs() {
    let s = Scratch::new("removelvs");
    packstack_vg(&s);
    let err = loopvg(&s).remove("cinder-volumes", false).unwrap_err();
    assert!(err.to_string().contains("logical volume"), "{err}");
    assert_eq!(s.bound().len(), 1);
    Lvm::of(&s).check("cinder-volumes").unwrap();
}

#[test]
fn missing_backing_and_lock_dirs_are_created() {
    let s = Scratch::new("dirs");
    let lv = Loopvg {
        dir: s.path("var/lib/cinder"),
        lock_dir: s.path("run/lock/lvm"),
        ..loopvg(&s)
    };
    let vg = lv.create("dirvg", "32M", false).unwrap();
    assert!(s.path("run/lock/lvm/P_global").exists());
    assert!(
        !s.path("run/lock/lvm/V_dirvg").exists(),
        "VG lock file removed on release"
    );
    assert!(s.path("var/lib/cinder/dirvg").is_file());
    let lvm = Lvm::new(
        vg.pvs
            .iter()
            .map(|p| p.device.as_ref().unwrap().display().to_string())
            .collect(),
    );
    lvm.check("dirvg").unwrap();
}

/// What a run killed between binding its new file and the commit leaves behind: a
/// pending file with a PV label, bound, named by no VG.
fn leftover_of_a_killed_run(s: &Scratch, name: &str) {
    let path = s.path(&format!(".{name}.loopvg-new"));
    require::run(Command::new("truncate").args(["-s", "16M"]).arg(&path));
    let dev = s.losetup(&path);
    let label = PvLabel::new_in_vg(Uuid::from_random([3; 32]), 16 << 20, 2048);
    write_new_pv(&RealIo, Path::new(&dev), &label).unwrap();
}

#[test]
fn a_run_killed_before_its_commit_is_cleared_by_the_next() {
    let (s, lv) = scene("killed-before", "killvg", &[]);
    leftover_of_a_killed_run(&s, "killvg02");
    let vg = lv.extend("killvg", "+16M").unwrap();
    assert_eq!(s.files(), ["killvg", "killvg02"]);
    assert_eq!(s.bound().len(), 2, "the leftover's loop device was unbound");
    assert_agrees(&s, &vg);
    // a killed create is cleared by the next create of that VG
    leftover_of_a_killed_run(&s, "othervg");
    let vg = lv.create("othervg", "32M", false).unwrap();
    assert!(s.files().contains(&"othervg".to_string()));
    assert!(!s.files().iter().any(|f| f.ends_with(".loopvg-new")));
    assert_agrees(&s, &vg);
}

#[test]
fn a_run_killed_after_its_commit_is_finished_by_the_next() {
    let (s, lv) = scene("killed-after", "donevg", &["+16M"]);
    lv.deactivate("donevg").unwrap();
    // committed, but killed before the rename: the PV is still under its pending name
    std::fs::rename(s.path("donevg02"), s.path(".donevg02.loopvg-new")).unwrap();
    let vg = lv.activate(Some("donevg")).unwrap().remove(0);
    assert_eq!(s.files(), ["donevg", "donevg02"]);
    assert!(vg.active);
    assert_agrees(&s, &vg);
}

#[test]
fn a_live_runs_pending_file_is_left_alone() {
    let (s, lv) = scene("live", "livevg", &[]);
    leftover_of_a_killed_run(&s, "livevg02");
    let held = std::fs::File::open(s.path(".livevg02.loopvg-new")).unwrap();
    let held = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let vg = lv.extend("livevg", "+16M").unwrap();
    assert_eq!(
        s.files(),
        [".livevg02.loopvg-new", "livevg", "livevg03"],
        "the live run's name is skipped, its file untouched"
    );
    drop(held);
    assert_agrees(&s, &vg);
}

#[test]
fn vgs_lvm2_would_not_change_are_refused_untouched() {
    let s = Scratch::new("refused");
    let lvm = packstack_vg(&s);
    let lv = loopvg(&s);
    lvm.run(&["vgchange", "-x", "n", "cinder-volumes"]);
    let seqno = lv.list(Some("cinder-volumes")).unwrap()[0].seqno;
    let err = lv.extend("cinder-volumes", "+16M").unwrap_err();
    assert!(err.to_string().contains("not resizeable"), "{err}");
    lvm.run(&["vgchange", "-x", "y", "cinder-volumes"]);
    lvm.run(&["vgexport", "cinder-volumes"]);
    for err in [
        lv.extend("cinder-volumes", "+16M").unwrap_err(),
        lv.grow("cinder-volumes", "+16M").unwrap_err(),
    ] {
        assert!(err.to_string().contains("exported"), "{err}");
    }
    assert_eq!(s.files(), ["cinder-volumes"]);
    assert_eq!(
        std::fs::metadata(s.path("cinder-volumes")).unwrap().len(),
        64 << 20
    );
    lvm.run(&["vgimport", "cinder-volumes"]);
    let vg = lv.list(Some("cinder-volumes")).unwrap().remove(0);
    assert_eq!(vg.seqno, seqno + 3, "only lvm2's own changes");
    assert_agrees(&s, &vg);
}

/// Runs `op` in a child process killed (no rollback, no destructors) before write
/// number `writes`, for every number until it completes. After each kill lvm2 must accept
/// the VG with the old or the new seqno, and the next run (`next`) must finish or clear
/// what the killed one left: afterwards every file in the directory is a PV of the VG,
/// bound, and no pending file is left.
fn kill_matrix(vg: &str, setup: &Op, op: &Op, next: &Op) -> usize {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    for writes in 0.. {
        let s = Scratch::new("kill");
        let before = setup(&loopvg(&s)).ok().map(|v| v.seqno);
        // SAFETY: the child only runs the operation and exits.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let fail = FailAfter::killing(&RealIo, writes);
                let lv = Loopvg {
                    io: &fail,
                    ..loopvg(&s)
                };
                // never unwind into the parent's frames (they would clean up `s`)
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&lv).is_ok()));
                std::process::exit(match ok {
                    Ok(true) => 0,
                    Ok(false) => 1,
                    Err(_) => 2,
                });
            }
            ForkResult::Parent { child } => {
                let status = waitpid(child, None).expect("waitpid");
                let WaitStatus::Exited(_, code) = status else {
                    panic!("child: {status:?}");
                };
                let after = loopvg(&s).list(Some(vg)).map(|mut v| v.remove(0)).ok();
                if let Some(now) = &after {
                    let old = before.unwrap_or(0);
                    assert!(
                        now.seqno == old || now.seqno == old + 1,
                        "{old} -> {}",
                        now.seqno
                    );
                    // the VG's own devices (a killed run's new file may not be a PV yet)
                    let devs = now.pvs.iter().filter_map(|p| p.device.as_ref());
                    Lvm::new(devs.map(|d| d.display().to_string()).collect())
                        .check(vg)
                        .unwrap_or_else(|e| panic!("killed before write {writes}: {e}"));
                }
                let vg_now = next(&loopvg(&s)).unwrap_or_else(|e| panic!("next run: {e}"));
                let mut pv_files: Vec<String> = vg_now
                    .pvs
                    .iter()
                    .map(|p| {
                        assert!(p.device.is_some(), "{p:?} unbound");
                        let f = p.file.as_ref().unwrap();
                        f.file_name().unwrap().to_string_lossy().into_owned()
                    })
                    .collect();
                pv_files.sort();
                assert_eq!(s.files(), pv_files, "killed before write {writes}");
                assert_eq!(s.bound().len(), pv_files.len());
                assert_agrees(&s, &vg_now);
                match code {
                    0 => return writes,
                    KILLED_EXIT => {}
                    c => panic!("child failed ({c}) without the kill"),
                }
            }
        }
    }
    unreachable!()
}

#[test]
fn a_create_killed_at_any_write_is_cleared_by_the_next() {
    let create: &Op = &|lv| lv.create("killvg", "32M", false);
    let next: &Op = &|lv| {
        lv.create("killvg", "32M", false)
            .or_else(|_| lv.extend("killvg", "+8M"))
    };
    assert_eq!(
        kill_matrix("killvg", &|_| Err(Error::NotRoot), create, next),
        4
    );
}

#[test]
fn an_extend_killed_at_any_write_is_finished_by_the_next() {
    let setup: &Op = &|lv| {
        lv.create("killvg", "32M", false)?;
        lv.extend("killvg", "+16M")
    };
    let extend: &Op = &|lv| lv.extend("killvg", "+16M");
    assert_eq!(kill_matrix("killvg", setup, extend, extend), 8);
}

#[test]
fn a_grow_killed_at_any_write_is_finished_by_the_next() {
    let setup: &Op = &|lv| {
        lv.create("killvg", "32M", false)?;
        lv.extend("killvg", "+16M")
    };
    let grow: &Op = &|lv| lv.grow("killvg", "+8M");
    assert_eq!(kill_matrix("killvg", setup, grow, grow), 4);
}

#[test]
fn metadata_wraps_around_the_area_and_lvm2_follows() {
    // A long description makes each copy ~200 KB, so the 1 MiB area wraps every five
    // writes or so (lvm2 puts at most half the area in one copy).
    let s = Scratch::new("wrap");
    let lv = Loopvg {
        description: "w".repeat(200_000),
        ..loopvg(&s)
    };
    lv.create("wrapvg", "32M", false).unwrap();
    lv.extend("wrapvg", "+16M").unwrap();
    let offset = || {
        let pv = PvOnDisk::read(&s.path("wrapvg"), None).unwrap().unwrap();
        pv.mdas[0].committed.unwrap().offset
    };
    let mut wraps = 0;
    let mut last = offset();
    for _ in 0..14 {
        let vg = lv.grow("wrapvg", "+4M").unwrap();
        let now = offset();
        if now < last {
            wraps += 1;
        }
        last = now;
        assert_agrees(&s, &vg);
    }
    assert!(wraps >= 2, "the area wrapped {wraps} times");
    // lvm2 writes after our wrapped copies, and we after lvm2's
    let lvm = Lvm::of(&s);
    lvm.run(&["vgchange", "--addtag", "wrapped", "wrapvg"]);
    let vg = lv.grow("wrapvg", "+4M").unwrap();
    assert_agrees(&s, &vg);
}

#[test]
fn real_lvm2_waits_while_loopvg_holds_the_vg_lock() {
    let (s, _) = scene("lvmwaits", "heldvg", &[]);
    let lvm = Lvm::of(&s);
    let held =
        sp_loopvg::lock::lock_vg(Path::new(sp_loopvg::lock::DEFAULT_LOCK_DIR), "heldvg").unwrap();
    let t = std::time::Instant::now();
    let mut vgs = lvm
        .cmd(&["vgs", "heldvg"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(
        vgs.try_wait().unwrap().is_none(),
        "vgs did not wait for the lock"
    );
    drop(held);
    assert!(vgs.wait().unwrap().success());
    assert!(t.elapsed().as_millis() >= 1200);
}

/// `--dir` names the VGs loopvg changes: a VG whose files are in another directory is
/// listed (VG names are host-wide) but never removed, deactivated, extended or activated
/// from here, and its name cannot be created again (what `stackplumb destroy --purge`
/// and the demo rely on).
#[test]
fn a_vg_of_another_directory_is_seen_but_never_touched() {
    let (s, lv) = scene("otherdir", "elsewherevg", &["+32M"]);
    let other = Scratch::new("otherdir-2");
    let lv2 = loopvg(&other);
    let before = lv.list(Some("elsewherevg")).unwrap().remove(0);
    assert_eq!(lv2.list(Some("elsewherevg")).unwrap(), vec![before.clone()]);
    assert!(lv2.here("elsewherevg").unwrap().is_none());
    assert_eq!(lv.here("elsewherevg").unwrap(), Some(before.clone()));
    let elsewhere = |e: Error| {
        assert!(
            matches!(e, Error::VgElsewhere { .. }),
            "{e}: not refused as another directory's"
        );
        assert!(e.to_string().contains("nothing was changed"), "{e}");
    };
    elsewhere(lv2.remove("elsewherevg", false).unwrap_err());
    elsewhere(lv2.remove("elsewherevg", true).unwrap_err());
    elsewhere(lv2.deactivate("elsewherevg").unwrap_err());
    elsewhere(lv2.extend("elsewherevg", "+8M").unwrap_err());
    elsewhere(lv2.grow("elsewherevg", "+8M").unwrap_err());
    elsewhere(lv2.activate(Some("elsewherevg")).unwrap_err());
    assert!(lv2.activate(None).unwrap().is_empty());
    let e = lv2.create("elsewherevg", "32M", false).unwrap_err();
    assert!(matches!(e, Error::VgExists { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("A volume group called elsewherevg already exists"),
        "{e}"
    );
    assert!(other.files().is_empty() && other.bound().is_empty());
    assert_eq!(lv.list(Some("elsewherevg")).unwrap(), vec![before.clone()]);
    assert_agrees(&s, &before);
}

/// A zram device of the test's own (`hot_add`), reset and removed on drop.
struct Zram(u32);

impl Zram {
    fn new(size: &str) -> Zram {
        let id = std::fs::read_to_string("/sys/class/zram-control/hot_add")
            .expect("zram hot_add (CONFIG_ZRAM)");
        let z = Zram(id.trim().parse().unwrap());
        std::fs::write(format!("/sys/block/zram{}/disksize", z.0), size).unwrap();
        for _ in 0..100 {
            if Path::new(&z.path()).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(Path::new(&z.path()).exists(), "{} did not appear", z.path());
        z
    }

    fn path(&self) -> String {
        format!("/dev/zram{}", self.0)
    }
}

impl Drop for Zram {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("/sys/block/zram{}/reset", self.0), "1");
        let _ = std::fs::write("/sys/class/zram-control/hot_remove", self.0.to_string());
    }
}

/// VG names are host-wide: a VG lvm2 made on another block device (a zram device of the
/// test's own: this kernel reads no partition tables) makes `create` of its name fail
/// as vgcreate would, and that device is only read.
#[test]
fn a_vg_name_on_another_block_device_is_refused_by_create() {
    require::root();
    let zram = Zram::new("64M");
    let dev = zram.path();
    let lvm = Lvm::new(vec![dev.clone()]).with_type("zram");
    lvm.run(&["pvcreate", &dev]);
    lvm.run(&["vgcreate", "zramvg", &dev]);
    let before = lvm.vgs("zramvg");
    let s = Scratch::new("blockdev");
    let e = loopvg(&s).create("zramvg", "32M", false).unwrap_err();
    assert!(matches!(e, Error::VgExists { .. }), "{e}");
    assert!(e.to_string().contains(&dev), "{e} does not name {dev}");
    assert!(s.files().is_empty() && s.bound().is_empty());
    assert_eq!(lvm.vgs("zramvg"), before, "lvm2's VG is as it was");
}
