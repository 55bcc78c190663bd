//! Human output on a terminal: aligned columns sized to the terminal's width, the explanation
//! on the lines below, wrapped; colour by severity. Output that is not a terminal keeps one
//! line per event ([`crate::output`]'s format, grep-friendly), coloured only with
//! `--color always`.
use std::{
    io::{IsTerminal as _, Write},
    sync::OnceLock,
};

use crate::{
    output::{Line, What},
    owner::Comm,
    report::join_host_port,
};

/// `--color`: whether human output is coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always colour, also into a pipe or file (overrides `NO_COLOR`).
    Always,
    /// Never colour.
    Never,
}

/// How human output is rendered: the terminal layout (stdout is a terminal), colour, both or
/// neither (then there is no `Terminal`: [`get`] is `None`, plain lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminal {
    /// Columns sized to the terminal, the explanation below: stdout is a terminal.
    pub layout: bool,
    pub colour: bool,
}

impl Terminal {
    /// What `--color` (`choice`), whether stdout is a terminal and `NO_COLOR` (set and not
    /// empty, as no-color.org defines it) make of human output.
    pub fn decide(choice: ColorChoice, is_tty: bool, no_color: bool) -> Option<Self> {
        let colour = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_tty && !no_color,
        };
        (is_tty || colour).then_some(Self { layout: is_tty, colour })
    }
}

static TERMINAL: OnceLock<Option<Terminal>> = OnceLock::new();

/// Decides how human output is rendered, from `--color`, stdout and `NO_COLOR`; before anything
/// is printed. Without it (tests, the benchmark) human output is plain lines.
pub fn init(choice: ColorChoice) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let _ = TERMINAL.set(Terminal::decide(choice, std::io::stdout().is_terminal(), no_color));
}

/// The rendering [`init`] chose; `None`: plain lines.
pub fn get() -> Option<Terminal> {
    TERMINAL.get().copied().flatten()
}

/// The terminal's width in columns: stdout's window size (TIOCGWINSZ), else `COLUMNS`, else 80.
/// Read for every report printed, so that a resized terminal is followed.
pub fn width() -> usize {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a winsize into the valid struct it is given.
    if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0
    {
        return usize::from(ws.ws_col);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
        .unwrap_or(80)
}

/// How bad an event is, which picks its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// A failed call, an RST or error reaching a socket, an overflowing listener: red.
    Error,
    /// This host sent an RST: yellow.
    ResetSent,
    /// An orderly close (EOF after the peer finished): green.
    Orderly,
    /// State changes: not coloured.
    Info,
}

impl Severity {
    /// Of an event of `kind` with `cause`; of a `repeated` line by its cause (the causes of
    /// the RSTs this host sends are theirs alone).
    pub fn of(kind: &str, cause: Option<&str>) -> Self {
        const RST_SENT: [&str; 6] = [
            "aborted",
            "closed_with_unread_data",
            "data_after_close",
            "no_socket",
            "time_wait",
            "not_accepted",
        ];
        match (kind, cause) {
            ("rst_sent", _) => Self::ResetSent,
            ("state_change", _) => Self::Info,
            ("repeated", Some(c)) if RST_SENT.contains(&c) => Self::ResetSent,
            (_, Some("peer_closed")) => Self::Orderly,
            _ => Self::Error,
        }
    }

    fn sgr(self) -> Option<&'static str> {
        match self {
            Self::Error => Some("\x1b[1;31m"),
            Self::ResetSent => Some("\x1b[33m"),
            Self::Orderly => Some("\x1b[32m"),
            Self::Info => None,
        }
    }
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

/// Column widths of the terminal layout; the connection's takes what the others leave.
const TIME_W: usize = 15;
const WHO_W: usize = 16;
const EVENT_W: usize = 17;
const STATE_W: usize = 11;
/// Room kept for the last column (ECONNREFUSED).
const ERROR_W: usize = 12;
/// The connection column is never narrower: a local port and an IPv4 peer.
const CONN_MIN: usize = 24;

