//! Listening sockets the daemon binds and holds for an app, so that while
//! no instance runs, connections wait in the kernel's backlog instead of
//! being refused.

use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6,
    UnixAddr,
};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use sup_proto::spec::{too_many_sockets, ListenAddr, MAX_LISTEN};

/// A held listening socket.
#[derive(Debug)]
pub struct Held {
    /// The address as the user gave it.
    pub addr: String,
    /// The socket.
    pub fd: OwnedFd,
}

impl Drop for Held {
    fn drop(&mut self) {
        if is_unix_path(&self.addr) {
            let _ = std::fs::remove_file(&self.addr);
        }
    }
}

/// Whether `addr` names a Unix socket (a path) rather than `host:port`.
pub fn is_unix_path(addr: &str) -> bool {
    addr.contains('/')
}

/// Binds every address, or none: the error names the address that failed.
/// More than [`MAX_LISTEN`] is refused before any is bound.
pub fn bind_all(addrs: &[String]) -> Result<Vec<Held>, String> {
    if addrs.len() > MAX_LISTEN {
        return Err(too_many_sockets(addrs.len()));
    }
    addrs
        .iter()
        .map(|addr| {
            bind(addr)
                .map(|fd| Held {
                    addr: addr.clone(),
                    fd,
                })
                .map_err(|e| format!("cannot listen on {addr}: {e}"))
        })
        .collect()
}

/// Binds and listens on one address, close-on-exec (it is passed to apps
/// explicitly), with SO_REUSEADDR. An IPv6 address gets IPV6_V6ONLY;
/// `:port` is dual-stack `[::]:port`, or `0.0.0.0:port` on a host without
/// IPv6.
pub fn bind(addr: &str) -> io::Result<OwnedFd> {
    let parsed = ListenAddr::parse(addr)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not host:port or a path"))?;
    let fd = match parsed {
        ListenAddr::Unix(path) => return bind_unix(&path),
        ListenAddr::Ip(SocketAddr::V4(v4)) => bind_v4(v4)?,
        ListenAddr::Ip(SocketAddr::V6(v6)) => bind_v6(v6, true)?,
        ListenAddr::AnyPort(port) => {
            match bind_v6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0), false) {
                Err(e) if no_ipv6(&e) => bind_v4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?,
                other => other?,
            }
        }
    };
    listen(fd)
}

fn bind_v4(addr: SocketAddrV4) -> io::Result<OwnedFd> {
    let fd = stream_socket(AddressFamily::Inet)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr))?;
    Ok(fd)
}

fn bind_v6(addr: SocketAddrV6, v6_only: bool) -> io::Result<OwnedFd> {
    let fd = stream_socket(AddressFamily::Inet6)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &v6_only)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(addr))?;
    Ok(fd)
}

/// The errors of a kernel without IPv6 (or with it disabled): no such
/// family, or `::` not assignable.
fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

fn bind_unix(path: &Path) -> io::Result<OwnedFd> {
    remove_stale(path)?;
    // sun_path holds 108 bytes with the NUL.
    if path.as_os_str().len() >= 108 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path longer than 107 bytes",
        ));
    }
    let fd = stream_socket(AddressFamily::Unix)?;
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    listen(fd)
}

/// A socket file nobody listens on any more (a crash left it) is removed;
/// a live one, or anything else at the path, is an error.
fn remove_stale(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way",
        ));
    }
    // Non-blocking: a live listener with a full backlog must not stall the
    // event loop; EAGAIN says someone listens as surely as a connection.
    let probe = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    match socket::connect(probe.as_raw_fd(), &UnixAddr::new(path)?) {
        Ok(()) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINPROGRESS) => {
            Err(io::Error::from_raw_os_error(libc::EADDRINUSE))
        }
        Err(_) => std::fs::remove_file(path),
    }
}

fn stream_socket(family: AddressFamily) -> io::Result<OwnedFd> {
    Ok(socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn listen(fd: OwnedFd) -> io::Result<OwnedFd> {
    socket::listen(&fd, Backlog::MAXCONN)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn a_held_socket_queues_connections() {
        let fd = bind("127.0.0.1:0").unwrap();
        // Learn the port the kernel chose.
        let listener = std::net::TcpListener::from(fd);
        let port = listener.local_addr().unwrap().port();
        // Nobody accepts, yet connecting succeeds: the backlog holds it.
        let conn = TcpStream::connect(("127.0.0.1", port));
        assert!(conn.is_ok());
        // The same address again is in use.
        let err = bind(&format!("127.0.0.1:{port}")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
    }

    #[test]
    fn unix_sockets_replace_stale_files_only() {
        let path = std::env::temp_dir().join(format!("sup-held-{}.sock", std::process::id()));
        let addr = path.display().to_string();
        let held = bind_all(std::slice::from_ref(&addr)).unwrap();
        assert!(bind(&addr).is_err(), "a live socket is not replaced");
        drop(held);
        assert!(!path.exists(), "dropping removes the socket file");
        std::fs::write(&path, "not a socket").unwrap();
        assert!(bind(&addr).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_port_alone_listens_on_every_address() {
        // Find a free port, then hold it as `:port`.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listener = std::net::TcpListener::from(bind(&format!(":{port}")).unwrap());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok(), "IPv4");
        let v6 = listener.local_addr().unwrap().is_ipv6();
        if v6 {
            // Dual-stack: IPv6 loopback too, and IPv4 is not free to take.
            assert!(TcpStream::connect(("::1", port)).is_ok(), "IPv6");
        }
        let err = bind(&format!("0.0.0.0:{port}")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
    }

    #[test]
    fn bad_addresses() {
        let err = bind_all(&["nonsense".to_string()]).unwrap_err();
        assert!(err.contains("nonsense"), "{err}");
    }
}
