//! `tcperr query`: the events a journal holds (`journal.rs`, written by `tcperr serve`), filtered
//! as `trace` filters them and by time, printed as `trace` printed them live (the same human
//! lines, through [`output::write_line`], or the stored JSON objects as they are), then their
//! summary. Reads the files only: the agent may be running or not.
use std::{
    io::{self, Write},
    net::IpAddr,
    path::PathBuf,
};

use jiff::{Span, Timestamp, ZonedDateTime as Zoned, civil, tz::TimeZone};
use serde::Deserialize;
use tcperr_common::{
    EventKind,
    tcp::{AF_INET, AF_INET6},
};

use crate::{
    filter::Filter,
    journal,
    output::{self, Format, Line, What},
    owner::Comm,
    report::{Brief, Counted, SCHEMA},
    summary::Summary,
};

/// A `--since`/`--until` value: a duration back from now, or a time.
#[derive(Clone, Debug)]
pub enum When {
    /// `10m`, `2h`, `1d`, `1h30m`: that long before now.
    Ago(Span),
    /// A time with its offset: `2026-11-28T10:00:00Z`, `2026-11-28T05:00:00-05:00`.
    At(Timestamp),
    /// A time without one (`2026-11-28 10:00`, `2026-11-28T10:00:30`, `2026-11-28`): in the
    /// local zone, or UTC with `--utc`.
    Civil(civil::DateTime),
}

/// Parses a `--since`/`--until` value (clap's value parser: an error is one line, exit 2).
pub fn parse_when(s: &str) -> Result<When, String> {
    let t = s.trim();
    let looks_like_date = t.len() >= 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-';
    if !looks_like_date && let Ok(span) = t.parse::<Span>() {
        return Ok(When::Ago(span.abs()));
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(When::At(ts));
    }
    if let Ok(dt) = t.parse::<civil::DateTime>() {
        return Ok(When::Civil(dt));
    }
    Err(format!(
        "{s:?} is not a time: give a duration back from now (30s, 10m, 2h, 1d) or a time (2026-11-28 10:00, 2026-11-28T10:00:00Z)"
    ))
}

impl When {
    /// The instant meant, `now` and `zone` (the local zone, or UTC with `--utc`) given.
    pub fn resolve(&self, now: &Zoned, zone: &TimeZone) -> Result<Timestamp, String> {
        match self {
            When::Ago(span) => now
                .checked_sub(*span)
                .map(|z| z.timestamp())
                .map_err(|e| format!("{span} before now: {e}")),
            When::At(ts) => Ok(*ts),
            When::Civil(dt) => zone.to_timestamp(*dt).map_err(|e| format!("{dt}: {e}")),
        }
    }
}

pub struct Options {
    /// The journal's directory.
    pub journal: PathBuf,
    pub since: Option<When>,
    pub until: Option<When>,
    pub filter: Filter,
    pub format: Format,
    /// Only the summary.
    pub summary_only: bool,
    /// Human lines, the summary table and times without an offset in UTC.
    pub utc: bool,
}

pub enum Error {
    /// The journal cannot be read, or a time is out of range: exit 2.
    Input(String),
    /// Writing the output failed: exit 1.
    Io(io::Error),
}

/// What a query read and printed (said on stderr at its end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Segment files read.
    pub segments: u64,
    /// Whole lines read.
    pub lines: u64,
    /// Event and `repeated` objects that matched the filters and times, and were printed
    /// (unless `--summary-only`).
    pub matched: u64,
    /// Events those stand for (a `repeated` object for its `count`).
    pub events: u64,
    /// Lines cut short: the last of a segment without its newline (a crash, or being written).
    pub torn: u64,
    /// Lines skipped that are not a tcperr object of this schema (garbage, zeroes, too long).
    pub unreadable: u64,
}

/// The fields of a stored event or `repeated` object that query reads (any others are
/// ignored: within one schema version fields are only added).
#[derive(Deserialize)]
struct Stored {
    schema: u32,
    kind: String,
    time: String,
    #[serde(default)]
    first_time: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    pid: Option<u32>,
    comm: Option<String>,
    family: String,
    #[serde(default)]
    laddr: Option<String>,
    lport: u16,
    raddr: String,
    rport: u16,
    #[serde(default)]
    netns: Option<u32>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    newstate: Option<String>,
    #[serde(default)]
    errno: Option<String>,
    #[serde(default)]
    errno_code: Option<u32>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    counted_as: Option<String>,
    #[serde(default)]
    cause: Option<String>,
    /// The owner's cgroup, container and pod (absent from lines stored before they existed).
    #[serde(flatten)]
    place: crate::container::Place,
    explanation: String,
}

