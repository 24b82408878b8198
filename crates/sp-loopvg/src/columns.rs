//! `loopvg list` as lvm2's `vgs`/`pvs` print their reports: `-o` columns with lvm2's
//! field names and headings, `--units`, `--noheadings`, `--separator`, `--aligned`,
//! `--nosuffix`, `--select`, and `--reportformat json` shaped like lvm2's
//! (`{"report":[{"vg":[{…}]}]}`, every value a string, as lvm2 2.03.16 writes them).
//! Pure: it formats [`VgReport`]s.

use std::fmt::Write as _;

use crate::report::{PvReport, VgReport};
use crate::size::{parse_size, Units};

/// How a field is shown and selected on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Left-aligned text.
    Str,
    /// Right-aligned integer.
    Num,
    /// Right-aligned size in bytes, shown in `--units`.
    Size,
    /// Right-aligned: the field's word when set, empty when not (lvm2's binary fields).
    Bin(&'static str),
}

/// A value of one field in one row.
enum Val {
    Str(String),
    Num(u64),
    Size(u64),
    Bin(bool),
}

type Get = fn(&VgReport, Option<&PvReport>) -> Val;

/// One column: lvm2's name, heading and minimum width (`lib/report/columns.h`), or one
/// of loopvg's own (`loop_*`).
pub struct Field {
    pub name: &'static str,
    heading: &'static str,
    width: usize,
    kind: Kind,
    /// A PV field: rows are PVs when one is asked for.
    pv: bool,
    pub help: &'static str,
    get: Get,
}

fn path(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map_or_else(String::new, |p| p.to_string_lossy().into_owned())
}

/// `pv_name`: the loop device, `[unknown]` (lvm2's word) when none carries the PV.
fn pv_name(p: &PvReport) -> String {
    p.device
        .as_ref()
        .map_or_else(|| "[unknown]".into(), |d| d.display().to_string())
}

fn pv_val(pv: Option<&PvReport>, f: impl Fn(&PvReport) -> Val) -> Val {
    pv.map_or(Val::Str(String::new()), f)
}

macro_rules! field {
    ($name:literal, $heading:literal, $width:literal, $kind:expr, $pv:literal, $help:literal, $get:expr) => {
        Field {
            name: $name,
            heading: $heading,
            width: $width,
            kind: $kind,
            pv: $pv,
            help: $help,
            get: $get,
        }
    };
}

use Kind::{Bin, Num, Size, Str};

