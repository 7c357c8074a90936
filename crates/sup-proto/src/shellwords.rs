//! Reads a quoted command line the way `/bin/sh` would, without expanding
//! anything, to decide how it can run with the app as the process sup
//! watches (not a shell above it):
//!
//! - no shell syntax at all: split into words and exec'd directly;
//! - one simple command with expansions, globs or redirections: run as
//!   `sh -c 'exec …'`, so the shell replaces itself with the app;
//! - anything else (pipes, lists, subshells, command substitution,
//!   builtins, bad quoting): `sh -c` as written, the shell stays.
//!
//! A hand-written reader rather than the `shlex` crate: `shlex` splits but
//! treats `|`, `;` or `$x` as plain characters, and telling those apart is
//! the point here.

/// Shell words after which `exec` cannot go: keywords, and builtins that
/// are no program (`exec exit 1` fails) or act on the shell itself.
const NOT_EXECABLE: &[&str] = &[
    "!", "{", "}", "[[", "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
    "case", "esac", "function", "select", "exec", "exit", "return", "break", "continue", "cd",
    "export", "readonly", "local", "unset", "set", "shift", "eval", ".", "source", ":", "trap",
    "wait", "ulimit", "umask", "alias", "read", "times", "command", "builtin",
];

/// How a command line can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Byte offset in the line of its command word, where `exec ` can go;
    /// `None` when the line is not one simple command of a program.
    pub exec_at: Option<usize>,
    /// The line split into words (quotes removed), when it has no shell
    /// syntax at all: leading `NAME=value` assignments, then the argv.
    pub plain: Option<Plain>,
}

/// A line without shell syntax, split as a shell would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain {
    /// Leading `NAME=value` words: the command's extra environment.
    pub assignments: Vec<(String, String)>,
    /// The command and its arguments (never empty).
    pub argv: Vec<String>,
}

/// One word as the shell reads it.
#[derive(Debug, Default)]
struct Word {
    /// The word with quotes and escapes removed.
    text: String,
    /// Byte offset of its first character in the line.
    start: usize,
    /// Index in `text` of the first character that was quoted or escaped.
    quoted_from: Option<usize>,
    /// It names a redirection's file (`> log`).
    redirect_target: bool,
}

impl Word {
    /// `NAME=value` with an unquoted `NAME=`: an assignment, not a command.
    fn assignment(&self) -> Option<(String, String)> {
        let eq = self.text.find('=')?;
        let name = &self.text[..eq];
        let unquoted = self.quoted_from.is_none_or(|q| q > eq);
        let ident = name
            .chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
        (unquoted && ident).then(|| (name.to_string(), self.text[eq + 1..].to_string()))
    }
}

/// What a scan of the line found.
#[derive(Debug, Default)]
struct Scan {
    words: Vec<Word>,
    /// Expansions, globs, redirections, comments: fine for `exec`.
    syntax: bool,
    /// More than one simple command, or something this reader does not
    /// follow (substitutions, subshells, unterminated quotes).
    compound: bool,
    current: Option<Word>,
    target_next: bool,
}

impl Scan {
    fn word(&mut self, at: usize) -> &mut Word {
        let target = self.target_next;
        self.current.get_or_insert_with(|| Word {
            start: at,
            redirect_target: target,
            ..Word::default()
        })
    }

    fn push(&mut self, at: usize, c: char) {
        self.word(at).text.push(c);
    }

    fn push_quoted(&mut self, at: usize, c: Option<char>) {
        let word = self.word(at);
        word.quoted_from.get_or_insert(word.text.len());
        word.text.extend(c);
    }

    fn end_word(&mut self) {
        if let Some(word) = self.current.take() {
            self.target_next = self.target_next && !word.redirect_target;
            self.words.push(word);
        }
    }

    /// A redirection operator: an io number before it (`2>`) is no word.
    fn redirect(&mut self) {
        self.syntax = true;
        let io_number = self
            .current
            .as_ref()
            .is_some_and(|w| w.quoted_from.is_none() && w.text.bytes().all(|b| b.is_ascii_digit()));
        if io_number {
            self.current = None;
        } else {
            self.end_word();
        }
        self.target_next = true;
    }
}

