//! What tcperr prints for one event: the decoded event, its owner, and its explanation. The JSON
//! field names are stable (README "JSON fields").
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use tcperr_common::{SockInfo, tcp::AF_INET6};

use crate::{
    owner::{Comm, OwnerSource},
    proc_sockets::AtLimit,
    story::Cause,
};

/// What the filters, the summary and storm folding need of an event: known before the report's
/// text is built, so that an event none of them lets through costs no formatting.
#[derive(Clone, Debug, PartialEq)]
pub struct Brief {
    pub ts_ns: u64,
    pub kind: &'static str,
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
    pub family: u16,
    pub raddr: [u8; 16],
    pub lport: u16,
    pub rport: u16,
    pub errno_code: Option<u32>,
    pub cause: Option<Cause>,
    /// Whether the event is printed: news, or anything with `--all`. The others still reach the
    /// summary (an orderly close is counted as one).
    pub shown: bool,
    /// What the summary counts the event as.
    pub counts_as: Counted,
    /// The owner's cgroup (its container and pod), where known.
    pub cgroup: Option<std::rc::Rc<crate::container::Cgroup>>,
}

/// What an event counts as in the summary: only errors a program received, each once (the
/// failed call, not the RST that predicted it), and orderly closes apart from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// A call failed with it: a send or receive, an EOF that is an error, or connect() (an RST
    /// or an error the kernel set while the connection was being made).
    Error,
    /// An EOF of an orderly close.
    Closed,
    /// Context: an RST or an error a later call will (or may never) meet, what this host sent,
    /// a listener's overflow (its client's failed call is the error).
    Not,
}

impl Counted {
    /// JSON `counted_as`: `error`, `orderly_close`, or null (not counted): what lets `tcperr
    /// query` build from stored events the summary `trace` built live.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Counted::Error => Some("error"),
            Counted::Closed => Some("orderly_close"),
            Counted::Not => None,
        }
    }

    /// The inverse of [`Counted::name`] (anything else is not counted).
    pub fn from_name(name: Option<&str>) -> Self {
        match name {
            Some("error") => Counted::Error,
            Some("orderly_close") => Counted::Closed,
            _ => Counted::Not,
        }
    }
}

/// The version of the JSON objects tcperr prints (`schema` on every one): raised when a field
/// changes meaning or type or goes away (fields are only added within one version).
/// docs/tcperr.schema.json describes every object of this version.
pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Wall-clock time, RFC 3339 with microseconds, UTC.
    pub time: String,
    /// Kernel CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Event kind: rst_received, rst_sent, send_error, recv_error, recv_eof, socket_error,
    /// state_change.
    pub kind: &'static str,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<Comm>,
    pub owner_from: OwnerSource,
    /// "ipv4" or "ipv6".
    pub family: &'static str,
    pub laddr: String,
    pub lport: u16,
    pub raddr: String,
    pub rport: u16,
    /// The socket's network namespace (inode of `/proc/PID/ns/net`); null if unknown.
    pub netns: Option<u32>,
    /// TCP state when the event fired (for state_change: the old state).
    pub state: &'static str,
    /// state_change only: the new state.
    pub newstate: Option<&'static str>,
    /// errno name ("EPIPE", ...), "EOF" for recv_eof, null when the event carries none.
    pub errno: Option<String>,
    /// errno number, 0 for EOF.
    pub errno_code: Option<u32>,
    /// What the program saw in its logs: "broken pipe", "connection reset by peer", "EOF", ...
    pub error: Option<String>,
    /// rst_sent only: the kernel's reason (`enum sk_rst_reason`) where it gives one.
    pub reason: Option<String>,
    /// Why, as a class (README "Causes"): write_after_peer_close, peer_aborted,
    /// peer_closed_with_unread_data, accept_queue_overflow, refused, timeout, peer_closed, ...
    pub cause: Option<&'static str>,
    /// What the summary counts the event as ([`Counted::name`]): `error`, `orderly_close`, null.
    pub counted_as: Option<&'static str>,
    /// The process at the other end, when it is on this host.
    pub peer_pid: Option<u32>,
    pub peer_comm: Option<Comm>,
    /// The owner's cgroup, container and pod (`cgroup`, `container_id`, `runtime`, `pod`,
    /// `namespace`, `container`).
    #[serde(flatten)]
    pub place: crate::container::Place,
    /// The other end's pod, when it is on this host and in one.
    pub peer_namespace: Option<String>,
    pub peer_pod: Option<String>,
    /// The socket's recent steps, times relative to the first (errors and RSTs received; empty
    /// for other kinds).
    pub timeline: Vec<crate::story::Item>,
    /// accept_queue_full only: the listener's queue and what the kernel did.
    pub accept_queue: Option<AcceptQueue>,
    /// What was at stake on the socket (calls that failed or read EOF, RSTs received, errors
    /// the kernel set); null for other kinds.
    pub stakes: Option<crate::stakes::View>,
    /// The kernel's socket cookie where one was assigned (`ss -e` shows it), else null.
    pub cookie: Option<u64>,
    /// The kernel address of the `struct sock`: printed only with `--debug-fields` (a kernel
    /// pointer is what `kptr_restrict` hides; logs need not carry it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sk: Option<String>,
    /// The socket's inode (`/proc/PID/fd/N -> socket:[INODE]`); null when no file holds it.
    pub ino: Option<u64>,
    /// One line saying why.
    pub explanation: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AcceptQueue {
    /// The listen() backlog (`sk_max_ack_backlog`).
    pub backlog: u32,
    /// Connections waiting for accept() (`sk_ack_backlog`).
    pub queued: u32,
    /// "dropped" (the client's final ACK was dropped; `tcp_abort_on_overflow=0`), "reset", or
    /// "syn_dropped" (the client's SYN was dropped: the queue was full when it came).
    pub action: &'static str,
    /// `net.ipv4.tcp_syncookies` of the listener's namespace, for a SYN dropped (a full accept
    /// queue drops SYNs whatever it says: no cookie was sent instead); else None.
    pub syncookies: Option<u32>,
    /// The open files and `RLIMIT_NOFILE` soft limit of the process named (the first in
    /// `out_of_files`, else the listener's owner), when known: at the limit, its accept() fails
    /// with EMFILE ("too many open files").
    pub open_files: Option<u64>,
    pub max_open_files: Option<u64>,
    /// Every process holding the listener that is at its limit: the one that listened, or the
    /// workers it forked (which inherit the listener).
    pub out_of_files: Vec<AtLimit>,
}

