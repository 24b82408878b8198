//! The namespace metadata proxy's side of Neutron (Liberty's `neutron-ns-metadata-proxy`,
//! later an haproxy per router): which namespaces serve metadata, on which address, to
//! which unix socket of the metadata agent; and the HTTP/1.1 of one request — parsed
//! bounded and total (any bytes: a request, "not yet complete", or a refusal with its
//! status code, never a panic), and rewritten with the headers the metadata agent reads
//! (`X-Forwarded-For`, `X-Neutron-Router-ID` / `X-Neutron-Network-ID`). Pure: the
//! sockets are `sp-metadata`'s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::l3::METADATA_PORT;
use crate::{qdhcp_namespace, qrouter_namespace};

/// `metadata_proxy_socket`'s default below `state_path` (Neutron's
/// `$state_path/metadata_proxy`).
pub const DEFAULT_SOCKET: &str = "metadata_proxy";

/// The longest path a unix socket address holds (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Who a namespace serves metadata for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `qrouter-<id>`: the REDIRECT of 169.254.169.254:80 from `qr-+` lands on 9697.
    Router,
    /// `qdhcp-<id>` of an isolated network: the DHCP port holds 169.254.169.254/16.
    Network,
}

/// One namespace the proxy listens in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Served {
    pub kind: Kind,
    /// The router's or network's id (a Neutron UUID, checked where it was read).
    pub id: String,
    /// The metadata agent's unix socket (`metadata_proxy_socket` of the agent that
    /// would have started the proxy: the L3 agent's or the DHCP agent's).
    pub socket: PathBuf,
}

impl Served {
    /// The namespace: `qrouter-<id>` or `qdhcp-<id>`.
    pub fn namespace(&self) -> String {
        match self.kind {
            Kind::Router => qrouter_namespace(&self.id),
            Kind::Network => qdhcp_namespace(&self.id),
        }
    }

    /// Where it listens inside the namespace: any address, 9697 in a router (what the
    /// REDIRECT sends to); 169.254.169.254:80 in a DHCP namespace.
    pub fn listen(&self) -> SocketAddr {
        match self.kind {
            Kind::Router => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), METADATA_PORT),
            Kind::Network => SocketAddr::new(Ipv4Addr::new(169, 254, 169, 254).into(), 80),
        }
    }

    /// The header naming whom the request came through.
    pub fn id_header(&self) -> &'static str {
        match self.kind {
            Kind::Router => "X-Neutron-Router-ID",
            Kind::Network => "X-Neutron-Network-ID",
        }
    }

    /// Its command-line flag and value: `--router ID=SOCKET` / `--network ID=SOCKET`.
    pub fn args(&self) -> [String; 2] {
        let flag = match self.kind {
            Kind::Router => "--router",
            Kind::Network => "--network",
        };
        [
            flag.to_owned(),
            format!("{}={}", self.id, self.socket.display()),
        ]
    }

    /// The value of `--router` / `--network` read back: `ID=SOCKET`, the id a
    /// lower-case UUID, the socket an absolute path a unix socket address can hold.
    pub fn parse(kind: Kind, value: &str) -> Result<Served, String> {
        let (id, socket) = value
            .split_once('=')
            .ok_or_else(|| format!("{value:?}: ID=SOCKET expected"))?;
        sp_names::NeutronId::check(id).map_err(|e| format!("{value:?}: {e}"))?;
        let socket = PathBuf::from(socket);
        check_socket(&socket).map_err(|e| format!("{value:?}: {e}"))?;
        Ok(Served {
            kind,
            id: id.to_owned(),
            socket,
        })
    }
}

/// A unix socket path we can connect to: absolute, no NUL, at most
/// [`MAX_SOCKET_PATH`] bytes.
pub fn check_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if !path.is_absolute() {
        return Err(format!("{}: not an absolute path", path.display()));
    }
    if bytes.contains(&0) {
        return Err("a socket path with a NUL byte".into());
    }
    if bytes.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "{}: {} bytes, more than a unix socket address holds ({MAX_SOCKET_PATH})",
            path.display(),
            bytes.len()
        ));
    }
    Ok(())
}