/// Every field `-o` and `--select` know, VG fields first.
pub static FIELDS: &[Field] = &[
    field!("vg_fmt", "Fmt", 0, Str, false, "Type of metadata.", |_, _| Val::Str("lvm2".into())),
    field!("vg_uuid", "VG UUID", 38, Str, false, "Unique identifier.", |v, _| Val::Str(v.uuid.clone())),
    field!("vg_name", "VG", 0, Str, false, "Name.", |v, _| Val::Str(v.name.clone())),
    field!("vg_attr", "Attr", 5, Str, false, "Various attributes (vgs(8)).", |v, _| Val::Str(v.attr.clone())),
    field!("vg_size", "VSize", 0, Size, false, "Total size of VG in current units.", |v, _| Val::Size(v.size)),
    field!("vg_free", "VFree", 0, Size, false, "Total amount of free space in current units.", |v, _| Val::Size(v.free)),
    field!("vg_extent_size", "Ext", 0, Size, false, "Size of Physical Extents in current units.", |v, _| Val::Size(v.extent_size)),
    field!("vg_extent_count", "#Ext", 0, Num, false, "Total number of Physical Extents.", |v, _| Val::Num(v.extent_count)),
    field!("vg_free_count", "Free", 0, Num, false, "Total number of unallocated Physical Extents.", |v, _| Val::Num(v.free_count)),
    field!("max_lv", "MaxLV", 0, Num, false, "Maximum number of LVs allowed in VG or 0 if unlimited.", |v, _| Val::Num(v.max_lv)),
    field!("max_pv", "MaxPV", 0, Num, false, "Maximum number of PVs allowed in VG or 0 if unlimited.", |v, _| Val::Num(v.max_pv)),
    field!("pv_count", "#PV", 0, Num, false, "Number of PVs in VG.", |v, _| Val::Num(v.pvs.len() as u64)),
    field!("vg_missing_pv_count", "#PV Missing", 0, Num, false, "Number of PVs in VG which are missing.", |v, _| Val::Num(v.missing_pv_count as u64)),
    field!("lv_count", "#LV", 0, Num, false, "Number of LVs.", |v, _| Val::Num(v.lv_count as u64)),
    field!("snap_count", "#SN", 0, Num, false, "Number of snapshots.", |v, _| Val::Num(v.snap_count as u64)),
    field!("vg_seqno", "Seq", 0, Num, false, "Revision number of internal metadata.", |v, _| Val::Num(v.seqno)),
    field!("loop_vg_active", "Active", 0, Bin("active"), false, "loopvg: set if every PV's backing file is bound to a loop device.", |v, _| Val::Bin(v.active)),
    field!("pv_fmt", "Fmt", 0, Str, true, "Type of metadata.", |_, p| pv_val(p, |_| Val::Str("lvm2".into()))),
    field!("pv_uuid", "PV UUID", 38, Str, true, "Unique identifier.", |_, p| pv_val(p, |p| Val::Str(p.uuid.clone()))),
    field!("dev_size", "DevSize", 0, Size, true, "Size of underlying device in current units.", |_, p| pv_val(p, |p| Val::Size(if p.missing { 0 } else { p.file_size.unwrap_or(0) }))),
    field!("pv_name", "PV", 10, Str, true, "Name: the loop device; [unknown] for a PV no loop device carries.", |_, p| pv_val(p, |p| Val::Str(pv_name(p)))),
    field!("pe_start", "1st PE", 7, Size, true, "Offset to the start of data on the underlying device.", |_, p| pv_val(p, |p| Val::Size(p.pe_start))),
    field!("pv_size", "PSize", 0, Size, true, "Size of PV in current units.", |_, p| pv_val(p, |p| Val::Size(p.size))),
    field!("pv_free", "PFree", 0, Size, true, "Total amount of unallocated space in current units.", |_, p| pv_val(p, |p| Val::Size(p.free))),
    field!("pv_used", "Used", 0, Size, true, "Total amount of allocated space in current units.", |_, p| pv_val(p, |p| Val::Size(p.size - p.free.min(p.size)))),
    field!("pv_attr", "Attr", 0, Str, true, "Various attributes (pvs(8)).", |_, p| pv_val(p, |p| Val::Str(p.attr.clone()))),
    field!("pv_missing", "Missing", 10, Bin("missing"), true, "Set if this device is missing in system.", |_, p| pv_val(p, |p| Val::Bin(p.missing))),
    field!("pv_pe_count", "PE", 3, Num, true, "Total number of Physical Extents.", |_, p| pv_val(p, |p| Val::Num(p.pe_count))),
    field!("pv_pe_alloc_count", "Alloc", 0, Num, true, "Total number of allocated Physical Extents.", |_, p| pv_val(p, |p| Val::Num(p.pe_alloc))),
    field!("loop_file", "Backing file", 0, Str, true, "loopvg: the PV's backing file (the kernel's name for it when bound from another mount namespace); empty when not found.", |_, p| pv_val(p, |p| Val::Str(path(&p.file)))),
    field!("loop_file_size", "FileSize", 0, Size, true, "loopvg: size of the backing file in current units.", |_, p| pv_val(p, |p| Val::Size(p.file_size.unwrap_or(0)))),
    field!("loop_file_here", "Here", 0, Bin("here"), true, "loopvg: set if the backing file is this mount namespace's file at that path (by identity).", |_, p| pv_val(p, |p| Val::Bin(p.file_here))),
];

/// `vgs`'s default columns.
const VGS_DEFAULT: &str = "vg_name,pv_count,lv_count,snap_count,vg_attr,vg_size,vg_free";
/// `pvs`'s default columns, and the backing file.
const PVS_DEFAULT: &str = "pv_name,vg_name,pv_fmt,pv_attr,pv_size,pv_free,loop_file";

