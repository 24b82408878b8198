//! The proxy process itself (`stackplumb metadata-proxy`): it forks; the child opens a
//! listening socket in every namespace (one thread hop for all), writes the pid file,
//! and tells the parent it is ready — or why it is not — through a pipe; the parent
//! exits with that. The child, in its own session with stdio on `/dev/null`, serves
//! every socket on one tokio runtime until it is killed.
//!
//! Per connection: one request. Its head is read within [`HEAD_TIMEOUT`] and parsed with
//! `sp_neutron::metadata`'s bounds (a refusal is answered with its status), the rewritten
//! head and the body (`Content-Length`) go to the metadata agent's unix socket, and the
//! agent's answer is relayed to its end; the whole exchange within [`EXCHANGE_TIMEOUT`].
//! At most [`MAX_CONNECTIONS`] at once: beyond, connections wait in the listen backlog.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::{fork, setsid, ForkResult};
use sp_kernel::{files, netns};
use sp_neutron::metadata::{self, Limits, Served};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;

use crate::{Error, Proxy, Result};

/// A request's head must arrive within this.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole exchange (head, body, the agent's answer) ends within this.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once, over all namespaces.
pub const MAX_CONNECTIONS: usize = 1024;

const READY: &[u8] = b"ready";

/// Runs `p` as a daemon. Returns in the first process once the daemon is ready (or
/// with why it is not); the daemon never returns. Call it while the process has one
/// thread (it forks).
pub fn daemonise(p: &Proxy) -> Result<()> {
    let (rd, wr) = nix::unistd::pipe().map_err(|e| sp_kernel::Error::from_errno("pipe", e))?;
    // SAFETY: the caller has one thread; the child only runs this crate's code.
    match unsafe { fork() }.map_err(|e| sp_kernel::Error::from_errno("fork", e))? {
        ForkResult::Parent { .. } => {
            drop(wr);
            let mut said = Vec::new();
            let _ = std::fs::File::from(rd).read_to_end(&mut said);
            match said.as_slice() {
                READY => Ok(()),
                [] => Err(Error::Start("it ended before it was ready".into())),
                why => Err(Error::Start(String::from_utf8_lossy(why).into_owned())),
            }
        }
        ForkResult::Child => {
            drop(rd);
            let mut ready = Some(std::fs::File::from(wr));
            let code = match run(p, &mut ready) {
                Ok(never) => match never {},
                Err(e) => {
                    if let Some(mut wr) = ready {
                        let _ = wr.write_all(e.to_string().as_bytes());
                    }
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// The daemon: sockets, pid file, runtime, stdio away, "ready" (and the pipe closed:
/// the parent reads it to its end), then serving.
fn run(p: &Proxy, ready: &mut Option<std::fs::File>) -> Result<std::convert::Infallible> {
    setsid().map_err(|e| sp_kernel::Error::from_errno("setsid", e))?;
    // The caller's handlers are inherited over fork: SIGTERM and SIGINT end the daemon
    // again; a peer gone mid-write is an error of that write, not the daemon's end
    // (SIGPIPE); SIGHUP reloads nothing here and ends nothing.
    use nix::sys::signal::{signal, SigHandler, Signal};
    for (s, h) in [
        (Signal::SIGTERM, SigHandler::SigDfl),
        (Signal::SIGINT, SigHandler::SigDfl),
        (Signal::SIGPIPE, SigHandler::SigIgn),
        (Signal::SIGHUP, SigHandler::SigIgn),
    ] {
        // SAFETY: default and ignore dispositions run no code of ours.
        unsafe { signal(s, h) }.map_err(|e| sp_kernel::Error::from_errno("signal", e))?;
    }
    let listeners = listen(&p.served)?;
    files::write_file(
        &p.pid_file,
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io("build the runtime".into(), e))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::Io("open /dev/null".into(), e))?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null))
        .map_err(|e| sp_kernel::Error::from_errno("stdio onto /dev/null", e))?;
    if let Some(mut wr) = ready.take() {
        wr.write_all(READY)
            .map_err(|e| Error::Io("tell the parent".into(), e))?;
    }
    rt.block_on(serve(listeners))
}

/// A listening socket in each served namespace, opened there by a thread that entered
/// it (in order of `served`).
pub fn listen(served: &[Served]) -> Result<Vec<(Served, std::net::TcpListener)>> {
    let fds = served
        .iter()
        .map(|s| netns::open(&netns::named_path(&s.namespace())?))
        .collect::<sp_kernel::Result<Vec<_>>>()?;
    let opened = netns::run_in_each(&fds, |i| {
        let s = &served[i];
        let l = std::net::TcpListener::bind(s.listen()).map_err(|e| {
            sp_kernel::Error::io(format!("listen on {} in {}", s.listen(), s.namespace()), e)
        })?;
        l.set_nonblocking(true)
            .map_err(|e| sp_kernel::Error::io("non-blocking listener", e))?;
        Ok(l)
    });
    served
        .iter()
        .cloned()
        .zip(opened)
        .map(|(s, l)| Ok((s, l?)))
        .collect()
}

/// Serves `listeners` on the calling runtime, forever.
pub async fn serve(
    listeners: Vec<(Served, std::net::TcpListener)>,
) -> Result<std::convert::Infallible> {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    for (s, l) in listeners {
        let l = tokio::net::TcpListener::from_std(l)
            .map_err(|e| Error::Io(format!("listen in {}", s.namespace()), e))?;
        tokio::spawn(accept(Arc::new(s), l, limit.clone()));
    }
    std::future::pending().await
}

async fn accept(s: Arc<Served>, l: tokio::net::TcpListener, limit: Arc<Semaphore>) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match l.accept().await {
            Ok((c, peer)) => {
                let s = s.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(c, peer, &s)).await;
                });
            }
            // Out of descriptors, say: the connection waits in the backlog a moment.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One request of `client` through `s`, answered.
