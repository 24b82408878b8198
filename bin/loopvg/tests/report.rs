//! `loopvg list` beside real `vgs` and `pvs` on the same VG: the same columns, units,
//! separators and headings print the same bytes; `--reportformat json` parses to the same
//! values field by field; sizes are read as lvm2 reads them; a PV whose file is gone is
//! `[unknown]`; as another user `list` says it needs root (exit 6); progress is drawn only
//! on a terminal.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sp_testenv::lvm::{num, Lvm, Scratch};
use sp_testenv::require;

const BIN: &str = env!("CARGO_BIN_EXE_loopvg");

fn loopvg(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run loopvg")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = loopvg(dir, args);
    assert!(
        out.status.success(),
        "loopvg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 report")
}

/// A VG name no other test or host VG carries.
fn vg_name(tag: &str) -> String {
    format!("sptest-{}-{tag}", std::process::id())
}

/// What `lvm <cmd> <args>` prints on stdout (its warnings go to stderr).
fn lvm_out(lvm: &Lvm, cmd: &str, args: &[&str]) -> String {
    let mut all = vec![cmd];
    all.extend_from_slice(args);
    lvm.run(&all)
}

/// A VG of two PVs: 100 (MiB, lvm2's default unit) and 1.5G more.
fn two_pv_vg(s: &Scratch, tag: &str) -> String {
    let name = vg_name(tag);
    ok(&s.dir, &["create", &name, "100"]);
    ok(&s.dir, &["extend", &name, "+1.5G"]);
    name
}

