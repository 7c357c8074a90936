//! What `sup monit` shows and where the user is in it: the table's rows,
//! the selection, the log pane and the footer. No terminal here: every
//! update is a method, and the tests drive them.

use super::keys::Input;
use std::collections::VecDeque;
use sup_proto::{AppInfo, EventKind, EventRecord, Request, Target};

/// Lines the log pane keeps; older ones are dropped.
pub const LOG_CAP: usize = 1000;

/// What a table row stands for: an app, or one of its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// The app's id.
    pub id: u32,
    /// The instance's index, on an instance's row.
    pub index: Option<u32>,
}

impl Pick {
    /// What an action on this row is sent to: the app by id (its name may
    /// be reused after a delete), or `app:N`.
    pub fn target(self) -> Target {
        match self.index {
            None => Target::Id(self.id),
            Some(index) => Target::Instance {
                app: Box::new(Target::Id(self.id)),
                index,
            },
        }
    }
}

/// Which pane the arrow keys move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    /// Up and down select rows.
    #[default]
    Table,
    /// Up and down scroll the logs.
    Logs,
}

/// An action on the selection, from a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `r`.
    Restart,
    /// `s`.
    Stop,
    /// `S`.
    Start,
    /// `l`: zero-downtime.
    Reload,
}

impl Verb {
    /// The request that does it to `target`.
    pub fn request(self, target: Target) -> Request {
        match self {
            Verb::Restart => Request::Restart(target),
            Verb::Stop => Request::Stop(target),
            Verb::Start => Request::Start(target),
            Verb::Reload => Request::Reload(target),
        }
    }

    /// What the footer says while it runs.
    pub fn doing(self) -> &'static str {
        match self {
            Verb::Restart => "restarting",
            Verb::Stop => "stopping",
            Verb::Start => "starting",
            Verb::Reload => "reloading",
        }
    }

    /// What the footer says once it is done.
    pub fn done(self) -> &'static str {
        match self {
            Verb::Restart => "restarted",
            Verb::Stop => "stopped",
            Verb::Start => "started",
            Verb::Reload => "reloaded",
        }
    }
}

/// What the run loop must carry out after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// Leave.
    Quit,
    /// Send `verb` to `target`, shown as `label`.
    Act {
        /// The action.
        verb: Verb,
        /// Whom it is sent to.
        target: Target,
        /// `api` or `api:1`, for the footer.
        label: String,
    },
}

/// A line of the footer: the newest event, or the last action's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What it says.
    pub text: String,
    /// Whether it tells of a failure (painted red).
    pub error: bool,
}

/// One line of an app's log, ready to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The app's text, without escapes or control characters.
    pub text: String,
    /// Whether it came from stderr.
    pub err: bool,
}

impl LogLine {
    /// A line from the bytes an app wrote.
    pub fn new(text: &[u8], err: bool) -> LogLine {
        LogLine {
            text: printable(&String::from_utf8_lossy(text)),
            err,
        }
    }
}

/// `text` without terminal escapes and control characters: an app's colours
/// or cursor moves would otherwise paint over the view. A tab becomes spaces.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => skip_escape(&mut chars),
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips the rest of an escape sequence: CSI (`ESC [ ... final`), OSC
/// (`ESC ] ... BEL` or `ESC \`), or a two-character one.
fn skip_escape(chars: &mut std::str::Chars) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
        Some(']') => {
            while let Some(c) = chars.next() {
                if c == '\x07' {
                    break;
                }
                if c == '\x1b' {
                    chars.next();
                    break;
                }
            }
        }
        _ => {}
    }
}

/// The selected app's lines, and how far back the user scrolled.
#[derive(Debug, Default)]
pub struct LogPane {
    lines: VecDeque<LogLine>,
    /// Lines between the newest one and the pane's bottom: 0 follows new lines.
    scroll: usize,
    /// Rows the pane showed last: a page for PgUp and PgDn.
    page: usize,
    /// Whose lines these are.
    of: Option<Pick>,
    /// Bumped at each new source, so that lines still coming from the
    /// previous one are told apart and dropped.
    generation: u64,
    error: Option<String>,
}

impl LogPane {
    /// Whose lines the pane holds (or awaits).
    pub fn of(&self) -> Option<Pick> {
        self.of
    }

