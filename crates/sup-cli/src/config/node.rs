//! PM2's JavaScript and JSON files, evaluated by the user's `node` as PM2
//! evaluates them: JS files are `require`d (or `import`ed when they are ES
//! modules), JSON files run as a JavaScript expression, so comments and
//! unquoted keys load. The result comes back as JSON on stdout.

use super::{error, ConfigError, Format};
use std::path::Path;
use std::process::{Command, Stdio};

/// Loads the file named by argv[1]; `json` in argv[2] evaluates it as an
/// expression (PM2's `vm.runInThisContext('(' + data + ')')`).
const LOADER: &str = r#"
const [file, kind] = process.argv.slice(1);
const load = async () => {
  if (kind === 'json') {
    const text = require('fs').readFileSync(file, 'utf8');
    return require('vm').runInThisContext('(' + text + ')', { filename: file });
  }
  try {
    return require(file);
  } catch (e) {
    if (!String(e && e.code).startsWith('ERR_REQUIRE')) throw e;
    return import(require('url').pathToFileURL(file).href);
  }
};
load().then((conf) => {
  if (conf && conf.__esModule !== undefined || (conf && Object.prototype.toString.call(conf) === '[object Module]')) conf = conf.default;
  process.stdout.write(JSON.stringify(conf === undefined ? null : conf));
}, (e) => {
  process.stderr.write(String(e && e.stack || e));
  process.exit(3);
});
"#;

/// Runs the file through `node` in `cwd` and returns what it exports.
pub fn evaluate(
    file: &Path,
    format: Format,
    cwd: &Path,
    path_var: &str,
) -> Result<serde_json::Value, ConfigError> {
    let node = crate::resolve::find_command("node", cwd, path_var).ok_or_else(|| {
        error(file, "node is needed to read this file (PM2 files are JavaScript) but is not in PATH; install Node.js, or write the apps in a sup.toml")
    })?;
    let absolute = cwd.join(file);
    let kind = if format == Format::Json { "json" } else { "js" };
    let out = Command::new(node)
        .args(["-e", LOADER])
        .arg(&absolute)
        .arg(kind)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| error(file, format!("cannot run node: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(thrown(file, &absolute, &stderr));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| error(file, format!("node printed no config: {e}")))
}

/// The error of a file that threw: its message, and the line and column
/// node points at in this file.
fn thrown(file: &Path, absolute: &Path, stderr: &str) -> ConfigError {
    let prefix = format!("{}:", absolute.display());
    let at = stderr.lines().find_map(|line| {
        let rest = &line[line.find(&prefix)? + prefix.len()..];
        let mut parts = rest.split(|c: char| !c.is_ascii_digit());
        let line_no = parts.next()?.parse().ok()?;
        let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        Some((line_no, col))
    });
    let message = stderr
        .lines()
        .find(|l| l.contains("Error") && !l.trim_start().starts_with("at "))
        .unwrap_or_else(|| stderr.lines().next().unwrap_or("node failed"))
        .trim();
    ConfigError {
        file: file.to_path_buf(),
        at,
        message: format!("the file failed to load in node: {message}"),
    }
}
