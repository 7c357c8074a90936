//! App names: any name PM2 accepts (spaces and slashes included, as real
//! ecosystem files use them), except what could not be addressed. Log file
//! names are derived from them as PM2 derives its own (`sup_home::log_stem`).

/// Why a string is not a valid app name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing at all.
    #[error("app name cannot be empty")]
    Empty,
    /// A control character (a newline, a tab, NUL, ...).
    #[error("app name cannot hold control characters (found {0:?})")]
    Control(char),
    /// Only digits: those are ids.
    #[error("app name cannot be all digits (digits mean an id)")]
    AllDigits,
    /// `NAME:N` means instance N of NAME.
    #[error("app name {0:?} would be read as an instance (NAME:N); pick another")]
    Instance(String),
    /// The reserved word `all`.
    #[error("app name {0:?} is reserved")]
    Reserved(String),
}

/// Checks that `name` can be addressed: not empty, not `all`, not all
/// digits (an id), not `NAME:N` (an instance), no control characters.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::Control(c));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::AllDigits);
    }
    if name == "all" {
        return Err(NameError::Reserved(name.to_string()));
    }
    if name
        .rsplit_once(':')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(NameError::Instance(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_pm2_accepts() {
        for n in [
            "api",
            "web-1",
            "my_app.v2",
            "NearBy Server",
            "express-ejs/development",
            "Start as Background Process with PM2",
            "a:b",
            "host:port:x",
            "..",
            &"x".repeat(300),
        ] {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_addressed() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name("a\nb"), Err(NameError::Control('\n')));
        assert_eq!(validate_name("a\0b"), Err(NameError::Control('\0')));
        assert_eq!(validate_name("42"), Err(NameError::AllDigits));
        assert!(matches!(validate_name("all"), Err(NameError::Reserved(_))));
        assert!(matches!(
            validate_name("api:1"),
            Err(NameError::Instance(_))
        ));
    }
}