    /// Starts over with `of`'s lines; returns the generation they will carry.
    pub fn restart(&mut self, of: Option<Pick>) -> u64 {
        self.generation += 1;
        self.lines.clear();
        self.scroll = 0;
        self.error = None;
        self.of = of;
        self.generation
    }

    /// Appends lines of `generation`, keeping the last [`LOG_CAP`].
    pub fn add(&mut self, generation: u64, lines: Vec<LogLine>) {
        if generation != self.generation {
            return;
        }
        let added = lines.len();
        for line in lines {
            if self.lines.len() == LOG_CAP {
                self.lines.pop_front();
            }
            self.lines.push_back(line);
        }
        // Scrolled back, the user keeps reading the same lines.
        if self.scroll > 0 {
            self.scroll = (self.scroll + added).min(self.max_scroll());
        }
    }

    /// Why the lines of `generation` cannot be read.
    pub fn fail(&mut self, generation: u64, error: String) {
        if generation == self.generation {
            self.error = Some(error);
        }
    }

    /// Why the lines cannot be read, if they cannot.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// How many lines the pane holds.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Lines between the newest one and the bottom of the pane.
    pub fn scroll(&self) -> usize {
        self.scroll
    }

    /// Notes that the pane shows `rows` rows.
    pub fn set_page(&mut self, rows: usize) {
        self.page = rows;
        self.scroll = self.scroll.min(self.max_scroll());
    }

    /// Scrolls back (positive) or forward (negative) by `lines`.
    pub fn scroll_by(&mut self, lines: isize) {
        let wanted = self.scroll.saturating_add_signed(lines);
        self.scroll = wanted.min(self.max_scroll());
    }

    fn max_scroll(&self) -> usize {
        self.lines.len().saturating_sub(self.page.max(1))
    }

    /// The lines that fill `rows` rows at the current scroll, oldest first.
    pub fn visible(&self, rows: usize) -> impl Iterator<Item = &LogLine> {
        let end = self.lines.len() - self.scroll.min(self.lines.len());
        self.lines.range(end.saturating_sub(rows)..end)
    }
}

/// Everything `sup monit` shows.
#[derive(Debug)]
pub struct State {
    apps: Vec<AppInfo>,
    /// One per table row, in order.
    rows: Vec<Pick>,
    selected: usize,
    /// The selection's logs.
    pub logs: LogPane,
    focus: Focus,
    help: bool,
    /// The newest event, or why there are no more.
    news: Option<Note>,
    /// The last action's outcome, shown until the next key.
    outcome: Option<Note>,
    /// Why the figures are stale, while they are.
    trouble: Option<String>,
    /// Whether to paint in colour (no `NO_COLOR`).
    pub color: bool,
}

impl State {
    /// The view of `apps`, the first row selected.
    pub fn new(apps: Vec<AppInfo>, color: bool) -> State {
        let mut state = State {
            apps: Vec::new(),
            rows: Vec::new(),
            selected: 0,
            logs: LogPane::default(),
            focus: Focus::Table,
            help: false,
            news: None,
            outcome: None,
            trouble: None,
            color,
        };
        state.set_apps(apps);
        state
    }

    /// The apps, as the daemon last listed them.
    pub fn apps(&self) -> &[AppInfo] {
        &self.apps
    }

    /// The app with id `id`.
    pub fn app(&self, id: u32) -> Option<&AppInfo> {
        self.apps.iter().find(|a| a.id == id)
    }

    /// The table's rows: each app, then its instances when it has several.
    pub fn rows(&self) -> &[Pick] {
        &self.rows
    }

    /// The selected row's position, when there is a row.
    pub fn selected(&self) -> Option<usize> {
        (!self.rows.is_empty()).then_some(self.selected)
    }

    /// What the selected row stands for.
    pub fn pick(&self) -> Option<Pick> {
        self.rows.get(self.selected).copied()
    }

    /// `api`, or `api:1` for an instance.
    pub fn label(&self, pick: Pick) -> String {
        let name = self.app(pick.id).map_or("?", |a| a.name.as_str());
        match pick.index {
            Some(index) => format!("{name}:{index}"),
            None => name.to_string(),
        }
    }

    /// Which pane the arrow keys move.
    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// Whether the help is shown over the view.
    pub fn help(&self) -> bool {
        self.help
    }

