//! PM2's saved process list (`$PM2_HOME/dump.pm2`, what `pm2 save`
//! writes), read without PM2 running: a JSON array with one entry per
//! PM2 process, each PM2's `pm2_env` (the app's keys, PM2's bookkeeping,
//! and the environment both flattened in and under `env`). Entries of
//! one app (its instances) become one app with `instances`; each is then
//! mapped by the same mapping as an ecosystem file ([`super::pm2`]).

use super::{error, pm2, ConfigError, Loaded, Options};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// PM2's own bookkeeping in an entry: how the process ran, not what the
/// app asked for. Dropped without a warning (docs/pm2.md says so).
const BOOKKEEPING: [&str; 27] = [
    "pm_id",
    "status",
    "pm_uptime",
    "created_at",
    "restart_time",
    "unstable_restarts",
    "unique_id",
    "_pm2_version",
    "version",
    "node_version",
    "pm_pid_path",
    "km_link",
    "vizion_running",
    "vizion",
    "pmx",
    "automation",
    "axm_actions",
    "axm_monitor",
    "axm_options",
    "axm_dynamic",
    "versioning",
    "prev_restart_delay",
    "exit_code",
    "username",
    "windowsHide",
    "kill_retry_time",
    "autostart",
];

/// Variables PM2 or the shell that ran it put in every app's environment.
fn is_pm2s_variable(key: &str) -> bool {
    key.starts_with("PM2_")
        || [
            "NODE_APP_INSTANCE",
            "PWD",
            "OLDPWD",
            "SHLVL",
            "_",
            "unique_id",
        ]
        .contains(&key)
}

/// Where PM2 keeps its files: `$PM2_HOME`, else `~/.pm2`.
pub fn pm2_home(vars: &BTreeMap<String, String>) -> Option<PathBuf> {
    match vars.get("PM2_HOME") {
        Some(home) if !home.is_empty() => Some(PathBuf::from(home)),
        _ => vars.get("HOME").map(|h| Path::new(h).join(".pm2")),
    }
}

/// Reads `dump` (a `dump.pm2` of the PM2 home `pm2_home`) into apps.
pub fn load(dump: &Path, pm2_home: &Path, options: &Options) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(dump)
        .map_err(|e| error(dump, format!("cannot read PM2's saved list: {e}")))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| ConfigError {
        file: dump.to_path_buf(),
        at: Some((e.line(), e.column())),
        message: format!("invalid JSON: {e}"),
    })?;
    let Value::Array(entries) = value else {
        return Err(error(dump, "expected an array of processes"));
    };
    let mut loaded = Loaded::default();
    for (fields, count) in by_app(dump, entries)? {
        let app = app_object(fields, count, pm2_home, options, &mut loaded.warnings);
        let spec = pm2::map_app(dump, app, options, &mut loaded.warnings)?;
        loaded.apps.push(spec);
    }
    if loaded.apps.is_empty() {
        return Err(error(dump, "PM2's saved list has no apps"));
    }
    super::check_apps(dump, &loaded.apps)?;
    Ok(loaded)
}

/// One app's first entry, and how many instances it has.
type Grouped = (Map<String, Value>, u32);

/// The entries grouped by app name, in the order of their first
/// instance: the first entry of each, and how many there are.
fn by_app(dump: &Path, entries: Vec<Value>) -> Result<Vec<Grouped>, ConfigError> {
    let mut apps: Vec<Grouped> = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let Value::Object(fields) = entry else {
            return Err(error(dump, format!("entry {i} is not an object")));
        };
        let name = fields.get("name").and_then(Value::as_str);
        let Some(name) = name.map(str::to_string) else {
            return Err(error(dump, format!("entry {i} has no name")));
        };
        match apps.iter_mut().find(|(f, _)| f["name"] == name.as_str()) {
            Some((_, count)) => *count += 1,
            None => apps.push((fields, 1)),
        }
    }
    Ok(apps)
}

