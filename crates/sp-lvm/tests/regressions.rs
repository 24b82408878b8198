//! Every file in `tests/regressions/` (inputs that once crashed or fooled the parsers, see
//! its README) replayed through every parser: label search, area-header decode (alone
//! and against the file's size), committed text, the config and VG parsers, and the
//! edits loopvg makes on what parsed. No input may panic or take 100 ms; the known ones
//! fail with the error that names the check.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sp_lvm::config::Items;
use sp_lvm::label::{PvLabel, DEFAULT_MDA_START};
use sp_lvm::mda::MdaHeader;
use sp_lvm::uuid::Uuid;
use sp_lvm::vg::{PvMeta, VgMeta};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

/// Each stage's outcome, one line each.
fn replay(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut areas = vec![DEFAULT_MDA_START];
    match PvLabel::find(bytes) {
        Ok(l) => {
            out.push(format!(
                "label: ok; within the file: {:?}",
                l.check_within(bytes.len() as u64)
            ));
            areas.extend(l.metadata_areas.iter().map(|a| a.offset));
            let _ = l.encode();
        }
        Err(e) => out.push(format!("label: {e}")),
    }
    areas.dedup();
    for start in areas {
        let Some(sector) = usize::try_from(start).ok().and_then(|s| bytes.get(s..)) else {
            out.push(format!("area at {start}: beyond the file"));
            continue;
        };
        out.push(format!(
            "area at {start} within the file: {:?}",
            MdaHeader::decode_within(sector, start, bytes.len() as u64).map(|_| ())
        ));
        match MdaHeader::decode(sector, start) {
            Ok(h) => {
                let _ = h.max_text();
                let _ = h.committed_pieces();
                match h.committed_text(sector) {
                    Ok(Some(text)) => {
                        out.push("committed text: ok".into());
                        out.extend(replay_text(&text));
                    }
                    Ok(None) => out.push("committed text: none".into()),
                    Err(e) => out.push(format!("committed text: {e}")),
                }
                let _ = h.place_text(b"x\0");
            }
            Err(e) => out.push(format!("area at {start}: {e}")),
        }
    }
    out.extend(replay_text(bytes));
    out
}

fn replay_text(text: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let _ = Items::parse(&String::from_utf8_lossy(text));
    match VgMeta::parse(text) {
        Ok(mut vg) => {
            out.push(format!("vg: ok, {} seqno {}", vg.name(), vg.seqno()));
            let _ = (
                vg.pvs(),
                vg.allocated(),
                vg.lv_count(),
                vg.change_refused(true),
            );
            if let Ok(n) = vg.next_seqno() {
                vg.set_seqno(n).unwrap();
            }
            let _ = vg.add_pv(&PvMeta {
                key: String::new(),
                id: Uuid::from_random([1; 32]),
                device: "/dev/loop9".into(),
                dev_size: 131072,
                pe_start: 2048,
                pe_count: 15,
            });
            let again = vg.to_text();
            out.push(format!(
                "rewritten: {:?}",
                VgMeta::parse(&again).map(|_| ())
            ));
        }
        Err(e) => out.push(format!("vg: {e}")),
    }
    out
}

#[test]
fn every_regression_input_is_refused_quickly_without_a_panic() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let t = Instant::now();
        let outcome = replay(&bytes);
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(100),
            "{}: {took:?}\n{outcome:#?}",
            f.display()
        );
    }
}

/// What each known input must be refused for (a substring of one stage's outcome).
const EXPECTED: &[(&str, &str)] = &[
    ("deep-lists.txt", "nest deeper than 64 levels"),
    ("deep-sections.txt", "nest deeper than 64 levels"),
    (
        "empty-pv-list.txt",
        "vg: metadata: VG names no physical volume",
    ),
    (
        "empty-pv-list.bin",
        "vg: metadata: VG names no physical volume",
    ),
    (
        "seqno-2pow64-minus-1.txt",
        "seqno 18446744073709551615 is larger than lvm2's 32-bit sequence number (4294967295)",
    ),
    (
        "seqno-2pow64-minus-1.bin",
        "seqno 18446744073709551615 is larger than lvm2's 32-bit",
    ),
    ("seqno-2pow32.txt", "seqno 4294967296 is larger than lvm2's"),
    ("seqno-overflows-u64.txt", "VG seqno is not a number"),
    (
        "vg-name-traversal.txt",
        "VG name \"x/../../victim\": '/' is not allowed",
    ),
    (
        "zero-extent-size.txt",
        "extent_size 0 is not 1 to 4294967295",
    ),
    (
        "pe-count-huge.txt",
        "pe_count 1099511627776 is larger than 4294967295",
    ),
    ("pe-start-overflow.txt", "do not fit 64-bit byte counts"),
    ("duplicate-pv-id.txt", "appears twice"),
    (
        "segment-count-mismatch.txt",
        "segment_count and actual number of segments disagree for logical volume lv0",
    ),
    ("unterminated-escape.txt", "unterminated string"),
    (
        "huge-mda-size.bin",
        "does not fit the device of 16384 bytes",
    ),
    ("huge-mda-size.bin", "ends beyond the device of 16384 bytes"),
    ("wrap-offsets.bin", "ends beyond the device"),
    (
        "wrap-offsets.bin",
        "committed text: bad metadata area header: text location outside the area",
    ),
    ("mda-size-wraps.bin", "wraps around"),
    (
        "mda-size-tiny.bin",
        "area size 512 is smaller than a header and one sector of text",
    ),
    (
        "bad-text-checksum.bin",
        "committed text: metadata text checksum mismatch",
    ),
    (
        "label-list-unterminated.bin",
        "label: bad PV header: unterminated area list",
    ),
    (
        "label-bad-checksum.bin",
        "label: LVM2 label checksum mismatch",
    ),
    ("good.bin", "vg: ok, rvg seqno 3"),
    ("good.bin", "rewritten: Ok(())"),
];

#[test]
fn known_inputs_fail_with_the_check_that_refused_them() {
    for (file, expect) in EXPECTED {
        let bytes = std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let outcome = replay(&bytes);
        assert!(
            outcome.iter().any(|l| l.contains(expect)),
            "{file}: expected {expect:?} in\n{outcome:#?}"
        );
    }
}