pub fn state_name(state: u8) -> &'static str {
    use tcperr_common::tcp::state::*;
    match state {
        ESTABLISHED => "ESTABLISHED",
        SYN_SENT => "SYN_SENT",
        SYN_RECV => "SYN_RECV",
        FIN_WAIT1 => "FIN_WAIT1",
        FIN_WAIT2 => "FIN_WAIT2",
        TIME_WAIT => "TIME_WAIT",
        CLOSE => "CLOSE",
        CLOSE_WAIT => "CLOSE_WAIT",
        LAST_ACK => "LAST_ACK",
        LISTEN => "LISTEN",
        CLOSING => "CLOSING",
        NEW_SYN_RECV => "NEW_SYN_RECV",
        0 => "NONE",
        _ => "UNKNOWN",
    }
}

pub fn addr(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        // (a v4-mapped address stays in its IPv6 form, ::ffff:a.b.c.d, as ss shows it: the
        // family says ipv6)
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

pub fn endpoints(sock: &SockInfo) -> (String, String) {
    (addr(sock.family, &sock.laddr).to_string(), addr(sock.family, &sock.raddr).to_string())
}

/// `addr:port`, with brackets for IPv6.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// CLOCK_REALTIME nanoseconds of a kernel timestamp (CLOCK_MONOTONIC ns).
pub fn unix_ns(ts_ns: u64) -> i128 {
    static OFFSET: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        let ns = |clock| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: ts is a valid timespec.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
        };
        ns(libc::CLOCK_REALTIME) - ns(libc::CLOCK_MONOTONIC)
    });
    i128::from(ts_ns) + offset
}

/// The wall-clock time of a kernel timestamp (CLOCK_MONOTONIC ns), RFC 3339 UTC (JSON's).
pub fn wall_time(ts_ns: u64) -> String {
    rfc3339_micros(unix_ns(ts_ns))
}

