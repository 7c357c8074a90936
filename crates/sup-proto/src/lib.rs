//! The wire protocol spoken between the `sup` CLI and the sup daemon.
//!
//! Every message is a frame: a 4-byte big-endian length followed by that many
//! bytes of JSON. Requests travel in a [`RequestEnvelope`] and answers in a
//! [`ResponseEnvelope`]; both carry [`PROTOCOL_VERSION`] so that a CLI and a
//! daemon of different versions notice it and say so instead of misreading
//! each other. Types grow by adding fields with serde defaults, never by
//! renaming them.

pub mod datefmt;
mod decode;
mod frame;
mod kinds;
pub mod logfmt;
mod message;
mod name;
pub mod notify;
pub mod schedule;
pub mod shellwords;
mod signal;
pub mod spec;

pub use decode::decode_request;
pub use frame::{decode_len, encode_frame, FrameError, HEADER_LEN, MAX_FRAME};
pub use kinds::{ErrorKind, EventKind, HealthStatus, TrackingMode};
pub use message::{
    AppInfo, AppRow, EventRecord, HealthInfo, InstanceInfo, InstanceLogs, InstanceRow, ListenNote,
    LogInfo, Request, RequestEnvelope, Response, ResponseEnvelope, Scale, Severity, Status, Target,
    Tracking, UPDATE_DEADLINE,
};
pub use name::{validate_name, NameError};
pub use signal::{Signal, SignalError};
pub use spec::{AppSpec, HealthSpec, LogSpec, Probe, Program, RestartPolicy};

/// Version of the framing and message schema. Bumped only on incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Version of the sup release this crate belongs to.
pub const SUP_VERSION: &str = env!("CARGO_PKG_VERSION");