/// A field by lvm2's name, or without its report's prefix (`name` for `vg_name` in the
/// VG report) as lvm2 takes it.
fn lookup(name: &str, pvs: bool) -> Result<&'static Field, String> {
    let prefixes: [&str; 3] = if pvs {
        ["", "pv_", "vg_"]
    } else {
        ["", "vg_", "pv_"]
    };
    prefixes
        .iter()
        .find_map(|p| FIELDS.iter().find(|f| f.name == format!("{p}{name}")))
        .ok_or_else(|| format!("unrecognised field: {name} (`loopvg list -o help` lists them)"))
}

/// `-o` lists, evaluated left to right as lvm2 does: `a,b` replaces the columns, `+a,b`
/// appends, `-a,b` removes; `vg_all`/`pv_all` stand for every VG/PV field.
fn columns(options: &[String], pvs: bool) -> Result<Vec<&'static Field>, String> {
    let mut cols: Vec<&'static Field> = Vec::new();
    let add = |list: &str, cols: &mut Vec<&'static Field>| -> Result<(), String> {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "vg_all" => cols.extend(FIELDS.iter().filter(|f| !f.pv)),
                "pv_all" => cols.extend(FIELDS.iter().filter(|f| f.pv)),
                _ => cols.push(lookup(name, pvs)?),
            }
        }
        Ok(())
    };
    add(if pvs { PVS_DEFAULT } else { VGS_DEFAULT }, &mut cols)?;
    for o in options {
        if let Some(list) = o.strip_prefix('+') {
            add(list, &mut cols)?;
        } else if let Some(list) = o.strip_prefix('-') {
            let mut gone = Vec::new();
            add(list, &mut gone)?;
            cols.retain(|c| !gone.iter().any(|g| std::ptr::eq(*g, *c)));
        } else if o.starts_with('#') {
            return Err(format!("-o {o}: compacting columns (#) is not supported"));
        } else {
            cols.clear();
            add(o, &mut cols)?;
        }
    }
    if cols.is_empty() {
        return Err("no columns left to show".into());
    }
    Ok(cols)
}

