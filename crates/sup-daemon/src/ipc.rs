//! Node's IPC channel, the daemon's end: what PM2's cluster master gives
//! its workers. An instance gets one end of a socket pair as an fd named in
//! `NODE_CHANNEL_FD`, so Node sets up `process.send` and handle passing.
//! Through it the preload asks the daemon to bind an address the app
//! listens on (the daemon answers with the listening socket, in Node's own
//! `NODE_HANDLE` message), and an app reports `process.send('ready')`.
//!
//! Node's wire format (lib/internal/child_process.js, serialization
//! "json"): one JSON value per line; a message that carries a handle is
//! `{"cmd":"NODE_HANDLE","type":…,"msg":<the message>}` with the fd in
//! SCM_RIGHTS on the same write, and the receiver answers
//! `{"cmd":"NODE_HANDLE_ACK"}`. With `type` `net.Native` Node hands the raw
//! handle to the `'message'` listener as is.

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::Deserialize;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd};
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

/// Longest line read from an app; a longer one is dropped unread.
const MAX_LINE: usize = 64 * 1024;

/// What an instance asks over the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Bind and hold this address (`:port`, `ip:port` or `[v6]:port`) for
    /// the app and send me the listening socket.
    Bind {
        /// The preload's number for the request, echoed in the answer.
        id: u64,
        /// The address to hold.
        addr: String,
    },
    /// `process.send('ready')`: PM2's `wait_ready`.
    Ready,
    /// The preload tells what the app's `listen()` did.
    Listened(sup_proto::ListenNote),
}

/// The supervisor's answer to a [`Request::Bind`]: the listening socket (a
/// copy the channel may send and close) and its address, or why not.
pub type BindReply = Result<(OwnedFd, String), String>;

/// Creates one socket pair: the daemon's end (non-blocking) and the
/// instance's, both close-on-exec (the spawn passes the instance's on).
pub fn pair() -> io::Result<(UnixStream, OwnedFd)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    Ok((UnixStream::from_std(ours)?, theirs.into()))
}

/// Serves the daemon's end of an instance's channel until the instance
/// closes it: each request goes to `on_request`; a bind is answered with
/// what its receiver yields. Anything else, or anything malformed, is
/// ignored: an app's own messages must never hurt the daemon.
pub fn serve<F>(stream: UnixStream, mut on_request: F) -> tokio::task::AbortHandle
where
    F: FnMut(Request) -> Option<oneshot::Receiver<BindReply>> + Send + 'static,
{
    let mut stream = stream;
    let task = tokio::spawn(async move {
        let mut lines = Lines::default();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for line in lines.push(&buf[..n]) {
                let Some(request) = parse(&line) else {
                    continue;
                };
                let id = match &request {
                    Request::Bind { id, .. } => Some(*id),
                    Request::Ready | Request::Listened(_) => None,
                };
                let Some(reply) = on_request(request) else {
                    continue;
                };
                let Some(id) = id else { continue };
                let reply = reply
                    .await
                    .unwrap_or_else(|_| Err("the daemon is stopping".into()));
                if answer(&stream, id, reply).await.is_err() {
                    return;
                }
            }
        }
    });
    task.abort_handle()
}

/// Sends the answer to bind request `id`: the socket in a `NODE_HANDLE`
/// message, or the reason in a plain one.
async fn answer(stream: &UnixStream, id: u64, reply: BindReply) -> io::Result<()> {
    let (line, fd) = match reply {
        Ok((fd, addr)) => {
            let msg = serde_json::json!({"sup": "bound", "id": id, "address": addr});
            let handle =
                serde_json::json!({"cmd": "NODE_HANDLE", "type": "net.Native", "msg": msg});
            (format!("{handle}\n"), Some(fd))
        }
        Err(error) => {
            let msg = serde_json::json!({"sup": "bound", "id": id, "error": error});
            (format!("{msg}\n"), None)
        }
    };
    let bytes = line.as_bytes();
    let mut sent = 0;
    while sent < bytes.len() {
        // The fd rides on the first bytes, as libuv expects.
        let rights = fd.as_ref().filter(|_| sent == 0).map(|fd| [fd.as_raw_fd()]);
        let n = stream
            .async_io(Interest::WRITABLE, || {
                let iov = [IoSlice::new(&bytes[sent..])];
                let cmsgs: Vec<ControlMessage> = rights
                    .iter()
                    .map(|r| ControlMessage::ScmRights(r))
                    .collect();
                sendmsg::<()>(
                    stream.as_raw_fd(),
                    &iov,
                    &cmsgs,
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(io::Error::from)
            })
            .await?;
        sent += n;
    }
    Ok(())
}

/// What one line from the app asks, if it is a request sup knows.
fn parse(line: &[u8]) -> Option<Request> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Text(String),
        Bind {
            sup: String,
            id: u64,
            port: u16,
            host: Option<String>,
        },
        Listened {
            sup: String,
            note: String,
            #[serde(default)]
            mismatch: bool,
        },
    }
    match serde_json::from_slice(line).ok()? {
        Wire::Text(text) => (text == "ready").then_some(Request::Ready),
        Wire::Bind {
            sup,
            id,
            port,
            host,
        } if sup == "bind" && port > 0 => Some(Request::Bind {
            id,
            addr: bind_addr(port, host.as_deref())?,
        }),
        Wire::Bind { .. } => None,
        Wire::Listened {
            sup,
            note,
            mismatch,
        } if sup == "listen" => Some(Request::Listened(sup_proto::ListenNote {
            note: note.chars().take(1024).collect(),
            mismatch,
        })),
        Wire::Listened { .. } => None,
    }
}

