//! Drawing `sup monit`: the table of apps on top, the selection's logs
//! below, the footer, and the help over them when asked for. The cells
//! and colours are `sup list`'s.

use super::keys::{HELP, HINTS};
use super::state::{Focus, LogLine, Note, Pick, State};
use crate::render::{self, Hue};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table, TableState};
use ratatui::Frame;

/// The name's column in [`render::HEADER`].
const NAME: usize = 1;

/// The status's column in [`render::HEADER`].
const STATUS: usize = 3;

/// Draws the whole view; returns the rows of logs it shows (a page).
pub fn draw(frame: &mut Frame, state: &State) -> usize {
    let area = frame.area();
    let [table, logs, footer] = Layout::vertical([
        Constraint::Length(table_height(state, area.height)),
        Constraint::Min(3),
        Constraint::Length(2),
    ])
    .areas(area);
    draw_table(frame, table, state);
    let page = draw_logs(frame, logs, state);
    draw_footer(frame, footer, state);
    if state.help() {
        draw_help(frame, area);
    }
    page
}

/// Every row with its header and borders, but at most half the screen:
/// the logs keep the rest.
fn table_height(state: &State, height: u16) -> u16 {
    let wanted = u16::try_from(state.rows().len().max(1) + 3).unwrap_or(u16::MAX);
    wanted.min(height / 2).max(4)
}

/// The border of a pane: bright when it has the focus.
fn border(state: &State, pane: Focus) -> Style {
    match (state.focus() == pane, state.color) {
        (true, true) => Style::new().fg(Color::Cyan),
        (true, false) => Style::new().add_modifier(Modifier::BOLD),
        (false, _) => Style::new(),
    }
}

fn draw_table(frame: &mut Frame, area: Rect, state: &State) {
    let title = format!(" sup monit: {} apps ", state.apps().len());
    let block = Block::bordered()
        .title(title)
        .border_style(border(state, Focus::Table));
    if state.rows().is_empty() {
        let empty = Paragraph::new("no apps: `sup start app.js` starts one").block(block);
        frame.render_widget(empty, area);
        return;
    }
    let mut cells: Vec<[String; 9]> = state.rows().iter().map(|p| cells(state, *p)).collect();
    let mut widths = render::column_widths(&render::HEADER, &cells);
    // `list`'s spacing when it fits; the name takes what the other columns
    // leave, cut as `list` cuts it.
    let inner = usize::from(area.width.saturating_sub(2));
    let gaps = widths.len() - 1;
    let spacing = if widths.iter().sum::<usize>() + 2 * gaps <= inner {
        2
    } else {
        1
    };
    let others = widths.iter().sum::<usize>() - widths[NAME] + spacing * gaps;
    widths[NAME] = widths[NAME].min(inner.saturating_sub(others)).max(1);
    for row in &mut cells {
        row[NAME] = render::ellipsize(&row[NAME], widths[NAME]);
    }
    let rows = cells.into_iter().map(|row| table_row(row, state.color));
    let constraints = widths.map(|w| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX)));
    let table = Table::new(rows, constraints)
        .header(Row::new(render::HEADER).style(Style::new().add_modifier(Modifier::BOLD)))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(spacing as u16)
        .block(block);
    let mut selection = TableState::default().with_selected(state.selected());
    frame.render_stateful_widget(table, area, &mut selection);
}

/// The cells of a row, as `sup list` writes them.
fn cells(state: &State, pick: Pick) -> [String; 9] {
    let Some(app) = state.app(pick.id) else {
        return Default::default();
    };
    let instance = pick
        .index
        .and_then(|n| app.instances.iter().find(|i| i.index == n));
    match instance {
        Some(i) => render::instance_row(&app.name, &i.into()),
        None => render::app_row(&app.into()),
    }
}

fn table_row(cells: [String; 9], color: bool) -> Row<'static> {
    let hue = render::status_hue(&cells[STATUS]).filter(|_| color);
    let cells = cells.into_iter().enumerate().map(move |(i, text)| {
        let style = match hue.filter(|_| i == STATUS) {
            Some(hue) => paint(hue),
            None => Style::new(),
        };
        Span::styled(text, style)
    });
    Row::new(cells)
}

