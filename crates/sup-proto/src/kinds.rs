//! The closed sets of words the protocol carries: error kinds, event kinds
//! and health states. Each is a string on the wire (the same strings as in
//! sup 0.1.0); a word this version does not know reads as `Unknown`, so a
//! newer daemon's answers still parse.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a wire enum: each variant with its exact string, plus the
/// `unknown` catch-all, `as_str` and `Display`, from one list.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )*
            /// A word this version of sup does not know (sent by a newer one).
            #[serde(rename = "unknown", other)]
            Unknown,
        }

        impl $name {
            /// Every variant but `Unknown`.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The string on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Unknown => "unknown",
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Why the daemon refused or failed a request ([`crate::Response::Error`]).
    pub enum ErrorKind {
        /// No app (or no dump) by that name or id.
        NotFound = "not_found",
        /// An app with that name already exists.
        Conflict = "conflict",
        /// The request is malformed or asks for something impossible.
        BadRequest = "bad_request",
        /// The CLI speaks another protocol version.
        Version = "version",
        /// The caller is not the daemon's user.
        Forbidden = "forbidden",
        /// Something failed inside the daemon (a write, an encoding).
        Internal = "internal",
        /// The dump (and its backup) cannot be read.
        BadDump = "bad_dump",
        /// Try again shortly: an app is launching or stopping.
        Busy = "busy",
        /// `sup update` cannot replace the daemon; the old one goes on.
        Update = "update",
        /// A reload's new instance failed; the old one keeps serving.
        ReloadFailed = "reload_failed",
        /// The daemon is stopping and takes no new work.
        ShuttingDown = "shutting_down",
    }
}

wire_enum! {
    /// What happened to an app ([`crate::EventRecord`]).
    pub enum EventKind {
        /// An instance was spawned.
        Started = "started",
        /// The app turned online.
        Online = "online",
        /// An instance passed its readiness check.
        Ready = "ready",
        /// An instance exited (detail: the exit code or signal).
        Exited = "exited",
        /// A restart is scheduled (detail: the delay).
        Restarting = "restarting",
        /// The app stopped and stays stopped.
        Stopped = "stopped",
        /// The app gave up (too many unstable restarts, or it cannot spawn).
        Errored = "errored",
        /// A liveness probe failed.
        Unhealthy = "unhealthy",
        /// The liveness probe passes again.
        Healthy = "healthy",
        /// A reload started a new instance.
        Reloading = "reloading",
        /// A reload's new instance took over.
        Reloaded = "reloaded",
        /// A reload's new instance failed; the old one keeps serving.
        ReloadFailed = "reload-failed",
        /// An `on_event` hook could not run or failed.
        HookFailed = "hook-failed",
        /// The app does not take the sockets sup holds for it.
        SocketNotTaken = "socket-not-taken",
        /// A trigger restarts or reloads the app (detail: the memory limit
        /// passed, the schedule, or the file changed).
        Triggered = "triggered",
        /// A watched path cannot be watched (detail: which, and why).
        WatchFailed = "watch-failed",
    }
}

wire_enum! {
    /// How the daemon tells which processes are an app's ([`crate::Tracking`]).
    pub enum TrackingMode {
        /// A cgroup v2 per instance: membership, kills and figures come
        /// from the kernel.
        Cgroup = "cgroup",
        /// Process groups and environment tags (no cgroup the daemon may manage).
        Tags = "tags",
    }
}

/// Liveness health of an app ([`crate::HealthInfo`]). Its `Unknown` also
/// means "no probe is set", which is why it is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// A probe is set; it has not answered yet.
    Starting,
    /// The last probe passed.
    Healthy,
    /// The last probes failed (see `failures`).
    Unhealthy,
    /// No probe is set, or a state this version of sup does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl HealthStatus {
    /// The string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Unknown => "unknown",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire<T: Serialize>(value: T) -> String {
        serde_json::to_string(&value).unwrap()
    }

    #[test]
    fn known_words_round_trip_as_their_strings() {
        for &kind in ErrorKind::KNOWN {
            assert_eq!(wire(kind), format!("\"{kind}\""));
            assert_eq!(
                serde_json::from_str::<ErrorKind>(&wire(kind)).unwrap(),
                kind
            );
        }
        for &kind in EventKind::KNOWN {
            assert_eq!(wire(kind), format!("\"{kind}\""));
            assert_eq!(
                serde_json::from_str::<EventKind>(&wire(kind)).unwrap(),
                kind
            );
        }
        use HealthStatus::*;
        for status in [Starting, Healthy, Unhealthy, Unknown] {
            assert_eq!(wire(status), format!("\"{status}\""));
        }
    }

    #[test]
    fn strings_are_those_of_0_1_0() {
        assert_eq!(ErrorKind::KNOWN.len(), 11);
        assert_eq!(wire(ErrorKind::NotFound), r#""not_found""#);
        assert_eq!(wire(ErrorKind::ReloadFailed), r#""reload_failed""#);
        assert_eq!(wire(EventKind::ReloadFailed), r#""reload-failed""#);
        assert_eq!(wire(EventKind::HookFailed), r#""hook-failed""#);
        assert_eq!(wire(HealthStatus::Unhealthy), r#""unhealthy""#);
    }

    /// The docs list every kind, in a table row of its own.
    #[test]
    fn docs_list_every_kind() {
        let row = |kind: &dyn fmt::Display| format!("\n| `{kind}` |");
        let events = include_str!("../../../docs/health.md");
        for kind in EventKind::KNOWN {
            assert!(events.contains(&row(kind)), "docs/health.md misses {kind}");
        }
        let errors = include_str!("../../../docs/design.md");
        for kind in ErrorKind::KNOWN {
            assert!(errors.contains(&row(kind)), "docs/design.md misses {kind}");
        }
    }

    #[test]
    fn words_from_a_newer_sup_read_as_unknown() {
        let read = |text| serde_json::from_str::<ErrorKind>(text).unwrap();
        assert_eq!(read(r#""rate_limited""#), ErrorKind::Unknown);
        let read = |text| serde_json::from_str::<EventKind>(text).unwrap();
        assert_eq!(read(r#""scaled""#), EventKind::Unknown);
        let read = |text| serde_json::from_str::<HealthStatus>(text).unwrap();
        assert_eq!(read(r#""degraded""#), HealthStatus::Unknown);
    }
}