/// What `-o help` prints: every field with its description.
pub fn fields_help() -> String {
    let mut out = String::new();
    for f in FIELDS {
        let _ = writeln!(out, "  {:<20} - {}", f.name, f.help);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A `--select` expression.
enum Expr {
    Cmp(&'static Field, Op, String),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// A parsed `--select`: lvm2's selection grammar without regular expressions, string
/// lists and times — `field=value`, `!=`, `<`, `<=`, `>`, `>=` (numbers and sizes),
/// `&&` or `,` (and), `||` or `#` (or), `!` and parentheses; values bare or quoted.
/// Sizes compare in bytes, a value without a unit being MiB (`vg_free>=10g`, `=100`).
pub struct Select {
    expr: Expr,
    /// Whether it names a PV field (the rows are then PVs).
    pv: bool,
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    pvs: bool,
    uses_pv: bool,
    /// Parentheses and `!` open, bounded by [`MAX_NESTING`].
    depth: usize,
}

/// Nesting of parentheses and `!` in a selection: the parser recurses on them.
const MAX_NESTING: usize = 32;

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(c) = self.rest().chars().next().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, tokens: &[&str]) -> bool {
        self.skip_ws();
        for t in tokens {
            if self.rest().starts_with(t) {
                self.pos += t.len();
                return true;
            }
        }
        false
    }

    fn err(&self, what: &str) -> String {
        format!("--select {:?}: {what} at position {}", self.s, self.pos + 1)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat(&["||", "#"]) {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.eat(&["&&", ","]) {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.depth >= MAX_NESTING {
            return Err(self.err(&format!("nested deeper than {MAX_NESTING}")));
        }
        self.depth += 1;
        let e = if self.eat(&["!"]) {
            Expr::Not(Box::new(self.unary()?))
        } else if self.eat(&["("]) {
            let e = self.or()?;
            if !self.eat(&[")"]) {
                return Err(self.err("expected )"));
            }
            e
        } else {
            self.cmp()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.err("expected a field name"));
        }
        let name = &self.rest()[..len];
        let field = lookup(name, self.pvs).map_err(|e| format!("--select: {e}"))?;
        self.pos += len;
        self.skip_ws();
        let op = [
            ("=~", None),
            ("!~", None),
            ("!=", Some(Op::Ne)),
            ("<=", Some(Op::Le)),
            (">=", Some(Op::Ge)),
            ("=", Some(Op::Eq)),
            ("<", Some(Op::Lt)),
            (">", Some(Op::Gt)),
        ]
        .into_iter()
        .find(|(t, _)| self.rest().starts_with(t));
        let Some((token, op)) = op else {
            return Err(self.err("expected =, !=, <, <=, > or >="));
        };
        let Some(op) = op else {
            return Err(self.err("regular expressions (=~, !~) are not supported"));
        };
        if !matches!(op, Op::Eq | Op::Ne) && matches!(field.kind, Str | Bin(_)) {
            return Err(self.err(&format!(
                "{} is not a number or size: only = and != apply",
                field.name
            )));
        }
        self.pos += token.len();
        self.skip_ws();
        let value = self.value()?;
        // Checked now, so that a bad number fails before anything is read.
        match field.kind {
            Num => {
                value
                    .parse::<u64>()
                    .map_err(|_| self.err(&format!("{value:?} is not a number")))?;
            }
            Size => {
                select_size(&value).map_err(|e| self.err(&format!("{value:?}: {e}")))?;
            }
            Str | Bin(_) => {}
        }
        self.uses_pv |= field.pv;
        Ok(Expr::Cmp(field, op, value))
    }

    fn value(&mut self) -> Result<String, String> {
        let rest = self.rest();
        if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let Some(end) = rest[1..].find(q) else {
                return Err(self.err("unterminated quote"));
            };
            let v = rest[1..1 + end].to_string();
            self.pos += end + 2;
            return Ok(v);
        }
        let len = rest
            .find(|c: char| c.is_whitespace() || "&|,#()".contains(c))
            .unwrap_or(rest.len());
        let v = rest[..len].to_string();
        self.pos += len;
        Ok(v)
    }
}

/// A size in a selection: lvm2's size syntax (MiB without a unit), zero allowed.
fn select_size(v: &str) -> Result<u64, String> {
    let zero = v
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse::<f64>()
        .is_ok_and(|n| n == 0.0);
    if zero {
        Ok(0)
    } else {
        parse_size(v, false)
    }
}

impl Select {
    /// Parses a selection for the VG report (`pvs` false) or the PV report.
    pub fn parse(s: &str, pvs: bool) -> Result<Select, String> {
        let mut p = Parser {
            s,
            pos: 0,
            pvs,
            uses_pv: false,
            depth: 0,
        };
        let expr = p.or()?;
        p.skip_ws();
        if !p.rest().is_empty() {
            return Err(p.err("unexpected text"));
        }
        Ok(Select {
            expr,
            pv: p.uses_pv,
        })
    }

    fn matches(&self, vg: &VgReport, pv: Option<&PvReport>) -> bool {
        eval(&self.expr, vg, pv)
    }
}

fn eval(e: &Expr, vg: &VgReport, pv: Option<&PvReport>) -> bool {
    match e {
        Expr::And(a, b) => eval(a, vg, pv) && eval(b, vg, pv),
        Expr::Or(a, b) => eval(a, vg, pv) || eval(b, vg, pv),
        Expr::Not(a) => !eval(a, vg, pv),
        Expr::Cmp(f, op, want) => {
            let ord = match ((f.get)(vg, pv), f.kind) {
                (Val::Str(s), _) => s.as_str().cmp(want.as_str()),
                (Val::Bin(b), Bin(word)) => {
                    let want = matches!(want.as_str(), "1") || want == word;
                    b.cmp(&want)
                }
                (Val::Bin(b), _) => b.cmp(&(want == "1")),
                (Val::Num(n), _) => want
                    .parse::<u64>()
                    .map_or(std::cmp::Ordering::Less, |w| n.cmp(&w)),
                (Val::Size(n), _) => {
                    select_size(want).map_or(std::cmp::Ordering::Less, |w| n.cmp(&w))
                }
            };
            match op {
                Op::Eq => ord.is_eq(),
                Op::Ne => ord.is_ne(),
                Op::Lt => ord.is_lt(),
                Op::Le => ord.is_le(),
                Op::Gt => ord.is_gt(),
                Op::Ge => ord.is_ge(),
            }
        }
    }
}

/// `--reportformat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Basic,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "basic" => Ok(Format::Basic),
            "json" => Ok(Format::Json),
            _ => Err(format!("--reportformat {s:?}: basic or json")),
        }
    }
}

