//! Property tests of what the daemon reads from its socket: the frame
//! header, and request bodies from arbitrary bytes, arbitrary JSON and
//! mutated valid requests. None may panic, every refusal is a typed error,
//! and whatever is encoded decodes to itself.
//!
//! Case counts (docs/testing.md lists them): 110,000 per run in all.

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;
use serde_json::{json, Value};
use sup_proto::spec::{AppSpec, HealthSpec, LogSpec, Probe, Program, RestartPolicy};
use sup_proto::{
    decode_len, decode_request, encode_frame, AppInfo, ErrorKind, EventKind, EventRecord,
    HealthInfo, HealthStatus, InstanceInfo, LogInfo, Request, RequestEnvelope, Response,
    ResponseEnvelope, Signal, Status, Target, Tracking, TrackingMode, HEADER_LEN, MAX_FRAME,
};

/// `n` cases, drawn with XorShift: proptest's default ChaCha, unoptimized
/// in a debug build, costs more than most of these cases themselves.
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

/// A refusal must be one of the kinds a request body can earn.
fn assert_refusal(result: &Result<Request, Response>) {
    if let Err(response) = result {
        let Response::Error { kind, .. } = response else {
            panic!("refused with a non-error response: {response:?}");
        };
        assert!(
            matches!(kind, ErrorKind::BadRequest | ErrorKind::Version),
            "{kind:?}"
        );
    }
}

/// Reads `stream` as the daemon reads its socket: header, body, request,
/// until the bytes run out or a header is refused.
fn read_stream(mut stream: &[u8]) -> usize {
    let mut requests = 0;
    while stream.len() >= HEADER_LEN {
        let header: [u8; HEADER_LEN] = stream[..HEADER_LEN].try_into().unwrap();
        let Ok(len) = decode_len(header) else { break };
        stream = &stream[HEADER_LEN..];
        let Some(body) = stream.get(..len) else { break };
        let result = decode_request(body);
        assert_refusal(&result);
        requests += usize::from(result.is_ok());
        stream = &stream[len..];
    }
    requests
}

/// Short strings: names, any characters, and the ones JSON must escape.
fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec!['"', '\\', '\0', '\u{7f}', '\u{2028}', 'é', '😀']);
    let char = prop_oneof![4 => prop::char::range('a', 'z'), 1 => any::<char>(), 1 => special];
    vec(char, 0..10).prop_map(String::from_iter)
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::All),
        any::<u32>().prop_map(Target::Id),
        text().prop_map(Target::Name),
    ]
}

fn signal() -> impl Strategy<Value = Signal> {
    (1..=31i32).prop_filter_map("not a standard signal", Signal::from_number)
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

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        text().prop_map(|url| Probe::Http { url }),
        text().prop_map(|addr| Probe::Tcp { addr }),
        text().prop_map(|line| Probe::Cmd { line }),
        Just(Probe::Notify),
        Just(Probe::Message),
    ]
}

fn policy() -> impl Strategy<Value = RestartPolicy> {
    prop_oneof![
        Just(RestartPolicy::Always),
        Just(RestartPolicy::OnFailure),
        Just(RestartPolicy::UnlessStopped),
        Just(RestartPolicy::No),
    ]
}

fn logs() -> BoxedStrategy<LogSpec> {
    let file = || option::of(text());
    (
        file(),
        file(),
        file(),
        any::<bool>(),
        any::<u64>(),
        any::<u32>(),
        option::of(text()),
    )
        .prop_map(
            |(out_file, err_file, combined_file, timestamps, max_size, keep, date_format)| {
                LogSpec {
                    out_file,
                    err_file,
                    combined_file,
                    timestamps,
                    date_format,
                    max_size,
                    keep,
                    json: keep % 7 == 0,
                    compress: keep % 3 == 0,
                    keep_days: Some(keep).filter(|k| k % 5 == 0),
                    per_instance: keep % 2 == 0,
                }
            },
        )
        .boxed()
}

