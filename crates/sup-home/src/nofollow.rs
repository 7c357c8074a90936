//! Opening paths on an app's behalf without being steered by a planted
//! symbolic link: a link that another user (an app's, say `nobody`, in a
//! sticky `/tmp`) could have made must not lead a root daemon into a
//! directory of its choosing.
//!
//! The path is walked one component at a time from a directory fd, each
//! step with `O_NOFOLLOW`. A symbolic link on the way is followed only when
//! root or the caller's own user owns it (`/var/run -> /run`, a deploy's
//! `current -> releases/42`); any other is refused with `ELOOP`. A link's
//! owner and target are read from the one fd it was opened as, and a name
//! found to be no link is then opened with `O_NOFOLLOW`, so a link swapped
//! in meanwhile is refused, never followed.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

/// What to do when the last component is itself a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last {
    /// Refuse it, whoever owns it (a log file).
    NoLink,
    /// Follow it when it is trusted, like any other (an env file).
    TrustedLink,
}

/// Most links followed in one walk (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Opens `path` with `flags` (`O_CLOEXEC` is added) and `mode` for a file
/// it creates; an untrusted link anywhere on the way is refused (`ELOOP`).
pub fn open(path: &Path, flags: libc::c_int, mode: u32, last: Last) -> io::Result<File> {
    let (dir, name) = walk(path, last)?;
    // SAFETY: a directory fd we own and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    };
    owned(fd).map(File::from)
}

/// Creates `dir` and its missing parents with `mode`, never through an
/// untrusted link.
pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    let mut at = start(dir)?;
    let mut names: VecDeque<OsString> = names(dir).into();
    let mut links = 0;
    while let Some(name) = names.pop_front() {
        let c = cstring(&name)?;
        // SAFETY: a directory fd we own and a NUL-terminated name.
        if unsafe { libc::mkdirat(at.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        at = step(at, &c, &mut names, &mut links)?;
    }
    Ok(())
}

/// Whether `err` is the refusal of a symbolic link on the way.
pub fn is_link_refusal(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ELOOP)
}

/// Walks to the directory holding `path`'s last component: that
/// directory's fd and the component's name.
fn walk(path: &Path, last: Last) -> io::Result<(OwnedFd, CString)> {
    let mut at = start(path)?;
    let mut names: VecDeque<OsString> = names(path).into();
    let mut links = 0;
    while let Some(name) = names.pop_front() {
        let c = cstring(&name)?;
        if names.is_empty() {
            match link_target(&at, &c)? {
                Some(target) if last == Last::TrustedLink && links < MAX_LINKS => {
                    links += 1;
                    at = follow(at, &target, &mut names)?;
                    continue;
                }
                Some(_) => return Err(io::Error::from_raw_os_error(libc::ELOOP)),
                None => return Ok((at, c)),
            }
        }
        at = step(at, &c, &mut names, &mut links)?;
    }
    Err(io::Error::from_raw_os_error(libc::EISDIR))
}

/// One step down from `at` into directory `name`; a trusted link there is
/// followed (its target's components go first in `names`).
fn step(
    at: OwnedFd,
    name: &CString,
    names: &mut VecDeque<OsString>,
    links: &mut usize,
) -> io::Result<OwnedFd> {
    if name.as_bytes() == b".." {
        return openat_dir(&at, name);
    }
    match link_target(&at, name)? {
        Some(target) if *links < MAX_LINKS => {
            *links += 1;
            follow(at, &target, names)
        }
        Some(_) => Err(io::Error::from_raw_os_error(libc::ELOOP)),
        None => openat_dir(&at, name),
    }
}

/// Continues a walk at a link's `target`: from `/` when it is absolute,
/// else from the link's own directory.
fn follow(at: OwnedFd, target: &Path, queue: &mut VecDeque<OsString>) -> io::Result<OwnedFd> {
    for name in names(target).into_iter().rev() {
        queue.push_front(name);
    }
    if target.is_absolute() {
        start(target)
    } else {
        Ok(at)
    }
}

