//! The NETLINK_NETFILTER socket: atomic batches written, dumps read.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::objects::*;
use crate::sys::*;
use crate::wire::Writer;
use crate::{Error, Result, Ruleset};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
/// In an error message: extended-ack attributes follow the header.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;
const NETLINK_GET_STRICT_CHK: i32 = 12;
/// The kernel fills a dump's reads up to 32 KiB; one message cannot pass 64 KiB.
const RX_BYTES: usize = 64 * 1024;
/// How long a dump may keep us waiting for its next part.
const DUMP_TIMEOUT_S: libc::time_t = 5;
/// The socket buffer an acknowledgement takes (its `skb`'s true size, with room).
const ACK_BYTES: usize = 2048;
/// The most messages one batch may carry: far more than a router or a security
/// group needs, and a bound on the buffers asked for.
pub const MAX_BATCH_MESSAGES: usize = 32 * 1024;
/// Set elements per message: 1024 IPv6 keys nest in some 40 KiB.
pub const ELEMENTS_PER_MESSAGE: usize = 1024;

/// A sequence number no other request of this process uses: answers left over from a
/// read that ended early are told apart and skipped.
fn next_sequence(n: u32) -> u32 {
    static SEQUENCE: AtomicU32 = AtomicU32::new(1);
    SEQUENCE.fetch_add(n, Ordering::Relaxed)
}

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    buf.extend_from_slice(&[family, 0]); // nfgenmsg: family, NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
}

