//! Files, names and metadata an attacker controls: crafted PVs in `--dir` and on bound
//! loop devices, names that climb out of the lock directory, a seqno at lvm2's limit.
//! Every one fails with an error naming the file and the check, and leaves every file
//! byte for byte as it was. As root (Scratch), in the nextest `loop` group.

use std::fs;
use std::path::Path;

use sp_loopvg::io::RealIo;
use sp_loopvg::ondisk::{commit, scan, Target};
use sp_loopvg::{Error, Loopvg};
use sp_lvm::label::{PvLabel, DEFAULT_PE_START_SECTORS};
use sp_lvm::mda::{MdaHeader, RawLocn};
use sp_lvm::uuid::Uuid;
use sp_testenv::lvm::Scratch;

const FILE_SIZE: u64 = 2 << 20;

fn loopvg(s: &Scratch) -> Loopvg<'static> {
    Loopvg {
        dir: s.dir.clone(),
        description: "Write from loopvg untrusted tests".into(),
        ..Loopvg::default()
    }
}

fn vg_text(pv: &Uuid, seqno: &str, pvs: bool, extra: &str) -> Vec<u8> {
    let pv_section = if pvs {
        format!(
            "pv0 {{\nid = \"{pv}\"\ndevice = \"/dev/loop0\"\nstatus = [\"ALLOCATABLE\"]\n\
             flags = []\ndev_size = 4096\npe_start = 2048\npe_count = 0\n}}\n"
        )
    } else {
        String::new()
    };
    format!(
        "rvg {{\nid = \"4pnc8A-5xeH-8S4N-K0v8-zVUi-1vUm-6giz0f\"\nseqno = {seqno}\n\
         format = \"lvm2\"\nstatus = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\n\
         extent_size = 8192\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n{extra}\n\
         physical_volumes {{\n\n{pv_section}}}\n\n}}\n\
         contents = \"Text Format Volume Group\"\nversion = 1\n\0"
    )
    .into_bytes()
}

/// A 2 MiB PV image: lvm2's label and area, `text` at 512 in the area, the header
/// pointing at it, then `tweak`ed.
fn image(text: &[u8], tweak: impl FnOnce(&mut MdaHeader)) -> (Uuid, Vec<u8>) {
    let uuid = Uuid::from_random([3; 32]);
    let label = PvLabel::new_in_vg(uuid, FILE_SIZE, DEFAULT_PE_START_SECTORS);
    let mut img = vec![0u8; FILE_SIZE as usize];
    img[512..1024].copy_from_slice(&label.encode().unwrap());
    let area = &label.metadata_areas[0];
    let mut h = MdaHeader::empty(area.offset, area.size);
    let (locn, writes) = h.place_text(text).unwrap();
    for w in writes {
        let at = w.offset as usize;
        img[at..at + w.bytes.len()].copy_from_slice(&w.bytes);
    }
    h.committed = Some(locn);
    tweak(&mut h);
    let at = h.start as usize;
    img[at..at + 512].copy_from_slice(&h.encode());
    (uuid, img)
}

fn crafted(case: &str) -> (Vec<u8>, &'static str) {
    let pv = Uuid::from_random([3; 32]);
    let good = vg_text(&pv, "3", true, "");
    let keep = |_: &mut MdaHeader| {};
    match case {
        "deep-nesting" => {
            let deep = format!("x = {}", "[".repeat(50_000));
            (
                image(&vg_text(&pv, "3", true, &deep), keep).1,
                "nest deeper than 64 levels",
            )
        }
        "huge-header" => (
            image(&good, |h| {
                h.size = (2 << 40) + 512;
                h.committed = h.committed.map(|rl| RawLocn {
                    size: 2 << 40,
                    ..rl
                });
            })
            .1,
            "ends beyond the device of 2097152 bytes",
        ),
        "wrap-around" => (
            image(&good, |h| {
                h.committed = h.committed.map(|rl| RawLocn {
                    offset: u64::MAX - 10,
                    size: u64::MAX - 1024,
                    ..rl
                });
            })
            .1,
            "outside the area's text space",
        ),
        "bad-checksum" => (
            image(&good, |h| {
                h.committed = h.committed.map(|rl| RawLocn {
                    checksum: rl.checksum ^ 1,
                    ..rl
                });
            })
            .1,
            "metadata text checksum mismatch",
        ),
        "seqno-max" => (
            image(&vg_text(&pv, "18446744073709551615", true, ""), keep).1,
            "seqno 18446744073709551615 is larger than lvm2's 32-bit sequence number",
        ),
        "empty-pv-list" => (
            image(&vg_text(&pv, "3", false, ""), keep).1,
            "VG names no physical volume",
        ),
        _ => unreachable!(),
    }
}

