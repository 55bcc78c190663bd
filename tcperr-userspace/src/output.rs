//! Human lines and JSON lines.
use std::io::Write;

use crate::{
    fold::Repeated,
    owner::Comm,
    report::{Report, join_host_port},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// The zone of human lines' times: the system's unless `--utc` (JSON is always UTC).
static ZONE: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();

/// Sets human output's zone to UTC (`--utc`) or the system's; before anything is printed.
pub fn use_utc(utc: bool) {
    let _ = ZONE.set(crate::report::human_zone(utc));
}

pub(crate) fn zone() -> &'static jiff::tz::TimeZone {
    ZONE.get_or_init(|| crate::report::human_zone(false))
}

/// A time (CLOCK_REALTIME nanoseconds) as human output shows it: RFC 3339 with the zone's offset.
pub fn human_time(unix_ns: i128) -> String {
    crate::report::zoned_time(unix_ns, zone())
}

/// The column titles of human lines; TIME says its zone (`TIME(UTC-05:00)`, `TIME(UTC)`).
pub fn human_header() -> String {
    let time = format!("TIME({})", crate::report::zone_label(zone()));
    if let Some(t) = crate::tty::get().filter(|t| t.layout) {
        return t.header(&time, crate::tty::width());
    }
    format!(
        "{time:<15} PID     COMM            EVENT         LOCAL -> REMOTE                               STATE        ERROR"
    )
}

/// One line of tcperr's own on stderr (start-up, warnings, the closing counts). A stderr that
/// is gone (`tcperr trace 2>&1 | head`) is not an error: the line is dropped, never a panic as
/// with `eprintln!`.
pub fn note(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub fn write(out: &mut impl Write, format: Format, r: &Report) -> std::io::Result<()> {
    if format == Format::Json {
        return json_line(out, r);
    }
    write_line(out, &line(r))
}

/// The human line of report `r`.
pub(crate) fn line(r: &Report) -> Line<'_> {
    let what = What::Event {
        laddr: &r.laddr,
        lport: r.lport,
        raddr: &r.raddr,
        rport: r.rport,
        netns: r.netns,
        place: r.place.tag(),
        state: r.state,
        newstate: r.newstate,
        errno: r.errno.as_deref(),
        error: r.error.as_deref(),
        reason: r.reason.as_deref(),
    };
    let unix_ns = crate::report::unix_ns(r.ts_ns);
    let (pid, comm, kind, cause) = (r.pid, r.comm, r.kind, r.cause);
    Line { unix_ns, pid, comm, kind, what, cause, explanation: &r.explanation }
}

/// What a human line shows: of a live [`Report`] or [`Repeated`], or of the JSON object a
/// journal stored for one (`tcperr query`), so that both print the very same line.
pub struct Line<'a> {
    /// When, in CLOCK_REALTIME nanoseconds.
    pub unix_ns: i128,
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
    pub kind: &'a str,
    pub what: What<'a>,
    /// The cause class (`cause`): picks the colour on a terminal ([`crate::tty`]).
    pub cause: Option<&'a str>,
    pub explanation: &'a str,
}

/// The columns between EVENT and the explanation, of an event or of a `repeated` line.
pub enum What<'a> {
    Event {
        laddr: &'a str,
        lport: u16,
        raddr: &'a str,
        rport: u16,
        netns: Option<u32>,
        /// The owner's pod, container or unit ([`crate::container::Place::tag`]).
        place: Option<String>,
        state: &'a str,
        newstate: Option<&'a str>,
        errno: Option<&'a str>,
        error: Option<&'a str>,
        reason: Option<&'a str>,
    },
    Repeated {
        raddr: &'a str,
        errno: Option<&'a str>,
    },
}

/// One human line, in the columns of [`human_header`].
pub fn write_line(out: &mut impl Write, l: &Line<'_>) -> std::io::Result<()> {
    if let Some(t) = crate::tty::get() {
        return t.write_line(out, l);
    }
    let (conn, state, error) = match l.what {
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
            let conn = format!(
                "{} -> {}{}",
                join_host_port(laddr, lport),
                join_host_port(raddr, rport),
                conn_tags(netns, place.as_deref())
            );
            let state = state_text(state, newstate);
            let error = match (errno, error) {
                (Some(n), Some(w)) if n == w => n.to_owned(),
                (Some(n), Some(w)) => format!("{n} ({w})"),
                _ => reason.unwrap_or("-").to_owned(),
            };
            (conn, state, error)
        }
        What::Repeated { raddr, errno } => {
            (format!("* -> {raddr}"), "-".to_owned(), errno.unwrap_or("-").to_owned())
        }
    };
    let who = (l.pid, l.comm);
    human_line(out, l.unix_ns, who, l.kind, &conn, &state, &error, l.explanation)
}

