//! Loop devices as the kernel lists them, whatever their backing files are called, and
//! identified by the kernel's own answer (`LOOP_GET_STATUS64`), never by path.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use sp_kernel::loopdev::{self, FileId, LoopDevice};
use sp_testenv::lvm::Scratch;
use sp_testenv::require;

/// Another job's loop device bound to a file whose name is not UTF-8 must not break the
/// listing every loopvg command starts with; the name comes back byte for byte.
#[test]
fn a_backing_file_named_in_any_bytes_is_listed_as_it_is() {
    let scratch = Scratch::new("non-utf8");
    let file = scratch.dir.join(OsStr::from_bytes(b"disk-\xff\xfe"));
    std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
    let dev = scratch.losetup(&file);
    let listed = loopdev::bound().expect("listing loop devices");
    let found = listed
        .iter()
        .find(|b| b.dev.path().to_string_lossy() == dev)
        .unwrap_or_else(|| panic!("{dev} not listed in {listed:?}"));
    assert_eq!(
        found.name.as_os_str().as_bytes(),
        file.as_os_str().as_bytes()
    );
    assert!(found.is(FileId::of_path(&file).unwrap()));
    assert_eq!(
        scratch.bound(),
        [dev],
        "the test support sees it too (and unbinds it)"
    );
}

/// `lo_device`/`lo_inode` are `st_dev`/`st_ino` of the backing file, in the same
/// encoding (checked against `stat` and against losetup's `back-maj:min`/`back-ino`).
#[test]
fn the_kernels_identity_of_a_backing_file_is_its_stat() {
    require::program("losetup", "util-linux");
    let scratch = Scratch::new("identity");
    let file = scratch.path("f");
    std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
    let dev = scratch.losetup(&file);
    let index: u32 = dev.strip_prefix("/dev/loop").unwrap().parse().unwrap();
    let got = LoopDevice::from_index(index).backing_id().unwrap().unwrap();
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!(
        got,
        FileId {
            dev: m.dev(),
            ino: m.ino()
        }
    );
    let out = require::run(Command::new("losetup").args([
        "-l",
        "-J",
        "-O",
        "name,back-ino,back-maj:min",
        &dev,
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &v["loopdevices"][0];
    let ino = row["back-ino"]
        .as_u64()
        .or_else(|| row["back-ino"].as_str()?.parse().ok());
    assert_eq!(ino, Some(m.ino()), "{row}");
    let majmin = row["back-maj:min"].as_str().unwrap().to_string();
    let (maj, min) = majmin.split_once(':').unwrap();
    let (maj, min): (u64, u64) = (maj.trim().parse().unwrap(), min.trim().parse().unwrap());
    assert_eq!(nix::sys::stat::makedev(maj, min), got.dev, "{row}");
    assert_eq!(
        loopdev::find_by_file(&file).unwrap(),
        Some(LoopDevice::from_index(index))
    );
    // Unbound: no identity, and the file is bound nowhere.
    LoopDevice::from_index(index).detach().unwrap();
    assert_eq!(LoopDevice::from_index(index).backing_id().unwrap(), None);
    assert_eq!(loopdev::find_by_file(&file).unwrap(), None);
}
