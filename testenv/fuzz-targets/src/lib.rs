//! Support: the fuzz targets — one `pub fn <target>(data: &[u8])` per parser, feeding
//! the bytes to the real entry points and to what the product does next with what they
//! return. `Err` is an answer, not a finding: only a panic, an abort (stack overflow,
//! allocation failure) or a slow input is.
//!
//! Driven by the libFuzzer binaries of `testenv/fuzz` (`testenv/fuzz.sh TARGET SECONDS`)
//! and replayed by `tests/fuzz_regressions.rs` on every file of
//! `testenv/fuzz/regressions/<target>/`. See docs/testing.md, "Fuzzing".
//!
//! The targets are pure: no device, no network. The one file any of them writes is the
//! `ini` target's copy of its own input as the dnsmasq file an ini may name, in a private
//! directory below the temporary directory, removed when the process exits.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use sp_config::guide::{Cinder, DhcpAgent, L3Agent, LinuxBridgeAgent, Ml2};
use sp_config::{GuideConfig, Ini, Topology};
use sp_lvm::config::Items;
use sp_lvm::label::{PvLabel, DEFAULT_MDA_START};
use sp_lvm::mda::MdaHeader;
use sp_lvm::vg::VgMeta;
use sp_ovsdb::{Atom, Datum, Decoder, Row};

/// A fuzz target: bytes in, nothing out; it panics or aborts on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name `testenv/fuzz.sh` and the regression directories use.
pub const TARGETS: &[(&str, Target)] = &[
    ("lvm_label", lvm_label),
    ("mda_header", mda_header),
    ("metadata_text", metadata_text),
    ("ini", ini),
    ("topology", topology),
    ("sizes", sizes),
    ("ovsdb_codec", ovsdb_codec),
    ("ovsdb_datum", ovsdb_datum),
    ("nft_dump", nft_dump),
    ("metadata_http", metadata_http),
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// Does the one-time work of the targets (loading the guide's configuration for
/// `topology`), so that the first input is not timed with it.
pub fn warm_up() {
    let _ = guide_config();
}

/// LVM's CRC-32 (`sp_lvm`'s is private): reflected IEEE polynomial, register
/// initialised to `0xf597a6cf`, no final XOR.
fn lvm_crc(buf: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!0xf597_a6cf);
    h.update(buf);
    !h.finalize()
}

/// The first sectors of a device: `PvLabel::find` (what `loopvg` reads from every
/// backing file), then the label written back the way `loopvg` rewrites it. The input
/// is tried as it is and with the checksum of every `LABELONE` sector made right, so
/// that mutations reach the PV header behind the checksum.
pub fn lvm_label(data: &[u8]) {
    label_once(data);
    let mut fixed = data.to_vec();
    let mut changed = false;
    for s in fixed.chunks_exact_mut(512).take(4) {
        if &s[..8] == b"LABELONE" {
            let c = lvm_crc(&s[20..]).to_le_bytes();
            changed |= s[16..20] != c;
            s[16..20].copy_from_slice(&c);
        }
    }
    if changed {
        label_once(&fixed);
    }
}

fn label_once(data: &[u8]) {
    if let Ok(label) = PvLabel::find(data) {
        let _ = label.byte_offset();
        let _ = label.encode();
    }
}

/// A metadata-area header sector followed by the area: `MdaHeader::decode` (at the
/// start the header says and at lvm2's default 4096), then what `loopvg` does with a
/// decoded header — the committed text's pieces, the text itself from the area (padded
/// with zeros to the header's size, up to 4 MiB), its VG metadata, and planning the next
/// copy (`place_text`). The input is tried as it is and with its checksums made right
/// (the text's, then the header's), so that mutations reach what is behind them.
pub fn mda_header(data: &[u8]) {
    mda_once(data);
    if data.len() < 512 {
        return;
    }
    let mut fixed = data.to_vec();
    let header_crc = |f: &mut [u8]| {
        let c = lvm_crc(&f[4..512]).to_le_bytes();
        f[..4].copy_from_slice(&c);
    };
    header_crc(&mut fixed);
    let start = u64::from_le_bytes(fixed[24..32].try_into().expect("8 bytes"));
    if let Ok(h) = MdaHeader::decode(&fixed, start) {
        if let Ok(Some(pieces)) = h.committed_pieces() {
            // The text as committed_text reads it, when the input holds it.
            let text: Option<Vec<Vec<u8>>> = pieces
                .iter()
                .map(|&(off, len)| {
                    let at = usize::try_from(off.checked_sub(start)?).ok()?;
                    let end = at.checked_add(usize::try_from(len).ok()?)?;
                    fixed.get(at..end).map(<[u8]>::to_vec)
                })
                .collect();
            if let Some(text) = text {
                let c = lvm_crc(&text.concat()).to_le_bytes();
                fixed[56..60].copy_from_slice(&c);
                header_crc(&mut fixed);
            }
        }
    }
    if fixed != data {
        mda_once(&fixed);
    }
}

