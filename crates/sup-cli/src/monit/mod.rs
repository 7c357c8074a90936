//! `sup monit`: a full-screen view of the apps, their figures and the
//! selected app's live logs, with keys to restart, stop, start and reload
//! it (PM2's `pm2 monit`). It costs the daemon nothing while closed; while
//! open, one `List` a second and one event stream. Threads ([`feed`],
//! [`follower`]) send messages on one channel; this loop applies them to
//! the [`state::State`] and redraws.

mod feed;
mod follower;
mod keys;
mod state;

/// An `AppInfo` to test with, shared with `render`'s tests.
#[cfg(test)]
pub(crate) use state::tests::app as test_app;
mod terminal;
mod view;

use crate::client::{self, Client};
use crate::logs;
use anyhow::{bail, Context, Result};
use feed::{Feeds, Msg};
use state::{Order, State};
use std::io::IsTerminal;
use std::sync::mpsc::Receiver;
use sup_home::Home;
use sup_proto::Request;
use terminal::Screen;

/// How the view ended.
enum Flow {
    /// The user quit.
    Quit,
    /// A signal asked it to: exit with 128 + the signal, as a shell says.
    Signal(i32),
}

/// Runs `sup monit` until the user quits.
pub fn run(home: &Home) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!("sup monit needs a terminal; use `sup list` or `sup events --follow`");
    }
    let mut client = Client::connect_or_spawn(home)?;
    let apps = crate::apps(client.request(Request::List)?)?;
    // That answer printed the daemon's warnings on the normal screen; later
    // ones would scribble over the view.
    client::silence_warnings();
    let mut state = State::new(apps, crate::render::use_color());
    terminal::catch_signals()?;
    let mut screen = Screen::enter()?;
    let flow = Feeds::start(home, client)
        .and_then(|(feeds, rx)| run_loop(&mut screen, &mut state, &feeds, &rx));
    drop(screen);
    match flow? {
        Flow::Quit => Ok(()),
        // The terminal is restored; nothing else needs unwinding.
        Flow::Signal(signal) => std::process::exit(128 + signal),
    }
}

/// Draws, then waits for messages and applies them, until one ends it.
fn run_loop(
    screen: &mut Screen,
    state: &mut State,
    feeds: &Feeds,
    rx: &Receiver<Msg>,
) -> Result<Flow> {
    loop {
        follow_selection(state, feeds);
        let mut page = 0;
        screen
            .terminal()
            .draw(|frame| page = view::draw(frame, state))?;
        state.logs.set_page(page);
        let first = rx.recv().context("every feed of sup monit ended")?;
        // What came meanwhile is applied before the next drawing.
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            if let Some(flow) = apply(state, feeds, msg)? {
                return Ok(flow);
            }
        }
        if !terminal::active() {
            bail!("sup monit stopped: one of its threads panicked");
        }
    }
}

/// Applies one message; how the view ends, if it does.
fn apply(state: &mut State, feeds: &Feeds, msg: Msg) -> Result<Option<Flow>> {
    match msg {
        Msg::Key(key) => match keys::input(key).and_then(|input| state.apply(input)) {
            Some(Order::Quit) => return Ok(Some(Flow::Quit)),
            Some(Order::Act {
                verb,
                target,
                label,
            }) => feeds.act(verb, target, label),
            None => {}
        },
        Msg::Resize => {}
        Msg::TerminalLost(why) => bail!("cannot read the terminal: {why}"),
        Msg::Signal(signal) => return Ok(Some(Flow::Signal(signal))),
        Msg::Figures(Ok(apps)) => state.set_apps(apps),
        Msg::Figures(Err(why)) => state.stale(why),
        Msg::Events(events) => {
            if let Some(last) = events.last() {
                state.event(last);
            }
            // The figures change with what happened: show them now.
            feeds.refresh();
        }
        Msg::StreamEnded(why) => state.no_more_events(&why),
        Msg::Logs { generation, lines } => state.logs.add(generation, lines),
        Msg::LogError { generation, error } => state.logs.fail(generation, error),
        Msg::Done(outcome) => {
            state.done(outcome);
            feeds.refresh();
        }
    }
    Ok(None)
}

/// Points the log pane at the selection's files when it moved to another
/// app or instance: those `sup logs app[:N]` reads.
fn follow_selection(state: &mut State, feeds: &Feeds) {
    let pick = state.pick();
    if state.logs.of() == pick {
        return;
    }
    let generation = state.logs.restart(pick);
    let sources = pick.and_then(|p| {
        let app = state.app(p.id)?;
        Some(logs::app_sources(app, 0, &Default::default(), p.index))
    });
    feeds.follow(generation, sources.unwrap_or_default());
}
