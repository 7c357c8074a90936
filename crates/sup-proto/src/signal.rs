//! Signals a user may name, such as an app's stop signal.

use std::fmt;
use std::str::FromStr;

/// A standard Linux signal. It is written as its `SIG` name (`"SIGTERM"`,
/// as in sup 0.1.0) and read from `SIGTERM`, `TERM`, `sigterm` or `15`, so
/// a spec naming a signal that does not exist fails to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub struct Signal(i32);

/// A name or number that is no signal [`Signal`] knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?} (try SIGTERM, TERM, INT, HUP, USR1, QUIT or a number such as 15)")]
pub struct SignalError(String);

/// The signals, by the names nix and `kill -l` use; numbers depend on the
/// architecture, hence libc's constants.
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    #[cfg(not(any(
        target_arch = "mips",
        target_arch = "mips32r6",
        target_arch = "mips64",
        target_arch = "mips64r6",
        target_arch = "sparc64"
    )))]
    ("SIGSTKFLT", libc::SIGSTKFLT),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSYS", libc::SIGSYS),
];

impl Signal {
    /// SIGTERM, the default stop signal.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// SIGINT: PM2's stop signal.
    pub const INT: Signal = Signal(libc::SIGINT);

    /// The signal with this number, if it is one of the standard signals.
    pub fn from_number(number: i32) -> Option<Signal> {
        SIGNALS
            .iter()
            .any(|&(_, n)| n == number)
            .then_some(Signal(number))
    }

    /// The signal's number on this architecture.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The `SIG` name, as written on the wire.
    pub fn name(self) -> &'static str {
        SIGNALS
            .iter()
            .find(|&&(_, n)| n == self.0)
            .map_or("SIGTERM", |&(name, _)| name)
    }
}

impl FromStr for Signal {
    type Err = SignalError;

    /// Reads `SIGTERM`, `TERM` (any case) or a number.
    fn from_str(text: &str) -> Result<Signal, SignalError> {
        let upper = text.to_ascii_uppercase();
        let found = match upper.parse::<i32>() {
            Ok(number) => Signal::from_number(number),
            Err(_) => {
                let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
                SIGNALS
                    .iter()
                    .find(|(name, _)| name[3..] == *bare)
                    .map(|&(_, n)| Signal(n))
            }
        };
        found.ok_or_else(|| SignalError(text.to_string()))
    }
}

impl TryFrom<String> for Signal {
    type Error = SignalError;

    fn try_from(text: String) -> Result<Signal, SignalError> {
        text.parse()
    }
}

impl From<Signal> for &'static str {
    fn from(signal: Signal) -> &'static str {
        signal.name()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_short_names_and_numbers() {
        for text in ["SIGTERM", "TERM", "sigterm", "term", "15"] {
            assert_eq!(text.parse::<Signal>(), Ok(Signal::TERM), "{text}");
        }
        assert_eq!("9".parse::<Signal>().unwrap().name(), "SIGKILL");
        assert_eq!("sigint".parse::<Signal>().unwrap().name(), "SIGINT");
        assert_eq!("USR2".parse::<Signal>().unwrap().number(), libc::SIGUSR2);
    }

    #[test]
    fn refuses_what_is_no_signal() {
        for text in [
            "SIGNOPE",
            "",
            "SIG",
            "0",
            "65",
            "-15",
            " TERM",
            "SIGSIGTERM",
        ] {
            assert!(text.parse::<Signal>().is_err(), "{text:?}");
        }
        let err = "SIGNOPE".parse::<Signal>().unwrap_err().to_string();
        assert!(err.contains("SIGNOPE") && err.contains("SIGTERM"), "{err}");
    }

    #[test]
    fn every_name_reads_back_to_its_number() {
        for &(name, number) in SIGNALS {
            let signal = name.parse::<Signal>().unwrap();
            assert_eq!((signal.number(), signal.name()), (number, name));
            assert_eq!(Signal::from_number(number), Some(signal));
        }
    }

    #[test]
    fn written_as_its_name_and_checked_when_read() {
        assert_eq!(
            serde_json::to_string(&Signal::TERM).unwrap(),
            r#""SIGTERM""#
        );
        let read = |text| serde_json::from_str::<Signal>(text);
        assert_eq!(read(r#""SIGHUP""#).unwrap().number(), libc::SIGHUP);
        let err = read(r#""SIGNOPE""#).unwrap_err().to_string();
        assert!(err.contains("unknown signal \"SIGNOPE\""), "{err}");
    }
}