/// The held address for `listen(port, host)`: every address for no host
/// or a wildcard, loopback for `localhost`, else the IP; None for a name.
fn bind_addr(port: u16, host: Option<&str>) -> Option<String> {
    let ip: std::net::IpAddr = match host {
        None | Some("" | "0.0.0.0" | "::") => return Some(format!(":{port}")),
        Some("localhost") => std::net::Ipv4Addr::LOCALHOST.into(),
        Some(host) => host.parse().ok()?,
    };
    Some(std::net::SocketAddr::new(ip, port).to_string())
}

/// Splits a byte stream into lines, dropping any longer than [`MAX_LINE`].
#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
    overlong: bool,
}

impl Lines {
    fn push(&mut self, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            if !self.overlong {
                self.partial.extend_from_slice(&bytes[..end]);
                out.push(std::mem::take(&mut self.partial));
            }
            self.partial.clear();
            self.overlong = false;
            bytes = &bytes[end + 1..];
        }
        if self.partial.len() + bytes.len() > MAX_LINE {
            self.partial.clear();
            self.overlong = true;
        } else if !self.overlong {
            self.partial.extend_from_slice(bytes);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_everything_else() {
        let bind = |s: &str| parse(s.as_bytes());
        assert_eq!(
            bind(r#"{"sup":"bind","id":1,"port":3000}"#),
            Some(Request::Bind {
                id: 1,
                addr: ":3000".into()
            })
        );
        assert_eq!(
            bind(r#"{"sup":"bind","id":2,"port":3000,"host":"::1"}"#),
            Some(Request::Bind {
                id: 2,
                addr: "[::1]:3000".into()
            })
        );
        assert_eq!(
            bind(r#"{"sup":"bind","id":3,"port":80,"host":"localhost"}"#),
            Some(Request::Bind {
                id: 3,
                addr: "127.0.0.1:80".into()
            })
        );
        assert_eq!(bind(r#""ready""#), Some(Request::Ready));
        for other in [
            r#"{"cmd":"NODE_HANDLE_ACK"}"#,
            r#"{"sup":"bind","id":1,"port":0}"#,
            r#"{"sup":"bind","id":1,"port":70000}"#,
            r#"{"sup":"bind","id":1,"port":80,"host":"example.com"}"#,
            r#"{"sup":"other","id":1,"port":80}"#,
            r#""shutdown""#,
            "not json",
            "",
        ] {
            assert_eq!(bind(other), None, "{other}");
        }
    }

    #[test]
    fn lines_split_across_reads_and_overlong_ones_are_dropped() {
        let mut lines = Lines::default();
        assert!(lines.push(b"ab").is_empty());
        assert_eq!(lines.push(b"c\nd\ne"), [b"abc".to_vec(), b"d".to_vec()]);
        let long = vec![b'x'; MAX_LINE + 1];
        assert!(lines.push(&long).is_empty());
        assert!(lines.push(b"more").is_empty());
        assert_eq!(lines.push(b"\nok\n"), [b"ok".to_vec()]);
    }

    #[tokio::test]
    async fn a_bind_is_answered_with_the_socket_in_a_node_handle_message() {
        let (ours, theirs) = pair().unwrap();
        let theirs = std::os::unix::net::UnixStream::from(theirs);
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let fd = OwnedFd::from(held);
        let mut fd = Some(fd);
        serve(ours, move |request| {
            assert!(matches!(request, Request::Bind { id: 7, .. }));
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Ok((fd.take().unwrap(), format!("127.0.0.1:{port}"))));
            Some(rx)
        });
        let line =
            format!("{{\"sup\":\"bind\",\"id\":7,\"port\":{port},\"host\":\"127.0.0.1\"}}\n");
        std::io::Write::write_all(&mut &theirs, line.as_bytes()).unwrap();
        let got = tokio::task::spawn_blocking(move || receive(&theirs))
            .await
            .unwrap();
        let (text, fd) = got;
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["cmd"], "NODE_HANDLE");
        assert_eq!(value["type"], "net.Native");
        assert_eq!(value["msg"]["id"], 7);
        let listener = std::net::TcpListener::from(fd.expect("an fd came along"));
        assert_eq!(listener.local_addr().unwrap().port(), port);
    }

    /// One message and the fd that came with it.
    fn receive(stream: &std::os::unix::net::UnixStream) -> (String, Option<OwnedFd>) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned};
        use std::os::fd::FromRawFd;
        let mut buf = [0u8; 512];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut fd = None;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just gave us this fd.
                fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
            }
        }
        let n = msg.bytes;
        (String::from_utf8_lossy(&buf[..n]).into_owned(), fd)
    }
}