const CASES: &[&str] = &[
    "deep-nesting",
    "huge-header",
    "wrap-around",
    "bad-checksum",
    "seqno-max",
    "empty-pv-list",
];

fn assert_corrupt(e: Error, file: &Path, check: &str) {
    let msg = e.to_string();
    assert!(
        matches!(e, Error::VgCorrupt { .. }),
        "{file:?}: not VgCorrupt: {msg}"
    );
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains(check), "{check:?} not in {msg}");
    assert!(!msg.contains("not found (looked"), "{msg}");
}

#[test]
fn crafted_pvs_in_dir_are_reported_corrupt_and_left_byte_identical() {
    for case in CASES {
        let s = Scratch::new(&format!("crafted-{case}"));
        let lv = loopvg(&s);
        let file = s.path("rvg");
        let (bytes, check) = crafted(case);
        fs::write(&file, &bytes).unwrap();
        assert!(lv.list(None).unwrap().iter().all(|v| v.name != "rvg"));
        assert_corrupt(lv.list(Some("rvg")).unwrap_err(), &file, check);
        assert_corrupt(lv.extend("rvg", "+8M").unwrap_err(), &file, check);
        assert_corrupt(lv.grow("rvg", "+8M").unwrap_err(), &file, check);
        assert_corrupt(lv.activate(Some("rvg")).unwrap_err(), &file, check);
        assert_corrupt(lv.deactivate("rvg").unwrap_err(), &file, check);
        assert_corrupt(lv.remove("rvg", false).unwrap_err(), &file, check);
        lv.activate(None).unwrap();
        assert!(
            lv.create("rvg", "32M", false).is_err(),
            "rvg is taken by a file"
        );
        assert_eq!(fs::read(&file).unwrap(), bytes, "{case}: file changed");
        assert_eq!(s.files(), ["rvg"], "{case}");
        assert!(s.bound().is_empty(), "{case}");
    }
}

#[test]
fn crafted_pvs_on_bound_loop_devices_are_reported_with_their_device() {
    for case in CASES {
        let s = Scratch::new(&format!("bound-{case}"));
        let file = s.path("elsewhere");
        let (bytes, check) = crafted(case);
        fs::write(&file, &bytes).unwrap();
        let dev = s.losetup(&file);
        // --dir elsewhere: only the bound device shows it.
        let empty = Scratch::new(&format!("bound-{case}-dir"));
        let lv = loopvg(&empty);
        scan(&empty.dir).unwrap();
        let e = lv.extend("rvg", "+8M").unwrap_err();
        assert!(e.to_string().contains(&dev), "{e}");
        assert_corrupt(e, &file, check);
        assert_eq!(fs::read(&file).unwrap(), bytes, "{case}: file changed");
        assert!(empty.files().is_empty());
    }
}