/// Reads `line` as `/bin/sh` would, without expanding anything.
pub fn analyse(line: &str) -> Analysis {
    let scan = scan(line);
    if scan.compound {
        return Analysis {
            exec_at: None,
            plain: None,
        };
    }
    let mut commands = scan
        .words
        .iter()
        .filter(|w| !w.redirect_target)
        .skip_while(|w| w.assignment().is_some());
    let exec_at = commands
        .next()
        .filter(|w| w.quoted_from.is_some() || !NOT_EXECABLE.contains(&w.text.as_str()))
        .map(|w| w.start);
    let plain = (!scan.syntax && exec_at.is_some()).then(|| {
        let split = scan
            .words
            .iter()
            .position(|w| w.assignment().is_none())
            .unwrap_or(scan.words.len());
        Plain {
            assignments: scan.words[..split]
                .iter()
                .filter_map(Word::assignment)
                .collect(),
            argv: scan.words[split..].iter().map(|w| w.text.clone()).collect(),
        }
    });
    Analysis { exec_at, plain }
}

/// The line with `exec ` in front of its command, when it is one simple
/// command of a program; else the line as it is.
pub fn with_exec(line: &str) -> String {
    match analyse(line).exec_at {
        Some(at) => format!("{}exec {}", &line[..at], &line[at..]),
        None => line.to_string(),
    }
}

fn scan(line: &str) -> Scan {
    let mut s = Scan::default();
    let mut chars = line.char_indices().peekable();
    let mut prev = None;
    while let Some((i, c)) = chars.next() {
        let at_word_start = s.current.is_none();
        match c {
            ' ' | '\t' => s.end_word(),
            '\n' | ';' | '|' | '(' | ')' | '`' => s.compound = true,
            // `>&2`, `<&0` are redirections; any other `&` runs in the background.
            '&' if matches!(prev, Some('<' | '>')) => {}
            '&' => s.compound = true,
            '<' | '>' => {
                if !matches!(prev, Some('<' | '>')) {
                    s.redirect();
                }
                if chars.next_if(|&(_, n)| n == '|').is_some() {
                    prev = Some('|');
                    continue;
                }
            }
            '\'' => {
                s.push_quoted(i, None);
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((j, q)) => s.push_quoted(j, Some(q)),
                        None => {
                            s.compound = true;
                            break;
                        }
                    }
                }
            }
            '"' => double_quoted(&mut s, i, &mut chars),
            '\\' => match chars.next() {
                Some((_, '\n')) => {}
                Some((j, e)) => s.push_quoted(j, Some(e)),
                None => s.push(i, '\\'),
            },
            '$' => {
                if chars.peek().is_some_and(|&(_, n)| n == '(') {
                    s.compound = true;
                }
                s.syntax = true;
                s.push(i, c);
            }
            '*' | '?' | '[' => {
                s.syntax = true;
                s.push(i, c);
            }
            '~' | '#' if at_word_start => {
                s.syntax = true;
                s.push(i, c);
            }
            _ => s.push(i, c),
        }
        prev = Some(c);
    }
    s.end_word();
    s
}