fn health() -> BoxedStrategy<HealthSpec> {
    let ms = any::<u64>;
    (
        option::of(probe()),
        option::of(probe()),
        ms(),
        ms(),
        any::<u32>(),
        ms(),
        ms(),
    )
        .prop_map(
            |(liveness, readiness, interval_ms, timeout_ms, retries, start_period_ms, ready)| {
                HealthSpec {
                    liveness,
                    readiness,
                    interval_ms,
                    timeout_ms,
                    retries,
                    start_period_ms,
                    ready_timeout_ms: ready,
                }
            },
        )
        .boxed()
}

fn spec() -> BoxedStrategy<AppSpec> {
    let ms = any::<u64>;
    let what = (
        text(),
        program(),
        vec(text(), 0..4),
        text(),
        btree_map(text(), text(), 0..4),
    );
    let restarts = (
        policy(),
        ms(),
        ms(),
        ms(),
        option::of(any::<u32>()),
        signal(),
        ms(),
    );
    let rest = (logs(), vec(text(), 0..3), health(), option::of(text()));
    (what, restarts, rest)
        .prop_map(
            |((name, program, args, cwd, env), restarts, (logs, listen, health, on_event))| {
                let (
                    restart,
                    restart_delay_ms,
                    backoff_max_ms,
                    min_uptime_ms,
                    max_restarts,
                    stop,
                    kill,
                ) = restarts;
                // The trigger fields reuse drawn values: they round-trip too.
                let (watch, ignore_watch) = (listen.clone(), vec![cwd.clone()]);
                let (user, group) = (on_event.clone(), Some(name.clone()));
                AppSpec {
                    name,
                    program,
                    args,
                    inherited_env: std::sync::Arc::new(env.clone()),
                    namespace: on_event.clone(),
                    source: Some(cwd.clone()),
                    cwd,
                    env,
                    restart,
                    restart_delay_ms,
                    backoff_max_ms,
                    min_uptime_ms,
                    max_restarts,
                    stop_signal: stop,
                    instances: restart_delay_ms as u32 % 1024 + 1,
                    instance_var: None,
                    increment_var: user.clone(),
                    kill_timeout_ms: kill,
                    logs,
                    listen: listen.clone(),
                    health,
                    cron_restart: on_event.clone(),
                    memory_max: max_restarts.map(u64::from),
                    cpu_quota: max_restarts,
                    notify: listen.iter().map(|l| format!("http://{l}/")).collect(),
                    on_event,
                    max_memory: max_restarts.map(u64::from),
                    watch,
                    ignore_watch,
                    watch_delay_ms: kill,
                    stop_exit_codes: vec![kill as i32],
                    user,
                    group,
                }
            },
        )
        .boxed()
}

fn request() -> BoxedStrategy<Request> {
    prop_oneof![
        Just(Request::Ping),
        (spec(), any::<bool>()).prop_map(|(spec, wait)| Request::Add {
            spec: Box::new(spec),
            wait
        }),
        target().prop_map(Request::Start),
        target().prop_map(Request::Stop),
        target().prop_map(Request::Restart),
        target().prop_map(Request::Delete),
        Just(Request::List),
        target().prop_map(Request::Describe),
        Just(Request::Kill),
        target().prop_map(Request::Flush),
        target().prop_map(Request::Reset),
        option::of(text()).prop_map(|listen| Request::Web { listen }),
        target().prop_map(Request::Reload),
        any::<bool>().prop_map(|force| Request::Save { force }),
        Just(Request::Resurrect),
        text().prop_map(|binary| Request::Update { binary }),
        (option::of(target()), any::<bool>())
            .prop_map(|(target, follow)| Request::Events { target, follow }),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::from),
            btree_map(
                prop_oneof![
                    text(),
                    Just("op".to_string()),
                    Just("args".to_string()),
                    Just("spec".to_string()),
                    Just("name".to_string()),
                    Just("stop_signal".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn op() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "ping",
            "add",
            "start",
            "stop",
            "restart",
            "delete",
            "list",
            "describe",
            "kill",
            "flush",
            "reload",
            "save",
            "resurrect",
            "update",
            "events",
        ])
        .prop_map(str::to_string),
        text(),
    ]
}

