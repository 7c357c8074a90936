//! The child of a spawn started as `posix_spawn` starts it: `clone3` with
//! `CLONE_VM | CLONE_VFORK` on a stack of its own. The child shares the
//! daemon's memory until it execs, so the kernel copies no page tables
//! (a plain fork copies them all: with thousands of apps that copy, and the
//! faults after it, were most of a spawn). The daemon's thread waits
//! meanwhile, as `CLONE_VFORK` says.
//!
//! x86_64 only (the trampoline is its assembly); elsewhere `spawn` forks.

use super::{CloneArgs, CLONE_INTO_CGROUP};
use std::os::fd::RawFd;
use std::sync::Mutex;

/// The child's stack: it runs only the setup before `execve`.
const STACK_SIZE: usize = 256 * 1024;

/// One stack, reused: with `CLONE_VFORK` a spawn ends (the child has
/// exec'd or exited) before the next may begin; the lock makes that hold
/// for spawns from several threads too.
static STACK: Mutex<Option<usize>> = Mutex::new(None);

/// Runs `entry(arg)` in a child that shares this process's memory, born
/// in `cgroup` (a directory fd) when given. Returns the child's pid, or
/// None when this kernel can't (then the caller forks).
///
/// # Safety
/// `entry` may only make async-signal-safe system calls on memory that
/// stays valid until it execs or exits, and must never return.
pub unsafe fn run(
    cgroup: Option<RawFd>,
    entry: unsafe extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> Option<libc::pid_t> {
    let mut stack = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let base = match *stack {
        Some(base) => base,
        None => {
            let base = libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return None;
            }
            *stack = Some(base as usize);
            base as usize
        }
    };
    let args = CloneArgs {
        flags: libc::CLONE_VM as u64
            | libc::CLONE_VFORK as u64
            | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        exit_signal: libc::SIGCHLD as u64,
        stack: base as u64,
        stack_size: STACK_SIZE as u64,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..CloneArgs::default()
    };
    let pid = clone3(&args, entry, arg);
    drop(stack);
    (pid > 0).then_some(pid as libc::pid_t)
}

/// clone3, with the child calling `entry(arg)` on its new stack: Rust
/// code can't go on after the system call in a child whose stack pointer
/// changed under it, so the child leaves the assembly only through `entry`.
unsafe fn clone3(
    args: &CloneArgs,
    entry: unsafe extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> libc::c_long {
    let mut ret: libc::c_long = libc::SYS_clone3;
    // SAFETY: the parent gets the result in rax and nothing else changes
    // (the kernel clobbers rcx and r11). The child starts on the aligned
    // top of its stack, where `call` leaves the alignment the ABI wants.
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "mov rdi, r12",
        "call r13",
        "ud2",
        "2:",
        inout("rax") ret,
        in("rdi") args as *const CloneArgs,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") arg,
        in("r13") entry,
        out("rcx") _,
        out("r11") _,
    );
    ret
}
