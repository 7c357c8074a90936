//! Property tests of the dump and live state parsers: arbitrary bytes and
//! mutations of valid files never panic (a damaged file is an error, never
//! a crash of the daemon that reads it at startup), and valid files read
//! back as written. Case counts are in `docs/persistence.md`.

use super::{parse, LiveInstance, LoadError, SavedApp, Snapshot};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::path::Path;
use sup_proto::{AppSpec, Program, RestartPolicy};

/// Cases per property; together they run 10^5 cases (in about 4 s of CPU
/// in a debug build, where one parse of a small file takes ~50 µs).
const BYTES_CASES: u32 = 30_000;
const SOUP_CASES: u32 = 30_000;
const MUTATED_CASES: u32 = 30_000;
const ROUND_TRIP_CASES: u32 = 5_000;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Short strings over a few characters that JSON escapes or encodes in
/// several bytes, beside plain ones.
fn text() -> impl Strategy<Value = String> {
    const CHARS: [char; 12] = [
        'a', 'Z', '0', '.', ' ', '"', '\\', '\n', '\u{0}', 'é', '€', '😀',
    ];
    proptest::collection::vec(proptest::sample::select(&CHARS[..]), 0..8)
        .prop_map(|c| c.into_iter().collect())
}

fn program() -> impl Strategy<Value = Program> {
    prop_oneof![
        text().prop_map(|path| Program::Exec { path }),
        (text(), text()).prop_map(|(interpreter, script)| Program::Script {
            interpreter,
            script
        }),
        text().prop_map(|line| Program::Shell { line }),
    ]
}

fn spec() -> impl Strategy<Value = AppSpec> {
    let restart = prop_oneof![
        Just(RestartPolicy::Always),
        Just(RestartPolicy::UnlessStopped),
        Just(RestartPolicy::OnFailure),
        Just(RestartPolicy::No),
    ];
    let env = proptest::collection::btree_map(text(), text(), 0..3);
    (
        text(),
        program(),
        proptest::collection::vec(text(), 0..3),
        env,
        restart,
        any::<Option<u32>>(),
        any::<u64>(),
    )
        .prop_map(
            |(name, program, args, env, restart, max_restarts, kill_timeout_ms)| AppSpec {
                name,
                program,
                args,
                env,
                restart,
                max_restarts,
                kill_timeout_ms,
                ..AppSpec::default()
            },
        )
}

fn saved_app() -> impl Strategy<Value = SavedApp> {
    let instance = any::<Option<(u32, u64)>>()
        .prop_map(|i| i.map(|(pid, start_time)| LiveInstance { pid, start_time }));
    (any::<u32>(), spec(), any::<bool>(), any::<bool>(), instance).prop_map(
        |(id, spec, stopped_by_user, was_running, instance)| SavedApp {
            id,
            spec,
            stopped_by_user,
            was_running,
            instance,
        },
    )
}

/// A snapshot as the daemon writes it (`version` is ours: a newer one is
/// refused by design).
fn snapshot(apps: impl Strategy<Value = Vec<SavedApp>>) -> impl Strategy<Value = Snapshot> {
    (apps, text(), any::<i64>()).prop_map(|(apps, boot_id, written_at_ms)| Snapshot {
        boot_id,
        written_at_ms,
        ..Snapshot::new(apps)
    })
}

/// One edit of a file's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match *edit {
        Edit::Flip(at, b) => bytes[at % len] ^= b,
        Edit::Insert(at, b) => bytes.insert(at % (len + 1), b),
        Edit::Remove(at) => {
            bytes.remove(at % len);
        }
        Edit::Truncate(at) => bytes.truncate(at % len),
    }
}

/// The live state parser: a snapshot of exactly one app.
fn parse_app(path: &Path, bytes: &[u8]) -> Result<(String, SavedApp), LoadError> {
    super::state::one_app(path, parse(path, bytes)?)
}

/// Both parsers on `bytes`: whatever they say, they say it without panicking.
fn parse_both(bytes: &[u8]) -> Result<Snapshot, LoadError> {
    let path = Path::new("/h/state/0.json");
    let read = parse(path, bytes);
    if let Ok(snap) = &read {
        let _ = super::state::one_app(path, snap.clone());
    }
    read
}

/// Valid files to mutate, built once: a dump of several apps, one app's
/// live state, and 0.1.0's state file (every app, with instances).
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut files = Vec::new();
        for apps in [0, 1, 1, 1, 1, 2, 2, 3] {
            let snap = snapshot(proptest::collection::vec(saved_app(), apps))
                .new_tree(&mut runner)
                .unwrap()
                .current();
            files.push(match apps {
                3 => serde_json::to_vec_pretty(&snap).unwrap(),
                _ => serde_json::to_vec(&snap).unwrap(),
            });
        }
        files
    })
}

proptest! {
    #![proptest_config(config(BYTES_CASES))]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = parse_both(&bytes);
    }
}

/// Pieces of snapshot files, so that random sequences get past the first
/// byte of the parser more often than random bytes do.
const TOKENS: [&str; 24] = [
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"version\"",
    "\"apps\"",
    "\"id\"",
    "\"spec\"",
    "\"name\"",
    "\"instance\"",
    "\"pid\"",
    "\"start_time\"",
    "\"boot_id\"",
    "1",
    "2",
    "-1",
    "99999999999999999999",
    "1e400",
    "null",
    "true",
    "\"\\u0000\"",
    "\u{ff}",
];

proptest! {
    #![proptest_config(config(SOUP_CASES))]
    #[test]
    fn token_soup_never_panics(
        tokens in proptest::collection::vec(proptest::sample::select(&TOKENS[..]), 0..40),
    ) {
        let _ = parse_both(tokens.concat().as_bytes());
    }
}

proptest! {
    #![proptest_config(config(MUTATED_CASES))]
    #[test]
    fn mutated_valid_files_never_panic(
        file in 0..corpus().len(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let mut bytes = corpus()[file].clone();
        for e in &edits {
            apply(&mut bytes, e);
        }
        // A mutation that still parses is a snapshot like any other.
        if let Ok(read) = parse_both(&bytes) {
            prop_assert!(read.version <= super::FORMAT_VERSION);
        }
    }
}

proptest! {
    #![proptest_config(config(ROUND_TRIP_CASES))]
    #[test]
    fn valid_files_round_trip(snap in snapshot(proptest::collection::vec(saved_app(), 0..4))) {
        let path = Path::new("/h/dump.json");
        // The dump is written pretty, the live state compact.
        let pretty = serde_json::to_vec_pretty(&snap).unwrap();
        prop_assert_eq!(parse(path, &pretty).unwrap(), snap.clone());
        let compact = serde_json::to_vec(&snap).unwrap();
        let one = snap.apps.len() == 1;
        match parse_app(path, &compact) {
            Ok((boot, app)) => {
                prop_assert!(one);
                prop_assert_eq!(boot, snap.boot_id);
                prop_assert_eq!(&app, &snap.apps[0]);
            }
            Err(_) => prop_assert!(!one, "a file of one app reads back"),
        }
    }

    #[test]
    fn one_app_files_round_trip(app in saved_app(), boot in text()) {
        let snap = Snapshot { boot_id: boot.clone(), ..Snapshot::new(vec![app.clone()]) };
        let bytes = serde_json::to_vec(&snap).unwrap();
        let (read_boot, read_app) = parse_app(Path::new("/h/state/1.json"), &bytes).unwrap();
        prop_assert_eq!((read_boot, read_app), (boot, app));
    }
}