#[test]
fn a_vg_with_one_corrupt_pv_is_refused_naming_that_pv() {
    let s = Scratch::new("half-corrupt");
    let lv = loopvg(&s);
    lv.create("halfvg", "32M", false).unwrap();
    lv.extend("halfvg", "+32M").unwrap();
    // Flip one byte of the second PV's committed text.
    let second = s.path("halfvg02");
    let mut bytes = fs::read(&second).unwrap();
    let h = MdaHeader::decode(&bytes[4096..4608], 4096).unwrap();
    let at = (h.start + h.committed.unwrap().offset) as usize + 10;
    bytes[at] ^= 0x20;
    fs::write(&second, &bytes).unwrap();
    let first = fs::read(s.path("halfvg")).unwrap();
    for e in [
        lv.extend("halfvg", "+8M").unwrap_err(),
        lv.grow("halfvg", "+8M").unwrap_err(),
        lv.remove("halfvg", false).unwrap_err(),
    ] {
        let msg = e.to_string();
        assert!(matches!(e, Error::PvUnavailable { .. }), "{msg}");
        assert!(
            msg.contains("halfvg02") && msg.contains("checksum mismatch"),
            "{msg}"
        );
    }
    assert_eq!(fs::read(&second).unwrap(), bytes);
    assert_eq!(fs::read(s.path("halfvg")).unwrap(), first);
    assert_eq!(s.files(), ["halfvg", "halfvg02"]);
}

#[test]
fn names_that_climb_out_are_refused_before_any_lock_or_file() {
    let s = Scratch::new("names");
    let lock_dir = s.path("lock");
    fs::create_dir_all(lock_dir.join("V_x")).unwrap();
    let victim = s.path("victim");
    fs::write(&victim, b"keep me").unwrap();
    let lv = Loopvg {
        lock_dir: lock_dir.clone(),
        ..loopvg(&s)
    };
    for name in [
        "x/../../victim",
        "../victim",
        "..",
        ".",
        "-x",
        "x y",
        "x\ny",
        "",
    ] {
        let refused = |r: Result<(), Error>| {
            let e = r.unwrap_err();
            assert!(matches!(e, Error::InvalidName { .. }), "{name:?}: {e}");
        };
        refused(lv.create(name, "32M", false).map(drop));
        refused(lv.extend(name, "+8M").map(drop));
        refused(lv.grow(name, "+8M").map(drop));
        refused(lv.list(Some(name)).map(drop));
        refused(lv.activate(Some(name)).map(drop));
        refused(lv.deactivate(name).map(drop));
        refused(lv.remove(name, false).map(drop));
        refused(sp_loopvg::lock::lock_vg(&lock_dir, name).map(drop));
    }
    assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    let mut left: Vec<_> = fs::read_dir(&lock_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["V_x"], "no lock file was made");
    assert_eq!(s.files(), ["lock", "victim"]);
}

#[test]
fn a_seqno_at_lvm2s_limit_is_not_wrapped() {
    let s = Scratch::new("seqno-limit");
    let lv = loopvg(&s);
    lv.create("seqvg", "32M", false).unwrap();
    let vg = scan(&s.dir)
        .unwrap()
        .into_iter()
        .find(|v| v.name() == "seqvg")
        .unwrap();
    let disk = vg.pvs[0].disk.as_ref().unwrap();
    let mut meta = vg.meta.clone();
    meta.set_seqno(u32::MAX.into()).unwrap();
    assert!(meta.set_seqno(u64::from(u32::MAX) + 1).is_err());
    commit(&RealIo, &[Target::from(disk)], &meta, &mut 0).unwrap();
    let listed = lv.list(Some("seqvg")).unwrap();
    assert_eq!(listed[0].seqno, u64::from(u32::MAX));
    let before = fs::read(s.path("seqvg")).unwrap();
    for e in [
        lv.extend("seqvg", "+8M").unwrap_err(),
        lv.grow("seqvg", "+8M").unwrap_err(),
    ] {
        assert!(
            e.to_string().contains("at lvm2's limit (4294967295)"),
            "{e}"
        );
    }
    assert_eq!(fs::read(s.path("seqvg")).unwrap(), before);
    assert_eq!(s.files(), ["seqvg"]);
}