fn mda_once(data: &[u8]) {
    let stored_start = data
        .get(24..32)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    for expected in [Some(DEFAULT_MDA_START), stored_start]
        .into_iter()
        .flatten()
    {
        let Ok(h) = MdaHeader::decode(data, expected) else {
            continue;
        };
        let _ = h.committed_pieces();
        let padded;
        let area = if (data.len() as u64) < h.size && h.size <= 4 << 20 {
            let mut a = vec![0u8; h.size as usize];
            a[..data.len()].copy_from_slice(data);
            padded = a;
            &padded[..]
        } else {
            data
        };
        let text = match h.committed_text(area) {
            Ok(Some(text)) => {
                let _ = h.check_text(&text);
                let _ = VgMeta::parse(&text);
                text
            }
            _ => b"contents = \"Text Format Volume Group\"\nversion = 1\n\0".to_vec(),
        };
        let _ = h.place_text(&text);
    }
}

/// LVM's metadata text: the config parser (`Items::parse`, written back with
/// `Items::write`) and the VG view (`VgMeta::parse`, then every accessor `loopvg` uses
/// and the text written back).
pub fn metadata_text(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(items) = Items::parse(text) {
            let mut out = String::new();
            items.write(&mut out);
            for (name, body) in items.sections() {
                let _ = (name, Items::from(body).get("id"));
            }
        }
    }
    if let Ok(mut vg) = VgMeta::parse(data) {
        let _ = vg.name();
        let _ = vg.id();
        let _ = vg.seqno();
        let _ = vg.extent_size();
        let _ = vg.change_refused(false);
        let _ = vg.change_refused(true);
        let _ = vg.pvs();
        let _ = vg.lv_count();
        let _ = vg.allocated();
        // The next seqno as loopvg takes it (refused at lvm2's limit), then the text
        // written back parses again.
        if vg.next_seqno().and_then(|n| vg.set_seqno(n)).is_ok() {
            let _ = VgMeta::parse(&vg.to_text());
        }
    }
}

/// Where the `ini` target's input also stands as the dnsmasq file an ini names.
const DNSMASQ_FILE: &str = "/etc/neutron/dnsmasq-neutron.conf";

/// An oslo.config ini file: `Ini::parse`, then every builder of the guide's files
/// (`LinuxBridgeAgent`, `Ml2`, `L3Agent`, `DhcpAgent`, `Cinder` `from_ini`).
///
/// `DhcpAgent::from_ini` reads the dnsmasq file the ini names: it is called only when
/// the ini names none or names `/etc/neutron/dnsmasq-neutron.conf` — read below a
/// private root where the input itself has been written as that file (so the same
/// bytes exercise the `dhcp-option-force=26,N` reader). No other path is ever read.
pub fn ini(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ini) = Ini::parse(text, Path::new("/etc/neutron/fuzz.ini")) else {
        return;
    };
    let _ = LinuxBridgeAgent::from_ini(&ini);
    let _ = Ml2::from_ini(&ini);
    let _ = L3Agent::from_ini(&ini);
    let _ = Cinder::from_ini(&ini);
    match ini
        .string("DEFAULT", "dnsmasq_config_file")
        .filter(|s| !s.is_empty())
    {
        None => {
            let _ = DhcpAgent::from_ini(&ini, Path::new("/nonexistent"));
        }
        Some(named) if named == DNSMASQ_FILE => {
            if let Some(root) = private_root() {
                let file = sp_config::guide::reroot(root, Path::new(DNSMASQ_FILE));
                if std::fs::write(file, data).is_ok() {
                    let _ = DhcpAgent::from_ini(&ini, root);
                }
            }
        }
        Some(_) => {}
    }
}