fn finish(buf: &mut [u8], start: usize) {
    let len = u32::try_from(buf.len() - start).expect("a message under 4 GiB");
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// One message of a batch: its type, flags, family, attributes, and what it does in
/// words (for the error that names it).
struct Message {
    /// An attribute did not fit netlink's 16-bit lengths: refused before sending.
    too_large: bool,
    kind: u16,
    flags: u16,
    family: Family,
    body: Vec<u8>,
    what: String,
}

/// Changes to one namespace's nf_tables, applied all or nothing by
/// [`Socket::apply`]: the messages between `NFNL_MSG_BATCH_BEGIN` and `…_END`, each
/// acknowledged.
#[derive(Default)]
pub struct Batch {
    messages: Vec<Message>,
    set_ids: u32,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn push(
        &mut self,
        kind: u16,
        flags: u16,
        family: Family,
        what: String,
        f: impl FnOnce(&mut Writer),
    ) {
        let mut w = Writer::default();
        f(&mut w);
        self.messages.push(Message {
            too_large: w.overflowed,
            kind,
            flags,
            family,
            body: w.buf,
            what,
        });
    }

    /// Adds the table (no error when it exists: like `nft add table`).
    pub fn add_table(&mut self, t: &Table) {
        let what = format!("add table {} {}", t.family, t.name);
        self.push(NFT_MSG_NEWTABLE, NLM_F_CREATE, t.family, what, |w| {
            encode_table(w, t)
        });
    }

    /// Creates the table; an error (EEXIST) when it exists: like `nft create table`.
    pub fn create_table(&mut self, t: &Table) {
        let what = format!("create table {} {}", t.family, t.name);
        self.push(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE | NLM_F_EXCL,
            t.family,
            what,
            |w| encode_table(w, t),
        );
    }

    /// Deletes the table and everything in it (an error when there is none; add it
    /// first in the same batch to delete it whether or not it was there).
    pub fn delete_table(&mut self, family: Family, name: &str) {
        let what = format!("delete table {family} {name}");
        self.push(NFT_MSG_DELTABLE, 0, family, what, |w| {
            w.str(NFTA_TABLE_NAME, name)
        });
    }

    pub fn add_chain(&mut self, c: &Chain) {
        let what = format!("add chain {} {} {}", c.family, c.table, c.name);
        self.push(NFT_MSG_NEWCHAIN, NLM_F_CREATE, c.family, what, |w| {
            encode_chain(w, c)
        });
    }

    /// Appends the rule to its chain.
    pub fn add_rule(&mut self, r: &Rule) {
        let what = format!("add rule {} {} {}", r.family, r.table, r.chain);
        self.push(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            r.family,
            what,
            |w| encode_rule(w, r, false),
        );
    }

    /// Adds the set, then its elements.
    pub fn add_set(&mut self, s: &Set) {
        self.set_ids += 1;
        let id = self.set_ids;
        let what = format!("add set {} {} {}", s.family, s.table, s.name);
        self.push(NFT_MSG_NEWSET, NLM_F_CREATE, s.family, what, |w| {
            encode_set(w, s, id)
        });
        if !s.elements.is_empty() {
            self.add_elements(s.family, &s.table, &s.name, &s.elements);
        }
    }

    /// Adds elements (keys) to a set, in messages of at most [`ELEMENTS_PER_MESSAGE`]
    /// (an attribute's length has 16 bits).
    pub fn add_elements(&mut self, family: Family, table: &str, set: &str, keys: &[Vec<u8>]) {
        for part in keys.chunks(ELEMENTS_PER_MESSAGE) {
            let what = format!(
                "add {} element(s) to set {family} {table} {set}",
                part.len()
            );
            self.push(NFT_MSG_NEWSETELEM, NLM_F_CREATE, family, what, |w| {
                encode_elements(w, table, set, part)
            });
        }
    }

    /// The bytes sent, and the sequence number of the first message (the begin's is
    /// one less).
    fn encode(&self) -> (Vec<u8>, u32) {
        let n = u32::try_from(self.messages.len()).expect("bounded");
        let begin = next_sequence(n + 2);
        let mut buf = Vec::with_capacity(
            40 + self
                .messages
                .iter()
                .map(|m| 20 + m.body.len())
                .sum::<usize>(),
        );
        header(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        finish(&mut buf, 0);
        for (i, m) in self.messages.iter().enumerate() {
            let start = buf.len();
            header(
                &mut buf,
                NFNL_SUBSYS_NFTABLES << 8 | m.kind,
                NLM_F_REQUEST | NLM_F_ACK | m.flags,
                begin + 1 + i as u32,
                m.family.number(),
                0,
            );
            buf.extend_from_slice(&m.body);
            finish(&mut buf, start);
        }
        let start = buf.len();
        header(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            begin + 1 + n,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        finish(&mut buf, start);
        (buf, begin + 1)
    }
}

/// A NETLINK_NETFILTER socket, in the network namespace of the thread that opened it
/// (it stays there: open it on a thread that has entered the namespace to act in).
pub struct Socket {
    fd: OwnedFd,
}

fn set_int(fd: &OwnedFd, level: i32, opt: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: a valid descriptor and a pointer to an int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Asks for a socket buffer of `bytes` (beyond `rmem_max`/`wmem_max` as root).
fn set_buffer(fd: &OwnedFd, force: i32, plain: i32, bytes: usize) -> std::io::Result<()> {
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    set_int(fd, libc::SOL_SOCKET, force, bytes)
        .or_else(|_| set_int(fd, libc::SOL_SOCKET, plain, bytes))
}

impl Socket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Socket> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(Error::io(
                "open NETLINK_NETFILTER socket",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl zeroed is the "let the kernel pick the port" address.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: a valid descriptor and address of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(Error::io(
                "bind NETLINK_NETFILTER socket",
                std::io::Error::last_os_error(),
            ));
        }
        let opt = |opt, what: &str| {
            set_int(&fd, libc::SOL_NETLINK, opt, 1).map_err(|e| Error::io(what.to_owned(), e))
        };
        // Acks carry only the header of what they answer; errors say why in words.
        opt(NETLINK_CAP_ACK, "set NETLINK_CAP_ACK")?;
        opt(NETLINK_EXT_ACK, "set NETLINK_EXT_ACK")?;
        opt(NETLINK_GET_STRICT_CHK, "set NETLINK_GET_STRICT_CHK")?;
        let tv = libc::timeval {
            tv_sec: DUMP_TIMEOUT_S,
            tv_usec: 0,
        };
        // SAFETY: a valid descriptor and a timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(Error::io(
                "set SO_RCVTIMEO",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Socket { fd })
    }

    fn send(&self, buf: &[u8], context: &str) -> Result<()> {
        loop {
            // SAFETY: a valid descriptor and buffer.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io(context.to_owned(), e));
            }
        }
    }

    /// One datagram into `rx`: its length, or `None` when nothing is waiting
    /// (`dontwait`). A datagram larger than `rx` is an error (MSG_TRUNC).
    fn recv(&self, rx: &mut [u8], dontwait: bool, context: &str) -> Result<Option<usize>> {
        let flags = libc::MSG_TRUNC | if dontwait { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // SAFETY: a valid descriptor and buffer of the length given.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), rx.as_mut_ptr().cast(), rx.len(), flags) };
            if n >= 0 {
                let n = n as usize;
                if n > rx.len() {
                    return Err(Error::malformed(format!(
                        "{context}: an answer of {n} bytes, more than the {} read",
                        rx.len()
                    )));
                }
                return Ok(Some(n));
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock if dontwait => return Ok(None),
                std::io::ErrorKind::WouldBlock => {
                    return Err(Error::io(
                        format!("{context}: no answer in {DUMP_TIMEOUT_S} s"),
                        e,
                    ))
                }
                _ => return Err(Error::io(context.to_owned(), e)),
            }
        }
    }

    /// Applies `batch` atomically: every message is acknowledged, or the kernel
    /// applied none of them and the first refusal is returned, naming its message.
    pub fn apply(&self, batch: &Batch) -> Result<()> {
        let n = batch.messages.len();
        if n == 0 {
            return Ok(());
        }
        if n > MAX_BATCH_MESSAGES {
            return Err(Error::malformed(format!(
                "a batch of {n} messages (at most {MAX_BATCH_MESSAGES})"
            )));
        }
        if let Some((index, m)) = batch.messages.iter().enumerate().find(|(_, m)| m.too_large) {
            return Err(Error::Refused {
                what: m.what.clone(),
                index,
                errno: libc::EMSGSIZE,
                message: Some("an attribute over 64 KiB, not sent".into()),
            });
        }
        let (buf, first) = batch.encode();
        // The kernel handles the whole batch inside send() and queues every answer
        // then: the buffers must hold the batch and all its acks.
        let io = |what: &str, e| Error::io(what.to_owned(), e);
        set_buffer(
            &self.fd,
            libc::SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
            buf.len() + 4096,
        )
        .map_err(|e| io("set the send buffer", e))?;
        set_buffer(
            &self.fd,
            libc::SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            (n + 2) * ACK_BYTES + 65536,
        )
        .map_err(|e| io("set the receive buffer", e))?;
        self.send(&buf, "send nf_tables batch")?;
        let mut acked = vec![false; n];
        let mut left = n;
        let mut refused: Option<(usize, i32, Option<String>)> = None;
        let mut batch_error: Option<(i32, Option<String>)> = None;
        let mut rx = vec![0u8; RX_BYTES];
        // Every answer is queued already: read without waiting until all came.
        while left > 0 {
            let Some(len) = self.recv(&mut rx, true, "read nf_tables acks")? else {
                break;
            };
            for m in messages(&rx[..len]) {
                let m = m?;
                if m.kind != NLMSG_ERROR {
                    continue;
                }
                let (code, text) = parse_error(&m)?;
                if m.seq == first.wrapping_sub(1) || m.seq == first.wrapping_add(n as u32) {
                    // about the batch's begin or end
                    if code != 0 {
                        batch_error.get_or_insert((-code, text));
                    }
                    continue;
                }
                let Some(i) = m
                    .seq
                    .checked_sub(first)
                    .map(|i| i as usize)
                    .filter(|i| *i < n)
                else {
                    continue; // left over from an earlier request
                };
                if !acked[i] {
                    acked[i] = true;
                    left -= 1;
                }
                if code != 0 && refused.as_ref().is_none_or(|(j, _, _)| i < *j) {
                    refused = Some((i, -code, text));
                }
            }
        }
        if let Some((index, errno, message)) = refused {
            return Err(Error::Refused {
                what: batch.messages[index].what.clone(),
                index,
                errno,
                message,
            });
        }
        if let Some((errno, message)) = batch_error {
            return Err(Error::Refused {
                what: "the batch".into(),
                index: n,
                errno,
                message,
            });
        }
        if left > 0 {
            return Err(Error::malformed(format!(
                "{left} of {n} batch messages unanswered (applied or not: read again)"
            )));
        }
        Ok(())
    }

    /// Sends a request (`body` after the nfgenmsg) and collects what it answers: a
    /// dump's messages to its `NLMSG_DONE`, or the one answer of a get.
    fn request(
        &self,
        kind: u16,
        family: Family,
        dump: bool,
        body: &[u8],
        context: &str,
    ) -> Result<Vec<Object>> {
        let seq = next_sequence(1);
        let mut buf = Vec::with_capacity(20 + body.len());
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        header(
            &mut buf,
            NFNL_SUBSYS_NFTABLES << 8 | kind,
            flags,
            seq,
            family.number(),
            0,
        );
        buf.extend_from_slice(body);
        finish(&mut buf, 0);
        self.send(&buf, context)?;
        thread_local! {
            // One buffer per thread: zeroing a new one per read costs more than a read.
            static RX: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; RX_BYTES]);
        }
        RX.with_borrow_mut(|rx| {
            let mut out = Vec::new();
            // A dump is read to its end even when an answer cannot be parsed: the
            // socket could not start another dump before that.
            let mut failed = None;
            loop {
                let len = self.recv(rx, false, context)?.expect("blocking");
                for m in messages(&rx[..len]) {
                    let m = m?;
                    if m.seq != seq {
                        continue;
                    }
                    match m.kind {
                        NLMSG_DONE => {
                            let code = m
                                .payload
                                .get(..4)
                                .map_or(0, |c| i32::from_ne_bytes(c.try_into().expect("4 bytes")));
                            if code < 0 {
                                let e = std::io::Error::from_raw_os_error(-code);
                                failed.get_or_insert(Error::io(context.to_owned(), e));
                            }
                            return failed.map_or(Ok(out), Err);
                        }
                        NLMSG_ERROR => {
                            let (code, message) = parse_error(&m)?;
                            if code != 0 {
                                failed.get_or_insert(Error::Refused {
                                    what: context.to_owned(),
                                    index: 0,
                                    errno: -code,
                                    message,
                                });
                            }
                            return failed.map_or(Ok(out), Err);
                        }
                        _ => match decode_message(m.kind, m.payload) {
                            Ok(o) => out.extend(o),
                            Err(e) => {
                                failed.get_or_insert(e);
                            }
                        },
                    }
                }
            }
        })
    }

    /// The table, if there is one of that name and family.
    pub fn table(&self, family: Family, name: &str) -> Result<Option<Table>> {
        let mut w = Writer::default();
        w.str(NFTA_TABLE_NAME, name);
        match self.request(
            NFT_MSG_GETTABLE,
            family,
            false,
            &w.buf,
            &format!("get table {family} {name}"),
        ) {
            Err(Error::Refused {
                errno: libc::ENOENT,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
            Ok(found) => Ok(found.into_iter().find_map(|o| match o {
                Object::Table(t, _) => Some(t),
                _ => None,
            })),
        }
    }

    /// Every object of `family` (all families: [`Family::Other`]`(0)`), or of one
    /// table of it: tables, chains, rules (one dump each), sets with their elements
    /// (a dump per set). The sets are not dumped when the tables' use counts (chains,
    /// sets, stateful objects, flowtables) are all chains: there are none.
    pub fn ruleset(&self, family: Family, table: Option<&str>) -> Result<Ruleset> {
        let filter = |kind: u16| {
            let mut w = Writer::default();
            if let Some(t) = table {
                w.str(kind, t);
            }
            w.buf
        };
        let mut r = Ruleset::default();
        let ours = |name: &str| table.is_none_or(|t| name == t);
        let mut uses = 0u64;
        for o in self.request(NFT_MSG_GETTABLE, family, true, &[], "dump tables")? {
            if let Object::Table(t, n) = &o {
                if ours(&t.name) {
                    uses += u64::from(*n);
                }
            }
            r.add(o);
        }
        if let Some(t) = table {
            r.tables.retain(|x| x.name == t);
        }
        // No table, nothing else: a namespace without rules costs one dump.
        if r.tables.is_empty() {
            return Ok(r);
        }
        let objects = [
            (NFT_MSG_GETCHAIN, Vec::new(), "dump chains"),
            (NFT_MSG_GETSET, filter(NFTA_SET_TABLE), "dump sets"),
            (NFT_MSG_GETRULE, filter(NFTA_RULE_TABLE), "dump rules"),
        ];
        for (kind, body, context) in objects {
            if kind == NFT_MSG_GETSET
                && uses == r.chains.iter().filter(|c| ours(&c.table)).count() as u64
            {
                continue;
            }
            match self.request(kind, family, true, &body, context) {
                Ok(found) => found.into_iter().for_each(|o| r.add(o)),
                // The table went away between the dumps: there is none.
                Err(Error::Refused {
                    errno: libc::ENOENT,
                    ..
                }) if table.is_some() => return Ok(Ruleset::default()),
                Err(e) => return Err(e),
            }
        }
        if let Some(t) = table {
            r.chains.retain(|x| x.table == t);
        }
        for s in &mut r.sets {
            let mut w = Writer::default();
            w.str(NFTA_SET_ELEM_LIST_TABLE, &s.table);
            w.str(NFTA_SET_ELEM_LIST_SET, &s.name);
            let context = format!("dump elements of set {} {} {}", s.family, s.table, s.name);
            for o in self.request(NFT_MSG_GETSETELEM, s.family, true, &w.buf, &context)? {
                if let Object::Elements { keys, .. } = o {
                    *s = std::mem::replace(s, Set::ipv4(s.family, "", "", &[])).with_elements(keys);
                }
            }
        }
        Ok(r)
    }
}

/// One netlink message of a datagram.
pub(crate) struct Msg<'a> {
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    pub(crate) payload: &'a [u8],
}