    /// The footer's first line: why the figures are stale, else the newest
    /// event.
    pub fn news(&self) -> Option<Note> {
        match &self.trouble {
            Some(why) => Some(Note {
                text: why.clone(),
                error: true,
            }),
            None => self.news.clone(),
        }
    }

    /// The footer's second line, over the key hints: the last action's
    /// outcome, until the next key. Events that the action itself causes
    /// come about when it ends, and must not hide how it went.
    pub fn outcome(&self) -> Option<&Note> {
        self.outcome.as_ref()
    }

    /// New figures; the selection stays on the same app or instance (on
    /// its app when the instance is gone; in place when the app is).
    pub fn set_apps(&mut self, apps: Vec<AppInfo>) {
        let old = self.pick();
        self.apps = apps;
        self.rows = rows_of(&self.apps);
        self.trouble = None;
        let same = self.rows.iter().position(|p| Some(*p) == old);
        let its_app = || {
            let id = old?.id;
            self.rows
                .iter()
                .position(|p| p.id == id && p.index.is_none())
        };
        let at = same.or_else(its_app).unwrap_or(self.selected);
        self.selected = at.min(self.rows.len().saturating_sub(1));
    }

    /// The figures could not be had: say why until they can.
    pub fn stale(&mut self, why: String) {
        self.trouble = Some(why);
    }

    /// Tells of an action's outcome (or failure).
    pub fn done(&mut self, outcome: Result<String, String>) {
        self.outcome = Some(match outcome {
            Ok(text) => Note { text, error: false },
            Err(text) => Note { text, error: true },
        });
    }

    /// The event stream ended, and why.
    pub fn no_more_events(&mut self, why: &str) {
        let text = format!("no more events: {why}");
        self.news = Some(Note { text, error: true });
    }

    /// The footer tells of `event` (the newest one).
    pub fn event(&mut self, event: &EventRecord) {
        let bad = matches!(
            event.kind,
            EventKind::Errored
                | EventKind::Unhealthy
                | EventKind::ReloadFailed
                | EventKind::HookFailed
                | EventKind::WatchFailed
                | EventKind::SocketNotTaken
        );
        // The time of day is enough for the newest event, and leaves room.
        let time = sup_proto::logfmt::format_ts(event.ts_ms, 0);
        let what = crate::render::event_what(event);
        let clock = time.get(11..19).unwrap_or(&time);
        self.news = Some(Note {
            text: printable(&format!("{clock}Z {what}")),
            error: bad,
        });
    }

    /// Applies a key's input; what the run loop must then do, if anything.
    pub fn apply(&mut self, input: Input) -> Option<Order> {
        self.outcome = None;
        match input {
            Input::Quit => return Some(Order::Quit),
            Input::Back if !self.help => return Some(Order::Quit),
            Input::Back => self.help = false,
            Input::Help => self.help = !self.help,
            Input::Focus => {
                self.focus = match self.focus {
                    Focus::Table => Focus::Logs,
                    Focus::Logs => Focus::Table,
                }
            }
            Input::Up | Input::Down if self.focus == Focus::Logs => {
                self.logs.scroll_by(if input == Input::Up { 1 } else { -1 });
            }
            Input::Up => self.selected = self.selected.saturating_sub(1),
            Input::Down => {
                self.selected = (self.selected + 1).min(self.rows.len().saturating_sub(1))
            }
            Input::PageUp => self.logs.scroll_by(self.page()),
            Input::PageDown => self.logs.scroll_by(-self.page()),
            Input::Act(verb) => return self.act(verb),
        }
        None
    }

    /// A page of logs, less a line kept for context.
    fn page(&self) -> isize {
        self.logs.page.saturating_sub(1).max(1) as isize
    }

    fn act(&mut self, verb: Verb) -> Option<Order> {
        let Some(pick) = self.pick() else {
            self.done(Err("no app selected".into()));
            return None;
        };
        let label = self.label(pick);
        self.done(Ok(format!("{} {label}…", verb.doing())));
        Some(Order::Act {
            verb,
            target: pick.target(),
            label,
        })
    }
}