/// One edit of a byte string: flip, insert, delete, or cut it short.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"{}[]\":,\\0-9aez \x00\xff".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Mutation::Set(at, b)),
        (any::<usize>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Mutation::Set(at, b) if !bytes.is_empty() => bytes[at % len] = b,
            Mutation::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
            Mutation::Remove(at) if !bytes.is_empty() => {
                bytes.remove(at % len);
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
            _ => {}
        }
    }
    bytes
}

fn app_info() -> BoxedStrategy<AppInfo> {
    let status = prop::sample::select(Status::ALL.to_vec());
    // Binary fractions: their JSON text reads back to the same f64.
    let cpu = (0u32..1_000_000).prop_map(|n| f64::from(n) / 8.0);
    let instance = (
        option::of(any::<u32>()),
        status.clone(),
        cpu.clone(),
        any::<u64>(),
    )
        .prop_map(|(pid, status, cpu, memory)| InstanceInfo {
            index: pid.unwrap_or(0) % 8,
            pid,
            restarts: memory as u32,
            ready: pid.is_some(),
            status,
            uptime_ms: pid.map(u64::from),
            cpu,
            memory,
            cpu_seconds: 0.0,
            last_pid: pid,
            listen: pid.map(|p| sup_proto::ListenNote {
                note: format!("listen({p})"),
                mismatch: p % 2 == 0,
            }),
        });
    let health = prop::sample::select(vec![
        HealthStatus::Starting,
        HealthStatus::Healthy,
        HealthStatus::Unhealthy,
        HealthStatus::Unknown,
    ]);
    (
        (any::<u32>(), text(), option::of(any::<u32>()), status),
        (any::<u32>(), cpu, any::<u64>(), option::of(text())),
        (vec(instance, 0..3), health, option::of(spec())),
    )
        .prop_map(
            |((id, name, pid, status), (restarts, cpu, memory, error), (instances, h, spec))| {
                let last_exit_text = error.clone();
                AppInfo {
                    id,
                    name,
                    pid,
                    status,
                    restarts,
                    unstable_restarts: restarts / 2,
                    stopped_by_user: restarts % 2 == 0,
                    uptime_ms: pid.map(u64::from),
                    cpu,
                    memory,
                    last_exit: error.clone(),
                    last_exit_code: pid.map(|p| (p % 256) as i32),
                    state_warnings: error.iter().cloned().collect(),
                    socket_warning: error.clone(),
                    error,
                    restart_reason: None,
                    restart_in_ms: None,
                    added_at_ms: pid.map(i64::from),
                    ready_instances: instances.len() as u32,
                    instances,
                    logs: LogInfo::default(),
                    health: HealthInfo {
                        status: h,
                        ..HealthInfo::default()
                    },
                    listen: Vec::new(),
                    dump_warning: None,
                    tracking: pid.map(|_| Tracking {
                        mode: TrackingMode::Tags,
                        reason: last_exit_text.clone(),
                        controllers: vec!["cpu".into()],
                        cgroup: None,
                    }),
                    spec,
                }
            },
        )
        .boxed()
}

fn response() -> BoxedStrategy<Response> {
    let error_kind = prop::sample::select(ErrorKind::KNOWN.to_vec());
    let event_kind = prop::sample::select(EventKind::KNOWN.to_vec());
    let event = (any::<i64>(), any::<u32>(), text(), event_kind, text()).prop_map(
        |(ts_ms, app_id, app, kind, detail)| EventRecord {
            ts_ms,
            app_id,
            app,
            kind,
            detail,
        },
    );
    prop_oneof![
        (text(), any::<u32>(), any::<u64>(), text()).prop_map(
            |(version, pid, started_at_ms, home)| Response::Pong {
                version,
                pid,
                started_at_ms,
                home
            }
        ),
        vec(app_info(), 0..3).prop_map(Response::Apps),
        Just(Response::Ok),
        text().prop_map(Response::Note),
        vec(event, 0..4).prop_map(Response::Events),
        (error_kind, text()).prop_map(|(kind, message)| Response::error(kind, message)),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(cases(40_000))]

    /// Any header is a length up to the limit, or refused: never a panic,
    /// never a length above MAX_FRAME.
    #[test]
    fn any_header_is_a_bounded_length_or_refused(header in any::<[u8; HEADER_LEN]>()) {
        let announced = u32::from_be_bytes(header) as usize;
        match decode_len(header) {
            Ok(len) => prop_assert!(len == announced && len <= MAX_FRAME),
            Err(_) => prop_assert!(announced > MAX_FRAME),
        }
    }
}

