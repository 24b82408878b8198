//! The house rules, checked on the tree itself (`docs/architecture.md`):
//!
//! 1. Every workspace member names its floor (`[package.metadata.stackplumb] floor`):
//!    0–6 for the product, `"support"` for test support and benches.
//! 2. A product crate depends (normal and dev) only on product crates of a *lower*
//!    floor — never on one of its own floor or above — and never on support crates but
//!    for tests (`[dev-dependencies]`).
//! 3. Inside each crate the top-level modules import one another without a circle.
//!
//! No root needed: this reads `Cargo.toml` files and sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(Debug)]
struct Member {
    name: String,
    dir: PathBuf,
    /// `None`: support.
    floor: Option<i64>,
    deps: Vec<String>,
    dev_deps: Vec<String>,
}

fn members() -> Vec<Member> {
    let root = workspace();
    let top: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let mut dirs = Vec::new();
    for m in top["workspace"]["members"].as_array().unwrap() {
        let m = m.as_str().unwrap();
        match m.strip_suffix("/*") {
            Some(parent) => {
                for e in std::fs::read_dir(root.join(parent)).unwrap() {
                    let p = e.unwrap().path();
                    if p.join("Cargo.toml").is_file() {
                        dirs.push(p);
                    }
                }
            }
            None => dirs.push(root.join(m)),
        }
    }
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let t: toml::Value =
                toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
            let name = t["package"]["name"].as_str().unwrap().to_owned();
            let floor = t
                .get("package")
                .and_then(|p| p.get("metadata"))
                .and_then(|m| m.get("stackplumb"))
                .and_then(|s| s.get("floor"))
                .unwrap_or_else(|| panic!("{name}: no [package.metadata.stackplumb] floor"));
            let floor = match floor {
                toml::Value::Integer(n) if (0..=6).contains(n) => Some(*n),
                toml::Value::String(s) if s == "support" => None,
                other => panic!("{name}: floor {other} is neither 0–6 nor \"support\""),
            };
            let keys = |table: &str| -> Vec<String> {
                t.get(table)
                    .and_then(|d| d.as_table())
                    .map(|d| d.keys().cloned().collect())
                    .unwrap_or_default()
            };
            Member {
                name,
                dir,
                floor,
                deps: keys("dependencies"),
                dev_deps: keys("dev-dependencies"),
            }
        })
        .collect()
}

#[test]
fn every_crate_stands_only_on_lower_floors() {
    let all = members();
    let floor: BTreeMap<&str, Option<i64>> =
        all.iter().map(|m| (m.name.as_str(), m.floor)).collect();
    let mut wrong = Vec::new();
    for m in &all {
        let Some(f) = m.floor else { continue };
        for (d, dev) in m
            .deps
            .iter()
            .map(|d| (d, false))
            .chain(m.dev_deps.iter().map(|d| (d, true)))
        {
            match floor.get(d.as_str()) {
                None => {} // not ours
                Some(None) if dev => {}
                Some(None) => wrong.push(format!("{} needs support crate {d}", m.name)),
                Some(Some(g)) if g < &f => {}
                Some(Some(g)) => wrong.push(format!(
                    "{} (floor {f}) stands on {d} (floor {g}){}",
                    m.name,
                    if dev { " for its tests" } else { "" }
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check has something to check.
    assert!(all.iter().filter(|m| m.floor.is_some()).count() >= 15);
}

/// Which of `modules` the source `text` names through `crate::`.
fn named_modules<'a>(text: &str, modules: &'a BTreeSet<String>) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            // `crate::{a, b::c, d}`: the top-level names in the braces.
            Some(inner) => {
                let mut depth = 0;
                let end = inner
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => return true,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        false
                    })
                    .map_or(inner.len(), |(i, _)| i);
                let mut names = Vec::new();
                let mut depth = 0;
                let mut start = true;
                for (i, c) in inner[..end].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                            let word: String = inner[i..]
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            names.push(&inner[i..i + word.len()]);
                            start = false;
                        }
                        _ => {}
                    }
                }
                names
            }
            None => {
                let len = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![&rest[..len]]
            }
        };
        for n in names {
            if let Some(m) = modules.get(n) {
                out.insert(m.as_str());
            }
        }
    }
    out
}

/// The top-level modules of a crate and the text of each (its file, or every file of
/// its directory), test modules left out.
fn modules_of(src: &Path) -> BTreeMap<String, String> {
    fn text_of(p: &Path, out: &mut String) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                text_of(&e.unwrap().path(), out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let t = std::fs::read_to_string(p).unwrap();
            out.push_str(t.split("#[cfg(test)]").next().unwrap());
        }
    }
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
        if stem == "lib" || stem == "main" {
            continue;
        }
        let mut text = String::new();
        text_of(&p, &mut text);
        out.entry(stem).or_insert_with(String::new).push_str(&text);
    }
    out
}

/// A circle among `graph`'s nodes, if there is one.
fn circle(graph: &BTreeMap<&str, BTreeSet<&str>>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut c: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_owned());
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        path.push(n);
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_circle_among_its_modules() {
    let mut circles = Vec::new();
    let mut looked = 0;
    for m in members() {
        let src = m.dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let texts = modules_of(&src);
        let names: BTreeSet<String> = texts.keys().cloned().collect();
        let graph: BTreeMap<&str, BTreeSet<&str>> = texts
            .iter()
            .map(|(k, t)| {
                let mut uses = named_modules(t, &names);
                uses.remove(k.as_str());
                (k.as_str(), uses)
            })
            .collect();
        looked += graph.values().filter(|u| !u.is_empty()).count();
        if let Some(c) = circle(&graph) {
            circles.push(format!("{}: {}", m.name, c.join(" → ")));
        }
    }
    assert!(circles.is_empty(), "{}", circles.join("\n"));
    assert!(
        looked > 20,
        "only {looked} modules import another: the scan is broken"
    );
}

#[test]
fn the_circle_finder_finds_circles() {
    let names: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(
        named_modules("use crate::{a, b::{x, y}};\nlet _ = crate::c::f();", &names),
        ["a", "b", "c"].into()
    );
    assert_eq!(
        named_modules("use crate::{Error, a::c};", &names),
        ["a"].into()
    );
    let g: BTreeMap<&str, BTreeSet<&str>> = [
        ("a", ["b"].into()),
        ("b", ["c"].into()),
        ("c", ["a"].into()),
    ]
    .into();
    assert_eq!(circle(&g).unwrap(), ["a", "b", "c", "a"]);
    let g: BTreeMap<&str, BTreeSet<&str>> = [
        ("a", ["b"].into()),
        ("b", BTreeSet::new()),
        ("c", ["a", "b"].into()),
    ]
    .into();
    assert_eq!(circle(&g), None);
}