/// Each app's row, then one per instance when it has several (as `list`).
fn rows_of(apps: &[AppInfo]) -> Vec<Pick> {
    let mut rows = Vec::new();
    for app in apps {
        rows.push(Pick {
            id: app.id,
            index: None,
        });
        if app.instances.len() > 1 {
            rows.extend(app.instances.iter().map(|i| Pick {
                id: app.id,
                index: Some(i.index),
            }));
        }
    }
    rows
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sup_proto::{InstanceInfo, Status};

    /// An online app with `instances` instances, for tests.
    pub fn app(id: u32, name: &str, instances: u32) -> AppInfo {
        let instance = |index| InstanceInfo {
            index,
            pid: Some(1000 + 10 * id + index),
            restarts: 0,
            ready: true,
            status: Status::Online,
            uptime_ms: Some(5_000),
            cpu: 0.5,
            memory: 2 << 20,
            cpu_seconds: 0.0,
            last_pid: None,
            listen: None,
        };
        AppInfo {
            id,
            name: name.into(),
            pid: Some(1000 + 10 * id),
            status: Status::Online,
            restarts: 1,
            unstable_restarts: 0,
            stopped_by_user: false,
            uptime_ms: Some(5_000),
            cpu: 0.5,
            memory: 2 << 20,
            last_exit: None,
            last_exit_code: None,
            error: None,
            restart_in_ms: None,
            added_at_ms: None,
            restart_reason: None,
            dump_warning: None,
            state_warnings: vec![],
            socket_warning: None,
            tracking: None,
            instances: (0..instances).map(instance).collect(),
            ready_instances: instances,
            logs: Default::default(),
            health: Default::default(),
            listen: vec![],
            spec: None,
        }
    }

    /// `api` (id 0, 2 instances) and `worker` (id 1, 1 instance).
    pub fn two_apps() -> State {
        State::new(vec![app(0, "api", 2), app(1, "worker", 1)], false)
    }

    fn line(n: usize) -> LogLine {
        LogLine::new(format!("line {n}").as_bytes(), false)
    }

    #[test]
    fn selection_moves_over_apps_and_instances() {
        let mut state = two_apps();
        let labels: Vec<String> = state.rows().iter().map(|p| state.label(*p)).collect();
        assert_eq!(labels, ["api", "api:0", "api:1", "worker"]);
        assert_eq!(state.selected(), Some(0));
        state.apply(Input::Up);
        assert_eq!(state.selected(), Some(0), "stops at the top");
        for _ in 0..5 {
            state.apply(Input::Down);
        }
        assert_eq!(state.selected(), Some(3), "stops at the bottom");
        state.apply(Input::Up);
        assert_eq!(
            state.pick(),
            Some(Pick {
                id: 0,
                index: Some(1)
            })
        );
    }

    #[test]
    fn actions_go_to_the_app_or_the_instance() {
        let mut state = two_apps();
        let order = state.apply(Input::Act(Verb::Restart));
        assert_eq!(
            order,
            Some(Order::Act {
                verb: Verb::Restart,
                target: Target::Id(0),
                label: "api".into()
            })
        );
        assert_eq!(state.outcome().unwrap().text, "restarting api…");
        state.apply(Input::Down);
        state.apply(Input::Down);
        let Some(Order::Act { target, label, .. }) = state.apply(Input::Act(Verb::Stop)) else {
            panic!("no order");
        };
        assert_eq!(target, Target::parse("0:1"));
        assert_eq!(label, "api:1");
        assert_eq!(
            Verb::Reload.request(target.clone()),
            Request::Reload(target)
        );
        let mut empty = State::new(vec![], false);
        assert_eq!(empty.apply(Input::Act(Verb::Start)), None);
        assert!(empty.outcome().unwrap().error);
    }

    #[test]
    fn the_selection_follows_its_row_across_refreshes() {
        let mut state = two_apps();
        state.apply(Input::Down);
        state.apply(Input::Down);
        // A new app ahead of it: the selection stays on api:1.
        state.set_apps(vec![
            app(2, "new", 1),
            app(0, "api", 2),
            app(1, "worker", 1),
        ]);
        assert_eq!(state.label(state.pick().unwrap()), "api:1");
        // Scaled down to one instance: on its app.
        state.set_apps(vec![app(0, "api", 1), app(1, "worker", 1)]);
        assert_eq!(state.label(state.pick().unwrap()), "api");
        // Deleted: in place, within the rows.
        state.apply(Input::Down);
        state.set_apps(vec![app(0, "api", 1)]);
        assert_eq!(state.selected(), Some(0));
        state.set_apps(vec![]);
        assert_eq!((state.selected(), state.pick()), (None, None));
    }

    #[test]
    fn keys_that_leave_and_the_help() {
        let mut state = two_apps();
        assert_eq!(state.apply(Input::Help), None);
        assert!(state.help());
        assert_eq!(state.apply(Input::Back), None, "Esc closes the help");
        assert!(!state.help());
        assert_eq!(state.apply(Input::Back), Some(Order::Quit));
        assert_eq!(state.apply(Input::Quit), Some(Order::Quit));
    }

    #[test]
    fn the_log_buffer_is_bounded_and_drops_stale_lines() {
        let mut pane = LogPane::default();
        let generation = pane.restart(Some(Pick { id: 0, index: None }));
        pane.add(generation, (0..1500).map(line).collect());
        assert_eq!(pane.len(), LOG_CAP);
        let last: Vec<&str> = pane.visible(2).map(|l| l.text.as_str()).collect();
        assert_eq!(last, ["line 1498", "line 1499"]);
        let newer = pane.restart(None);
        pane.add(generation, vec![line(0)]);
        assert_eq!(pane.len(), 0, "lines of the previous selection are dropped");
        pane.fail(newer, "cannot watch".into());
        assert_eq!(pane.error(), Some("cannot watch"));
    }

    #[test]
    fn scrolling_back_keeps_its_place_as_lines_come() {
        let mut state = two_apps();
        let generation = state.logs.restart(state.pick());
        state.logs.add(generation, (0..100).map(line).collect());
        state.logs.set_page(10);
        state.apply(Input::PageUp);
        assert_eq!(state.logs.scroll(), 9);
        state.logs.add(generation, vec![line(100)]);
        assert_eq!(state.logs.scroll(), 10);
        let first = state.logs.visible(10).next().unwrap().text.clone();
        assert_eq!(first, "line 81");
        for _ in 0..20 {
            state.apply(Input::PageUp);
        }
        assert_eq!(
            state.logs.scroll(),
            91,
            "no further back than the first line"
        );
        state.apply(Input::Focus);
        state.apply(Input::Down);
        assert_eq!(
            state.logs.scroll(),
            90,
            "with the focus on the logs, arrows scroll"
        );
        for _ in 0..20 {
            state.apply(Input::PageDown);
        }
        assert_eq!(state.logs.scroll(), 0);
    }

    #[test]
    fn the_footer_tells_of_the_newest_event() {
        let mut state = two_apps();
        state.event(&EventRecord {
            ts_ms: 86_400_000 + 3_723_000,
            app_id: 0,
            app: "api".into(),
            kind: EventKind::Errored,
            detail: "gave up".into(),
        });
        let news = state.news().unwrap();
        assert_eq!(news.text, "01:02:03Z api errored: gave up");
        assert!(news.error);
        state.stale("the daemon went away".into());
        assert_eq!(state.news().unwrap().text, "the daemon went away");
        state.set_apps(vec![app(0, "api", 1)]);
        assert_eq!(state.news(), Some(news), "fresh figures: the event again");
    }

    #[test]
    fn an_outcome_stays_until_the_next_key() {
        let mut state = two_apps();
        state.apply(Input::Act(Verb::Restart));
        state.done(Ok("restarted api: api is online".into()));
        state.event(&EventRecord {
            ts_ms: 0,
            app_id: 0,
            app: "api".into(),
            kind: EventKind::Online,
            detail: String::new(),
        });
        assert_eq!(
            state.outcome().unwrap().text,
            "restarted api: api is online"
        );
        state.apply(Input::Down);
        assert_eq!(state.outcome(), None);
    }

    #[test]
    fn escapes_and_control_characters_are_dropped() {
        assert_eq!(printable("\x1b[1;31mred\x1b[0m text"), "red text");
        assert_eq!(printable("a\tb\r\x07"), "a    b");
        assert_eq!(printable("\x1b]0;title\x07after"), "after");
        assert_eq!(printable("\x1b]8;;url\x1b\\link"), "link");
        assert_eq!(printable("naïve ✓"), "naïve ✓");
    }
}
