//! Loop devices as the kernel lists them, whatever their backing files are called.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use sp_kernel::loopdev;
use sp_testenv::lvm::Scratch;

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
        .find(|(d, _)| d.path().to_string_lossy() == dev)
        .unwrap_or_else(|| panic!("{dev} not listed in {listed:?}"));
    assert_eq!(found.1.as_os_str().as_bytes(), file.as_os_str().as_bytes());
    assert_eq!(
        scratch.bound(),
        [dev],
        "the test support sees it too (and unbinds it)"
    );
}
