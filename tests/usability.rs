//! What a new user hit: bad durations, a hung daemon, long names, several
//! targets at once.

use crate::support::*;

#[test]
fn a_negative_duration_says_what_is_wrong() {
    let sup = Sup::new();
    for flag in ["--health-interval", "--kill-timeout", "--restart-delay"] {
        let err = sup.fails(&["start", "x", flag, "-1s"], 2);
        assert!(
            err.contains("must not be negative") && err.contains("5s"),
            "{flag}: {err}"
        );
    }
    let err = sup.fails(&["start", "x", "--kill-timeout", "1.5s"], 2);
    assert!(err.contains("whole numbers"), "{err}");
    // Nothing was started for a usage error.
    assert!(sup.daemon_pid().is_none());
}