/// `metadata_proxy_socket` as oslo.config reads it: `$state_path` (or `${state_path}`)
/// replaced by the state path; unset → `$state_path/metadata_proxy`.
pub fn socket_path(value: Option<&str>, state_path: &Path) -> Result<PathBuf, String> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(state_path.join(DEFAULT_SOCKET));
    };
    let state = state_path.display().to_string();
    let p = PathBuf::from(
        v.replace("${state_path}", &state)
            .replace("$state_path", &state),
    );
    check_socket(&p)?;
    Ok(p)
}

/// Bounds of one request's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line and headers with their line ends.
    pub head: usize,
    /// The request line alone.
    pub request_line: usize,
    pub headers: usize,
    /// A body (`Content-Length`).
    pub body: u64,
}

impl Limits {
    /// haproxy's `tune.bufsize` is 16 KiB; 100 headers is its `tune.http.maxhdr`.
    pub const DEFAULT: Limits = Limits {
        head: 16 * 1024,
        request_line: 8 * 1024,
        headers: 100,
        body: 1 << 20,
    };
}

/// A request refused, with the status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 400: not HTTP/1.x as RFC 9112 writes it (the reason says where).
    BadRequest(&'static str),
    /// 413: a body over the limit.
    BodyTooLarge,
    /// 414: the request line over the limit.
    UriTooLong,
    /// 431: the head over the limit, or too many headers.
    HeadTooLarge,
    /// 501: a request body in `Transfer-Encoding` (metadata requests carry none).
    NotImplemented,
    /// 505: not HTTP/1.0 or 1.1.
    Version,
}

impl Refused {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Refused::BadRequest(_) => (400, "Bad Request"),
            Refused::BodyTooLarge => (413, "Content Too Large"),
            Refused::UriTooLong => (414, "URI Too Long"),
            Refused::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Refused::NotImplemented => (501, "Not Implemented"),
            Refused::Version => (505, "HTTP Version Not Supported"),
        }
    }
}

/// A complete response of ours (an error the proxy answers itself).
pub fn response(status: u16, reason: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    )
    .into_bytes()
}

/// One request's head, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// origin-form: `/latest/meta-data/`.
    pub target: String,
    /// 0 or 1 (HTTP/1.0, HTTP/1.1).
    pub minor: u8,
    /// In order, names as sent; values without surrounding whitespace.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The head's length in bytes, blank line included: the body starts there.
    pub head_len: usize,
    /// `Content-Length` (0 without).
    pub body_len: u64,
}