async fn exchange(mut c: TcpStream, client: SocketAddr, s: &Served) -> std::io::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut c)).await;
    let (req, buf) = match head {
        Err(_) => return answer(&mut c, 408, "Request Timeout").await,
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err(refused))) => {
            let (code, reason) = refused.status();
            return answer(&mut c, code, reason).await;
        }
        Ok(Ok(Ok(None))) => return Ok(()),
        Ok(Ok(Ok(Some(got)))) => got,
    };
    let ip = match client.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let Ok(mut agent) = UnixStream::connect(&s.socket).await else {
        return answer(&mut c, 502, "Bad Gateway").await;
    };
    agent
        .write_all(&metadata::forward_head(&req, ip, s))
        .await?;
    let have = (buf.len() - req.head_len) as u64;
    let first = have.min(req.body_len) as usize;
    agent
        .write_all(&buf[req.head_len..req.head_len + first])
        .await?;
    let rest = req.body_len - first as u64;
    if rest > 0 {
        tokio::io::copy(&mut (&mut c).take(rest), &mut agent).await?;
    }
    tokio::io::copy(&mut agent, &mut c).await?;
    c.shutdown().await
}

/// Reads until a head parses: the request and everything read (the body's start), a
/// refusal, or `None` when the client closed first.
async fn read_head(
    c: &mut TcpStream,
) -> std::io::Result<Result<Option<(metadata::Request, Vec<u8>)>, metadata::Refused>> {
    let limits = Limits::DEFAULT;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = c.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Ok(None));
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        // Parsed when the blank line may have come, or a limit is reached: a client
        // sending a byte at a time costs no quadratic work.
        let ended = buf[from..].windows(4).any(|w| w == b"\r\n\r\n");
        // The request line's bound, looked at once: in the read that passes it.
        let line_long = from <= limits.request_line
            && buf.len() > limits.request_line
            && !buf[..limits.request_line].contains(&b'\n');
        if ended || line_long || buf.len() >= limits.head {
            return Ok(match metadata::parse_with(&buf, &limits) {
                Ok(Some(req)) => Ok(Some((req, buf))),
                Ok(None) => Err(metadata::Refused::HeadTooLarge),
                Err(r) => Err(r),
            });
        }
    }
}

async fn answer(c: &mut TcpStream, code: u16, reason: &str) -> std::io::Result<()> {
    c.write_all(&metadata::response(code, reason)).await?;
    c.shutdown().await
}