/// `$TMPDIR/sp-fuzz-ini.<pid>` with its `neutron/` directory, made once per process and
/// removed when the process exits normally.
fn private_root() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(Some(root)) = ROOT.get() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("sp-fuzz-ini.{}", std::process::id()));
        std::fs::create_dir_all(root.join("neutron")).ok()?;
        // SAFETY: registers a plain function without captures, run once at exit.
        unsafe { libc::atexit(remove) };
        Some(root)
    })
    .as_deref()
}

/// The guide's configuration (`crates/sp-config/tests/guide`), loaded once.
fn guide_config() -> &'static GuideConfig {
    static CFG: OnceLock<GuideConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/sp-config/tests/guide");
        GuideConfig::load(&root).expect("the guide's configuration in crates/sp-config/tests/guide")
    })
}

/// A topology file: `Topology::parse`, `validate` against the guide's configuration,
/// and `desired::plan` (pure: the state path is only joined).
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Topology::parse(text, "fuzz.toml") else {
        return;
    };
    let cfg = guide_config();
    let _ = sp_config::validate(&t, cfg);
    let _ = sp_config::desired::plan(&t, cfg, Path::new("/var/lib/neutron"));
}

/// A size argument: `parse_size` absolute and relative, and `human` on what it gives;
/// the same text as `list --units` (shown on the input's first 8 bytes as a size) and as
/// a `list --select` expression of both reports.
pub fn sizes(data: &[u8]) {
    let bytes = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    if let Some(n) = bytes {
        let _ = sp_loopvg::size::human(n);
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for relative in [false, true] {
        if let Ok(n) = sp_loopvg::size::parse_size(s, relative) {
            let _ = sp_loopvg::size::human(n);
        }
    }
    if let Ok(units) = s.parse::<sp_loopvg::size::Units>() {
        for suffix in [false, true] {
            let _ = units.show(bytes.unwrap_or(0), suffix);
        }
    }
    for pvs in [false, true] {
        let _ = sp_loopvg::columns::Select::parse(s, pvs);
    }
}

/// xorshift64*: chunk sizes for `ovsdb_codec`, seeded from the input so a replay is
/// the same run.
struct Rng(u64);

impl Rng {
    fn seeded(data: &[u8]) -> Rng {
        // FNV-1a.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// What a decoder made of a stream: the values, and whether it ended in an error.
fn decode_all(chunks: impl Iterator<Item = Vec<u8>>) -> (Vec<Value>, bool) {
    let mut d = Decoder::default();
    let mut values = Vec::new();
    for chunk in chunks {
        d.push(&chunk);
        loop {
            match d.next_value() {
                Ok(Some(v)) => values.push(v),
                Ok(None) => break,
                Err(_) => return (values, true),
            }
        }
    }
    (values, false)
}

/// The OVSDB stream decoder: the bytes pushed in random-sized chunks (1–64 bytes,
/// sometimes a few KiB), `next_value` after each push until `None` or `Err` — and the
/// same values, the same way of ending, as when they arrive in one read.
pub fn ovsdb_codec(data: &[u8]) {
    let mut rng = Rng::seeded(data);
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let r = rng.next();
        let n = if r % 8 == 0 {
            (r >> 8) % 4096 + 1
        } else {
            (r >> 8) % 64 + 1
        };
        let (head, tail) = rest.split_at((n as usize).min(rest.len()));
        chunks.push(head.to_vec());
        rest = tail;
    }
    let chunked = decode_all(chunks.into_iter());
    let whole = decode_all(std::iter::once(data.to_vec()));
    assert_eq!(
        chunked, whole,
        "the decoder's values depend on how the bytes were split into reads"
    );
}

/// OVSDB values: the bytes as JSON (serde_json), then `Datum`, `Atom` and `Row`
/// `from_json` on the value, on each element of an array and each member of an object,
/// and on the rows of a monitor update (`{"method":"update","params":[ID,
/// {TABLE:{UUID:{"old":ROW,"new":ROW}}}]}`) and of select results — and each parsed
/// datum and row written back with `to_json`.
pub fn ovsdb_datum(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    values(&v);
    let children: Vec<&Value> = match &v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => o.values().collect(),
        _ => Vec::new(),
    };
    for c in children {
        values(c);
    }
    // A monitor's update notification.
    if let Some(tables) = v["params"][1].as_object() {
        for rows in tables.values() {
            for change in rows.as_object().into_iter().flat_map(|r| r.values()) {
                for side in ["old", "new"] {
                    if let Some(row) = change.get(side) {
                        row_of(row);
                    }
                }
            }
        }
    }
    // A transaction's results.
    for result in v["result"].as_array().into_iter().flatten() {
        for row in result["rows"].as_array().into_iter().flatten() {
            row_of(row);
        }
    }
}

fn values(v: &Value) {
    let _ = Atom::from_json(v).map(|a| a.to_json());
    let _ = Datum::from_json(v).map(|d| d.to_json());
    row_of(v);
}

fn row_of(v: &Value) {
    if let Ok(row) = Row::from_json(v) {
        let _ = row.to_json();
    }
}

/// nf_tables dump answers, as the kernel sends them to `sp_nft::Socket::ruleset`:
/// `sp_nft::parse_messages`, every rule and table rendered as `nft` prints them, and
/// what was parsed encoded again and parsed back — it must read the same.
pub fn nft_dump(data: &[u8]) {
    let Ok(r) = sp_nft::parse_messages(data) else {
        return;
    };
    for rule in &r.rules {
        let _ = sp_nft::render::rule(rule);
    }
    for t in &r.tables {
        let _ = sp_nft::render::table_lines(t.family, &t.name, &r);
    }
    let again = sp_nft::parse_messages(&sp_nft::encode_as_dump(&r));
    assert_eq!(again.as_ref().ok(), Some(&r), "{again:?}");
}

/// `sp_neutron::metadata::parse` — the metadata proxy's reading of a request head — on
/// the input; on every prefix that ends a line before a parsed head's end (a head
/// arriving in pieces is "not yet" until its blank line, never refused for being
/// short); a refusal's status and answer; a parsed request forwarded (`forward_head`)
/// and parsed again as the metadata agent reads it — the same method, target and body
/// length, exactly one `X-Forwarded-For` (the client) and one id header.
pub fn metadata_http(data: &[u8]) {
    use sp_neutron::metadata::{self, Kind, Limits, Served};
    let req = match metadata::parse(data) {
        Ok(Some(req)) => req,
        Ok(None) => return,
        Err(refused) => {
            let (code, reason) = refused.status();
            assert!((400..=599).contains(&code));
            let _ = metadata::response(code, reason);
            return;
        }
    };
    assert!(req.head_len <= data.len());
    let line_ends = data[..req.head_len - 1]
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .take(64);
    for end in line_ends {
        assert_eq!(
            metadata::parse(&data[..end]),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
    for (kind, id_header) in [
        (Kind::Router, "x-neutron-router-id"),
        (Kind::Network, "x-neutron-network-id"),
    ] {
        let served = Served {
            kind,
            id: "006df4cc-6fb2-40e7-af58-dc68b6755165".into(),
            socket: "/var/lib/neutron/metadata_proxy".into(),
        };
        let out = metadata::forward_head(&req, "192.0.2.7".parse().expect("an address"), &served);
        // What the proxy adds: Host, X-Forwarded-For, the id, Connection.
        let roomier = Limits {
            head: Limits::DEFAULT.head + 256,
            headers: Limits::DEFAULT.headers + 4,
            ..Limits::DEFAULT
        };
        let again = metadata::parse_with(&out, &roomier)
            .expect("the forwarded head parses")
            .expect("the forwarded head is complete");
        assert_eq!(again.head_len, out.len());
        assert_eq!((&again.method, &again.target), (&req.method, &req.target));
        assert_eq!(again.body_len, req.body_len);
        assert_eq!(
            again.header("x-forwarded-for").collect::<Vec<_>>(),
            [b"192.0.2.7".as_slice()]
        );
        assert_eq!(
            again.header(id_header).collect::<Vec<_>>(),
            [served.id.as_bytes()]
        );
    }
}
