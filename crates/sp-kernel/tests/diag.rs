//! The listening socket looked up over sock_diag is the one `ss -ltn` shows on that
//! address, and the one whose descriptor the process holds.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use sp_kernel::diag::tcp_listener_here;
use sp_testenv::{require, sandbox, scene};

fn inode(l: &TcpListener) -> u64 {
    // SAFETY: fstat of a descriptor we hold into a zeroed stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(l.as_raw_fd(), &mut st) }, 0);
    st.st_ino
}

/// `ss -Hltn` in this namespace: the local address:port of every listening socket.
fn ss_listening() -> Vec<String> {
    require::program("ss", "iproute2");
    let out = std::process::Command::new("ss")
        .args(["-Hltn"])
        .output()
        .expect("ss (iproute2) runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect()
}

#[test]
fn the_listener_on_an_address_is_found_and_nothing_else() {
    sandbox::enter();
    scene::ip(&["link", "set", "lo", "up"]);
    let local = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = match local.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    let wild = TcpListener::bind("0.0.0.0:0").unwrap();
    let wild_port = wild.local_addr().unwrap().port();
    let listening = ss_listening();
    assert!(listening.contains(&at.to_string()), "{listening:?}");
    assert!(
        listening.contains(&format!("0.0.0.0:{wild_port}")),
        "{listening:?}"
    );

    assert_eq!(tcp_listener_here(at).unwrap(), Some(inode(&local)));
    // A connection to it changes nothing: the listener, not the established socket.
    let _client = TcpStream::connect(at).unwrap();
    let _served = local.accept().unwrap();
    assert_eq!(tcp_listener_here(at).unwrap(), Some(inode(&local)));
    // The wildcard listener is found for the wildcard address, not for a specific one.
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, wild_port);
    assert_eq!(tcp_listener_here(any).unwrap(), Some(inode(&wild)));
    let specific = SocketAddrV4::new(Ipv4Addr::LOCALHOST, wild_port);
    assert_eq!(tcp_listener_here(specific).unwrap(), None);
    // Nothing on the port once the listener is closed.
    drop(local);
    assert!(!ss_listening().contains(&at.to_string()));
    assert_eq!(tcp_listener_here(at).unwrap(), None);
}
