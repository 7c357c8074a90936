//! sup's own config format: TOML, one `[[app]]` table per app, whose keys
//! are the app spec's own (what `sup export` writes), plus `script` and
//! `interpreter` as the command line takes them. Relative paths are
//! relative to the file's directory, so a file in a repository means the
//! same wherever the command runs. An unknown key is an error.

use super::{error, line_col, ConfigError, DaemonTable, Loaded, Options};
use crate::resolve::{self, ResolveError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use sup_proto::{AppSpec, Program};

/// The keys a `[[app]]` table may hold besides the spec's.
const SHORTHANDS: [&str; 2] = ["script", "interpreter"];

#[derive(Deserialize, Serialize)]
struct Doc {
    #[serde(default)]
    app: Vec<AppSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    daemon: Option<DaemonTable>,
}

/// Reads sup.toml text.
pub fn parse(file: &Path, text: &str, options: &Options) -> Result<Loaded, ConfigError> {
    let at = |e: &toml::de::Error| e.span().map(|s| line_col(text, s.start));
    let syntax = |e: toml::de::Error| ConfigError {
        file: file.to_path_buf(),
        at: at(&e),
        message: e.message().to_string(),
    };
    if let Some(profile) = &options.profile {
        return Err(error(file, format!("--env {profile}: profiles (env_NAME) belong to PM2 files; a sup.toml app lists its env in [app.env]")));
    }
    let tables: toml::Table = toml::from_str(text).map_err(syntax)?;
    let mut unknown = Vec::new();
    let doc: Doc =
        serde_ignored::deserialize(toml::Deserializer::parse(text).map_err(syntax)?, |path| {
            // serde_ignored writes an optional table's step as `?`: the
            // user wrote `daemon.notfy`, not `daemon.?.notfy`.
            unknown.push(path.to_string().replace(".?", ""))
        })
        .map_err(syntax)?;
    if let Some(key) = unknown.iter().find(|p| !is_shorthand(p)) {
        let last = key.rsplit('.').next().unwrap_or(key);
        return Err(ConfigError {
            file: file.to_path_buf(),
            at: find_key(text, last),
            message: format!("unknown key `{key}`"),
        });
    }
    let raw = tables
        .get("app")
        .and_then(|a| a.as_array())
        .cloned()
        .unwrap_or_default();
    // `sup.toml` has the parent "": the directory must not end in a `/`.
    let parent = file.parent().unwrap_or(Path::new(""));
    let dir = resolve::join(&options.cwd, &parent.display().to_string());
    if let Some(bad) = doc
        .daemon
        .iter()
        .flat_map(|d| &d.notify)
        .find_map(|t| sup_proto::notify::NotifyTarget::parse(t).err())
    {
        return Err(error(file, format!("[daemon] notify: {bad}")));
    }
    let apps = doc
        .app
        .into_iter()
        .zip(raw.iter())
        .map(|(spec, table)| complete(file, spec, table, &dir, options))
        .collect::<Result<_, _>>()?;
    Ok(Loaded {
        apps,
        warnings: Vec::new(),
        daemon: doc.daemon,
    })
}

/// `app.N.script` and `app.N.interpreter`.
fn is_shorthand(path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    matches!(parts.as_slice(), ["app", _, key] if SHORTHANDS.contains(key))
}

/// Where `key = ` first starts a line.
fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let rest = trimmed.strip_prefix(key).map(str::trim_start);
        if rest.is_some_and(|r| r.starts_with('=')) {
            return Some(line_col(text, offset + line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

/// Fills in what the table leaves to the context: paths made absolute,
/// the program from `script`, the name from it, the inherited env.
fn complete(
    file: &Path,
    mut spec: AppSpec,
    table: &toml::Value,
    dir: &Path,
    options: &Options,
) -> Result<AppSpec, ConfigError> {
    let text = |key: &str| table.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let cwd = match text("cwd") {
        Some(cwd) => resolve::join(dir, &cwd),
        None => dir.to_path_buf(),
    };
    let label = text("name")
        .or(text("script"))
        .unwrap_or_else(|| "an app".into());
    spec.program = match (text("script"), table.get("program")) {
        (Some(_), Some(_)) => {
            return Err(error(
                file,
                format!("{label}: give `script` or `program`, not both"),
            ))
        }
        (Some(script), None) => {
            match resolve::resolve(
                &script,
                text("interpreter").as_deref(),
                &cwd,
                &options.path_var,
            ) {
                Ok(resolved) => {
                    // A command line (`PORT=1 server --flag`) brings its own.
                    spec.args = [resolved.args, std::mem::take(&mut spec.args)].concat();
                    spec.env.extend(resolved.env);
                    resolved.program
                }
                Err(ResolveError::Invalid(why)) => {
                    return Err(error(file, format!("{label}: {why}")))
                }
                Err(ResolveError::NotFound(what)) => {
                    return Err(error(file, format!("{label}: script not found: {what}")))
                }
            }
        }
        (None, Some(_)) => absolute_program(spec.program, &cwd, &options.path_var),
        (None, None) => return Err(error(file, format!("{label}: no `script` to run"))),
    };
    if spec.name.is_empty() {
        spec.name = resolve::default_name(&text("script").unwrap_or_default());
    }
    spec.cwd = cwd.display().to_string();
    for log in [
        &mut spec.logs.out_file,
        &mut spec.logs.err_file,
        &mut spec.logs.combined_file,
    ]
    .into_iter()
    .flatten()
    {
        *log = resolve::join(&cwd, log).display().to_string();
    }
    spec.inherited_env = options.inherited.clone();
    Ok(spec)
}

/// A `program` table with its executable or interpreter found.
fn absolute_program(program: Program, cwd: &Path, path_var: &str) -> Program {
    let find = |cmd: String| resolve::find_command(&cmd, cwd, path_var).unwrap_or(cmd);
    match program {
        Program::Exec { path } => Program::Exec { path: find(path) },
        Program::Script {
            interpreter,
            script,
        } => Program::Script {
            interpreter: find(interpreter),
            script,
        },
        shell => shell,
    }
}

/// The apps as a sup.toml, with only their declared environment.
pub fn export(apps: &[AppSpec]) -> Result<String, toml::ser::Error> {
    let doc = Doc {
        app: apps
            .iter()
            .map(|spec| AppSpec {
                inherited_env: Default::default(),
                source: None,
                ..spec.clone()
            })
            .collect(),
        daemon: None,
    };
    let body = toml::to_string_pretty(&doc)?;
    Ok(format!(
        "# Written by `sup export`: start these apps with `sup start sup.toml`.\n\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn options() -> Options {
        Options {
            cwd: PathBuf::from("/srv"),
            path_var: "/usr/bin:/bin".into(),
            inherited: std::sync::Arc::new([("HOME".to_string(), "/root".to_string())].into()),
            profile: None,
            cpus: 2,
        }
    }

    fn parse_text(text: &str) -> Result<Loaded, ConfigError> {
        parse(Path::new("conf/sup.toml"), text, &options())
    }

    #[test]
    fn an_app_from_the_shorthands() {
        let apps = parse_text(
            "# api\n[[app]]\nname = \"api\"\nscript = \"/bin/sleep 60\"\nkill_timeout_ms = 3000\n[app.env]\nPORT = \"8080\"\n",
        )
        .unwrap()
        .apps;
        let api = &apps[0];
        assert_eq!(api.cwd, "/srv/conf");
        assert_eq!(api.kill_timeout_ms, 3000);
        assert_eq!(api.env["PORT"], "8080");
        assert_eq!(api.inherited_env["HOME"], "/root");
        // A plain command line runs directly, its words as arguments.
        assert_eq!(api.program.argv(&api.args), ["/bin/sleep", "60"]);
    }

    #[test]
    fn errors_name_the_key_and_its_place() {
        let err = parse_text("[[app]]\nname = \"a\"\nscript = \"/bin/true\"\nkill_timout_ms = 1\n")
            .unwrap_err();
        assert_eq!(err.at, Some((4, 1)));
        assert!(
            err.message.contains("unknown key `app.0.kill_timout_ms`"),
            "{err}"
        );
        let err = parse_text("[daemon]\nnotfy = []\n").unwrap_err();
        assert!(err.message.contains("unknown key `daemon.notfy`"), "{err}");
        assert_eq!(err.at, Some((2, 1)));
        let err = parse_text("[[app]]\nname = \"a\"\nkill_timeout_ms = \"soon\"\n").unwrap_err();
        assert_eq!(err.at.map(|a| a.0), Some(3), "{err}");
        let err = parse_text("[[app]\n").unwrap_err();
        assert_eq!(err.at.map(|a| a.0), Some(1), "{err}");
        let err = parse_text("[[app]]\nname = \"a\"\n").unwrap_err();
        assert!(err.message.contains("no `script`"), "{err}");
    }

    #[test]
    fn export_reads_back_to_the_same_specs() {
        let apps = parse_text(
            "[[app]]\nname = \"a\"\nscript = \"/bin/sleep 9\"\ninstances = 3\nnamespace = \"n\"\n[app.env]\nX = \"1\"\n[app.health.liveness]\nkind = \"tcp\"\naddr = \"127.0.0.1:1\"\n[[app]]\nname = \"b\"\nprogram = { kind = \"exec\", path = \"/bin/true\" }\n",
        )
        .unwrap()
        .apps;
        let text = export(&apps).unwrap();
        let again = parse_text(&text).unwrap().apps;
        assert_eq!(again, apps, "{text}");
        assert!(
            !text.contains("HOME"),
            "inherited env is not exported: {text}"
        );
    }
}
