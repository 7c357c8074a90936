//! sd_notify for apps: each instance gets its own `NOTIFY_SOCKET`, so a
//! `READY=1` is never credited to the wrong instance (a short-lived
//! `systemd-notify` process cannot be told apart by its pid).

use std::io;
use std::path::{Path, PathBuf};
use tokio::net::UnixDatagram;
use tokio::sync::oneshot;

/// A bound notify socket; its file goes away with it.
#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    // Dropping it ends the listening task.
    _stop: oneshot::Sender<()>,
}

impl NotifySocket {
    /// The path to put in the instance's `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds a datagram socket at `path` (0600 by the home's 0700 directory)
/// and calls `on_ready` once a datagram holding `READY=1` arrives.
pub fn listen(path: PathBuf, on_ready: impl FnOnce() + Send + 'static) -> io::Result<NotifySocket> {
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path)?;
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                _ = &mut stop_rx => return,
                got = socket.recv(&mut buf) => {
                    let Ok(n) = got else { return };
                    if is_ready(&buf[..n]) {
                        on_ready();
                        return;
                    }
                }
            }
        }
    });
    Ok(NotifySocket {
        path,
        _stop: stop_tx,
    })
}

/// Tells the service manager (systemd, `Type=notify`) something about the
/// daemon, if it asked through `NOTIFY_SOCKET`; otherwise does nothing.
pub fn notify_systemd(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
    } else {
        socket.send_to(message.as_bytes(), &path)
    };
    if let Err(e) = sent {
        // A CLI that started this daemon may be gone by now: not worth a warning.
        tracing::debug!("cannot notify {}: {e}", path.to_string_lossy());
    }
}

/// Whether a notification holds the line `READY=1`.
fn is_ready(msg: &[u8]) -> bool {
    msg.split(|b| *b == b'\n').any(|line| line == b"READY=1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines() {
        assert!(is_ready(b"READY=1"));
        assert!(is_ready(b"STATUS=warming up\nREADY=1\n"));
        assert!(!is_ready(b"READY=0"));
        assert!(!is_ready(b"STATUS=READY=1"));
    }
}