/// A report's settings, checked before anything is read.
pub struct Report {
    cols: Vec<&'static Field>,
    /// Rows are PVs (`--pvs`, a PV column or a PV field in `--select`).
    per_pv: bool,
    /// The JSON key: `pv` for `--pvs` (as `pvs`), else `vg` (as `vgs`, PV rows or not).
    key: &'static str,
    pub units: Units,
    pub headings: bool,
    pub separator: Option<String>,
    pub aligned: bool,
    pub suffix: bool,
    pub format: Format,
    select: Option<Select>,
}

impl Report {
    /// The report of `-o` lists `options` and `select`, as `pvs` when `pvs`, else as
    /// `vgs`; the other settings are lvm2's defaults until set.
    pub fn new(options: &[String], pvs: bool, select: Option<&str>) -> Result<Report, String> {
        let cols = columns(options, pvs)?;
        let select = select.map(|s| Select::parse(s, pvs)).transpose()?;
        let per_pv = pvs || cols.iter().any(|c| c.pv) || select.as_ref().is_some_and(|s| s.pv);
        Ok(Report {
            cols,
            per_pv,
            key: if pvs { "pv" } else { "vg" },
            units: Units::default(),
            headings: true,
            separator: None,
            aligned: false,
            suffix: true,
            format: Format::Basic,
            select,
        })
    }

    fn show(&self, f: &Field, vg: &VgReport, pv: Option<&PvReport>) -> String {
        match (f.get)(vg, pv) {
            Val::Str(s) => s,
            Val::Num(n) => n.to_string(),
            Val::Size(b) => self.units.show(b, self.suffix),
            Val::Bin(set) => match f.kind {
                Bin(word) if set => word.to_string(),
                _ => String::new(),
            },
        }
    }

    /// The rows selected: every cell as shown.
    /// The rows selected, in lvm2's order (`vgs` by VG name, then the VG's PVs in
    /// metadata order; `pvs` by PV name): every cell as shown.
    fn rows(&self, vgs: &[VgReport]) -> Vec<Vec<String>> {
        let mut vgs: Vec<&VgReport> = vgs.iter().collect();
        vgs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut picked: Vec<(&VgReport, Option<&PvReport>)> = Vec::new();
        for vg in vgs {
            if self.per_pv {
                picked.extend(vg.pvs.iter().map(|p| (vg, Some(p))));
            } else {
                picked.push((vg, None));
            }
        }
        picked.retain(|(vg, pv)| self.select.as_ref().is_none_or(|s| s.matches(vg, *pv)));
        if self.key == "pv" {
            picked.sort_by_cached_key(|(_, pv)| pv.map(pv_name));
        }
        picked
            .into_iter()
            .map(|(vg, pv)| self.cols.iter().map(|f| self.show(f, vg, pv)).collect())
            .collect()
    }

    /// The report of `vgs`, as text; nothing when no row is selected (as lvm2).
    pub fn render(&self, vgs: &[VgReport]) -> String {
        let rows = self.rows(vgs);
        match self.format {
            Format::Json => self.json(&rows),
            Format::Basic if rows.is_empty() => String::new(),
            Format::Basic => self.basic(&rows),
        }
    }

