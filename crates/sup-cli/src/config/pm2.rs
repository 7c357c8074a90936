//! PM2's app objects mapped onto [`AppSpec`]. Every key is either carried
//! over with its PM2 meaning or named in a warning; none is dropped
//! silently. docs/pm2.md has the table.

use super::{env_file, error, ConfigError, Loaded, Options};
use crate::resolve::{self, ResolveError, Resolved};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use sup_proto::{AppSpec, Probe, Program, RestartPolicy};

/// PM2's stop signal, for apps from its files (`kill_signal`'s default).
pub const PM2_STOP_SIGNAL: sup_proto::Signal = sup_proto::Signal::INT;

/// PM2's kill timeout, for apps from its files (`kill_timeout`'s default).
pub const PM2_KILL_TIMEOUT_MS: u64 = 1_600;

/// The apps of an evaluated PM2 file: `{apps: [...]}`, `[...]` or one app.
pub fn from_value(file: &Path, value: Value, options: &Options) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let apps = match value {
        Value::Array(apps) => apps,
        Value::Object(mut top) if top.contains_key("apps") => {
            let apps = match top.remove("apps") {
                Some(Value::Array(apps)) => apps,
                Some(one @ Value::Object(_)) => vec![one],
                _ => return Err(error(file, "`apps` must be an array of app objects")),
            };
            if top.remove("deploy").is_some() {
                warnings.push("deploy: ignored (PM2's deploy tool; sup does not deploy)".into());
            }
            if !top.is_empty() {
                warnings.push(format!("not supported, ignored: {}", keys(&top)));
            }
            apps
        }
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(error(
                file,
                "expected `module.exports = { apps: [...] }` or one app object",
            ))
        }
    };
    check_profile(file, &apps, options.profile.as_deref(), &mut warnings)?;
    let apps = apps
        .into_iter()
        .enumerate()
        .map(|(i, app)| match app {
            Value::Object(fields) => map_app(file, fields, options, &mut warnings),
            _ => Err(error(file, format!("apps[{i}] is not an object"))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Loaded {
        apps,
        warnings,
        daemon: None,
    })
}

/// One PM2 app object (as in an ecosystem file) mapped onto an
/// [`AppSpec`]; each key not carried over is named in `warnings`.
pub fn map_app(
    file: &Path,
    fields: Map<String, Value>,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Result<AppSpec, ConfigError> {
    App::new(file, fields, options, warnings).build()
}

/// `--env NAME` must name a profile some app of the file has, when the
/// file has profiles (a typo is an error). A file with none at all starts
/// with `env` alone, as PM2 does: deploy scripts run `--env production`
/// against such files.
fn check_profile(
    file: &Path,
    apps: &[Value],
    profile: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Some(profile) = profile else {
        return Ok(());
    };
    let key = format!("env_{profile}");
    if apps.iter().any(|a| a.get(&key).is_some()) {
        return Ok(());
    }
    let has_profiles = apps
        .iter()
        .filter_map(Value::as_object)
        .any(|a| a.keys().any(|k| k.starts_with("env_") && k != "env_file"));
    if !has_profiles {
        warnings.push(format!(
            "--env {profile}: the file has no profiles (`{key}`); its apps start with `env`, as under PM2"
        ));
        return Ok(());
    }
    Err(error(
        file,
        format!("--env {profile}: no app in this file has `{key}`"),
    ))
}

fn keys(map: &Map<String, Value>) -> String {
    map.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// PM2 keys whose meaning sup has anyway: `combine_logs` (PM2's other
/// name for a merged log), instances as separate processes either way.
const SAME_ANYWAY: [&str; 3] = ["combine_logs", "exec_mode", "autorestart"];

/// One app object being mapped: the keys not taken yet are what remains.
struct App<'a> {
    file: &'a Path,
    fields: Map<String, Value>,
    options: &'a Options,
    warnings: &'a mut Vec<String>,
    label: String,
}

impl<'a> App<'a> {
    fn new(
        file: &'a Path,
        fields: Map<String, Value>,
        options: &'a Options,
        warnings: &'a mut Vec<String>,
    ) -> App<'a> {
        let label = ["name", "script"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(Value::as_str))
            .unwrap_or("an app")
            .to_string();
        App {
            file,
            fields,
            options,
            warnings,
            label,
        }
    }

    fn fail(&self, message: impl std::fmt::Display) -> ConfigError {
        error(self.file, format!("app {:?}: {message}", self.label))
    }

    fn warn(&mut self, message: impl std::fmt::Display) {
        self.warnings.push(format!("{}: {message}", self.label));
    }

    /// A string key (PM2 also takes numbers where it wants strings).
    fn text(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.fields.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.fail(format!("{key} must be a string, not {other}"))),
        }
    }

    fn flag(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.fields.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(other) => Err(self.fail(format!("{key} must be true or false, not {other}"))),
        }
    }

    /// Milliseconds: a number, or a string such as `"10s"`.
    fn millis(&mut self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.fields.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(Value::String(s)) => crate::args::parse_duration(&s)
                .map(|d| Some(d.as_millis().min(u128::from(u64::MAX)) as u64))
                .map_err(|e| self.fail(format!("{key}: {e}"))),
            Some(other) => Err(self.fail(format!(
                "{key} must be milliseconds or a duration such as \"10s\", not {other}"
            ))),
        }
    }

    /// Arguments: an array of strings, or one string split as PM2 splits it.
    fn list(&mut self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.fields.remove(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(split_args(&s)),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(self.fail(format!("{key} must hold strings, not {other}"))),
                })
                .collect(),
            Some(other) => {
                Err(self.fail(format!("{key} must be a string or an array, not {other}")))
            }
        }
    }

    /// An env object; numbers and booleans become strings, as in PM2.
    fn env(&mut self, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        match self.fields.remove(key) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(vars)) => Ok(vars
                .into_iter()
                .filter_map(|(k, v)| env_value(v).map(|v| (k, v)))
                .collect()),
            Some(other) => Err(self.fail(format!("{key} must be an object, not {other}"))),
        }
    }

    fn build(mut self) -> Result<AppSpec, ConfigError> {
        let name = self.text("name")?;
        let script = self
            .text("script")?
            .ok_or_else(|| self.fail("no `script` to run"))?;
        let cwd = match self.text("cwd")? {
            Some(dir) => resolve::join(&self.options.cwd, &dir),
            None => self.options.cwd.clone(),
        };
        if !cwd.is_dir() {
            return Err(self.fail(format!("cwd {} is not a directory", cwd.display())));
        }
        let mut spec = AppSpec {
            name: name.unwrap_or_else(|| resolve::default_name(&script)),
            cwd: cwd.display().to_string(),
            inherited_env: self.options.inherited.clone(),
            // PM2's defaults where the file is silent (its constants.js), so
            // that an unchanged app's SIGINT cleanup runs as under PM2.
            stop_signal: PM2_STOP_SIGNAL,
            kill_timeout_ms: PM2_KILL_TIMEOUT_MS,
            ..AppSpec::default()
        };
        self.program(&mut spec, &script, &cwd)?;
        self.environment(&mut spec, &cwd)?;
        self.restarts(&mut spec)?;
        self.logs(&mut spec, &cwd)?;
        self.triggers(&mut spec, &cwd)?;
        self.rest(&mut spec)?;
        Ok(spec)
    }

    fn program(&mut self, spec: &mut AppSpec, script: &str, cwd: &Path) -> Result<(), ConfigError> {
        let interpreter = match self.text("interpreter")? {
            Some(i) => Some(i),
            None => self.text("exec_interpreter")?,
        };
        let mut prefix = self.list("interpreter_args")?;
        prefix.extend(self.list("node_args")?);
        let path_var = &self.options.path_var;
        let resolved = match interpreter.as_deref() {
            Some("none") => executable(script, cwd, path_var).map(Resolved::from),
            Some(interp) => interpreted(interp, script, cwd, path_var).map(Resolved::from),
            None => by_default(script, cwd, path_var),
        }
        .map_err(|why| self.fail(why))?;
        // A `script` that is a command line (`PORT=1 node x.js`) brings its own.
        spec.env.extend(resolved.env);
        let program = resolved.program;
        spec.program = match (program, prefix.is_empty()) {
            (
                Program::Script {
                    interpreter,
                    script,
                },
                false,
            ) => {
                prefix.push(script);
                Program::Exec { path: interpreter }
            }
            (program, _) => {
                prefix.clear();
                program
            }
        };
        spec.args = [prefix, resolved.args, self.list("args")?].concat();
        Ok(())
    }

    fn environment(&mut self, spec: &mut AppSpec, cwd: &Path) -> Result<(), ConfigError> {
        let mut env = match self.text("env_file")? {
            Some(file) => env_file::read(&cwd.join(file))?,
            None => BTreeMap::new(),
        };
        env.extend(self.env("env")?);
        if let Some(profile) = self.options.profile.clone() {
            env.extend(self.env(&format!("env_{profile}"))?);
        }
        // The script line's own assignments win, as in a shell.
        env.append(&mut spec.env);
        spec.env = env;
        // The profiles not asked for are meant to be left out.
        self.fields.retain(|k, _| !k.starts_with("env_"));
        if let Some(port) = self.text("port")? {
            spec.env.insert("PORT".into(), port);
        }
        Ok(())
    }

    fn restarts(&mut self, spec: &mut AppSpec) -> Result<(), ConfigError> {
        if self.flag("autorestart")? == Some(false) {
            spec.restart = RestartPolicy::No;
        }
        if let Some(n) = self.fields.remove("max_restarts") {
            let n = n.as_u64().and_then(|n| u32::try_from(n).ok());
            spec.max_restarts =
                Some(n.ok_or_else(|| self.fail("max_restarts must be a whole number"))?);
        }
        let delay = self.millis("restart_delay")?;
        let backoff = self.millis("exp_backoff_restart_delay")?;
        if let Some(ms) = backoff.or(delay) {
            spec.restart_delay_ms = ms;
        }
        if let Some(ms) = self.millis("min_uptime")? {
            spec.min_uptime_ms = ms;
        }
        if let Some(ms) = self.millis("kill_timeout")? {
            spec.kill_timeout_ms = ms;
        }
        if let Some(signal) = self.text("kill_signal")? {
            spec.stop_signal = signal
                .parse()
                .map_err(|e| self.fail(format!("kill_signal: {e}")))?;
        }
        if let Some(ms) = self.millis("listen_timeout")? {
            spec.health.ready_timeout_ms = ms;
        }
        // Ready once it calls process.send('ready'), within listen_timeout.
        if self.flag("wait_ready")? == Some(true) {
            spec.health.readiness = Some(Probe::Message);
        }
        Ok(())
    }

    fn logs(&mut self, spec: &mut AppSpec, cwd: &Path) -> Result<(), ConfigError> {
        let path = |app: &mut Self, keys: [&str; 2]| -> Result<Option<String>, ConfigError> {
            let given = match app.text(keys[0])? {
                Some(p) => Some(p),
                None => app.text(keys[1])?,
            };
            Ok(match given {
                Some(p) if p == "/dev/null" => {
                    app.warn(format!(
                        "{}: /dev/null is not kept; sup keeps the log in SUP_HOME/logs, rotated",
                        keys[0]
                    ));
                    None
                }
                other => other.map(|p| resolve::join(cwd, &p).display().to_string()),
            })
        };
        spec.logs.out_file = path(self, ["out_file", "output"])?;
        spec.logs.err_file = path(self, ["error_file", "error"])?;
        spec.logs.combined_file = path(self, ["log_file", "log"])?;
        if let Some(time) = self.flag("time")? {
            spec.logs.timestamps = time;
        }
        // PM2 writes one file per instance unless told to merge; sup shares
        // the app's files (each line tagged with its instance) unless a file
        // asks for one per instance in so many words.
        if self.flag("merge_logs")? == Some(false) {
            spec.logs.per_instance = true;
        }
        if let Some(format) = self.text("log_date_format")? {
            spec.logs.timestamps = true;
            spec.logs.date_format = Some(format);
        }
        Ok(())
    }

    /// The restart triggers: memory, schedule, file changes, exit codes.
    fn triggers(&mut self, spec: &mut AppSpec, cwd: &Path) -> Result<(), ConfigError> {
        spec.max_memory = self.memory("max_memory_restart")?;
        let cron = match self.text("cron_restart")? {
            Some(cron) => Some(cron),
            None => self.text("cron")?,
        };
        if let Some(cron) = cron.filter(|c| !c.trim().is_empty()) {
            sup_proto::schedule::Schedule::parse(&cron)
                .map_err(|e| self.fail(format!("cron_restart: {e}")))?;
            spec.cron_restart = Some(cron.trim().to_string());
        }
        spec.watch = match self.fields.remove("watch") {
            // `watch: true` watches the app's directory, as in PM2.
            Some(Value::Bool(true)) => vec![cwd.display().to_string()],
            Some(Value::Bool(false)) | None | Some(Value::Null) => Vec::new(),
            Some(paths) => {
                self.fields.insert("watch".into(), paths);
                let paths = self.list("watch")?;
                paths
                    .iter()
                    .map(|p| resolve::join(cwd, p).display().to_string())
                    .collect()
            }
        };
        spec.ignore_watch = self.list("ignore_watch")?;
        if let Some(ms) = self.millis("watch_delay")? {
            spec.watch_delay_ms = ms;
        }
        spec.stop_exit_codes = match self.fields.remove("stop_exit_codes") {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(codes)) => codes.iter().map(exit_code).collect::<Option<_>>(),
            Some(one) => exit_code(&one).map(|c| vec![c]),
        }
        .ok_or_else(|| self.fail("stop_exit_codes must be whole numbers"))?;
        Ok(())
    }

    /// A size in bytes: a number, or a string such as `"300M"` (PM2's K, M, G).
    fn memory(&mut self, key: &str) -> Result<Option<u64>, ConfigError> {
        let bytes = match self.fields.remove(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => {
                Some(crate::args::parse_size(&s).map_err(|e| self.fail(format!("{key}: {e}")))?)
            }
            Some(_) => None,
        };
        match bytes {
            Some(0) => Ok(None),
            Some(n) => Ok(Some(n)),
            None => Err(self.fail(format!("{key} must be a size such as \"300M\""))),
        }
    }

    fn rest(&mut self, spec: &mut AppSpec) -> Result<(), ConfigError> {
        if let Some(count) = self.text("instances")? {
            let instances = crate::args::parse_instances(&count)
                .map_err(|e| self.fail(format!("instances: {e}")))?;
            spec.instances = instances.resolve(|| self.options.cpus);
        }
        if let Some(mode) = self.fields.get("exec_mode").and_then(Value::as_str) {
            if !["fork", "fork_mode", "cluster", "cluster_mode"].contains(&mode) {
                return Err(self.fail(format!("exec_mode {mode:?}: use fork or cluster")));
            }
        }
        spec.instance_var = self.text("instance_var")?;
        spec.increment_var = self.text("increment_var")?;
        spec.namespace = self.text("namespace")?;
        self.user(spec)?;
        self.fields
            .retain(|k, _| !SAME_ANYWAY.contains(&k.as_str()));
        if !self.fields.is_empty() {
            let rest = keys(&self.fields);
            self.warn(format!("not supported, ignored: {rest}"));
        }
        Ok(())
    }

    /// `user` or `uid` (the same in PM2), and `gid`: the daemon switches
    /// to them (and refuses unless it runs as root).
    fn user(&mut self, spec: &mut AppSpec) -> Result<(), ConfigError> {
        let user = self.text("user")?;
        let uid = self.text("uid")?;
        spec.user = user.or(uid);
        spec.group = self.text("gid")?;
        Ok(())
    }
}

