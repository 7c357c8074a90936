//! The terminal while `sup monit` owns it (raw mode, the alternate screen,
//! no cursor), and its restoration on every way out: a quit or an error
//! (the guard's drop), a panic (a hook), and SIGTERM, SIGHUP or SIGINT
//! (a handler that only notes the signal; the key thread sees the note).

use anyhow::{Context, Result};
use crossterm::cursor::{Hide, Show};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::Stdout;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Whether the terminal is in monit's modes: restoring happens once,
/// whoever comes first.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminating signal caught, 0 for none.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

/// The terminal in monit's modes; dropping it restores the terminal.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    _restore: Restore,
}

/// Restores the terminal when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

impl Screen {
    /// Takes the terminal over.
    pub fn enter() -> Result<Screen> {
        hook_panics();
        ACTIVE.store(true, Ordering::SeqCst);
        // From here, an early return undoes what was done.
        let restore = Restore;
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        crossterm::execute!(std::io::stdout(), EnterAlternateScreen, Hide)
            .context("cannot switch to the alternate screen")?;
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        Ok(Screen {
            terminal,
            _restore: restore,
        })
    }

    /// The terminal, to draw on.
    pub fn terminal(&mut self) -> &mut Terminal<CrosstermBackend<Stdout>> {
        &mut self.terminal
    }
}

/// Whether the terminal is still monit's: a panic in another thread gave
/// it back.
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Puts the terminal back as it was. Errors are ignored: this runs on the
/// way out, and a terminal that hung up cannot be restored anyway.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
        let _ = crossterm::execute!(std::io::stdout(), LeaveAlternateScreen, Show);
    }
}

/// The panic's message must land on the normal screen, readable: restore
/// first, then report as before.
fn hook_panics() {
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Catches SIGTERM, SIGHUP and SIGINT, so that the terminal is restored
/// before monit exits of them.
pub fn catch_signals() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(note_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("cannot catch {signal}"))?;
    }
    Ok(())
}

extern "C" fn note_signal(signal: libc::c_int) {
    SIGNALLED.store(signal, Ordering::SeqCst);
}

/// The terminating signal caught, if one was.
pub fn signalled() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}