fn conn_width(width: usize) -> usize {
    width.saturating_sub(TIME_W + WHO_W + EVENT_W + STATE_W + ERROR_W + 5).max(CONN_MIN)
}

/// One event as both renderings need it.
struct Row<'a> {
    /// When, in CLOCK_REALTIME nanoseconds.
    unix_ns: i128,
    pid: Option<u32>,
    comm: Option<Comm>,
    kind: &'a str,
    /// `laddr:lport -> raddr:rport`, and `lport -> raddr:rport` with the local address, for
    /// columns too narrow for the first; ` netns:N` when not tcperr's own.
    conn: String,
    short_conn: Option<(String, &'a str)>,
    state: String,
    /// The ERROR column: an errno's name, an RST's reason, or `-`.
    error: String,
    /// The one-line format's ERROR text (`EPIPE (broken pipe)`).
    error_line: String,
    /// The words programs print for the errno, when they are not its name (`broken pipe`).
    words: Option<&'a str>,
    explanation: &'a str,
    severity: Severity,
}

impl<'a> Row<'a> {
    fn of(l: &Line<'a>) -> Self {
        let mut row = Row {
            unix_ns: l.unix_ns,
            pid: l.pid,
            comm: l.comm,
            kind: l.kind,
            conn: String::new(),
            short_conn: None,
            state: "-".into(),
            error: "-".into(),
            error_line: "-".into(),
            words: None,
            explanation: l.explanation,
            severity: Severity::of(l.kind, l.cause),
        };
        match l.what {
            What::Event {
                laddr,
                lport,
                raddr,
                rport,
                netns,
                ref place,
                state,
                newstate,
                errno,
                error,
                reason,
            } => {
                let tags = crate::output::conn_tags(netns, place.as_deref());
                let remote = join_host_port(raddr, rport);
                row.conn = format!("{} -> {remote}{tags}", join_host_port(laddr, lport));
                row.short_conn = Some((format!("{lport} -> {remote}{tags}"), laddr));
                row.state = crate::output::state_text(state, newstate);
                (row.error, row.error_line, row.words) = match (errno, error) {
                    (Some(n), Some(w)) if n == w => (n.to_owned(), n.to_owned(), None),
                    (Some(n), Some(w)) => (n.to_owned(), format!("{n} ({w})"), Some(w)),
                    _ => {
                        let e = reason.unwrap_or("-");
                        (e.to_owned(), e.to_owned(), None)
                    }
                };
            }
            What::Repeated { raddr, errno } => {
                row.conn = format!("* -> {raddr}");
                row.error = errno.unwrap_or("-").to_owned();
                row.error_line = row.error.clone();
            }
        }
        row
    }
}

impl Terminal {
    /// Writes one human line (an event, a `repeated` line, or a journal's stored object) in
    /// this rendering.
    pub fn write_line(self, out: &mut impl Write, l: &Line<'_>) -> std::io::Result<()> {
        let row = Row::of(l);
        let text = if self.layout { self.layout_rows(&row, width()) } else { self.one_line(&row) };
        out.write_all(text.as_bytes())
    }

    /// `text` in the colour of `severity`, padded to `width` outside the colour codes.
    fn paint(self, text: &str, severity: Severity, width: usize) -> String {
        let pad = " ".repeat(width.saturating_sub(text.chars().count()));
        match severity.sgr().filter(|_| self.colour) {
            Some(sgr) => format!("{sgr}{text}{RESET}{pad}"),
            None => format!("{text}{pad}"),
        }
    }

    /// The plain one-line format (as [`crate::output`] writes it), with the event and the error
    /// coloured.
    fn one_line(self, row: &Row<'_>) -> String {
        let time = crate::report::clock_time_at(row.unix_ns, crate::output::zone());
        let pid = row.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let comm = row.comm.map_or_else(|| "?".to_owned(), |c| c.escaped());
        let kind = self.paint(row.kind, row.severity, 13);
        let error = self.paint(&row.error_line, row.severity, 0);
        format!(
            "{time} {pid:<7} {comm:<15} {kind} {:<44} {:<12} {error}: {}\n",
            row.conn, row.state, row.explanation
        )
    }