proptest! {
    #![proptest_config(cases(20_000))]

    /// Arbitrary bytes as a request body: a request or a typed refusal.
    #[test]
    fn any_body_is_a_request_or_a_refusal(body in vec(any::<u8>(), 0..256)) {
        assert_refusal(&decode_request(&body));
    }
}

proptest! {
    #![proptest_config(cases(10_000))]

    /// Arbitrary bytes read as a stream of frames, the daemon's way.
    #[test]
    fn any_byte_stream_reads_without_panic(stream in vec(any::<u8>(), 0..512)) {
        read_stream(&stream);
    }

    /// Arbitrary JSON in an envelope (current, older, newer protocol; known
    /// or unknown op): a request or a typed refusal.
    #[test]
    fn any_json_request_is_a_request_or_a_refusal(
        proto in prop_oneof![Just(json!(1)), Just(json!(0)), Just(json!(2)), json_value()],
        op in op(),
        args in json_value(),
        with_args in any::<bool>(),
    ) {
        let mut request = json!({ "op": op });
        if with_args {
            request["args"] = args;
        }
        let body = serde_json::to_vec(&json!({ "proto": proto, "client": "x", "request": request }))
            .unwrap();
        assert_refusal(&decode_request(&body));
    }

    /// Every generated request survives encode, frame and decode unchanged.
    #[test]
    fn requests_round_trip(request in request()) {
        let frame = encode_frame(&RequestEnvelope::new(request.clone())).unwrap();
        let len = decode_len(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
        prop_assert_eq!(len, frame.len() - HEADER_LEN);
        prop_assert_eq!(decode_request(&frame[HEADER_LEN..]).unwrap(), request);
    }
}

proptest! {
    #![proptest_config(cases(15_000))]

    /// A valid request with a few bytes flipped, inserted, removed or cut:
    /// a request or a typed refusal; what still decodes re-encodes to
    /// itself.
    #[test]
    fn mutated_requests_are_requests_or_refusals(
        request in request(),
        edits in vec(mutation(), 1..4),
    ) {
        let body = serde_json::to_vec(&RequestEnvelope::new(request)).unwrap();
        let result = decode_request(&mutate(body, &edits));
        assert_refusal(&result);
        if let Ok(decoded) = result {
            let again = serde_json::to_vec(&RequestEnvelope::new(decoded.clone())).unwrap();
            prop_assert_eq!(decode_request(&again).unwrap(), decoded);
        }
    }
}

proptest! {
    #![proptest_config(cases(5_000))]

    /// Every generated answer survives encode, frame and decode unchanged.
    #[test]
    fn responses_round_trip(response in response()) {
        let frame = encode_frame(&ResponseEnvelope::new(response.clone())).unwrap();
        let len = decode_len(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
        prop_assert_eq!(len, frame.len() - HEADER_LEN);
        let envelope: ResponseEnvelope = serde_json::from_slice(&frame[HEADER_LEN..]).unwrap();
        prop_assert_eq!(envelope.response, response);
    }
}

/// A stream of valid frames reads back as that many requests.
#[test]
fn a_stream_of_frames_reads_request_by_request() {
    let requests = [Request::Ping, Request::List, Request::Stop(Target::All)];
    let stream: Vec<u8> = requests
        .iter()
        .flat_map(|r| encode_frame(&RequestEnvelope::new(r.clone())).unwrap())
        .collect();
    assert_eq!(read_stream(&stream), 3);
    assert_eq!(read_stream(&stream[..stream.len() - 1]), 2);
}
