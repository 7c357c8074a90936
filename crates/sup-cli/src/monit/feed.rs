//! The threads that feed `sup monit`'s loop, each sending [`Msg`]s on one
//! channel: keys (and caught signals), the daemon's event stream, the
//! figures once a second, the log follower, and each action's outcome.

use super::follower::Follower;
use super::state::{LogLine, Verb};
use super::terminal;
use crate::client::{expect_ok, Client};
use crate::logs::Source;
use anyhow::{bail, Context, Result};
use crossterm::event::{self, Event, KeyEvent};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;
use sup_home::Home;
use sup_proto::{AppInfo, EventRecord, Request, Response, Target};

/// How often the figures are refreshed: the view's only timer.
const TICK: Duration = Duration::from_secs(1);

/// How soon a caught signal is noticed: the key thread waits for keys this
/// long at a time.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// What the loop hears.
#[derive(Debug)]
pub enum Msg {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal changed size.
    Resize,
    /// The terminal cannot be read any more.
    TerminalLost(String),
    /// SIGTERM, SIGHUP or SIGINT arrived.
    Signal(i32),
    /// The apps (`Request::List`), or why they could not be had.
    Figures(Result<Vec<AppInfo>, String>),
    /// Events, oldest first: the recorded ones, then each as it happens.
    Events(Vec<EventRecord>),
    /// The event stream ended, and why.
    StreamEnded(String),
    /// Lines for the log pane's source `generation`.
    Logs {
        /// The source they come from.
        generation: u64,
        /// The lines, oldest first.
        lines: Vec<LogLine>,
    },
    /// The log pane's source `generation` cannot be read.
    LogError {
        /// The source.
        generation: u64,
        /// Why.
        error: String,
    },
    /// An action's outcome, for the footer.
    Done(Result<String, String>),
}

/// The running feeds, and the ways to ask them for something.
pub struct Feeds {
    home: Home,
    tx: Sender<Msg>,
    refresh: Sender<()>,
    follower: Follower,
}

impl Feeds {
    /// Starts every feed; `client` serves the figures.
    pub fn start(home: &Home, client: Client) -> Result<(Feeds, Receiver<Msg>)> {
        let (tx, rx) = mpsc::channel();
        let (refresh, asked) = mpsc::channel();
        let sender = tx.clone();
        spawn("keys", move || keys(&sender))?;
        let (sender, at) = (tx.clone(), home.clone());
        spawn("figures", move || {
            figures(&at, Some(client), &asked, &sender)
        })?;
        let (sender, at) = (tx.clone(), home.clone());
        spawn("events", move || events(&at, &sender))?;
        let follower = Follower::start(tx.clone())?;
        let feeds = Feeds {
            home: home.clone(),
            tx,
            refresh,
            follower,
        };
        Ok((feeds, rx))
    }

    /// Asks for the figures now rather than at the next tick.
    pub fn refresh(&self) {
        let _ = self.refresh.send(());
    }

    /// Follows `sources` in the log pane from now on.
    pub fn follow(&self, generation: u64, sources: Vec<Source>) {
        self.follower.follow(generation, sources);
    }

    /// Sends `verb` to `target` on a connection of its own, in a thread:
    /// a restart waits for the app, the view does not.
    pub fn act(&self, verb: Verb, target: Target, label: String) {
        let (home, tx) = (self.home.clone(), self.tx.clone());
        let started = spawn("action", move || {
            let outcome = act(&home, verb, &target, &label).map_err(|e| format!("{label}: {e:#}"));
            let _ = tx.send(Msg::Done(outcome));
        });
        if let Err(e) = started {
            let _ = self.tx.send(Msg::Done(Err(format!("{e:#}"))));
        }
    }
}

/// Starts a thread named `monit-<name>`.
pub fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("monit-{name}"))
        .spawn(work)
        .with_context(|| format!("cannot start the {name} thread"))?;
    Ok(())
}