    fn basic(&self, rows: &[Vec<String>]) -> String {
        let align = self.separator.is_none() || self.aligned;
        let sep = self.separator.as_deref().unwrap_or(" ");
        let widths: Vec<usize> = self
            .cols
            .iter()
            .enumerate()
            .map(|(i, f)| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([f.width, f.heading.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let mut line = |cells: Vec<(String, bool)>| {
            let cells: Vec<String> = cells
                .into_iter()
                .zip(&widths)
                .map(|((text, right), &w)| match (align, right) {
                    (false, _) => text,
                    (true, true) => format!("{text:>w$}"),
                    (true, false) => format!("{text:<w$}"),
                })
                .collect();
            let _ = writeln!(out, "  {}", cells.join(sep));
        };
        if self.headings {
            line(
                self.cols
                    .iter()
                    .map(|f| (f.heading.to_string(), false))
                    .collect(),
            );
        }
        for r in rows {
            line(
                r.iter()
                    .zip(&self.cols)
                    .map(|(c, f)| (c.clone(), !matches!(f.kind, Str)))
                    .collect(),
            );
        }
        out
    }

    /// lvm2 2.03.16's JSON layout: two spaces before every line, four per level, one
    /// row per line.
    fn json(&self, rows: &[Vec<String>]) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let rows: Vec<String> = rows
            .iter()
            .map(|r| {
                let cells: Vec<String> = self
                    .cols
                    .iter()
                    .zip(r)
                    .map(|(f, v)| format!("{}:{}", q(f.name), q(v)))
                    .collect();
                format!("                  {{{}}}", cells.join(", "))
            })
            .collect();
        let mut out = String::from("  {\n      \"report\": [\n          {\n");
        let _ = writeln!(out, "              {}: [", q(self.key));
        if !rows.is_empty() {
            out.push_str(&rows.join(",\n"));
            out.push('\n');
        }
        out.push_str("              ]\n          }\n      ]\n  }\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(key: &str, dev: Option<&str>, size: u64) -> PvReport {
        PvReport {
            key: key.into(),
            uuid: format!("{key}-uuid"),
            device: dev.map(Into::into),
            file: Some(format!("/var/lib/cinder/{key}").into()),
            file_here: true,
            size,
            recorded_size: size + (1 << 20),
            file_size: Some(size + (1 << 20)),
            pe_start: 1 << 20,
            pe_count: size >> 22,
            pe_alloc: 0,
            free: size,
            attr: if dev.is_some() { "a--" } else { "a-m" }.into(),
            missing: dev.is_none(),
        }
    }

    fn vg(name: &str, pvs: Vec<PvReport>) -> VgReport {
        let size = pvs.iter().map(|p| p.size).sum();
        VgReport {
            name: name.into(),
            uuid: format!("{name}-uuid"),
            seqno: 1,
            extent_size: 4 << 20,
            extent_count: size >> 22,
            free_count: size >> 22,
            size,
            free: size,
            lv_count: 0,
            snap_count: 0,
            max_lv: 0,
            max_pv: 0,
            attr: "wz--n-".into(),
            missing_pv_count: pvs.iter().filter(|p| p.missing).count(),
            active: pvs.iter().all(|p| !p.missing),
            pvs,
        }
    }

    fn vgs() -> Vec<VgReport> {
        vec![
            vg(
                "spexp1",
                vec![
                    pv("pv0", Some("/dev/loop0"), 96 << 20),
                    pv("pv1", None, 56 << 20),
                ],
            ),
            vg("x", vec![pv("pv0", Some("/dev/loop2"), 36 << 20)]),
        ]
    }

    /// The layout lvm2 printed for the same VGs on this machine (`vgs`, `vgs -o
    /// vg_name,pv_name,vg_attr`, `--noheadings`, `--separator`).
    #[test]
    fn basic_reports_are_laid_out_as_lvm2_does() {
        let r = Report::new(&[], false, None).unwrap();
        assert_eq!(
            r.render(&vgs()),
            "  VG     #PV #LV #SN Attr   VSize   VFree  \n  \
             spexp1   2   0   0 wz--n- 152.00m 152.00m\n  \
             x        1   0   0 wz--n-  36.00m  36.00m\n"
        );
        let mut r = Report::new(&["vg_name,pv_name,vg_attr".into()], false, None).unwrap();
        r.headings = false;
        assert_eq!(
            r.render(&vgs()),
            "  spexp1 /dev/loop0 wz--n-\n  spexp1 [unknown]  wz--n-\n  x      /dev/loop2 wz--n-\n"
        );
        let mut r = Report::new(
            &["vg_name,vg_free_count,vg_extent_count".into()],
            false,
            None,
        )
        .unwrap();
        r.separator = Some(",".into());
        assert_eq!(r.render(&vgs()[..1]), "  VG,Free,#Ext\n  spexp1,38,38\n");
        let mut r = Report::new(&[], false, None).unwrap();
        r.separator = Some(" | ".into());
        r.units = "b".parse().unwrap();
        r.suffix = false;
        assert_eq!(
            r.render(&vgs()[..1]),
            "  VG | #PV | #LV | #SN | Attr | VSize | VFree\n  spexp1 | 2 | 0 | 0 | wz--n- | 159383552 | 159383552\n"
        );
    }

    #[test]
    fn columns_are_replaced_appended_and_removed() {
        let names = |o: &[&str], pvs: bool| -> Vec<&str> {
            let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
            columns(&o, pvs).unwrap().iter().map(|f| f.name).collect()
        };
        assert_eq!(
            names(&["+vg_extent_size"], false).last(),
            Some(&"vg_extent_size")
        );
        assert_eq!(
            names(&["name,size", "+free"], false),
            ["vg_name", "vg_size", "vg_free"]
        );
        assert_eq!(names(&["name,size"], true), ["pv_name", "pv_size"]);
        assert_eq!(names(&["-snap_count,lv_count"], false).len(), 5);
        assert!(columns(&["nope".into()], false)
            .err()
            .unwrap()
            .contains("unrecognised field"));
        assert!(columns(&["-vg_all".into()], false).is_err());
    }

    #[test]
    fn json_is_shaped_like_lvm2s() {
        let mut r = Report::new(&["vg_name,pv_name,pv_missing".into()], false, None).unwrap();
        r.format = Format::Json;
        let text = r.render(&vgs()[..1]);
        assert_eq!(
            text,
            "  {\n      \"report\": [\n          {\n              \"vg\": [\n                  \
             {\"vg_name\":\"spexp1\", \"pv_name\":\"/dev/loop0\", \"pv_missing\":\"\"},\n                  \
             {\"vg_name\":\"spexp1\", \"pv_name\":\"[unknown]\", \"pv_missing\":\"missing\"}\n              \
             ]\n          }\n      ]\n  }\n"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["report"][0]["vg"][1]["pv_name"], "[unknown]");
        let mut r = Report::new(&[], true, Some("vg_name=nope")).unwrap();
        r.format = Format::Json;
        let v: serde_json::Value = serde_json::from_str(&r.render(&vgs())).unwrap();
        assert_eq!(v["report"][0]["pv"], serde_json::json!([]));
    }

    #[test]
    fn selections_pick_rows() {
        let picked = |sel: &str, pvs: bool| -> Vec<String> {
            let r = Report::new(&["name".into()], pvs, Some(sel)).unwrap();
            r.rows(&vgs()).into_iter().map(|r| r.join(" ")).collect()
        };
        assert_eq!(picked("vg_name=x", false), ["x"]);
        assert_eq!(picked("vg_name!=x", false), ["spexp1"]);
        assert_eq!(picked("pv_count=2 && vg_name!=x", false), ["spexp1"]);
        assert_eq!(picked("name='x' || pv_count>1", false), ["spexp1", "x"]);
        assert_eq!(picked("vg_size=152m", false), ["spexp1"]);
        assert_eq!(picked("vg_size=152", false), ["spexp1"]);
        assert_eq!(picked("vg_free<100m", false), ["x"]);
        assert_eq!(picked("!(vg_name=x)", false), ["spexp1"]);
        assert_eq!(picked("pv_missing=1", false).len(), 1);
        assert_eq!(picked("pv_missing=missing", true), ["[unknown]"]);
        assert_eq!(picked("vg_name=spexp1, pv_size>=90m", true), ["/dev/loop0"]);
        assert_eq!(picked("vg_free=0", false), Vec::<String>::new());
        for (bad, why) in [
            ("vg_name", "expected ="),
            ("vg_name=~x", "regular expressions"),
            ("nope=1", "unrecognised field"),
            ("pv_count=two", "not a number"),
            ("vg_size=5X", "unknown unit"),
            ("vg_name<x", "only = and !="),
            ("(vg_name=x", "expected )"),
            ("vg_name='x", "unterminated"),
            ("vg_name=x y", "unexpected text"),
            ("\u{3000}vg_name=x\u{3000}\u{3000}é", "unexpected text"),
            ("\u{3000}", "expected a field name"),
            (&"(".repeat(100_000), "nested deeper than 32"),
            (&"!".repeat(100_000), "nested deeper than 32"),
        ] {
            let e = Report::new(&[], false, Some(bad)).err().unwrap();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
