//! Property tests of the config parsers: whatever a file holds, loading it
//! never panics; it yields apps or a [`ConfigError`]. 110,000 cases per run
//! (docs/testing.md lists them).

use super::{env_file, pm2, sup_toml, ConfigError, Options};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;
use serde_json::Value;
use std::path::Path;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

fn options() -> Options {
    Options {
        cwd: std::env::temp_dir(),
        path_var: String::new(),
        inherited: Default::default(),
        profile: Some("production".into()),
        cpus: 2,
    }
}

/// Text drawn from the characters config syntax is made of, and any char.
fn text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            "[[app]]\n", "name = ", "script = ", "\"", "'", "=", "\n", " ", "[", "]", "{", "}",
            ",", "#", "args", "env", "kill_timeout_ms = 5", "program", "kind", "exec", "\\",
            "instances = 2", "[app.env]\n", "true", "-", ":", ".",
        ])
        .prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    vec(piece, 0..max).prop_map(|parts| parts.concat())
}

/// JSON shaped like PM2 apps: known keys with values of any type.
fn pm2_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text(6).prop_map(Value::String),
        Just(Value::String("app.js".into())),
        Just(Value::String("max".into())),
    ];
    let keys = prop::sample::select(vec![
        "name",
        "script",
        "args",
        "cwd",
        "env",
        "env_production",
        "instances",
        "exec_mode",
        "interpreter",
        "node_args",
        "autorestart",
        "max_restarts",
        "min_uptime",
        "kill_timeout",
        "out_file",
        "log_file",
        "time",
        "watch",
        "user",
        "port",
        "apps",
        "deploy",
        "other",
    ]);
    leaf.prop_recursive(3, 40, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(keys.clone().prop_map(str::to_string), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn file(name: &str) -> &Path {
    Path::new(name)
}

/// An error names its file, and a position inside the text when it has one.
fn check(result: Result<super::Loaded, ConfigError>, text: &str) {
    if let Err(err) = result {
        assert!(!err.message.is_empty());
        if let Some((line, col)) = err.at {
            assert!(line >= 1 && col >= 1);
            assert!(line <= text.lines().count().max(1) + 1, "{err}");
        }
    }
}

proptest! {
    #![proptest_config(cases(30_000))]
    #[test]
    fn args_split_never_panics_and_keeps_only_words(s in text(24)) {
        for part in pm2::split_args(&s) {
            prop_assert!(!part.trim().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(cases(20_000))]
    #[test]
    fn env_files_parse_or_name_a_line(s in text(24)) {
        if let Err((line, _)) = env_file::parse(&s) {
            prop_assert!(line.0 >= 1 && line.0 <= s.lines().count() && line.1 >= 1);
        }
    }
}

proptest! {
    #![proptest_config(cases(35_000))]
    #[test]
    fn sup_toml_loads_or_fails_cleanly(s in text(30)) {
        let mut opts = options();
        opts.profile = None;
        check(sup_toml::parse(file("sup.toml"), &s, &opts), &s);
    }
}

proptest! {
    #![proptest_config(cases(20_000))]
    #[test]
    fn pm2_objects_map_or_fail_cleanly(v in pm2_value()) {
        check(pm2::from_value(file("ecosystem.config.js"), v, &options()), "");
    }
}

proptest! {
    #![proptest_config(cases(5_000))]
    #[test]
    fn yaml_text_loads_or_fails_cleanly(s in text(20)) {
        if let Ok(v) = serde_yaml_ng::from_str::<Value>(&s) {
            check(pm2::from_value(file("apps.yml"), v, &options()), "");
        }
    }
}
