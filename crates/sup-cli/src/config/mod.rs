//! Config files: sup's own TOML (`[[app]]` tables of the one app spec) and
//! PM2's ecosystem files (`.config.js/.cjs/.mjs`, `.json`, `.yml/.yaml`),
//! read as PM2 reads them and mapped onto [`AppSpec`]. Loading a file
//! either yields every app of it or an error naming the file: nothing is
//! started from a file that does not load whole.

mod env_file;
mod node;
mod pm2;
mod pm2_dump;
mod sup_toml;

#[cfg(test)]
mod proptests;

pub use env_file::read as read_env_file;
pub use pm2_dump::{load as load_pm2_dump, pm2_home};
pub use sup_toml::export;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use sup_proto::AppSpec;

/// The kinds of config file, told apart by name as PM2 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// sup's own TOML.
    Toml,
    /// PM2's JavaScript (`*.config.js`, `.cjs`, `.mjs`), run by `node`.
    Js,
    /// PM2's JSON, which PM2 evaluates as JavaScript too.
    Json,
    /// PM2's YAML.
    Yaml,
}

impl Format {
    /// The format a file name says, if it names a config file.
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?;
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            "yml" | "yaml" => Some(Format::Yaml),
            "cjs" | "mjs" => Some(Format::Js),
            "js" if name.ends_with(".config.js") => Some(Format::Js),
            _ => None,
        }
    }
}

/// `arg` names an existing file with a config file's name.
pub fn is_config_file(arg: &str) -> bool {
    let path = Path::new(arg);
    Format::of(path).is_some() && path.is_file()
}

/// How to read a file: where the command runs and what it asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory the command runs in.
    pub cwd: PathBuf,
    /// The PATH to find interpreters and commands in.
    pub path_var: String,
    /// The calling shell's environment (each app's inherited env).
    pub inherited: std::sync::Arc<BTreeMap<String, String>>,
    /// `--env NAME`: the profile `env_NAME` laid over `env`.
    pub profile: Option<String>,
    /// CPUs, for `instances: "max"`.
    pub cpus: u32,
}

/// The apps of a file, and what the user should know about it.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every app, in the file's order.
    pub apps: Vec<AppSpec>,
    /// Keys not carried over, one line each.
    pub warnings: Vec<String>,
    /// A sup.toml's `[daemon]` table.
    pub daemon: Option<DaemonTable>,
}

/// A sup.toml's `[daemon]` table: settings of the daemon, not of an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct DaemonTable {
    /// Webhooks told about every app's trouble.
    #[serde(default)]
    pub notify: Vec<String>,
    /// The web listener's address (`sup web --listen`).
    pub web: Option<String>,
}

/// A file that cannot be used, and where.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Line and column (1-based), where the parser knows them.
    pub at: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// An error of one file, without a position.
pub(crate) fn error(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        at: None,
        message: message.into(),
    }
}

/// The 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Reads `file` with `options`; `only` keeps the apps of those names
/// (every name must be in the file).
pub fn load(file: &Path, options: &Options, only: &[String]) -> Result<Loaded, ConfigError> {
    let format = Format::of(file).ok_or_else(|| {
        error(
            file,
            "not a config file: use .toml, .config.js, .cjs, .mjs, .json, .yml or .yaml",
        )
    })?;
    let text =
        || std::fs::read_to_string(file).map_err(|e| error(file, format!("cannot read: {e}")));
    let mut loaded = match format {
        Format::Toml => sup_toml::parse(file, &text()?, options)?,
        Format::Yaml => {
            let text = text()?;
            let value = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError {
                file: file.to_path_buf(),
                at: e.location().map(|l| (l.line(), l.column())),
                message: format!("invalid YAML: {e}"),
            })?;
            pm2::from_value(file, value, options)?
        }
        Format::Js | Format::Json => {
            let value = node::evaluate(file, format, &options.cwd, &options.path_var)?;
            pm2::from_value(file, value, options)?
        }
    };
    check_apps(file, &loaded.apps)?;
    if !only.is_empty() {
        let names: BTreeSet<&str> = loaded.apps.iter().map(|a| a.name.as_str()).collect();
        if let Some(missing) = only.iter().find(|n| !names.contains(n.as_str())) {
            return Err(error(
                file,
                format!("--only {missing}: no app of that name in this file"),
            ));
        }
        loaded.apps.retain(|a| only.contains(&a.name));
    }
    Ok(loaded)
}

/// Every app has a valid name, no two the same, and a spec a process can
/// be given.
pub(crate) fn check_apps(file: &Path, apps: &[AppSpec]) -> Result<(), ConfigError> {
    if apps.is_empty() {
        return Err(error(file, "no apps in this file"));
    }
    let mut seen = BTreeSet::new();
    for app in apps {
        sup_proto::validate_name(&app.name)
            .map_err(|e| error(file, format!("app {:?}: {e}", app.name)))?;
        app.check()
            .map_err(|e| error(file, format!("app {:?}: {e}", app.name)))?;
        if !seen.insert(app.name.as_str()) {
            return Err(error(file, format!("two apps are named {:?}", app.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name_as_pm2_tells_them() {
        let f = |n: &str| Format::of(Path::new(n));
        assert_eq!(f("ecosystem.config.js"), Some(Format::Js));
        assert_eq!(f("pm2.config.cjs"), Some(Format::Js));
        assert_eq!(f("x.mjs"), Some(Format::Js));
        assert_eq!(f("app.js"), None);
        assert_eq!(f("process.json"), Some(Format::Json));
        assert_eq!(f("apps.yml"), Some(Format::Yaml));
        assert_eq!(f("sup.toml"), Some(Format::Toml));
        assert_eq!(f("server.py"), None);
    }

    #[test]
    fn positions_count_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 99), (2, 2));
    }
}