/// `name` in `at`: `None` when it is no link (or missing); its target when
/// it is a trusted link; `ELOOP` when it is an untrusted one. The link is
/// opened once (`O_PATH|O_NOFOLLOW`), and its owner and target are read
/// from that fd, so no other link can be swapped in between.
fn link_target(at: &OwnedFd, name: &CString) -> io::Result<Option<std::path::PathBuf>> {
    // SAFETY: a directory fd we own and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            at.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    let Ok(link) = owned(fd) else {
        return Ok(None);
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: an fd we own, room for a stat.
    if unsafe { libc::fstat(link.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Ok(None);
    }
    // SAFETY: fstat filled it.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
        return Ok(None);
    }
    if st.st_uid != 0 && st.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let empty = cstring(OsStr::new(""))?;
    // SAFETY: the link's own fd, an empty name (the link itself), a buffer
    // of the length passed.
    let n = unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            empty.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(Some(OsString::from_vec(buf).into()))
}

fn openat_dir(at: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: a directory fd we own and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            at.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    owned(fd).map_err(|e| {
        // A link swapped in after it was looked at: O_NOFOLLOW with
        // O_DIRECTORY says ENOTDIR. Say it was a link.
        if e.raw_os_error() == Some(libc::ENOTDIR)
            && matches!(link_target(at, name), Err(_) | Ok(Some(_)))
        {
            io::Error::from_raw_os_error(libc::ELOOP)
        } else {
            e
        }
    })
}

/// The directory a walk of `path` starts from: `/`, or the working one.
fn start(path: &Path) -> io::Result<OwnedFd> {
    let from = if path.is_absolute() { "/" } else { "." };
    let c = cstring(OsStr::new(from))?;
    // SAFETY: a NUL-terminated path.
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

/// The components of `path` to walk (`.` dropped, `..` kept: it is walked
/// from the directory reached, not lexically).
fn names(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sup-nofollow-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Makes the link at `link` owned by `uid` (the tests run as root).
    fn own(link: &Path, uid: u32) {
        std::os::unix::fs::lchown(link, Some(uid), None).unwrap();
    }

    const W: libc::c_int = libc::O_WRONLY | libc::O_CREAT;

    #[test]
    fn links_of_root_or_our_own_are_followed_others_are_not() {
        let d = tmp("open");
        std::fs::create_dir(d.join("real")).unwrap();
        symlink("real", d.join("mine")).unwrap();
        open(&d.join("mine").join("x.log"), W, 0o600, Last::NoLink).unwrap();
        assert!(d.join("real").join("x.log").exists());
        if nix::unistd::geteuid().is_root() {
            symlink(d.join("real"), d.join("planted")).unwrap();
            own(&d.join("planted"), 65534);
            let err = open(&d.join("planted").join("y.log"), W, 0o600, Last::NoLink).unwrap_err();
            assert!(is_link_refusal(&err), "{err}");
            let err = create_dirs(&d.join("planted").join("sub"), 0o700).unwrap_err();
            assert!(is_link_refusal(&err), "{err}");
            assert!(!d.join("real").join("y.log").exists());
            assert!(!d.join("real").join("sub").exists());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_last_component_is_a_link_only_when_allowed() {
        let d = tmp("last");
        std::fs::write(d.join("target.env"), "A=1\n").unwrap();
        symlink("target.env", d.join(".env")).unwrap();
        let err = open(&d.join(".env"), libc::O_RDONLY, 0, Last::NoLink).unwrap_err();
        assert!(is_link_refusal(&err), "{err}");
        open(&d.join(".env"), libc::O_RDONLY, 0, Last::TrustedLink).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_are_made_and_dotdot_is_walked() {
        let d = tmp("dirs");
        create_dirs(&d.join("a").join("b"), 0o700).unwrap();
        assert!(d.join("a").join("b").is_dir());
        open(
            &d.join("a").join("b").join("..").join("z"),
            W,
            0o600,
            Last::NoLink,
        )
        .unwrap();
        assert!(d.join("a").join("z").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