/// An event kind's name as `'static` (what a [`Brief`] holds), None for one tcperr does not
/// print.
fn kind_name(kind: &str) -> Option<&'static str> {
    if kind == "repeated" {
        return Some("repeated");
    }
    (1..=8).filter_map(EventKind::from_u32).map(EventKind::name).find(|n| *n == kind)
}

/// A stored object that query reads: its brief (for the filters and the summary), how many
/// events it stands for, when (CLOCK_REALTIME ns: first, last).
struct Read {
    stored: Stored,
    brief: Brief,
    count: u64,
    first: i128,
    last: i128,
}

/// What is a line: an event or `repeated` object of this schema (Some), a summary or stats
/// object (None: not events), or unreadable (Err).
fn parse(line: &[u8]) -> Result<Option<Read>, ()> {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let kind = serde_json::from_slice::<Kind<'_>>(line).map_err(|_| ())?;
    if kind.kind == "summary" || kind.kind == "stats" {
        return Ok(None);
    }
    let stored: Stored = serde_json::from_slice(line).map_err(|_| ())?;
    let kind = kind_name(&stored.kind).ok_or(())?;
    if stored.schema != SCHEMA {
        return Err(());
    }
    let last = stored.time.parse::<Timestamp>().map_err(|_| ())?.as_nanosecond();
    let (count, first) = if kind == "repeated" {
        let first = stored.first_time.as_deref().ok_or(())?;
        (stored.count.ok_or(())?, first.parse::<Timestamp>().map_err(|_| ())?.as_nanosecond())
    } else {
        (1, last)
    };
    let family = if stored.family == "ipv6" { AF_INET6 } else { AF_INET };
    let mut raddr = [0u8; 16];
    match stored.raddr.parse::<IpAddr>().map_err(|_| ())? {
        IpAddr::V4(a) if family == AF_INET => raddr[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) if family == AF_INET6 => raddr = a.octets(),
        _ => return Err(()),
    }
    let brief = Brief {
        ts_ns: 0, // (this boot's clock says nothing of an earlier boot's: times are `first`, `last`)
        kind,
        pid: stored.pid,
        comm: stored.comm.as_deref().map(Comm::new),
        family,
        raddr,
        lport: stored.lport,
        rport: stored.rport,
        errno_code: stored.errno_code,
        cause: None,
        shown: true,
        counts_as: Counted::from_name(stored.counted_as.as_deref()),
        cgroup: stored.place.to_cgroup().map(std::rc::Rc::new),
    };
    Ok(Some(Read { stored, brief, count, first, last }))
}

/// The human line of a stored object: what `trace` printed for it.
fn write_human(out: &mut impl Write, r: &Read) -> io::Result<()> {
    let s = &r.stored;
    let what = if r.brief.kind == "repeated" {
        What::Repeated { raddr: &s.raddr, errno: s.errno.as_deref() }
    } else {
        What::Event {
            laddr: s.laddr.as_deref().unwrap_or("-"),
            lport: s.lport,
            raddr: &s.raddr,
            rport: s.rport,
            netns: s.netns,
            place: s.place.tag(),
            state: s.state.as_deref().unwrap_or("-"),
            newstate: s.newstate.as_deref(),
            errno: s.errno.as_deref(),
            error: s.error.as_deref(),
            reason: s.reason.as_deref(),
        }
    };
    let line = Line {
        unix_ns: r.last,
        pid: r.brief.pid,
        comm: r.brief.comm,
        kind: r.brief.kind,
        what,
        cause: s.cause.as_deref(),
        explanation: &s.explanation,
    };
    output::write_line(out, &line)
}