impl Request {
    /// The values of header `name` (any case).
    pub fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// RFC 9110 `tchar`.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses the head at the start of `buf` with [`Limits::DEFAULT`]: `Ok(None)` while
/// it is incomplete (read more), the request once the blank line is there, or why it is
/// refused — also before it is complete, as soon as a limit is passed.
pub fn parse(buf: &[u8]) -> Result<Option<Request>, Refused> {
    parse_with(buf, &Limits::DEFAULT)
}

/// [`parse`] with other limits.
pub fn parse_with(buf: &[u8], limits: &Limits) -> Result<Option<Request>, Refused> {
    let window = &buf[..buf.len().min(limits.head)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        // Incomplete: refused early when what is there already breaks a limit.
        let line_end = window.windows(2).position(|w| w == b"\r\n");
        if line_end.unwrap_or(window.len()) > limits.request_line {
            return Err(Refused::UriTooLong);
        }
        if buf.len() >= limits.head {
            return Err(Refused::HeadTooLarge);
        }
        return Ok(None);
    };
    let head = &buf[..end + 2];
    let mut lines = head
        .split(|b| *b == b'\n')
        .take_while(|l| !l.is_empty())
        .map(|l| {
            l.strip_suffix(b"\r")
                .ok_or(Refused::BadRequest("a bare LF ends a line"))
        });
    let line = lines
        .next()
        .ok_or(Refused::BadRequest("no request line"))??;
    if line.len() > limits.request_line {
        return Err(Refused::UriTooLong);
    }
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::BadRequest(
            "the request line is not METHOD SP TARGET SP VERSION",
        ));
    };
    if method.is_empty() || !method.iter().all(|b| tchar(*b)) {
        return Err(Refused::BadRequest("the method is not a token"));
    }
    if target.first() != Some(&b'/') || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Refused::BadRequest("the target is not an absolute path"));
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        v if v.starts_with(b"HTTP/") => return Err(Refused::Version),
        _ => return Err(Refused::BadRequest("no HTTP version")),
    };
    let mut headers = Vec::new();
    for l in lines {
        let l = l?;
        if headers.len() == limits.headers {
            return Err(Refused::HeadTooLarge);
        }
        if l.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(Refused::BadRequest("a folded header line (obs-fold)"));
        }
        let colon = l
            .iter()
            .position(|b| *b == b':')
            .ok_or(Refused::BadRequest("a header line without a colon"))?;
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        if name.is_empty() || !name.iter().all(|b| tchar(*b)) {
            return Err(Refused::BadRequest("a header name is not a token"));
        }
        let value = value.trim_ascii();
        if value
            .iter()
            .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err(Refused::BadRequest("a control character in a header value"));
        }
        let name = String::from_utf8(name.to_vec()).expect("tchar is ASCII");
        headers.push((name, value.to_vec()));
    }
    let mut req = Request {
        method: String::from_utf8(method.to_vec()).expect("tchar is ASCII"),
        target: String::from_utf8(target.to_vec()).expect("checked ASCII"),
        minor,
        headers,
        head_len: end + 4,
        body_len: 0,
    };
    if req.header("transfer-encoding").next().is_some() {
        return Err(Refused::NotImplemented);
    }
    let mut length: Option<u64> = None;
    for v in req.header("content-length") {
        // A list (`5, 5`) is one value repeated; anything else is refused.
        for item in v.split(|b| *b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                return Err(Refused::BadRequest("Content-Length is not a number"));
            }
            let n: u64 = std::str::from_utf8(item)
                .expect("digits")
                .parse()
                .map_err(|_| Refused::BadRequest("Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Refused::BadRequest("two Content-Lengths differ"));
            }
            length = Some(n);
        }
    }
    req.body_len = length.unwrap_or(0);
    if req.body_len > limits.body {
        return Err(Refused::BodyTooLarge);
    }
    // RFC 9112 §3.2: one Host in an HTTP/1.1 request; never two (the request goes on
    // as HTTP/1.1).
    match (minor, req.header("host").count()) {
        (_, 2..) => return Err(Refused::BadRequest("two Host headers")),
        (1, 0) => return Err(Refused::BadRequest("an HTTP/1.1 request without Host")),
        _ => {}
    }
    Ok(Some(req))
}

/// Headers that end at the proxy (RFC 9110 §7.6.1), and those only the proxy and the
/// metadata agent may set: a client's own `X-Forwarded-For` or `X-Neutron-*` would name
/// another instance.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-forwarded-for",
    "x-neutron-router-id",
    "x-neutron-network-id",
    "x-instance-id",
    "x-instance-id-signature",
    "x-tenant-id",
];