fn paint(hue: Hue) -> Style {
    match hue {
        Hue::Green => Style::new().fg(Color::Green),
        Hue::Red => Style::new().fg(Color::Red),
        Hue::Yellow => Style::new().fg(Color::Yellow),
        Hue::Dim => Style::new().add_modifier(Modifier::DIM),
    }
}

fn draw_logs(frame: &mut Frame, area: Rect, state: &State) -> usize {
    let whose = state.logs.of().map_or(String::new(), |p| state.label(p));
    let mut block = Block::bordered()
        .title(format!(" logs: {whose} "))
        .border_style(border(state, Focus::Logs));
    if state.logs.scroll() > 0 {
        let back = format!(" {} lines back ", state.logs.scroll());
        block = block.title_top(Line::from(back).right_aligned());
    }
    let rows = usize::from(block.inner(area).height);
    let lines: Vec<Line> = match state.logs.error() {
        Some(error) => vec![Line::styled(error.to_string(), red(state.color))],
        None if state.logs.len() == 0 => vec![Line::styled(
            "no lines yet",
            Style::new().add_modifier(Modifier::DIM),
        )],
        None => state
            .logs
            .visible(rows)
            .map(|l| log_line(l, state.color))
            .collect(),
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
    rows
}

/// A line of stderr is red; without colour, it says `err`.
fn log_line(line: &LogLine, color: bool) -> Line<'_> {
    match (line.err, color) {
        (true, true) => Line::styled(line.text.as_str(), red(true)),
        (true, false) => Line::from(format!("err {}", line.text)),
        (false, _) => Line::from(line.text.as_str()),
    }
}

fn red(color: bool) -> Style {
    match color {
        true => Style::new().fg(Color::Red),
        false => Style::new(),
    }
}

fn draw_footer(frame: &mut Frame, area: Rect, state: &State) {
    let line = |note: &Note| match note.error {
        true => Line::styled(note.text.clone(), red(state.color)),
        false => Line::from(note.text.clone()),
    };
    let news = state.news().map_or(Line::default(), |n| line(&n));
    let hints = Line::styled(HINTS, Style::new().add_modifier(Modifier::DIM));
    let second = state.outcome().map_or(hints, line);
    frame.render_widget(Paragraph::new(vec![news, second]), area);
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<11}"), bold),
                Span::raw(*what),
            ])
        })
        .collect();
    let width = lines.iter().map(Line::width).max().unwrap_or(0) + 3;
    let width = u16::try_from(width).unwrap_or(u16::MAX).min(area.width);
    let height = u16::try_from(lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let x = area.x + (area.width - width) / 2;
    let y = area.y + (area.height - height) / 2;
    let rect = Rect::new(x, y, width, height);
    frame.render_widget(Clear, rect);
    let help = Paragraph::new(lines).block(Block::bordered().title(" keys (? closes) "));
    frame.render_widget(help, rect);
}

#[cfg(test)]
mod tests {
    use super::super::keys::Input;
    use super::super::state::tests::two_apps;
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(state: &State, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| {
                draw(frame, state);
            })
            .unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..height {
            for x in 0..width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn two_apps_at_80_by_24() {
        let mut state = two_apps();
        let generation = state.logs.restart(state.pick());
        let line = LogLine::new(b"listening on :3000", false);
        state.logs.add(generation, vec![line]);
        let text = screen(&state, 80, 24);
        for wanted in [
            "api",
            "api:0",
            "api:1",
            "worker",
            "online",
            "2/2",
            "listening on :3000",
            "q quit",
        ] {
            assert!(text.contains(wanted), "no {wanted:?} in\n{text}");
        }
        assert_eq!(text.matches("online").count(), 4, "{text}");
        assert!(text.contains(" logs: api "), "{text}");
        state.apply(Input::Help);
        let help = screen(&state, 80, 24);
        assert!(help.contains("zero-downtime"), "{help}");
    }

    #[test]
    fn a_small_or_empty_screen_still_draws() {
        let state = State::new(vec![], false);
        assert!(screen(&state, 80, 24).contains("no apps"));
        let state = two_apps();
        screen(&state, 20, 6);
    }
}
