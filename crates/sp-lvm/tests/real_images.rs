//! The format crate against PVs written by real lvm2 2.03.16 (fixtures made by
//! `testenv/make-lvm-fixtures.sh`: the first 16 KiB of each PV).

use sp_lvm::label::{PvLabel, DEFAULT_MDA_SIZE, DEFAULT_MDA_START, DEFAULT_PE_START_SECTORS};
use sp_lvm::mda::MdaHeader;
use sp_lvm::uuid::Uuid;
use sp_lvm::vg::{PvMeta, VgMeta, Writer, DEFAULT_EXTENT_SECTORS};

const VGCREATE: &[u8] = include_bytes!("fixtures/vgcreate-pv0.bin");
const LVS_PV0: &[u8] = include_bytes!("fixtures/lvs-pv0.bin");
const LVS_PV1: &[u8] = include_bytes!("fixtures/lvs-pv1.bin");

/// The area as far as the fixture holds it, padded with zeros to the full area size.
fn area(image: &[u8]) -> Vec<u8> {
    let mut a = image[DEFAULT_MDA_START as usize..].to_vec();
    a.resize(DEFAULT_MDA_SIZE as usize, 0);
    a
}

fn header(image: &[u8]) -> MdaHeader {
    let h = MdaHeader::decode(&image[4096..4608], DEFAULT_MDA_START).unwrap();
    assert_eq!(h.size, DEFAULT_MDA_SIZE);
    h
}

fn committed(image: &[u8]) -> Vec<u8> {
    header(image).committed_text(&area(image)).unwrap().unwrap()
}

#[test]
fn label_and_header_reencode_byte_for_byte() {
    for image in [VGCREATE, LVS_PV0, LVS_PV1] {
        let label = PvLabel::find(&image[..2048]).unwrap();
        let ours = PvLabel::new_in_vg(label.pv_uuid, 64 << 20, DEFAULT_PE_START_SECTORS);
        assert_eq!(ours, label);
        assert_eq!(&ours.encode().unwrap()[..], &image[512..1024]);
        let h = header(image);
        assert_eq!(&h.encode()[..], &image[4096..4608]);
        assert!(h.precommit.is_none());
    }
}

#[test]
fn text_round_trips_byte_for_byte() {
    for image in [VGCREATE, LVS_PV0] {
        let text = committed(image);
        let vg = VgMeta::parse(&text).unwrap();
        assert_eq!(vg.to_text(), text);
        assert_eq!(vg.name(), "fixturevg");
    }
    // one seqno, one text: identical on every PV
    assert_eq!(committed(LVS_PV0), committed(LVS_PV1));
}

#[test]
fn new_vg_is_laid_out_like_vgcreate() {
    let text = committed(VGCREATE);
    let theirs = VgMeta::parse(&text).unwrap();
    let pv = &theirs.pvs().unwrap()[0];
    let ours = VgMeta::new(
        "fixturevg",
        theirs.id().unwrap(),
        DEFAULT_EXTENT_SECTORS,
        &[PvMeta {
            key: String::new(),
            ..pv.clone()
        }],
        &Writer {
            description: String::new(),
            creation_host: "vm".into(),
            creation_time: 1,
        },
    )
    .unwrap();
    let vg_block = |t: &[u8]| {
        let s = String::from_utf8(t.to_vec()).unwrap();
        s[..s.find("\n# Generated").unwrap()].to_string()
    };
    assert_eq!(vg_block(&ours.to_text()), vg_block(&text));
    assert_eq!(pv.key, "pv0");
    assert_eq!(pv.pe_count, 15);
}

#[test]
fn lv_segments_count_as_allocated_and_survive_edits() {
    let mut vg = VgMeta::parse(&committed(LVS_PV0)).unwrap();
    assert_eq!(vg.seqno(), 4);
    assert_eq!(vg.lv_count(), 2);
    let used = vg.allocated().unwrap();
    // vol0: 8 MiB linear on pv0; striped: 16 MiB over pv0 and pv1
    assert_eq!(used.get("pv0"), Some(&4));
    assert_eq!(used.get("pv1"), Some(&2));
    vg.set_seqno(5).unwrap();
    let key = vg
        .add_pv(&PvMeta {
            key: String::new(),
            id: Uuid::from_random([7; 32]),
            device: "/dev/loop9".into(),
            dev_size: 131072,
            pe_start: 2048,
            pe_count: 15,
        })
        .unwrap();
    assert_eq!(key, "pv2");
    vg.resize_pv("pv1", 194560, 23).unwrap();
    let again = VgMeta::parse(&vg.to_text()).unwrap();
    assert_eq!(again.seqno(), 5);
    assert_eq!(again.allocated().unwrap(), used);
    let pvs = again.pvs().unwrap();
    assert_eq!(pvs.len(), 3);
    assert_eq!((pvs[1].dev_size, pvs[1].pe_count), (194560, 23));
}

#[test]
fn text_placement_matches_lvm2() {
    // Every copy lvm2 wrote is still in the area; replaying them through our placement
    // must land each at the offset lvm2 chose.
    let area = area(LVS_PV0);
    let mut h = MdaHeader::empty(DEFAULT_MDA_START, DEFAULT_MDA_SIZE);
    let mut at = 512;
    let mut copies = 0;
    while area[at] != 0 {
        let len = area[at..].iter().position(|&b| b == 0).unwrap() + 1;
        let text = &area[at..at + len];
        let (locn, writes) = h.place_text(text).unwrap();
        assert_eq!(locn.offset, at as u64);
        assert_eq!(writes[0].offset, DEFAULT_MDA_START + at as u64);
        h.committed = Some(locn);
        copies += 1;
        at += len.next_multiple_of(512);
    }
    assert_eq!(copies, 4);
    assert_eq!(h, header(LVS_PV0));
}
