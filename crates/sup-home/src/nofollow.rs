//! Opening paths on an app's behalf without following a symbolic link in
//! any component: a link planted in a sticky `/tmp` (or anywhere an app's
//! user can write) must not steer a root daemon into another directory.
//!
//! `openat2(RESOLVE_NO_SYMLINKS)` where the kernel has it (5.6+), else a
//! walk with `O_NOFOLLOW` at each component.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` with `flags` (`O_CLOEXEC` is added) and `mode` for a file
/// it creates, refusing a symbolic link in any component with `ELOOP`.
pub fn open(path: &Path, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let c = cstring(path.as_os_str())?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & libc::O_CREAT != 0 {
            u64::from(mode)
        } else {
            0
        },
        resolve: libc::RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: a NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a new fd that nothing else owns.
        return Ok(unsafe { File::from_raw_fd(fd as RawFd) });
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => walk_open(path, flags, mode),
        _ => Err(err),
    }
}

/// Creates `dir` and its missing parents with `mode`, never through a
/// symbolic link (`ELOOP` or `ENOTDIR` where one stands).
pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    let mut at = start(dir)?;
    for name in names(dir)? {
        let c = cstring(name)?;
        // SAFETY: a directory fd we own and a NUL-terminated name.
        let made = unsafe { libc::mkdirat(at.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) };
        if made != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        at = step(&at, &c)?;
    }
    Ok(())
}

/// Whether `err` is the refusal of a symbolic link on the way.
pub fn is_link_refusal(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ELOOP))
}

fn walk_open(path: &Path, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let mut names = names(path)?;
    let last = names
        .pop()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?;
    let mut at = start(path)?;
    for name in names {
        at = step(&at, &cstring(name)?)?;
    }
    let c = cstring(last)?;
    // SAFETY: a directory fd we own and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            at.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The directory a walk of `path` starts from: `/`, or the working one.
fn start(path: &Path) -> io::Result<OwnedFd> {
    let from = if path.is_absolute() { "/" } else { "." };
    let c = cstring(OsStr::new(from))?;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    owned(fd)
}

/// The directory `name` in `at`, refused if it is a link.
fn step(at: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: a directory fd we own and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            at.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    owned(fd).map_err(|e| {
        // O_PATH|O_NOFOLLOW opens a link itself; O_DIRECTORY then says
        // ENOTDIR. Say what it is.
        if e.raw_os_error() == Some(libc::ENOTDIR) && is_link(at, name) {
            io::Error::from_raw_os_error(libc::ELOOP)
        } else {
            e
        }
    })
}

fn is_link(at: &OwnedFd, name: &CString) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a directory fd we own, a NUL-terminated name, room for a stat.
    let rc = unsafe {
        libc::fstatat(
            at.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    // SAFETY: fstatat filled it when it returned 0.
    rc == 0 && unsafe { st.assume_init() }.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// The normal components of `path`; `..` is refused (a walk can't check
/// where it leads without resolving).
fn names(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::from_raw_os_error(libc::EXDEV))
            }
        }
    }
    Ok(out)
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

    #[test]
    fn a_link_in_any_component_is_refused_both_ways() {
        let d = tmp("open");
        std::fs::create_dir(d.join("real")).unwrap();
        symlink(d.join("real"), d.join("link")).unwrap();
        let through = d.join("link").join("x.log");
        let flags = libc::O_WRONLY | libc::O_CREAT;
        assert!(is_link_refusal(&open(&through, flags, 0o600).unwrap_err()));
        assert!(is_link_refusal(
            &walk_open(&through, flags, 0o600).unwrap_err()
        ));
        assert!(!d.join("real").join("x.log").exists());
        open(&d.join("real").join("x.log"), flags, 0o600).unwrap();
        walk_open(&d.join("real").join("y.log"), flags, 0o600).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_are_made_but_never_through_a_link() {
        let d = tmp("dirs");
        std::fs::create_dir(d.join("real")).unwrap();
        symlink(d.join("real"), d.join("link")).unwrap();
        create_dirs(&d.join("a").join("b"), 0o700).unwrap();
        assert!(d.join("a").join("b").is_dir());
        let err = create_dirs(&d.join("link").join("c"), 0o700).unwrap_err();
        assert!(is_link_refusal(&err), "{err}");
        assert!(!d.join("real").join("c").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