fn timestamp(unix_ns: i128) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(unix_ns).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Formats CLOCK_REALTIME nanoseconds as RFC 3339 UTC with microseconds.
pub fn rfc3339_micros(unix_ns: i128) -> String {
    timestamp(unix_ns).strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// The zone human output is in: the system's (`TZ`, else /etc/localtime), or UTC.
pub fn human_zone(utc: bool) -> jiff::tz::TimeZone {
    if utc { jiff::tz::TimeZone::UTC } else { jiff::tz::TimeZone::system() }
}

/// A kernel timestamp's time of day in `zone`, to the microsecond (human lines).
pub fn clock_time(ts_ns: u64, zone: &jiff::tz::TimeZone) -> String {
    clock_time_at(unix_ns(ts_ns), zone)
}

/// [`clock_time`] of CLOCK_REALTIME nanoseconds (a time read back from JSON).
pub fn clock_time_at(unix_ns: i128, zone: &jiff::tz::TimeZone) -> String {
    timestamp(unix_ns).to_zoned_datetime(zone.clone()).strftime("%H:%M:%S.%6f").to_string()
}

/// CLOCK_REALTIME nanoseconds as RFC 3339 in `zone`, with its offset (the human summary table).
pub fn zoned_time(unix_ns: i128, zone: &jiff::tz::TimeZone) -> String {
    timestamp(unix_ns)
        .to_zoned_datetime(zone.clone())
        .strftime("%Y-%m-%dT%H:%M:%S.%6f%:z")
        .to_string()
}

/// The zone as human output's TIME column names it: `UTC`, or the offset now (`UTC-05:00`).
pub fn zone_label(zone: &jiff::tz::TimeZone) -> String {
    let secs = zone.to_offset(jiff::Timestamp::now()).seconds();
    if secs == 0 {
        return "UTC".to_owned();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    format!("UTC{sign}{:02}:{:02}", secs.abs() / 3600, secs.abs() % 3600 / 60)
}

#[cfg(test)]
impl Brief {
    /// The facts of [`Report::sample`].
    pub(crate) fn sample() -> Self {
        let mut raddr = [0; 16];
        raddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        Brief {
            ts_ns: 0,
            kind: "send_error",
            pid: Some(42),
            comm: Some(Comm::new("curl")),
            family: tcperr_common::tcp::AF_INET,
            raddr,
            lport: 40000,
            rport: 8080,
            errno_code: Some(32),
            cause: None,
            shown: true,
            counts_as: Counted::Error,
            cgroup: None,
        }
    }
}

#[cfg(test)]
impl Report {
    /// A send_error report for unit tests: pid 42 (tid 43, "curl"), 127.0.0.1:40000 →
    /// 127.0.0.1:8080, EPIPE.
    pub(crate) fn sample() -> Self {
        Report {
            time: String::new(),
            ts_ns: 0,
            schema: SCHEMA,
            kind: "send_error",
            pid: Some(42),
            tid: Some(43),
            comm: Some(Comm::new("curl")),
            owner_from: OwnerSource::Context,
            family: "ipv4",
            laddr: "127.0.0.1".into(),
            lport: 40000,
            raddr: "127.0.0.1".into(),
            rport: 8080,
            netns: None,
            state: "CLOSE",
            newstate: None,
            errno: Some("EPIPE".into()),
            errno_code: Some(32),
            error: Some("broken pipe".into()),
            reason: None,
            cause: None,
            counted_as: Some("error"),
            peer_pid: None,
            peer_comm: None,
            place: Default::default(),
            peer_namespace: None,
            peer_pod: None,
            timeline: vec![],
            accept_queue: None,
            stakes: None,
            cookie: None,
            sk: None,
            ino: None,
            explanation: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_rfc3339_utc() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        let zone = jiff::tz::TimeZone::get("America/New_York").expect("tzdata");
        let ts = jiff::Timestamp::from_second(1_795_678_321).expect("ts");
        assert_eq!(
            ts.to_zoned_datetime(zone.clone()).strftime("%H:%M:%S%:z").to_string(),
            "02:32:01-05:00"
        );
        assert_eq!(zone_label(&jiff::tz::TimeZone::UTC), "UTC");
        assert_eq!(rfc3339_micros(1_795_678_321_123_456_789), "2026-11-26T07:32:01.123456Z");
        assert_eq!(rfc3339_micros(951_782_400_000_001_000), "2000-02-29T00:00:00.000001Z");
    }

    #[test]
    fn keeps_v4_mapped_ipv6_in_its_ipv6_form_and_brackets_ipv6() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[127, 0, 0, 1]);
        // (its family says ipv6: the address says so too, as ss shows it)
        assert_eq!(addr(AF_INET6, &b).to_string(), "::ffff:127.0.0.1");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("10.0.0.2", 8090), "10.0.0.2:8090");
        assert_eq!(state_name(8), "CLOSE_WAIT");
    }
}