    /// The column titles of the terminal layout, `time` the TIME column's (with its zone).
    pub fn header(self, time: &str, width: usize) -> String {
        let line = format!(
            "{time:<TIME_W$} {:<WHO_W$} {:<EVENT_W$} {:<cw$} {:<STATE_W$} ERROR",
            "PID/COMM",
            "EVENT",
            "CONNECTION",
            "STATE",
            cw = conn_width(width)
        );
        if self.colour { format!("{BOLD}{line}{RESET}") } else { line }
    }

    /// The terminal layout of one event for a terminal `width` columns wide: a row of aligned
    /// columns, then the explanation indented under it and wrapped to the width.
    fn layout_rows(self, row: &Row<'_>, width: usize) -> String {
        let time = crate::report::clock_time_at(row.unix_ns, crate::output::zone());
        let pid = row.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let comm = row.comm.map_or_else(|| "?".to_owned(), |c| c.escaped());
        let who = fit(&format!("{pid}/{comm}"), WHO_W);
        let cw = conn_width(width);
        // The whole connection if it fits its column; else without the local address, which
        // the explanation then ends with.
        let (conn, elided) = match &row.short_conn {
            Some((short, laddr)) if row.conn.chars().count() > cw => (short.as_str(), Some(laddr)),
            _ => (row.conn.as_str(), None),
        };
        let kind = self.paint(row.kind, row.severity, EVENT_W);
        let error = self.paint(&row.error, row.severity, 0);
        let mut text = format!(
            "{time:<TIME_W$} {who:<WHO_W$} {kind} {conn:<cw$} {:<STATE_W$} {error}\n",
            row.state
        );
        let mut detail = match row.words {
            Some(words) => format!("{words}: {}", row.explanation),
            None => row.explanation.to_owned(),
        };
        if let Some(laddr) = elided {
            detail.push_str(&format!(" (local address {laddr})"));
        }
        let indent = TIME_W + 1;
        for line in wrap(&detail, width.saturating_sub(indent).max(20)) {
            text.push_str(&" ".repeat(indent));
            text.push_str(&line);
            text.push('\n');
        }
        text
    }
}