/// What human lines add after a connection (plain and terminal alike): ` netns:N` for another
/// namespace than tcperr's, then the owner's ` pod:`/`container:`/`unit:` tag.
pub(crate) fn conn_tags(netns: Option<u32>, place: Option<&str>) -> String {
    let mut tags = match netns.filter(|&ns| Some(ns) != host_netns()) {
        Some(ns) => format!(" netns:{ns}"),
        None => String::new(),
    };
    if let Some(p) = place {
        tags.push(' ');
        tags.push_str(&crate::owner::escape(p));
    }
    tags
}

/// A state column: `OLD>NEW` for a change, else the state.
pub(crate) fn state_text(state: &str, newstate: Option<&str>) -> String {
    match newstate {
        Some(new) => format!("{state}>{new}"),
        None => state.to_owned(),
    }
}

/// tcperr's own network namespace (the inode of `/proc/self/ns/net`): connections in another
/// one say which in human lines (`netns:N`, as `lsns` and `ip netns identify` name it).
pub(crate) fn host_netns() -> Option<u32> {
    static HOST: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *HOST.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/net").ok().and_then(|m| u32::try_from(m.ino()).ok())
    })
}

/// A `repeated` line: how many reports of one story were folded.
pub fn write_repeated(out: &mut impl Write, format: Format, r: &Repeated) -> std::io::Result<()> {
    if format == Format::Json {
        return json_line(out, r);
    }
    let what = What::Repeated { raddr: &r.raddr, errno: r.errno.as_deref() };
    let unix_ns = crate::report::unix_ns(r.ts_ns);
    let explanation = &r.explanation;
    let (pid, comm, kind, cause) = (r.pid, r.comm, r.kind, r.cause);
    write_line(out, &Line { unix_ns, pid, comm, kind, what, cause, explanation })
}

/// The `{"kind": "stats", ...}` line that ends `--json` output.
pub fn write_stats(out: &mut impl Write, stats: &crate::trace::Stats) -> std::io::Result<()> {
    json_line(out, stats)
}

fn json_line(out: &mut impl Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// One human line, in the columns of [`human_header`].
#[allow(clippy::too_many_arguments)]
fn human_line(
    out: &mut impl Write,
    unix_ns: i128,
    (pid, comm): (Option<u32>, Option<Comm>),
    kind: &str,
    conn: &str,
    state: &str,
    error: &str,
    explanation: &str,
) -> std::io::Result<()> {
    let time = crate::report::clock_time_at(unix_ns, zone());
    let pid = pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    let comm = comm.map_or_else(|| "?".to_owned(), |c| c.escaped());
    writeln!(
        out,
        "{time} {pid:<7} {comm:<15} {kind:<13} {conn:<44} {state:<12} {error}: {explanation}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_and_repeated_lines_fill_the_same_human_columns() {
        let mut r = Report::sample();
        r.ts_ns = 123_456_789;
        r.explanation = "why".into();
        let mut out = Vec::new();
        write(&mut out, Format::Human, &r).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            format!(
                "{} 42      curl            send_error    {:<44} {:<12} EPIPE (broken pipe): why\n",
                crate::report::clock_time(r.ts_ns, zone()),
                "127.0.0.1:40000 -> 127.0.0.1:8080",
                "CLOSE"
            )
        );
        let mut fold = crate::fold::Fold::default();
        for i in 0..=crate::fold::FULL_PER_SECOND as u64 {
            fold.admit(&crate::report::Brief { ts_ns: i, ..crate::report::Brief::sample() });
        }
        let mut out = Vec::new();
        write_repeated(&mut out, Format::Human, &fold.take(100)[0]).unwrap();
        let line = String::from_utf8(out).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[1..8], ["42", "curl", "repeated", "*", "->", "127.0.0.1", "-"]);
        assert!(line.contains("EPIPE: 1 more send_error like the above"), "{line}");
    }

    #[test]
    fn a_connection_in_another_network_namespace_says_which() {
        let line = |netns| {
            let mut out = Vec::new();
            write(&mut out, Format::Human, &Report { netns, ..Report::sample() }).unwrap();
            String::from_utf8(out).unwrap()
        };
        let host = host_netns().expect("/proc/self/ns/net");
        assert!(line(Some(host)).contains("127.0.0.1:8080 "), "{}", line(Some(host)));
        assert!(!line(Some(host)).contains("netns"));
        assert!(line(None).contains("127.0.0.1:8080 "));
        let other = line(Some(host + 1));
        assert!(other.contains(&format!("127.0.0.1:40000 -> 127.0.0.1:8080 netns:{} ", host + 1)));
    }
}