/// The head sent to the metadata agent for `req` from `client` through `served`:
/// HTTP/1.1, the client's headers but the dropped ones (and those its `Connection`
/// names), then `X-Forwarded-For`, the router's or network's id, `Connection: close`
/// (one request per connection: the agent's answer is relayed as it comes, to its end).
pub fn forward_head(req: &Request, client: IpAddr, served: &Served) -> Vec<u8> {
    let named: Vec<String> = req
        .header("connection")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .collect();
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method, req.target).into_bytes();
    if req.header("host").next().is_none() {
        out.extend_from_slice(b"Host: 169.254.169.254\r\n");
    }
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        // `Connection` names hop-by-hop headers; never the request's framing or Host.
        let hop = named.contains(&lower) && lower != "host" && lower != "content-length";
        if DROPPED.contains(&lower.as_str()) || hop {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "X-Forwarded-For: {client}\r\n{}: {}\r\nConnection: close\r\n\r\n",
            served.id_header(),
            served.id
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Served {
        Served {
            kind: Kind::Router,
            id: "006df4cc-6fb2-40e7-af58-dc68b6755165".into(),
            socket: "/var/lib/neutron/metadata_proxy".into(),
        }
    }

    #[test]
    fn a_guests_request_is_forwarded_with_whom_it_came_from() {
        let raw = b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: curl/7.88\r\nX-Forwarded-For: 10.9.9.9\r\nx-neutron-router-id: evil\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nAccept: */*\r\n\r\n";
        let req = parse(raw).expect("valid").expect("complete");
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/latest/meta-data/");
        assert_eq!(req.head_len, raw.len());
        let out = forward_head(&req, "192.168.0.3".parse().unwrap(), &router());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: curl/7.88\r\nAccept: */*\r\n\
             X-Forwarded-For: 192.168.0.3\r\nX-Neutron-Router-ID: 006df4cc-6fb2-40e7-af58-dc68b6755165\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn incomplete_heads_wait_and_bad_ones_are_refused_with_their_status() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let refused = |raw: &[u8]| parse(raw).err().map(|r| r.status().0);
        assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), Some(400), "no Host");
        assert_eq!(
            refused(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
            Some(400)
        );
        assert_eq!(refused(b"GET / HTTP/2.0\r\n\r\n"), Some(505));
        assert_eq!(refused(b"GET  / HTTP/1.0\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET http://x/ HTTP/1.0\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET / HTTP/1.0\nA: b\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET / HTTP/1.0\r\n folded\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET / HTTP/1.0\r\nA : b\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET / HTTP/1.0\r\nA: b\x01\r\n\r\n"), Some(400));
        assert_eq!(
            refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(501)
        );
        assert_eq!(
            refused(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            refused(b"POST / HTTP/1.0\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            refused(b"POST / HTTP/1.0\r\nContent-Length: 9999999\r\n\r\n"),
            Some(413)
        );
        let body = parse(b"POST / HTTP/1.0\r\nContent-Length: 5, 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(body.body_len, 5);
        // Limits hit before the head is complete.
        let long = [b"GET /".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(refused(&long), Some(414));
        let mut many = b"GET / HTTP/1.0\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(refused(&many), Some(431));
        let big = [b"GET / HTTP/1.0\r\nA: ".as_slice(), &[b'a'; 17000]].concat();
        assert_eq!(refused(&big), Some(431));
    }

    #[test]
    fn connection_cannot_take_away_host_or_the_body_length() {
        let req = parse(b"POST /p HTTP/1.0\r\nHost: h\r\nContent-Length: 2\r\nConnection: host, content-length\r\n\r\nab")
            .unwrap()
            .unwrap();
        let out = String::from_utf8(forward_head(
            &req,
            "192.168.0.3".parse().unwrap(),
            &router(),
        ))
        .unwrap();
        assert!(out.contains("\r\nHost: h\r\n"), "{out}");
        assert!(out.contains("\r\nContent-Length: 2\r\n"), "{out}");
        assert_eq!(out.matches("Connection:").count(), 1, "{out}");
    }

    #[test]
    fn an_http_1_0_request_gets_a_host_and_the_network_header() {
        let req = parse(b"GET /openstack HTTP/1.0\r\n\r\n").unwrap().unwrap();
        let net = Served {
            kind: Kind::Network,
            id: "5b6a8b87-fd03-46b5-a968-72bac5091b7c".into(),
            socket: "/s".into(),
        };
        let out =
            String::from_utf8(forward_head(&req, "192.168.1.3".parse().unwrap(), &net)).unwrap();
        assert!(out.starts_with("GET /openstack HTTP/1.1\r\nHost: 169.254.169.254\r\n"));
        assert!(out.contains("X-Neutron-Network-ID: 5b6a8b87-fd03-46b5-a968-72bac5091b7c\r\n"));
        assert_eq!(
            net.namespace(),
            "qdhcp-5b6a8b87-fd03-46b5-a968-72bac5091b7c"
        );
        assert_eq!(net.listen().to_string(), "169.254.169.254:80");
        assert_eq!(router().listen().to_string(), "0.0.0.0:9697");
    }

    #[test]
    fn command_line_values_and_socket_paths_are_checked() {
        let r = router();
        let [flag, value] = r.args();
        assert_eq!(flag, "--router");
        assert_eq!(Served::parse(Kind::Router, &value), Ok(r));
        for bad in [
            "006df4cc=/x",
            "006df4cc-6fb2-40e7-af58-dc68b6755165=relative",
            "006df4cc-6fb2-40e7-af58-dc68b6755165",
        ] {
            assert!(Served::parse(Kind::Router, bad).is_err(), "{bad}");
        }
        let state = Path::new("/var/lib/neutron");
        assert_eq!(
            socket_path(None, state).unwrap(),
            Path::new("/var/lib/neutron/metadata_proxy")
        );
        assert_eq!(
            socket_path(Some("$state_path/mp"), state).unwrap(),
            Path::new("/var/lib/neutron/mp")
        );
        assert!(socket_path(Some(&format!("/{}", "a".repeat(120))), state).is_err());
        assert!(socket_path(Some("mp"), state).is_err());
    }
}