/// `s` cut to `width` characters, its last one `…` when cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` in lines of at most `width` characters, broken between words (a word longer than a
/// line is broken inside).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        if len > 0 && len + 1 + word.len() <= width {
            line.push(' ');
            line.extend(&word);
            len += 1 + word.len();
            continue;
        }
        if len > 0 {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > width {
            lines.push(word.drain(..width).collect());
        }
        len = word.len();
        line.extend(word);
    }
    if len > 0 {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        output::{Format, line, write},
        report::Report,
    };

    fn strip_colour(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn colour_follows_the_flag_then_the_terminal_and_no_color() {
        use ColorChoice::*;
        let t = |layout, colour| Some(Terminal { layout, colour });
        assert_eq!(Terminal::decide(Auto, true, false), t(true, true));
        assert_eq!(Terminal::decide(Auto, true, true), t(true, false), "NO_COLOR");
        assert_eq!(Terminal::decide(Auto, false, false), None, "a pipe: plain lines");
        assert_eq!(Terminal::decide(Never, true, false), t(true, false));
        assert_eq!(Terminal::decide(Always, false, true), t(false, true), "the flag wins");
        assert_eq!(Terminal::decide(Never, false, false), None);
    }

    #[test]
    fn coloured_one_line_output_is_the_plain_line_with_colour_codes() {
        let r = Report { explanation: "why".into(), ..Report::sample() };
        let mut plain = Vec::new();
        write(&mut plain, Format::Human, &r).unwrap();
        let mut coloured = Vec::new();
        Terminal { layout: false, colour: true }.write_line(&mut coloured, &line(&r)).unwrap();
        let coloured = String::from_utf8(coloured).unwrap();
        assert!(coloured.contains("\x1b[1;31msend_error\x1b[0m   "), "{coloured:?}");
        assert!(coloured.contains("\x1b[1;31mEPIPE (broken pipe)\x1b[0m: why"), "{coloured:?}");
        assert_eq!(strip_colour(&coloured), String::from_utf8(plain).unwrap());
    }

    #[test]
    fn the_terminal_layout_aligns_columns_and_wraps_the_explanation_to_the_width() {
        let r = Report {
            pid: Some(5947),
            comm: Some(Comm::new("client")),
            lport: 59066,
            rport: 36301,
            state: "CLOSE_WAIT",
            explanation: "127.0.0.1:36301 (pid 5947 server) closed the connection (FIN at +0.082 ms); data written after that drew its RST at +0.174 ms".into(),
            ..Report::sample()
        };
        let t = Terminal { layout: true, colour: false };
        let time = crate::report::clock_time(0, crate::output::zone());
        // 110 columns: the connection's column is 34 wide, the explanation's lines 94.
        let wide = t.layout_rows(&Row::of(&line(&r)), 110);
        assert_eq!(
            wide,
            format!(
                "{time} 5947/client      send_error        127.0.0.1:59066 -> 127.0.0.1:36301 CLOSE_WAIT  EPIPE\n\
                 \x20               broken pipe: 127.0.0.1:36301 (pid 5947 server) closed the connection (FIN at +0.082 ms); data\n\
                 \x20               written after that drew its RST at +0.174 ms\n"
            )
        );
        let header = t.header("TIME(UTC)", 110);
        assert_eq!(
            header,
            "TIME(UTC)       PID/COMM         EVENT             CONNECTION                         STATE       ERROR"
        );
        // Each column starts where its title does.
        let row = wide.lines().next().unwrap();
        for title in ["PID/COMM", "EVENT", "CONNECTION", "STATE", "ERROR"] {
            let at = header.find(title).unwrap();
            assert_eq!(&row[at - 1..at], " ", "{title} starts a column");
            assert_ne!(&row[at..=at], " ", "{title} column filled");
        }
        // 100 columns: the local address leaves the connection column for the explanation's end.
        let narrow = t.layout_rows(&Row::of(&line(&r)), 100);
        let lines: Vec<&str> = narrow.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "{time} 5947/client      send_error        59066 -> 127.0.0.1:36301 CLOSE_WAIT  EPIPE"
            )
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 100), "{narrow}");
        assert!(lines[1..].iter().any(|l| l.chars().count() > 90), "filled to the width: {narrow}");
        assert!(lines[1..].iter().all(|l| l.starts_with(&" ".repeat(16))), "{narrow}");
        assert!(narrow.ends_with("(local address 127.0.0.1)\n"), "{narrow}");
        let words: Vec<&str> = narrow.lines().skip(1).flat_map(str::split_whitespace).collect();
        let expected = format!("broken pipe: {} (local address 127.0.0.1)", r.explanation);
        assert_eq!(words, expected.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn the_terminal_layout_colours_by_severity() {
        let t = Terminal { layout: true, colour: true };
        let row = |kind, cause| {
            let r = Report { kind, cause, ..Report::sample() };
            t.layout_rows(&Row::of(&line(&r)), 100)
        };
        assert!(row("send_error", None).contains("\x1b[1;31msend_error\x1b[0m"));
        assert!(row("rst_sent", None).contains("\x1b[33mrst_sent\x1b[0m"));
        assert!(row("recv_eof", Some("peer_closed")).contains("\x1b[32mrecv_eof\x1b[0m"));
        assert!(!row("state_change", None).contains('\x1b'));
        assert!(t.header("TIME(UTC)", 100).starts_with("\x1b[1mTIME"));
    }

    #[test]
    fn wrapping_breaks_between_words_and_inside_words_longer_than_a_line() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh ij", 3), ["abc", "def", "gh", "ij"]);
        assert_eq!(wrap("", 5), Vec::<String>::new());
        assert_eq!(fit("12345/long-name", 8), "12345/l…");
        assert_eq!(fit("1/a", 8), "1/a");
    }
}