/// Reads the journal and prints what matches, then the summary. A broken pipe (`| head`) ends
/// the output early without an error.
pub fn run(opts: &Options, out: &mut impl Write) -> Result<Counts, Error> {
    output::use_utc(opts.utc);
    let zone = crate::report::human_zone(opts.utc);
    let now = Zoned::now().with_time_zone(zone.clone());
    let since = opts.since.as_ref().map(|w| w.resolve(&now, &zone)).transpose();
    let until = opts.until.as_ref().map(|w| w.resolve(&now, &zone)).transpose();
    let (since, until) = (since.map_err(Error::Input)?, until.map_err(Error::Input)?);
    let dir = opts.journal.display();
    let cannot = |e: io::Error| Error::Input(format!("cannot read the journal {dir}: {e}"));
    let mut reader = journal::read(&opts.journal).map_err(cannot)?;
    if let Some(t) = since
        && let Ok(t) = std::time::SystemTime::try_from(t)
    {
        reader = reader.skip_before(t);
    }
    let mut counts = Counts::default();
    let mut summary = Summary::default();
    let mut writing = Ok(());
    if opts.format == Format::Human && !opts.summary_only {
        writing = writeln!(out, "{}", output::human_header());
    }
    for line in reader.by_ref() {
        let line = line.map_err(cannot)?;
        counts.lines += 1;
        let r = match parse(&line) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(()) => {
                counts.unreadable += 1;
                continue;
            }
        };
        let in_time = since.is_none_or(|t| r.last >= t.as_nanosecond())
            && until.is_none_or(|t| r.last < t.as_nanosecond());
        if !in_time
            || !opts.filter.matches(&r.brief)
            || !opts.filter.containers.matches(r.brief.cgroup.as_deref())
        {
            continue;
        }
        summary.add_n(&r.brief, r.count, r.first, r.last);
        counts.matched += 1;
        counts.events += r.count;
        if opts.summary_only || writing.is_err() {
            continue;
        }
        writing = match opts.format {
            Format::Json => out.write_all(&line).and_then(|()| out.write_all(b"\n")),
            Format::Human => write_human(out, &r),
        };
    }
    counts.segments = reader.segments_read;
    counts.torn = reader.torn;
    counts.unreadable += reader.too_long;
    let res =
        writing.and_then(|()| summary.write(out, opts.format, false)).and_then(|()| out.flush());
    match res {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::Io(e)),
        _ => Ok(counts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_until_take_durations_back_from_now_and_times() {
        let ago = |s: &str, span: Span| match parse_when(s) {
            Ok(When::Ago(got)) => assert_eq!(got.fieldwise(), span.fieldwise(), "{s}"),
            other => panic!("{s}: {other:?}"),
        };
        ago("10m", Span::new().minutes(10));
        ago("2h", Span::new().hours(2));
        ago("1d", Span::new().days(1));
        ago("30s", Span::new().seconds(30));
        ago("1h30m", Span::new().hours(1).minutes(30));
        let at = |s: &str| match parse_when(s) {
            Ok(When::At(t)) => t.to_string(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(at("2026-11-28T10:00:00Z"), "2026-11-28T10:00:00Z");
        assert_eq!(at("2026-11-28T05:00:00-05:00"), "2026-11-28T10:00:00Z");
        let civil = |s: &str| match parse_when(s) {
            Ok(When::Civil(dt)) => dt,
            other => panic!("{s}: {other:?}"),
        };
        let ten = civil::date(2026, 11, 28).at(10, 0, 0, 0);
        assert_eq!(civil("2026-11-28 10:00"), ten);
        assert_eq!(civil("2026-11-28T10:00:00"), ten);
        assert_eq!(civil("2026-11-28"), civil::date(2026, 11, 28).at(0, 0, 0, 0));
        for bad in ["", "yesterday", "10 parsecs", "2026-13-01", "10:00", "-", "2026-11-28 25:00"] {
            assert!(parse_when(bad).unwrap_err().contains("is not a time"), "{bad:?}");
        }
    }

    #[test]
    fn a_time_without_offset_is_in_the_zone_given_and_a_duration_is_back_from_now() {
        let zone = TimeZone::get("America/New_York").unwrap();
        let now: Zoned = "2026-11-28T12:00:00-05:00[America/New_York]".parse().unwrap();
        let at = |s: &str| parse_when(s).unwrap().resolve(&now, &zone).unwrap().to_string();
        assert_eq!(at("2026-11-28 10:00"), "2026-11-28T15:00:00Z");
        assert_eq!(at("2h"), "2026-11-28T15:00:00Z");
        assert_eq!(at("1d"), "2026-11-27T17:00:00Z");
        assert_eq!(at("2026-11-28T10:00:00Z"), "2026-11-28T10:00:00Z");
        let utc = parse_when("2026-11-28 10:00").unwrap().resolve(&now, &TimeZone::UTC).unwrap();
        assert_eq!(utc.to_string(), "2026-11-28T10:00:00Z");
        assert!(parse_when("19998y").unwrap().resolve(&now, &zone).is_err());
    }

    /// A stored event line as `trace --json` printed it (`output::write` of a sample report).
    fn stored(r: &crate::report::Report) -> Vec<u8> {
        let mut out = Vec::new();
        output::write(&mut out, Format::Json, r).unwrap();
        out.pop(); // (the reader hands lines over without their newline)
        out
    }

    #[test]
    fn a_stored_event_prints_the_line_trace_printed_for_it() {
        let mut report = crate::report::Report::sample();
        report.ts_ns = 1_234_567_891;
        report.time = crate::report::wall_time(report.ts_ns);
        report.explanation = "why it failed".into();
        report.netns = Some(1);
        for (state, newstate, errno, error, reason) in [
            ("CLOSE", None, Some("EPIPE"), Some("broken pipe"), None),
            ("ESTABLISHED", Some("CLOSE_WAIT"), None, None, None),
            ("CLOSE", None, Some("EOF"), Some("EOF"), None),
            ("CLOSE", None, None, None, Some("TCP_ABORT_ON_DATA")),
        ] {
            report.state = state;
            report.newstate = newstate;
            report.errno = errno.map(str::to_owned);
            report.error = error.map(str::to_owned);
            report.reason = reason.map(str::to_owned);
            let mut live = Vec::new();
            output::write(&mut live, Format::Human, &report).unwrap();
            let read = parse(&stored(&report)).unwrap().unwrap();
            let mut again = Vec::new();
            write_human(&mut again, &read).unwrap();
            assert_eq!(String::from_utf8(again).unwrap(), String::from_utf8(live).unwrap());
        }
        // An IPv6 connection, and a name with a control character.
        report.family = "ipv6";
        (report.laddr, report.raddr) = ("::1".into(), "::ffff:10.0.0.2".into());
        report.comm = Some(Comm::new("evil\x1b[31m"));
        let mut live = Vec::new();
        output::write(&mut live, Format::Human, &report).unwrap();
        let read = parse(&stored(&report)).unwrap().unwrap();
        assert_eq!(read.brief.raddr[10..], [0xff, 0xff, 10, 0, 0, 2]);
        let mut again = Vec::new();
        write_human(&mut again, &read).unwrap();
        assert_eq!(again, live);
    }

    #[test]
    fn a_stored_repeated_line_prints_as_trace_printed_it_and_counts_as_its_count() {
        let mut fold = crate::fold::Fold::default();
        for i in 0..=(crate::fold::FULL_PER_SECOND as u64 + 4) {
            fold.admit(&Brief { ts_ns: 1_000_000 + i, ..Brief::sample() });
        }
        let rep = &fold.take(2_000_000)[0];
        let mut live = Vec::new();
        output::write_repeated(&mut live, Format::Human, rep).unwrap();
        let mut json = Vec::new();
        output::write_repeated(&mut json, Format::Json, rep).unwrap();
        let read = parse(json.trim_ascii_end()).unwrap().unwrap();
        assert_eq!(read.count, 5);
        assert_eq!(read.brief.counts_as, Counted::Error);
        let mut again = Vec::new();
        write_human(&mut again, &read).unwrap();
        assert_eq!(again, live);
    }

    #[test]
    fn container_filters_and_the_summary_by_pod_work_on_stored_events() {
        use std::io::Write as _;
        let dir = std::env::temp_dir().join(format!("tcperr-query-pods-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut j = journal::Journal::open(&dir, journal::DEFAULT_MAX_BYTES).unwrap();
        let id = "c".repeat(64);
        let in_pod = |pid: u32, pod: &str, container: &str| {
            let mut r = crate::report::Report::sample();
            (r.pid, r.errno, r.errno_code) = (Some(pid), Some("EPIPE".into()), Some(32));
            r.time = crate::report::wall_time(1_000);
            r.place = crate::container::Place {
                cgroup: Some(format!(
                    "/kubepods.slice/kubepods-pod1_2.slice/cri-containerd-{id}.scope"
                )),
                container_id: Some(id.clone()),
                runtime: Some("containerd".into()),
                namespace: Some("shop".into()),
                pod: Some(pod.into()),
                container: Some(container.into()),
            };
            r
        };
        let outside = {
            let mut r = in_pod(9, "x", "y");
            r.place = crate::container::Place {
                cgroup: Some("/system.slice/nginx.service".into()),
                ..Default::default()
            };
            r
        };
        for r in [
            in_pod(1, "cart-1a2", "app"),
            in_pod(2, "cart-1a2", "app"),
            in_pod(3, "api-7d9", "api"),
            outside,
        ] {
            j.write_all(&stored(&r)).unwrap();
            j.write_all(b"\n").unwrap();
        }
        drop(j);
        let query = |containers: crate::container::Selector| {
            let opts = Options {
                journal: dir.clone(),
                since: None,
                until: None,
                filter: Filter { containers, ..Filter::default() },
                format: Format::Json,
                summary_only: false,
                utc: true,
            };
            let mut out = Vec::new();
            run(&opts, &mut out).unwrap_or_else(|_| panic!("query"));
            let lines: Vec<serde_json::Value> = out
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect();
            let events: Vec<_> = lines
                .iter()
                .filter(|l| l["kind"] != "summary")
                .map(|l| l["pid"].as_u64())
                .collect();
            let rows: Vec<_> = lines
                .iter()
                .filter(|l| l["kind"] == "summary")
                .map(|l| {
                    (l["pod"].as_str().map(str::to_owned), l["pid"].as_u64(), l["count"].as_u64())
                })
                .collect();
            (events, rows)
        };
        let pod = |ns: Option<&str>, name: &str| crate::container::Selector {
            pods: vec![(ns.map(Into::into), name.into())],
            ..Default::default()
        };
        // The pod's two processes' events, and one summary row for the pod (no pid).
        let (events, rows) = query(pod(Some("shop"), "cart-1a2"));
        assert_eq!(events, [Some(1), Some(2)]);
        assert_eq!(rows, [(Some("shop/cart-1a2".into()), None, Some(2))]);
        assert_eq!(query(pod(Some("pay"), "cart-1a2")).0, []);
        let by_ns =
            crate::container::Selector { namespaces: vec!["shop".into()], ..Default::default() };
        assert_eq!(query(by_ns).0, [Some(1), Some(2), Some(3)]);
        let by_container =
            crate::container::Selector { containers: vec!["api".into()], ..Default::default() };
        assert_eq!(query(by_container).0, [Some(3)]);
        let by_cgroup = crate::container::Selector {
            cgroups: vec!["/system.slice".into()],
            ..Default::default()
        };
        let (events, rows) = query(by_cgroup);
        assert_eq!((events, rows), (vec![Some(9)], vec![(None, Some(9), Some(1))]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn summaries_stats_and_what_is_not_a_tcperr_event_are_told_apart() {
        let summary = br#"{"schema":1,"kind":"summary","errno":"EPIPE","errno_code":32,"pid":1,"comm":"a","peer":"10.0.0.2","count":1,"first_time":"2026-11-28T10:00:00.000000Z","last_time":"2026-11-28T10:00:00.000000Z"}"#;
        assert!(matches!(parse(summary), Ok(None)));
        assert!(matches!(parse(br#"{"schema":1,"kind":"stats","events_seen":3}"#), Ok(None)));
        let mut event = crate::report::Report::sample();
        event.time = "2026-11-28T10:00:00.000000Z".into();
        let ok = stored(&event);
        assert!(matches!(parse(&ok), Ok(Some(_))));
        let text = String::from_utf8(ok).unwrap();
        for bad in [
            text.replace("\"schema\":1", "\"schema\":2"),
            text.replace("send_error", "send_error_v2"),
            text.replace("2026-11-28T10:00:00.000000Z", "10:00"),
            text.replace("\"raddr\":\"127.0.0.1\"", "\"raddr\":\"localhost\""),
            text[..text.len() / 2].to_owned(),
            "\0\0\0".to_owned(),
            "[1,2]".to_owned(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
