//! App names: always a safe file name, never mistaken for an id.

/// Why a string is not a valid app name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or longer than 64 characters.
    #[error("app name must be 1 to 64 characters long")]
    Length,
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("app name may only hold letters, digits, '.', '_' and '-' (found {0:?})")]
    Char(char),
    /// Only digits: those are ids.
    #[error("app name cannot be all digits (digits mean an id)")]
    AllDigits,
    /// `.` or `..`, or the reserved word `all`.
    #[error("app name {0:?} is reserved")]
    Reserved(String),
}

/// Checks that `name` is `[A-Za-z0-9._-]{1,64}`, not all digits and not reserved.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 64 {
        return Err(NameError::Length);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::Char(c));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::AllDigits);
    }
    if matches!(name, "." | ".." | "all") {
        return Err(NameError::Reserved(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["api", "web-1", "my_app.v2", "a", &"x".repeat(64)] {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_name(""), Err(NameError::Length));
        assert_eq!(validate_name(&"x".repeat(65)), Err(NameError::Length));
        assert_eq!(validate_name("a/b"), Err(NameError::Char('/')));
        assert_eq!(validate_name("a b"), Err(NameError::Char(' ')));
        assert_eq!(validate_name("42"), Err(NameError::AllDigits));
        assert!(matches!(validate_name(".."), Err(NameError::Reserved(_))));
        assert!(matches!(validate_name("all"), Err(NameError::Reserved(_))));
    }
}
