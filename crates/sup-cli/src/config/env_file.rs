//! `.env` files (`--env-file`, PM2's `env_file`): `KEY=VALUE` lines, `#`
//! comments, an optional `export ` in front, values optionally quoted.

use super::{error, ConfigError};
use std::collections::BTreeMap;
use std::path::Path;

/// The variables of the file at `path`: a regular file (a FIFO would hang
/// the CLI), reached through no link another user planted (it could point
/// anywhere, `/etc/shadow` included). Errors never quote the file's content.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text =
        read_regular(path).map_err(|e| error(path, format!("cannot read the env file: {e}")))?;
    parse(&text).map_err(|(at, message)| super::ConfigError {
        file: path.to_path_buf(),
        at: Some(at),
        message,
    })
}

fn read_regular(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let flags = libc::O_RDONLY | libc::O_NONBLOCK;
    let mut file = sup_home::nofollow::open(path, flags, 0, sup_home::nofollow::Last::TrustedLink)
        .map_err(|e| {
            if sup_home::nofollow::is_link_refusal(&e) {
                std::io::Error::other(
                    "it is, or runs through, a symbolic link that neither root nor you own",
                )
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8 text"))
}

/// The variables of a `.env` text, or where (line and column, 1-based) it
/// is wrong and what was expected there.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, ((usize, usize), String)> {
    let mut vars = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let indent = raw.len() - line.len();
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (line, indent) = match line.strip_prefix("export ") {
            Some(rest) => {
                let trimmed = rest.trim_start();
                (trimmed, indent + line.len() - trimmed.len())
            }
            None => (line, indent),
        };
        let column = |byte: usize| raw[..indent + byte].chars().count() + 1;
        let Some((key, value)) = line.split_once('=') else {
            let end = column(line.len());
            return Err((
                (n + 1, end),
                "expected `=` after a variable name (KEY=VALUE)".into(),
            ));
        };
        let key = key.trim_end();
        if let Some(bad) = key.find(|c: char| c.is_whitespace() || c == '\0') {
            return Err((
                (n + 1, column(bad)),
                "expected `=` right after the variable name (no spaces in a name)".into(),
            ));
        }
        if key.is_empty() {
            return Err((
                (n + 1, column(0)),
                "expected a variable name before `=`".into(),
            ));
        }
        let value = unquote(value.trim());
        if value.contains('\0') {
            return Err((
                (n + 1, column(line.len())),
                format!("the value of {key} holds a NUL byte, which no environment can carry"),
            ));
        }
        vars.insert(key.to_string(), value.to_string());
    }
    Ok(vars)
}

/// A value without its matching quotes; an unquoted one without a trailing
/// ` # comment`.
fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value.split(" #").next().unwrap_or(value).trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let vars =
            parse("# db\nexport A=1\nB = \"two words\"\nC='x#y'\nD=plain # note\n\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x#y");
        assert_eq!(vars["D"], "plain");
        assert_eq!(parse("A=1\nnonsense\n").unwrap_err().0, (2, 9));
    }

    #[test]
    fn errors_say_where_and_what_was_expected_never_the_content() {
        let shadow = "root:*:20228:0:99999:7:::\n";
        let (at, message) = parse(shadow).unwrap_err();
        assert_eq!(at, (1, 26));
        assert!(
            !message.contains("root") && !message.contains("20228"),
            "{message}"
        );
        let (at, message) = parse("export  SECRET TOKEN=hunter2\n").unwrap_err();
        assert_eq!(at, (1, 15));
        assert!(
            !message.contains("hunter2") && !message.contains("SECRET"),
            "{message}"
        );
        let (at, message) = parse("A=x\0y\n").unwrap_err();
        assert_eq!(at, (1, 6));
        assert!(message.contains("A holds a NUL byte"), "{message}");
    }
}