/// An exit code: a whole number (PM2 also takes it as a string).
fn exit_code(value: &Value) -> Option<i32> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An env value as PM2 passes it; `null` leaves the variable out.
fn env_value(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// `interpreter: none`: the script is an executable (a file, or a command in PATH).
fn executable(script: &str, cwd: &Path, path_var: &str) -> Result<Program, String> {
    resolve::find_command(script, cwd, path_var)
        .or_else(|| resolve::find_command(&format!("./{script}"), cwd, path_var))
        .map(|path| Program::Exec { path })
        .ok_or_else(|| format!("script {script:?} is no executable file or command in PATH"))
}

/// A script run by the interpreter the file names.
fn interpreted(interp: &str, script: &str, cwd: &Path, path_var: &str) -> Result<Program, String> {
    let interpreter = resolve::find_command(interp, cwd, path_var)
        .ok_or_else(|| format!("interpreter {interp:?} not found in PATH"))?;
    let file: PathBuf = resolve::join(cwd, script);
    let script = if file.is_file() {
        file.display().to_string()
    } else {
        // `interpreter: python3, script: -m` style or a module name: as given.
        script.to_string()
    };
    Ok(Program::Script {
        interpreter,
        script,
    })
}

/// No interpreter given: by extension as the command line does, a command
/// in PATH (`npm`), and `node` for any other file (PM2's default).
fn by_default(script: &str, cwd: &Path, path_var: &str) -> Result<Resolved, String> {
    match resolve::resolve(script, None, cwd, path_var) {
        Ok(program) => Ok(program),
        Err(ResolveError::Invalid(_)) if cwd.join(script).is_file() => {
            interpreted("node", script, cwd, path_var).map(Resolved::from)
        }
        Err(ResolveError::Invalid(why)) => Err(why),
        Err(ResolveError::NotFound(what)) => {
            Err(format!("script not found: {}", cwd.join(what).display()))
        }
    }
}

/// Splits an `args` string as PM2 does: on whitespace, with `"..."` and
/// `'...'` kept whole (without their quotes), and `key="..."` kept whole
/// with them. This is PM2's regular expression
/// `/([\w\-]+\="[^"]*")|([\w\-]+\='[^']*')|"([^"]*)"|'([^']*)'|\s/` used
/// with `String.split`, written out.
pub fn split_args(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut last = 0;
    let mut i = 0;
    while i < text.len() {
        match separator_at(&text[i..]) {
            Some((len, kept)) => {
                parts.push(&text[last..i]);
                parts.extend(kept.map(|(from, to)| &text[i + from..i + to]));
                i += len;
                last = i;
            }
            None => i += text[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    parts.push(&text[last..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The separator PM2's expression matches at the start of `rest`: its
/// length, and the byte range of the group it keeps.
fn separator_at(rest: &str) -> Option<(usize, Option<(usize, usize)>)> {
    let word = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    if word > 0 {
        for quote in ['"', '\''] {
            let after = &rest[word..];
            if let Some(body) = after.strip_prefix('=').and_then(|a| a.strip_prefix(quote)) {
                if let Some(end) = body.find(quote) {
                    let len = word + 2 + end + 1;
                    return Some((len, Some((0, len))));
                }
            }
        }
    }
    let first = rest.chars().next()?;
    if first == '"' || first == '\'' {
        if let Some(end) = rest[1..].find(first) {
            return Some((end + 2, Some((1, end + 1))));
        }
    }
    first.is_whitespace().then(|| (first.len_utf8(), None))
}

#[cfg(test)]
mod tests;
