//! Does an app take the TCP sockets sup holds for it? An app that ignores
//! fd 3 (a `LISTEN_PID` it doesn't recognise, no systemd support) binds a
//! port of its own, and connections to the held one wait unaccepted until
//! a probe restarts the app, again and again. This module finds that case
//! from `/proc`, only when asked (a failed probe, `describe`): the held
//! listener has connections waiting in its accept queue, and the app's
//! processes listen on another TCP socket of their own.

use std::collections::HashSet;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// A listening TCP socket, from `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listener {
    port: u16,
    inode: u64,
    /// Connections in its accept queue.
    waiting: u32,
}

/// Listening sockets in the text of `/proc/net/tcp` (or `tcp6`). For a
/// listener, the kernel reports its accept queue as `rx_queue`.
fn parse_listeners(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(3) != Some(&"0A") {
                return None;
            }
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let waiting = u32::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some(Listener {
                port,
                inode,
                waiting,
            })
        })
        .collect()
}

fn listeners() -> Vec<Listener> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|text| parse_listeners(&text))
        .collect()
}

/// The socket inode of `fd`.
fn inode(fd: BorrowedFd<'_>) -> Option<u64> {
    nix::sys::stat::fstat(fd.as_raw_fd())
        .ok()
        .map(|st| st.st_ino)
}

/// Inodes of the sockets the processes `pids` have open.
fn socket_inodes(pids: &[u32]) -> HashSet<u64> {
    pids.iter()
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flat_map(|dir| dir.flatten())
        .filter_map(|entry| {
            let link = fs::read_link(entry.path()).ok()?;
            let text = link.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Why the app in process group `pgid` does not take the held socket
/// `fd` (bound at `addr`), or None when nothing says so.
pub fn not_taken(addr: &str, fd: impl AsFd, pgid: u32) -> Option<String> {
    let held = inode(fd.as_fd())?;
    let all = listeners();
    let waiting = all.iter().find(|l| l.inode == held)?.waiting;
    if waiting == 0 {
        return None;
    }
    let own = socket_inodes(&crate::procstat::live_group_members(pgid));
    let mut ports: Vec<u16> = all
        .iter()
        .filter(|l| l.inode != held && own.contains(&l.inode))
        .map(|l| l.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.iter().map(|p| format!(":{p}")).collect();
    Some(format!(
        "the app does not take the socket sup holds on {addr}: {waiting} connection(s) wait \
         there unaccepted while it listens on {} itself. sup passes the socket as fd 3 \
         (LISTEN_FDS=1, LISTEN_PID = the app's pid, systemd's protocol); make the app \
         serve it, e.g. gunicorn --bind fd://3, uvicorn --fd 3, or sd_listen_fds()",
        ports.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn parses_listeners_and_their_queues() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0
   1: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0 20 4 30 10 -1
";
        assert_eq!(
            parse_listeners(text),
            [Listener {
                port: 3000,
                inode: 4242,
                waiting: 2
            }]
        );
    }

    #[test]
    fn a_held_socket_nobody_accepts_while_the_app_listens_elsewhere() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap().to_string();
        // This test process plays the app: it listens on a port of its own.
        let own = TcpListener::bind("127.0.0.1:0").unwrap();
        let own_port = own.local_addr().unwrap().port();
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        assert_eq!(not_taken(&addr, &held, pgid), None, "nothing waits yet");
        let _waiting = TcpStream::connect(&addr).unwrap();
        let why = not_taken(&addr, &held, pgid).expect("a diagnosis");
        assert!(why.contains(&format!(":{own_port}")), "{why}");
        assert!(why.contains("1 connection(s) wait"), "{why}");
        drop(own);
        assert_eq!(
            not_taken(&addr, &held, pgid),
            None,
            "no listener of its own"
        );
    }
}
