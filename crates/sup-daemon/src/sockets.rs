//! Listening sockets the daemon binds and holds for an app, so that while
//! no instance runs, connections wait in the kernel's backlog instead of
//! being refused.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use sup_proto::spec::{too_many_sockets, MAX_LISTEN};

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
/// explicitly), with SO_REUSEADDR and, for IPv6, IPV6_V6ONLY set.
pub fn bind(addr: &str) -> io::Result<OwnedFd> {
    if is_unix_path(addr) {
        return bind_unix(Path::new(addr));
    }
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not host:port or a path"))?;
    let family = if sa.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = socket(family)?;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if sa.is_ipv6() {
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    let (storage, len) = sockaddr(&sa);
    // SAFETY: storage holds a valid sockaddr of `len` bytes.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    listen(fd)
}

fn bind_unix(path: &Path) -> io::Result<OwnedFd> {
    remove_stale(path)?;
    let fd = socket(libc::AF_UNIX)?;
    // SAFETY: a zeroed sockaddr_un is valid; the path is copied in bounds.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sun.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path longer than 107 bytes",
        ));
    }
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: sun is a valid sockaddr_un.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
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
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EADDRINUSE)),
        Err(_) => std::fs::remove_file(path),
    }
}

fn socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket returns a new fd or -1.
    let raw = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(raw)?;
    // SAFETY: raw is a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passing a c_int option value of the right size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

fn listen(fd: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: listen on a bound socket we own.
    check(unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) })?;
    Ok(fd)
}

fn sockaddr(sa: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: a zeroed sockaddr_storage is valid and large enough for both families.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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
    fn bad_addresses() {
        let err = bind_all(&["nonsense".to_string()]).unwrap_err();
        assert!(err.contains("nonsense"), "{err}");
    }
}
