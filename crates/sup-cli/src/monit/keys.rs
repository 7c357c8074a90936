//! What each key means, and the help and hints that list the keys.

use super::state::Verb;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Up or `k`.
    Up,
    /// Down or `j`.
    Down,
    /// Scroll the logs back a page.
    PageUp,
    /// Scroll the logs forward a page.
    PageDown,
    /// Move between the table and the logs.
    Focus,
    /// Show or hide the help.
    Help,
    /// Esc: close the help, or quit.
    Back,
    /// Leave.
    Quit,
    /// Act on the selection.
    Act(Verb),
}

/// The input a key press means, if any.
pub fn input(key: KeyEvent) -> Option<Input> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    // Raw mode turns Ctrl-C into a key.
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return (key.code == KeyCode::Char('c')).then_some(Input::Quit);
    }
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Input::Up,
        KeyCode::Down | KeyCode::Char('j') => Input::Down,
        KeyCode::PageUp => Input::PageUp,
        KeyCode::PageDown => Input::PageDown,
        KeyCode::Tab | KeyCode::BackTab | KeyCode::Enter => Input::Focus,
        KeyCode::Char('?') => Input::Help,
        KeyCode::Esc => Input::Back,
        KeyCode::Char('q') => Input::Quit,
        KeyCode::Char('r') => Input::Act(Verb::Restart),
        KeyCode::Char('s') => Input::Act(Verb::Stop),
        KeyCode::Char('S') => Input::Act(Verb::Start),
        KeyCode::Char('l') => Input::Act(Verb::Reload),
        _ => return None,
    })
}

/// The keys and what they do, as the help shows them.
pub const HELP: [(&str, &str); 10] = [
    ("↑ ↓   k j", "select an app or an instance"),
    ("PgUp PgDn", "scroll the logs back and forth"),
    ("Tab Enter", "arrows move the table, or the logs"),
    ("r", "restart the selected app (or instance)"),
    ("s", "stop it"),
    ("S", "start it again"),
    ("l", "reload it: zero-downtime restart"),
    ("?", "show or hide this help"),
    ("Esc", "close this help, or quit"),
    ("q  Ctrl-C", "quit"),
];

/// The footer's reminder of the keys.
pub const HINTS: &str =
    "↑↓ select  r restart  s stop  S start  l reload  PgUp/PgDn logs  ? help  q quit";

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_and_their_inputs() {
        assert_eq!(input(key(KeyCode::Char('j'))), Some(Input::Down));
        assert_eq!(input(key(KeyCode::Up)), Some(Input::Up));
        assert_eq!(
            input(KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT)),
            Some(Input::Act(Verb::Start))
        );
        assert_eq!(
            input(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Input::Quit)
        );
        assert_eq!(
            input(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL)),
            None
        );
        assert_eq!(input(key(KeyCode::Char('x'))), None);
        assert!(HINTS.chars().count() <= 80, "the hints fit 80 columns");
    }
}