/// The messages of a datagram, in order; a malformed header ends the walk with an error.
pub(crate) fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Msg<'_>>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let h = match rest.get(..16) {
            Some(h) => h,
            None => {
                rest = &[];
                return Some(Err(Error::malformed("netlink header cut short")));
            }
        };
        let len = u32::from_ne_bytes(h[0..4].try_into().expect("4")) as usize;
        if len < 16 || len > rest.len() {
            rest = &[];
            return Some(Err(Error::malformed(format!(
                "netlink message of length {len}"
            ))));
        }
        let m = Msg {
            kind: u16::from_ne_bytes(h[4..6].try_into().expect("2")),
            flags: u16::from_ne_bytes(h[6..8].try_into().expect("2")),
            seq: u32::from_ne_bytes(h[8..12].try_into().expect("4")),
            payload: &rest[16..len],
        };
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
        Some(Ok(m))
    })
}

/// An `NLMSG_ERROR`'s code (0 for an ack) and its extended-ack text.
fn parse_error(m: &Msg<'_>) -> Result<(i32, Option<String>)> {
    let code = m
        .payload
        .get(..4)
        .map(|c| i32::from_ne_bytes(c.try_into().expect("4")))
        .ok_or_else(|| Error::malformed("error message cut short"))?;
    let mut text = None;
    if m.flags & NLM_F_ACK_TLVS != 0 {
        // With NETLINK_CAP_ACK only the header of the request follows the code.
        for a in crate::wire::attrs(m.payload.get(20..).unwrap_or(&[])) {
            let Ok(a) = a else { break };
            if a.kind == NLMSGERR_ATTR_MSG {
                text = a.str().ok();
            }
        }
    }
    Ok((code, text))
}

