//! The Node preload that lets an app that was never changed serve the
//! sockets sup holds: a `listen()` on a held address adopts the handed-over
//! fd (see `assets/preload.cjs`). sup writes it into `SUP_HOME` and passes
//! it with `NODE_OPTIONS=--require …`, only to Node apps with held sockets.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use sup_proto::Program;

/// The preload's source, shipped inside the binary.
const SOURCE: &str = include_str!("../assets/preload.cjs");

/// The variable that tells the preload which address each held fd has, in
/// fd order, as a JSON array.
pub const ADDRS_VAR: &str = "SUP_LISTEN";

/// Whether `program` runs Node: a script with a `node` interpreter, or the
/// `node` executable itself.
pub fn is_node(program: &Program) -> bool {
    let path = match program {
        Program::Exec { path } => path,
        Program::Script { interpreter, .. } => interpreter,
        Program::Shell { .. } => return false,
    };
    let name = Path::new(path).file_name().and_then(|n| n.to_str());
    matches!(name, Some("node" | "nodejs"))
}

/// Whether instances of `spec` bind nothing themselves: the daemon binds
/// what they listen on and shares it (PM2's cluster mode, for a Node app
/// with more than one instance).
pub fn binds_on_listen(spec: &sup_proto::AppSpec) -> bool {
    is_node(&spec.program) && spec.instances > 1
}

/// Adds what a Node instance needs to adopt the held sockets at `addrs`
/// (in fd order): the preload, installed in `home`, appended to its
/// `NODE_OPTIONS`, and [`ADDRS_VAR`].
pub fn add_env(env: &mut Vec<(String, String)>, home: &Path, addrs: &[&str]) -> io::Result<()> {
    let path = install(home)?;
    let require = format!("--require {}", quote(&path.display().to_string()));
    let options = match env.iter().position(|(k, _)| k == "NODE_OPTIONS") {
        Some(i) => env.remove(i).1,
        None => String::new(),
    };
    let options = match options.trim() {
        "" => require,
        theirs => format!("{theirs} {require}"),
    };
    env.push(("NODE_OPTIONS".into(), options));
    env.retain(|(k, _)| k != ADDRS_VAR);
    let addrs = serde_json::to_string(addrs).map_err(io::Error::other)?;
    env.push((ADDRS_VAR.into(), addrs));
    Ok(())
}

/// Writes the preload of this sup version into `home/node/` unless it is
/// already there unchanged; returns its path. Readable by all (an app may
/// run as another user), written by a rename so no app reads half a file.
fn install(home: &Path) -> io::Result<PathBuf> {
    let dir = home.join("node");
    let path = dir.join(format!("preload-{}.cjs", env!("CARGO_PKG_VERSION")));
    if fs::read(&path).is_ok_and(|text| text == SOURCE.as_bytes()) {
        return Ok(path);
    }
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let tmp = dir.join(format!(".preload-{}.tmp", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    file.write_all(SOURCE.as_bytes())?;
    // Whatever the daemon's umask.
    file.set_permissions(fs::Permissions::from_mode(0o644))?;
    drop(file);
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// `s` in double quotes, as Node's `NODE_OPTIONS` parser reads them (a
/// backslash escapes the next character), so a home with spaces works.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sup-preload-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn node_is_recognised_by_its_executable() {
        let script = |i: &str| Program::Script {
            interpreter: i.into(),
            script: "app.js".into(),
        };
        assert!(is_node(&script("/usr/bin/node")));
        assert!(is_node(&script("/usr/local/bin/nodejs")));
        assert!(is_node(&Program::Exec {
            path: "/opt/node/bin/node".into()
        }));
        assert!(!is_node(&script("/usr/bin/python3")));
        assert!(!is_node(&Program::Exec {
            path: "/srv/node/app".into()
        }));
        assert!(!is_node(&Program::Shell {
            line: "node app.js".into()
        }));
    }

    #[test]
    fn the_preload_is_appended_to_the_apps_node_options() {
        let home = scratch("env");
        let mut env = vec![
            (
                "NODE_OPTIONS".to_string(),
                "--max-old-space-size=512".to_string(),
            ),
            (ADDRS_VAR.to_string(), "stale".to_string()),
        ];
        add_env(&mut env, &home, &["127.0.0.1:3000", "/run/a b.sock"]).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let path = home.join(format!("node/preload-{}.cjs", env!("CARGO_PKG_VERSION")));
        assert_eq!(
            get("NODE_OPTIONS").unwrap(),
            format!("--max-old-space-size=512 --require \"{}\"", path.display())
        );
        assert_eq!(
            get(ADDRS_VAR).unwrap(),
            r#"["127.0.0.1:3000","/run/a b.sock"]"#
        );
        assert_eq!(env.len(), 2, "each variable once: {env:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), SOURCE);
        let _ = fs::remove_dir_all(home);
    }

    #[test]
    fn install_repairs_a_changed_file_and_leaves_it_readable_by_all() {
        let home = scratch("install");
        let path = install(&home).unwrap();
        fs::write(&path, "tampered").unwrap();
        assert_eq!(install(&home).unwrap(), path);
        assert_eq!(fs::read_to_string(&path).unwrap(), SOURCE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            fs::read_dir(home.join("node")).unwrap().count(),
            1,
            "no temp file left"
        );
        let _ = fs::remove_dir_all(home);
    }

    #[test]
    fn quotes_escape_quotes_and_backslashes() {
        assert_eq!(quote(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
    }
}
