//! Counts in messages: "1 app", "2 apps", never "1 apps".

/// `n` and `noun`, with an `s` unless `n` is 1 (every noun sup counts
/// takes a plain `s`).
pub(crate) fn count(n: u64, noun: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{n} {noun}{s}")
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(count(0, "app"), "0 apps");
        assert_eq!(count(1, "app"), "1 app");
        assert_eq!(count(2, "time"), "2 times");
    }
}