/// One app's entry rewritten as the app object of an ecosystem file.
fn app_object(
    mut entry: Map<String, Value>,
    instances: u32,
    pm2_home: &Path,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Map<String, Value> {
    let name = entry["name"].as_str().unwrap_or_default().to_string();
    if let Some(status) = entry.get("status").and_then(Value::as_str) {
        if status != "online" {
            warnings.push(format!("{name}: was {status} under PM2; sup starts it"));
        }
    }
    let mut env = match entry.remove("env") {
        Some(Value::Object(env)) => env,
        _ => Map::new(),
    };
    // The environment is flattened into the entry too: take it out. A key
    // in capitals is a variable, never one of PM2's options (all lower
    // case), even when `env` lacks it.
    let vars: Vec<String> = entry
        .keys()
        .filter(|k| env.contains_key(*k) || is_variable_name(k) || is_pm2s_variable(k))
        .cloned()
        .collect();
    for key in vars {
        if let Some(value) = entry.remove(&key) {
            env.entry(key).or_insert(value);
        }
    }
    let merged = entry.get("merge_logs") == Some(&Value::Bool(true));
    for key in BOOKKEEPING {
        entry.remove(key);
    }
    let mut app = Map::new();
    app.insert("instances".into(), instances.into());
    move_key(&mut entry, "pm_exec_path", &mut app, "script");
    move_key(&mut entry, "pm_cwd", &mut app, "cwd");
    entry.remove("cwd");
    if entry.get("namespace").and_then(Value::as_str) == Some("default") {
        entry.remove("namespace");
    }
    // PM2's defaults, which sup's own defaults match.
    if entry.get("treekill") == Some(&Value::Bool(true)) {
        entry.remove("treekill");
    }
    if entry.get("instance_var").and_then(Value::as_str) == Some("NODE_APP_INSTANCE") {
        entry.remove("instance_var");
    }
    if entry
        .get("filter_env")
        .is_some_and(|f| f == &Value::Array(Vec::new()))
    {
        entry.remove("filter_env");
    }
    log_paths(&mut entry, &mut app, instances > 1 && !merged, pm2_home);
    let declared = declared_env(env, &name, options, warnings);
    app.insert("env".into(), Value::Object(declared));
    // Whatever is left is the app's own keys, as PM2 took them from
    // the command line or the file: the mapping carries or names each.
    for (key, value) in entry {
        app.entry(key).or_insert(value);
    }
    app
}

/// PM2's log paths: its own defaults under `$PM2_HOME/logs` give way
/// to sup's logs; paths the user chose are kept. With one file per
/// instance (`per_instance`), PM2 named each `<file>-<pm_id>.<ext>`: the
/// file asked for is that without the suffix, and sup keeps one per
/// instance too.
fn log_paths(
    entry: &mut Map<String, Value>,
    app: &mut Map<String, Value>,
    per_instance: bool,
    pm2_home: &Path,
) {
    let pm2_logs = pm2_home.join("logs");
    for (from, to) in [
        ("pm_out_log_path", "out_file"),
        ("pm_err_log_path", "error_file"),
        ("pm_log_path", "log_file"),
    ] {
        let original = entry.remove(to);
        let Some(Value::String(path)) = entry.remove(from).or(original) else {
            continue;
        };
        if Path::new(&path).starts_with(&pm2_logs) {
            continue;
        }
        let path = if per_instance {
            app.insert("merge_logs".into(), Value::Bool(false));
            without_instance_suffix(&path)
        } else {
            path
        };
        app.insert(to.into(), Value::String(path));
    }
}

/// `/x/app-out-3.log` -> `/x/app-out.log` (PM2's dump keeps no pm_id).
fn without_instance_suffix(path: &str) -> String {
    let p = Path::new(path);
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let base = stem.trim_end_matches(|c: char| c.is_ascii_digit());
    let Some(base) = base.strip_suffix('-').filter(|_| base.len() < stem.len()) else {
        return path.to_string();
    };
    let name = match p.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{base}.{ext}"),
        None => base.to_string(),
    };
    p.with_file_name(name).display().to_string()
}

/// `NODE_ENV`, `DATABASE_URL`: a name in capitals, digits and `_`.
fn is_variable_name(key: &str) -> bool {
    key.bytes().any(|b| b.is_ascii_uppercase())
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn move_key(from: &mut Map<String, Value>, key: &str, to: &mut Map<String, Value>, as_key: &str) {
    if let Some(value) = from.remove(key) {
        to.insert(as_key.into(), value);
    }
}

/// The variables the app declared: those of its PM2 environment that are
/// neither PM2's own nor in the importing shell (which the app inherits
/// anyway, with the shell's values; those that differ are named).
fn declared_env(
    env: Map<String, Value>,
    name: &str,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Map<String, Value> {
    let mut differ = Vec::new();
    let declared = env
        .into_iter()
        .filter(|(k, v)| {
            // PM2 also files an empty `<app name>: "{}"` among the variables.
            if is_pm2s_variable(k) || k == name || v.is_object() {
                return false;
            }
            match options.inherited.get(k) {
                None => true,
                Some(mine) => {
                    if v.as_str() != Some(mine) {
                        differ.push(k.clone());
                    }
                    false
                }
            }
        })
        .collect();
    if !differ.is_empty() {
        warnings.push(format!(
            "{name}: env {}: PM2's values differ from this shell's; the shell's are used (`sup start ... --env KEY=VALUE` sets one)",
            differ.join(", ")
        ));
    }
    declared
}

#[cfg(test)]
mod tests;
