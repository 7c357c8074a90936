//! Turns what the user typed after `sup start` into an absolute [`Program`]:
//! the daemon may run with another cwd and PATH (under systemd, say), so
//! every path is resolved here, once, in the user's own environment.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use sup_proto::shellwords;
use sup_proto::Program;

/// What to run: the program, and what a quoted command line adds to it.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The program.
    pub program: Program,
    /// Its arguments from the command line (before any after `--`).
    pub args: Vec<String>,
    /// Leading `NAME=value` words of the command line.
    pub env: Vec<(String, String)>,
}

impl From<Program> for Resolved {
    fn from(program: Program) -> Resolved {
        Resolved {
            program,
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// Why the program cannot be resolved.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No file, no command of that name: maybe it names a known app.
    NotFound(String),
    /// Something is wrong that the user must fix.
    Invalid(String),
}

/// The interpreter conventionally used for a script extension.
fn interpreter_for(path: &Path) -> Option<&'static str> {
    match path.extension().and_then(OsStr::to_str)? {
        "js" | "mjs" | "cjs" => Some("node"),
        "py" => Some("python3"),
        "sh" => Some("bash"),
        "rb" => Some("ruby"),
        _ => None,
    }
}

/// Resolves `script` against `cwd` and `path_var` (the PATH to search).
pub fn resolve(
    script: &str,
    interpreter: Option<&str>,
    cwd: &Path,
    path_var: &str,
) -> Result<Resolved, ResolveError> {
    let file = join(cwd, script);
    if let Some(interp) = interpreter {
        if !file.is_file() {
            return Err(ResolveError::Invalid(format!(
                "--interpreter needs a script file; not found: {}",
                file.display()
            )));
        }
        return Ok(Program::Script {
            interpreter: find_command(interp, cwd, path_var).ok_or_else(|| {
                ResolveError::Invalid(format!("interpreter {interp:?} not found in PATH"))
            })?,
            script: file.display().to_string(),
        }
        .into());
    }
    if file.is_file() {
        return script_or_executable(&file, cwd, path_var).map(Resolved::from);
    }
    if script.split_whitespace().nth(1).is_some() {
        return command_line(script, cwd, path_var);
    }
    if let Some(path) = (!script.contains('/'))
        .then(|| find_command(script, cwd, path_var))
        .flatten()
    {
        return Ok(Program::Exec { path }.into());
    }
    Err(ResolveError::NotFound(script.to_string()))
}

fn script_or_executable(file: &Path, cwd: &Path, path_var: &str) -> Result<Program, ResolveError> {
    if let Some(interp) = interpreter_for(file) {
        let interpreter = find_command(interp, cwd, path_var).ok_or_else(|| {
            ResolveError::Invalid(format!(
                "{interp} is needed to run {} but is not in PATH; install it or pass --interpreter",
                file.display()
            ))
        })?;
        return Ok(Program::Script {
            interpreter,
            script: file.display().to_string(),
        });
    }
    if is_executable(file) {
        return Ok(Program::Exec {
            path: file.display().to_string(),
        });
    }
    Err(ResolveError::Invalid(format!(
        "{} is not executable and its extension names no known interpreter; chmod +x it or pass --interpreter",
        file.display()
    )))
}

/// A quoted command line. Without shell syntax it is split as a shell
/// would and its command run directly (so the app, not a shell, is the
/// process sup watches); with syntax it runs under `/bin/sh -c`. Its first
/// word must exist, so that a typo is an error now rather than a crash loop.
fn command_line(line: &str, cwd: &Path, path_var: &str) -> Result<Resolved, ResolveError> {
    if let Some(plain) = shellwords::analyse(line).plain {
        let (command, args) = plain
            .argv
            .split_first()
            .expect("a plain line has a command");
        // `PATH=... cmd` looks cmd up in that PATH, as the shell would.
        let search = plain
            .assignments
            .iter()
            .rfind(|(k, _)| k == "PATH")
            .map_or(path_var, |(_, v)| v.as_str());
        let path = find_command(command, cwd, search)
            .ok_or_else(|| ResolveError::Invalid(format!("command not found: {command}")))?;
        return Ok(Resolved {
            program: Program::Exec { path },
            args: args.to_vec(),
            env: plain.assignments,
        });
    }
    let first = line.split_whitespace().next().unwrap_or_default();
    let plain_word = first
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/+".contains(c));
    let is_assignment = first.contains('=');
    if plain_word
        && !is_assignment
        && find_command(first, cwd, path_var).is_none()
        && !is_shell_builtin(first)
    {
        return Err(ResolveError::Invalid(format!("command not found: {first}")));
    }
    Ok(Program::Shell {
        line: line.to_string(),
    }
    .into())
}

fn is_shell_builtin(word: &str) -> bool {
    matches!(
        word,
        "exec" | "cd" | "export" | "set" | "ulimit" | "umask" | "trap" | "." | "eval"
    )
}

/// `path` against `dir`, without `./` parts: `/srv/app/./a.js` is `/srv/app/a.js`.
pub fn join(dir: &Path, path: &str) -> PathBuf {
    dir.join(path).components().collect()
}

/// The absolute path of `command`: a path (relative to `cwd`) if it holds a
/// `/`, else the first executable of that name in `path_var`.
pub fn find_command(command: &str, cwd: &Path, path_var: &str) -> Option<String> {
    let found = if command.contains('/') {
        Some(cwd.join(command)).filter(|p| is_executable(p))
    } else {
        path_var
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| cwd.join(dir).join(command))
            .find(|p| is_executable(p))
    };
    found.map(|p: PathBuf| p.display().to_string())
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A default app name from the program: the script's or command's file name
/// without extension, made safe for a name.
pub fn default_name(script: &str) -> String {
    let command = shellwords::analyse(script)
        .plain
        .and_then(|p| p.argv.into_iter().next());
    let first = command
        .as_deref()
        .or_else(|| script.split_whitespace().next())
        .unwrap_or("app");
    let stem = Path::new(first)
        .file_stem()
        .and_then(OsStr::to_str)
        .unwrap_or("app");
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty()
        || name.bytes().all(|b| b.is_ascii_digit())
        || name == "all"
        || name.starts_with('.')
    {
        name = format!("app-{name}").chars().take(64).collect();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("sup-resolve-{tag}-{}", std::process::id()));
        fs::create_dir_all(dir.join("bin")).unwrap();
        Dir(dir)
    }