/// Keys and resizes; a caught signal is seen between two waits.
fn keys(tx: &Sender<Msg>) {
    loop {
        if let Some(signal) = terminal::signalled() {
            let _ = tx.send(Msg::Signal(signal));
            return;
        }
        let msg =
            match event::poll(SIGNAL_CHECK).and_then(|ready| ready.then(event::read).transpose()) {
                Ok(Some(Event::Key(key))) => Msg::Key(key),
                Ok(Some(Event::Resize(..))) => Msg::Resize,
                Ok(_) => continue,
                Err(e) => Msg::TerminalLost(e.to_string()),
            };
        let lost = matches!(msg, Msg::TerminalLost(_));
        if tx.send(msg).is_err() || lost {
            return;
        }
    }
}

/// The figures every [`TICK`], or at once when asked.
fn figures(home: &Home, mut client: Option<Client>, asked: &Receiver<()>, tx: &Sender<Msg>) {
    loop {
        match asked.recv_timeout(TICK) {
            // A burst of events asks once.
            Ok(()) => while asked.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let figures = list(home, &mut client).map_err(|e| format!("{e:#}"));
        if tx.send(Msg::Figures(figures)).is_err() {
            return;
        }
    }
}

/// `Request::List`, on a new connection when the last one failed.
fn list(home: &Home, client: &mut Option<Client>) -> Result<Vec<AppInfo>> {
    if client.is_none() {
        *client = Client::connect(home)?;
    }
    let Some(connected) = client.as_mut() else {
        bail!("the sup daemon is not running");
    };
    let apps = connected.request(Request::List).and_then(crate::apps);
    if apps.is_err() {
        *client = None;
    }
    apps
}

/// The daemon's events, until it goes away.
fn events(home: &Home, tx: &Sender<Msg>) {
    if let Err(e) = stream_events(home, tx) {
        let _ = tx.send(Msg::StreamEnded(format!("{e:#}")));
    }
}

fn stream_events(home: &Home, tx: &Sender<Msg>) -> Result<()> {
    let mut client = crate::existing(home)?;
    let request = Request::Events {
        target: None,
        follow: true,
    };
    let mut response = client.request(request)?;
    loop {
        let Response::Events(events) = expect_ok(response)? else {
            bail!("unexpected answer from the daemon");
        };
        if tx.send(Msg::Events(events)).is_err() {
            return Ok(());
        }
        response = client.next_response().context("the daemon went away")?;
    }
}

/// Sends `verb` to `target`, given as long as its apps may take.
fn act(home: &Home, verb: Verb, target: &Target, label: &str) -> Result<String> {
    let mut client = crate::existing(home)?;
    let request = verb.request(target.clone());
    let response = crate::targets::request_waiting(&mut client, target, request)?;
    Ok(outcome(verb, label, expect_ok(response)?))
}

/// What the footer says of a finished action.
fn outcome(verb: Verb, label: &str, response: Response) -> String {
    match response {
        Response::Apps(apps) => {
            let states: Vec<String> = apps
                .iter()
                .map(|a| format!("{} is {}", a.name, a.status.as_str()))
                .collect();
            format!("{} {label}: {}", verb.done(), states.join(", "))
        }
        Response::Note(note) => note.lines().collect::<Vec<_>>().join("; "),
        _ => format!("{} {label}", verb.done()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::app;
    use super::*;

    #[test]
    fn outcomes_for_the_footer() {
        let apps = Response::Apps(vec![app(0, "api", 2)]);
        assert_eq!(
            outcome(Verb::Restart, "api:1", apps),
            "restarted api:1: api is online"
        );
        let note = Response::Note("reloaded api\n2 instances replaced".into());
        assert_eq!(
            outcome(Verb::Reload, "api", note),
            "reloaded api; 2 instances replaced"
        );
        assert_eq!(outcome(Verb::Stop, "api", Response::Ok), "stopped api");
    }
}