/// The same options to `loopvg list` and to `vgs`/`pvs` print the same text.
#[test]
fn list_prints_what_vgs_and_pvs_print() {
    let s = Scratch::new("rep-text");
    let name = two_pv_vg(&s, "text");
    let lvm = Lvm::of(&s);
    let select = format!("vg_name={name}");
    let vg_cols = "vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_extent_size,vg_extent_count,\
                   vg_free_count,pv_count,lv_count,snap_count,vg_seqno,vg_missing_pv_count,max_lv,max_pv";
    let pv_cols = "pv_name,vg_name,pv_fmt,pv_uuid,pv_attr,pv_size,pv_free,pv_used,dev_size,\
                   pe_start,pv_pe_count,pv_pe_alloc_count,pv_missing";
    let mixed = "vg_name,pv_name,vg_size,pv_size,pv_free";
    let mut compared = 0;
    for units in [
        None,
        Some("r"),
        Some("h"),
        Some("H"),
        Some("b"),
        Some("s"),
        Some("k"),
        Some("m"),
        Some("g"),
        Some("G"),
        Some("M"),
        Some("3M"),
        Some("1.5g"),
    ] {
        for style in [
            &[][..],
            &["--noheadings"][..],
            &["--separator", ":"][..],
            &["--noheadings", "--separator", " | ", "--nosuffix"][..],
            &["--nosuffix"][..],
        ] {
            let mut opts: Vec<&str> = style.to_vec();
            if let Some(u) = units {
                opts.extend(["--units", u]);
            }
            let with = |extra: &[&str]| -> Vec<String> {
                opts.iter().chain(extra).map(|s| s.to_string()).collect()
            };
            for (ours, cmd, theirs) in [
                (with(&[]), "vgs", with(&[])),
                (with(&["-o", vg_cols]), "vgs", with(&["-o", vg_cols])),
                (with(&["-o", mixed]), "vgs", with(&["-o", mixed])),
                (with(&["--pvs", "-o", "-loop_file"]), "pvs", with(&[])),
                (
                    with(&["--pvs", "-o", pv_cols]),
                    "pvs",
                    with(&["-o", pv_cols]),
                ),
            ] {
                let mut ours: Vec<&str> = ours.iter().map(String::as_str).collect();
                let mut theirs: Vec<&str> = theirs.iter().map(String::as_str).collect();
                ours.insert(0, "list");
                ours.push(&name);
                theirs.extend(["--select", &select]);
                let mine = ok(&s.dir, &ours);
                let lvm2 = lvm_out(&lvm, cmd, &theirs);
                assert_eq!(mine, lvm2, "loopvg {ours:?} against {cmd} {theirs:?}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 13 * 5 * 5);
    // lvm2's selection forms pick the same rows.
    for sel in [
        format!("vg_name={name}"),
        format!("vg_name!={name}"),
        format!("vg_name={name} && pv_size>1g"),
        "pv_size<100m".to_string(),
        format!("vg_name={name} && pv_count=2"),
        "pv_pe_count=24 || pv_pe_count=383".to_string(),
        "vg_size=1628".to_string(),
    ] {
        let cols = "vg_name,pv_name,pv_size";
        let mine = ok(&s.dir, &["list", "-o", cols, "--select", &sel]);
        let lvm2 = lvm_out(&lvm, "vgs", &["-o", cols, "--select", &sel]);
        assert_eq!(mine, lvm2, "--select {sel}");
    }
    let picked = ok(
        &s.dir,
        &[
            "list",
            "-o",
            "pv_name",
            "--noheadings",
            "--select",
            "pv_size>1g",
        ],
    );
    assert_eq!(picked.lines().count(), 1, "{picked}");
}

/// LVs made by lvm2 on loopvg's VG (metadata only: no device-mapper here): `lv_count`,
/// `snap_count`, `pv_used`, allocated extents and free space read as `vgs`/`pvs` read them.
#[test]
fn a_vg_with_lvm2_made_lvs_reports_as_vgs_does() {
    let s = Scratch::new("rep-lvs");
    let name = two_pv_vg(&s, "lvs");
    let lvm = Lvm::of(&s);
    lvm.lvcreate(&name, "40M", "volume-1");
    // spans both PVs (96 MiB is the first PV)
    lvm.lvcreate(&name, "300M", "volume-2");
    let select = format!("vg_name={name}");
    for (ours, cmd, theirs) in [
        (vec!["list"], "vgs", vec![]),
        (
            vec![
                "list",
                "-o",
                "vg_name,lv_count,snap_count,vg_free,vg_free_count,vg_seqno",
            ],
            "vgs",
            vec![
                "-o",
                "vg_name,lv_count,snap_count,vg_free,vg_free_count,vg_seqno",
            ],
        ),
        (
            vec![
                "list",
                "--pvs",
                "-o",
                "pv_name,pv_used,pv_free,pv_pe_alloc_count,pv_attr",
            ],
            "pvs",
            vec!["-o", "pv_name,pv_used,pv_free,pv_pe_alloc_count,pv_attr"],
        ),
    ] {
        for format in ["basic", "json"] {
            let mut ours = ours.clone();
            ours.extend(["--reportformat", format, &name]);
            let mut theirs = theirs.clone();
            theirs.extend(["--reportformat", format, "--select", &select]);
            assert_eq!(ok(&s.dir, &ours), lvm_out(&lvm, cmd, &theirs), "{ours:?}");
        }
    }
    let counts = ok(
        &s.dir,
        &[
            "list",
            "-o",
            "lv_count,pv_used",
            "--units",
            "m",
            "--noheadings",
            "--separator",
            ",",
            &name,
        ],
    );
    // two LVs, 340 MiB allocated in all, wherever lvm2 put them
    let used: f64 = counts
        .lines()
        .map(|l| {
            let (lvs, used) = l.trim().split_once(',').unwrap();
            assert_eq!(lvs, "2", "{counts}");
            used.trim_end_matches('m').parse::<f64>().unwrap()
        })
        .sum();
    assert_eq!(used, 340.0, "{counts}");
}

/// `--reportformat json` against `vgs`/`pvs --reportformat json`: every field of every
/// row, and the text itself.
#[test]
fn json_report_matches_lvm2s_field_by_field() {
    let s = Scratch::new("rep-json");
    let name = two_pv_vg(&s, "json");
    let lvm = Lvm::of(&s);
    let select = format!("vg_name={name}");
    for (ours, cmd, theirs, key, rows) in [
        (vec!["list"], "vgs", vec![], "vg", 1),
        (
            vec!["list", "-o", "vg_all", "-o", "-loop_vg_active"],
            "vgs",
            vec!["-o", "vg_fmt,vg_uuid,vg_name,vg_attr,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,max_lv,max_pv,pv_count,vg_missing_pv_count,lv_count,snap_count,vg_seqno"],
            "vg",
            1,
        ),
        (vec!["list", "-o", "vg_name,pv_name,pv_uuid,pv_size"], "vgs", vec!["-o", "vg_name,pv_name,pv_uuid,pv_size"], "vg", 2),
        (vec!["list", "--pvs", "-o", "-loop_file"], "pvs", vec![], "pv", 2),
        (
            vec!["list", "--pvs", "-o", "pv_all", "-o", "-loop_file,loop_file_size,loop_file_here"],
            "pvs",
            vec!["-o", "pv_fmt,pv_uuid,dev_size,pv_name,pe_start,pv_size,pv_free,pv_used,pv_attr,pv_missing,pv_pe_count,pv_pe_alloc_count"],
            "pv",
            2,
        ),
    ] {
        for units in [vec![], vec!["--units", "b", "--nosuffix"], vec!["--units", "g"]] {
            let mut ours = ours.clone();
            ours.extend(["--reportformat", "json"]);
            ours.extend(&units);
            ours.push(&name);
            let mut theirs = theirs.clone();
            theirs.extend(["--reportformat", "json", "--select", &select]);
            theirs.extend(&units);
            let mine = ok(&s.dir, &ours);
            let lvm2 = lvm_out(&lvm, cmd, &theirs);
            let a: Value = serde_json::from_str(&mine).expect("our JSON");
            let b: Value = serde_json::from_str(&lvm2).expect("lvm2's JSON");
            let (a_rows, b_rows) = (
                a["report"][0][key].as_array().unwrap(),
                b["report"][0][key].as_array().unwrap(),
            );
            assert_eq!(a_rows.len(), rows, "{ours:?}: {mine}");
            assert_eq!(a_rows.len(), b_rows.len(), "{ours:?}");
            for (x, y) in a_rows.iter().zip(b_rows) {
                let (x, y) = (x.as_object().unwrap(), y.as_object().unwrap());
                assert_eq!(
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>(),
                    "{ours:?}: fields"
                );
                for (k, v) in x {
                    assert_eq!(Some(v), y.get(k), "{ours:?}: {k}");
                }
            }
            assert_eq!(mine, lvm2, "{ours:?}: the text");
        }
    }
    // loopvg's own columns, in the same shape.
    let mine: Value = serde_json::from_str(&ok(
        &s.dir,
        &[
            "list",
            "--pvs",
            "--reportformat",
            "json",
            "-o",
            "pv_name,loop_file,loop_file_here",
            &name,
        ],
    ))
    .unwrap();
    let rows = mine["report"][0]["pv"].as_array().unwrap();
    assert_eq!(rows[0]["loop_file"], s.path(&name).to_str().unwrap());
    assert_eq!(
        rows[1]["loop_file"],
        s.path(&format!("{name}02")).to_str().unwrap()
    );
    assert_eq!(rows[1]["loop_file_here"], "here");
}

/// `1.5G`, `100` (MiB), `0.75g`, `2048s`…: the size lvm2 takes for the same words
/// (`pvcreate --setphysicalvolumesize`, read back with `pvs`) is the size of loopvg's
/// backing file, and `vgs` agrees with loopvg's report of the VG.
#[test]
fn sizes_are_taken_as_lvm2_takes_them() {
    let s = Scratch::new("rep-sizes");
    // lvm2 reads each size onto a PV of its own, on a big sparse file.
    let probe = s.path("probe");
    std::fs::File::create(&probe)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let dev = s.losetup(&probe);
    let lvm = Lvm::new(vec![dev.clone()]);
    for (i, size) in [
        "100", "1.5G", "1.5g", "0.75G", "64m", "20480s", "12.3M", "+1.25G",
    ]
    .into_iter()
    .enumerate()
    {
        let plain = size.trim_start_matches('+');
        lvm.run(&[
            "pvcreate",
            "-ff",
            "-y",
            "--setphysicalvolumesize",
            plain,
            &dev,
        ]);
        let theirs = lvm_out(
            &lvm,
            "pvs",
            &[
                "-o",
                "pv_size",
                "--units",
                "b",
                "--nosuffix",
                "--noheadings",
                &dev,
            ],
        );
        let theirs: u64 = theirs.trim().parse().unwrap();
        let name = vg_name(&format!("size{i}"));
        if size.starts_with('+') {
            ok(&s.dir, &["create", &name, "64M"]);
            ok(&s.dir, &["extend", &name, size]);
            let file = std::fs::metadata(s.path(&format!("{name}02")))
                .unwrap()
                .len();
            assert_eq!(file, theirs, "extend {size}");
        } else {
            ok(&s.dir, &["create", &name, size]);
            let file = std::fs::metadata(s.path(&name)).unwrap().len();
            assert_eq!(file, theirs, "create {size}: lvm2 took {theirs} bytes");
        }
        let listed: Value = serde_json::from_str(&ok(&s.dir, &["list", &name, "--json"])).unwrap();
        let ours = Lvm::of(&s);
        let vgs = ours.vgs(&name);
        assert_eq!(
            num(&vgs, "vg_size"),
            listed[0]["size"].as_u64().unwrap(),
            "{size}"
        );
        assert_eq!(
            num(&vgs, "pv_count"),
            listed[0]["pvs"].as_array().unwrap().len() as u64
        );
        ok(&s.dir, &["remove", &name]);
    }
    lvm.run(&["pvremove", "-ff", "-y", &dev]);
    for bad in ["1.5X", "5GX", "1000b", "0"] {
        let out = loopvg(&s.dir, &["create", &vg_name("bad"), bad]);
        // Input refused before anything is made: the table's 2.
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

/// A PV whose loop device and file are gone is `[unknown]` with the `m` attribute, as
/// `vgs` and `pvs` show it.
#[test]
fn a_pv_whose_file_is_gone_is_unknown_as_in_vgs() {
    let s = Scratch::new("rep-gone");
    let name = two_pv_vg(&s, "gone");
    let listed: Value = serde_json::from_str(&ok(&s.dir, &["list", &name, "--json"])).unwrap();
    let second = listed[0]["pvs"][1]["device"].as_str().unwrap().to_string();
    require::program("losetup", "util-linux");
    require::run(Command::new("losetup").args(["-d", &second]));
    std::fs::remove_file(s.path(&format!("{name}02"))).unwrap();
    let lvm = Lvm::of(&s);
    let cols = "vg_name,pv_name,pv_attr,vg_attr,pv_missing,pv_size,pv_free,dev_size,pv_uuid,vg_missing_pv_count";
    let select = format!("vg_name={name}");
    for format in ["basic", "json"] {
        let mine = ok(
            &s.dir,
            &["list", "-o", cols, "--reportformat", format, &name],
        );
        let lvm2 = lvm_out(
            &lvm,
            "vgs",
            &["-o", cols, "--reportformat", format, "--select", &select],
        );
        assert_eq!(mine, lvm2, "{format}");
        assert!(mine.contains("[unknown]"), "{mine}");
    }
    let mine = ok(&s.dir, &["list", &name]);
    let lvm2 = lvm_out(&lvm, "vgs", &["--select", &select]);
    assert_eq!(mine, lvm2);
    assert!(mine.contains("wz-pn-"), "{mine}");
    let mine = ok(&s.dir, &["list", "--pvs", "-o", "-loop_file", &name]);
    let lvm2 = lvm_out(&lvm, "pvs", &["--select", &select]);
    assert_eq!(mine, lvm2);
    // the file column says what is gone
    let files = ok(
        &s.dir,
        &[
            "list",
            "--pvs",
            "-o",
            "pv_name,loop_file",
            "--separator",
            ",",
            "--noheadings",
            &name,
        ],
    );
    assert!(files.lines().any(|l| l.trim() == "[unknown],"), "{files}");
}

/// As another user, `list` says it needs root and exits 6 (`sp_cli::exit::PRIVILEGE`),
/// with an active VG on the host — not an empty list.
#[test]
fn list_as_nobody_needs_root_and_exits_6() {
    let s = Scratch::new("rep-nobody");
    require::program("setpriv", "util-linux");
    let name = vg_name("nobody");
    ok(&s.dir, &["create", &name, "64M"]);
    for args in [
        vec!["list"],
        vec!["list", name.as_str()],
        vec!["list", "--reportformat", "json"],
        vec!["list", "--json"],
    ] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(BIN)
            .arg("--dir")
            .arg(&s.dir)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{args:?}: {err}");
        assert!(
            err.contains("must run as root") && err.contains("/dev/loopN"),
            "{args:?}: {err}"
        );
        // Nothing on stdout but, with --json, the error object (docs/json.md).
        let stdout = String::from_utf8_lossy(&out.stdout);
        match args.contains(&"--json") {
            true => {
                let e: Value = serde_json::from_str(&stdout).unwrap();
                assert_eq!(e["error"]["kind"], "privilege", "{args:?}: {stdout}");
            }
            false => assert!(stdout.is_empty(), "{args:?}: {stdout}"),
        }
    }
    // root sees it
    assert!(ok(&s.dir, &["list", "-o", "vg_name", "--noheadings"]).contains(&name));
}

/// `create --preallocate` on a filesystem without fallocate (ext2) writes zeros: with
/// stderr a terminal (a pty from `script`) a progress bar is drawn; with stderr a file,
/// with `--json` and with `-q`, not a byte of progress.
#[test]
fn progress_is_drawn_only_on_a_terminal() {
    let s = Scratch::new("rep-progress");
    require::program("script", "bsdutils");
    require::program("unshare", "util-linux");
    require::program("mkfs.ext2", "e2fsprogs");
    let img = s.path("ext2.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(600 << 20)
        .unwrap();
    require::run(Command::new("mkfs.ext2").args(["-q", "-F"]).arg(&img));
    let out_dir = s.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let data = s.path("data");
    std::fs::create_dir(&data).unwrap();
    let names: Vec<String> = (1..=4).map(|i| vg_name(&format!("pre{i}"))).collect();
    let script = format!(
        r#"set -e
        B={BIN}; D='{data}'; O='{out}'
        trap 'for n in {all}; do $B --dir "$D" remove $n >/dev/null 2>&1 || true; done; umount "$D"' EXIT
        mount -o loop '{img}' "$D"
        if fallocate -l 1M "$D/probe" 2>/dev/null; then echo "ext2 has fallocate"; exit 9; fi
        rm -f "$D/probe"
        $B --dir "$D" create {n1} 64M --preallocate > "$O/file.out" 2> "$O/file.err"
        script -qec "$B --dir '$D' create {n2} 64M --preallocate" /dev/null > "$O/tty.out"
        script -qec "$B --dir '$D' create {n3} 64M --preallocate --json" /dev/null > "$O/json.out"
        script -qec "$B --dir '$D' -q create {n4} 64M --preallocate" /dev/null > "$O/quiet.out"
        $B --dir "$D" list -o vg_name,vg_size --units m --noheadings > "$O/list.out"
        "#,
        data = data.display(),
        img = img.display(),
        out = out_dir.display(),
        all = names.join(" "),
        n1 = names[0],
        n2 = names[1],
        n3 = names[2],
        n4 = names[3],
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(out_dir.join(f)).unwrap();
    // made, and on the zero-writing path
    let list = read("list.out");
    for n in &names {
        assert!(list.contains(n.as_str()), "{n} not made: {list}");
    }
    let tty = read("tty.out");
    assert!(
        tty.contains("preallocating"),
        "no bar on a terminal: {tty:?}"
    );
    assert!(
        tty.contains("64.00 MiB/64.00 MiB"),
        "the bar did not finish: {tty:?}"
    );
    let file = read("file.err");
    assert!(file.is_empty(), "stderr to a file got {file:?}");
    for f in ["json.out", "quiet.out"] {
        let text = read(f);
        assert!(!text.contains("preallocating"), "{f}: {text:?}");
    }
    let json: Value = serde_json::from_str(&read("json.out").replace("\r\n", "\n")).unwrap();
    assert_eq!(json["vgs"][0]["name"], names[2].as_str());
}