    fn touch(path: &Path, mode: u32) {
        fs::write(path, "x").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn scripts_get_their_interpreter_from_path() {
        let d = tmp("interp");
        touch(&d.0.join("bin/node"), 0o755);
        touch(&d.0.join("app.js"), 0o644);
        let path_var = d.0.join("bin").display().to_string();
        let got = resolve("app.js", None, &d.0, &path_var).unwrap();
        assert_eq!(
            got.program,
            Program::Script {
                interpreter: d.0.join("bin/node").display().to_string(),
                script: d.0.join("app.js").display().to_string(),
            }
        );
        // No python3 in that PATH: a clear error, not a crash loop.
        touch(&d.0.join("app.py"), 0o644);
        let Err(ResolveError::Invalid(msg)) = resolve("app.py", None, &d.0, &path_var) else {
            panic!("expected an error")
        };
        assert!(msg.contains("python3"), "{msg}");
    }

    #[test]
    fn executables_commands_and_missing_things() {
        let d = tmp("exec");
        touch(&d.0.join("worker"), 0o755);
        touch(&d.0.join("bin/tool"), 0o755);
        touch(&d.0.join("notes.txt"), 0o644);
        let path_var = d.0.join("bin").display().to_string();
        let program = |script: &str| resolve(script, None, &d.0, &path_var).map(|r| r.program);
        assert!(matches!(program("./worker"), Ok(Program::Exec { .. })));
        assert!(matches!(program("tool"), Ok(Program::Exec { .. })));
        assert!(matches!(program("tool $PORT"), Ok(Program::Shell { .. })));
        assert!(matches!(
            program("nope --port 1"),
            Err(ResolveError::Invalid(_))
        ));
        assert!(matches!(
            resolve("notes.txt", None, &d.0, &path_var),
            Err(ResolveError::Invalid(_))
        ));
        assert_eq!(
            resolve("api", None, &d.0, &path_var),
            Err(ResolveError::NotFound("api".into()))
        );
    }

    #[test]
    fn a_command_line_without_shell_syntax_runs_directly() {
        let d = tmp("line");
        touch(&d.0.join("bin/tool"), 0o755);
        touch(&d.0.join("other"), 0o755);
        let path_var = d.0.join("bin").display().to_string();
        let tool = d.0.join("bin/tool").display().to_string();
        assert_eq!(
            resolve("tool -w 2 'app:app x'", None, &d.0, &path_var),
            Ok(Resolved {
                program: Program::Exec { path: tool.clone() },
                args: vec!["-w".into(), "2".into(), "app:app x".into()],
                env: Vec::new(),
            })
        );
        let got = resolve("PORT=8000 tool", None, &d.0, &path_var).unwrap();
        assert_eq!(got.program, Program::Exec { path: tool });
        assert_eq!(got.env, [("PORT".to_string(), "8000".to_string())]);
        // The line's own PATH is where its command is looked up.
        let got = resolve("PATH=. other --x", None, &d.0, &path_var).unwrap();
        assert_eq!(
            got.program,
            Program::Exec {
                path: d.0.join("./other").display().to_string()
            }
        );
        assert!(matches!(
            resolve("nope 1", None, &d.0, &path_var),
            Err(ResolveError::Invalid(m)) if m == "command not found: nope"
        ));
    }

    #[test]
    fn default_names() {
        assert_eq!(default_name("PORT=1 gunicorn app:app"), "gunicorn");
        assert_eq!(default_name("app.js"), "app");
        assert_eq!(default_name("python3 -m http.server"), "python3");
        assert_eq!(default_name("./my worker.sh"), "my");
        assert_eq!(default_name("123.js"), "app-123");
    }
}
