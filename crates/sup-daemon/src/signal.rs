//! The one place a protocol signal becomes a nix signal.

use nix::sys::signal::Signal;

/// The nix signal for `sig`. Every [`sup_proto::Signal`] is a standard
/// signal that nix knows too (the test below checks each one), so the
/// fallback is never taken.
pub fn to_nix(sig: sup_proto::Signal) -> Signal {
    Signal::try_from(sig.number()).unwrap_or(Signal::SIGTERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_signal_is_the_same_nix_signal() {
        let mut seen = 0;
        for number in 1..=64 {
            if let Some(sig) = sup_proto::Signal::from_number(number) {
                assert_eq!(to_nix(sig) as i32, number);
                assert_eq!(to_nix(sig).as_str(), sig.name());
                seen += 1;
            }
        }
        assert!(seen >= 30, "only {seen} signals");
    }
}
