//! `.env` files (`--env-file`, PM2's `env_file`): `KEY=VALUE` lines, `#`
//! comments, an optional `export ` in front, values optionally quoted.

use super::{error, ConfigError};
use std::collections::BTreeMap;
use std::path::Path;

/// The variables of the file at `path`.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| error(path, format!("cannot read the env file: {e}")))?;
    parse(&text).map_err(|(line, message)| super::ConfigError {
        file: path.to_path_buf(),
        at: Some((line, 1)),
        message,
    })
}

/// The variables of a `.env` text, or the line (1-based) that is wrong.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut vars = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((n + 1, format!("expected KEY=VALUE, got {line:?}")));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err((n + 1, format!("invalid variable name {key:?}")));
        }
        vars.insert(key.to_string(), unquote(value.trim()).to_string());
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
        assert_eq!(parse("A=1\nnonsense\n").unwrap_err().0, 2);
    }
}