/// Inside `"…"`: `$` and `` ` `` still expand; a backslash escapes only
/// `$`, `` ` ``, `"`, `\` and a newline.
fn double_quoted(
    s: &mut Scan,
    open: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) {
    s.push_quoted(open, None);
    loop {
        match chars.next() {
            Some((_, '"')) => return,
            Some((j, '\\')) => match chars.peek().copied() {
                Some((_, '\n')) => {
                    chars.next();
                }
                Some((k, e @ ('$' | '`' | '"' | '\\'))) => {
                    chars.next();
                    s.push_quoted(k, Some(e));
                }
                _ => s.push_quoted(j, Some('\\')),
            },
            Some((j, '$')) => {
                if chars.peek().is_some_and(|&(_, n)| n == '(') {
                    s.compound = true;
                }
                s.syntax = true;
                s.push_quoted(j, Some('$'));
            }
            Some((_, '`')) | None => {
                s.compound = true;
                return;
            }
            Some((j, q)) => s.push_quoted(j, Some(q)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        analyse(line).plain.expect("a plain line").argv
    }

    #[test]
    fn splits_words_like_a_shell() {
        assert_eq!(
            argv("gunicorn -w 2 app:app"),
            ["gunicorn", "-w", "2", "app:app"]
        );
        assert_eq!(argv("  a\t b  "), ["a", "b"]);
        assert_eq!(
            argv(r#"echo 'a b' "c d" e\ f"#),
            ["echo", "a b", "c d", "e f"]
        );
        assert_eq!(argv(r#"echo ''"""#), ["echo", ""]);
        assert_eq!(
            argv(r#"echo 'it''s' "say \"hi\" \n""#),
            ["echo", "its", r#"say "hi" \n"#]
        );
        assert_eq!(argv(r"echo 'a\b' a\\b"), ["echo", r"a\b", r"a\b"]);
        assert_eq!(argv("echo a\\\nb"), ["echo", "ab"]);
        assert_eq!(argv("node --x=1 a=b"), ["node", "--x=1", "a=b"]);
        assert_eq!(
            argv("python3 -c 'print(1); print(2)'"),
            ["python3", "-c", "print(1); print(2)"]
        );
        assert_eq!(argv("echo a#b"), ["echo", "a#b"]);
        assert_eq!(argv("日本 語"), ["日本", "語"]);
    }

    #[test]
    fn splits_as_dash_does() {
        for line in [
            r#"a 'b c' "d \"e\"" f\ g 'h'"i"j \$ "\x""#,
            "a b\\\n c '' \"\"",
            r#"x "a\\b" 'a\b' a\b"#,
        ] {
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &format!("printf '%s\\0' {line}")])
                .output()
                .unwrap();
            let words: Vec<String> = String::from_utf8(out.stdout)
                .unwrap()
                .split_terminator('\0')
                .map(String::from)
                .collect();
            assert_eq!(argv(line), words, "{line:?}");
        }
    }

    #[test]
    fn leading_assignments_are_environment() {
        let Plain {
            assignments,
            argv: words,
        } = analyse("PORT=8000 A_1='x y' node app.js B=2")
            .plain
            .unwrap();
        assert_eq!(
            assignments,
            [("PORT".into(), "8000".into()), ("A_1".into(), "x y".into())]
        );
        assert_eq!(words, ["node", "app.js", "B=2"]);
        // A quoted name or a bad identifier is a command, not an assignment.
        assert_eq!(argv("'A=1' x"), ["A=1", "x"]);
        assert_eq!(argv("1A=1 x"), ["1A=1", "x"]);
        // Assignments alone run nothing.
        assert_eq!(analyse("A=1 B=2").plain, None);
    }

    #[test]
    fn simple_commands_with_syntax_get_exec() {
        let cases = [
            ("node $APP", "exec node $APP"),
            ("node \"${APP:-x}\"", "exec node \"${APP:-x}\""),
            ("server >>log 2>&1", "exec server >>log 2>&1"),
            ("2>err server", "2>err exec server"),
            ("PORT=$P gunicorn app", "PORT=$P exec gunicorn app"),
            ("cat *.txt ~/x", "exec cat *.txt ~/x"),
            ("run < in > out # note", "exec run < in > out # note"),
            // A redirection's file is not the command.
            ("> log run", "> log exec run"),
            (">|log run", ">|log exec run"),
        ];
        for (line, want) in cases {
            assert_eq!(analyse(line).plain, None, "{line}");
            assert_eq!(with_exec(line), want, "{line}");
        }
    }

    #[test]
    fn everything_else_runs_as_written() {
        for line in [
            "a | b",
            "a; b",
            "a && b",
            "a || b",
            "a &",
            "a &> log",
            "(a)",
            "a\nb",
            "echo $(date)",
            "echo \"$(date)\"",
            "echo `date`",
            "echo 'unterminated",
            "echo \"unterminated",
            "if true; then a; fi",
            "exit 3",
            "cd /tmp",
            "exec node app",
            "export A=1",
            "{ a; }",
            "A=1",
            "> log",
            "",
            "   ",
        ] {
            assert_eq!(with_exec(line), line, "{line:?}");
            assert_eq!(analyse(line).plain, None, "{line:?}");
        }
        // A quoted keyword is a command name like any other.
        assert_eq!(argv("'exit' 3"), ["exit", "3"]);
    }
}