/// An nf_tables message (type and payload, the nfgenmsg first) as an object; `None`
/// for a message of another kind.
pub(crate) fn decode_message(kind: u16, payload: &[u8]) -> Result<Option<Object>> {
    if kind >> 8 != NFNL_SUBSYS_NFTABLES {
        return Ok(None);
    }
    let family = Family::from_number(
        *payload
            .first()
            .ok_or_else(|| Error::malformed("nf_tables message without its nfgenmsg"))?,
    );
    let body = payload
        .get(4..)
        .ok_or_else(|| Error::malformed("nf_tables message without its nfgenmsg"))?;
    Ok(Some(match kind & 0xff {
        NFT_MSG_NEWTABLE => {
            let (table, uses) = decode_table(family, body)?;
            Object::Table(table, uses)
        }
        NFT_MSG_NEWCHAIN => Object::Chain(decode_chain(family, body)?),
        NFT_MSG_NEWRULE => Object::Rule(decode_rule(family, body)?),
        NFT_MSG_NEWSET => Object::Set(decode_set(family, body)?),
        NFT_MSG_NEWSETELEM => decode_elements(family, body)?,
        _ => return Ok(None),
    }))
}

/// `ruleset` framed as dump answers (`NFT_MSG_NEW*` messages), for [`crate::encode_as_dump`].
pub(crate) fn encode_as_dump(r: &Ruleset) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut msg = |kind: u16, family: Family, f: &dyn Fn(&mut Writer)| {
        let start = buf.len();
        header(
            &mut buf,
            NFNL_SUBSYS_NFTABLES << 8 | kind,
            NLM_F_DUMP,
            1,
            family.number(),
            0,
        );
        let mut w = Writer::default();
        f(&mut w);
        buf.extend_from_slice(&w.buf);
        finish(&mut buf, start);
    };
    for t in &r.tables {
        msg(NFT_MSG_NEWTABLE, t.family, &|w| encode_table(w, t));
    }
    for c in &r.chains {
        msg(NFT_MSG_NEWCHAIN, c.family, &|w| encode_chain(w, c));
    }
    for s in &r.sets {
        msg(NFT_MSG_NEWSET, s.family, &|w| encode_set(w, s, 1));
        msg(NFT_MSG_NEWSETELEM, s.family, &|w| {
            encode_elements(w, &s.table, &s.name, &s.elements)
        });
    }
    for rule in &r.rules {
        msg(NFT_MSG_NEWRULE, rule.family, &|w| {
            encode_rule(w, rule, true)
        });
    }
    buf
}
