//! The reproduction scenarios: real sockets on loopback making each case of docs/kernel-facts.md
//! happen, each returning the events tcperr must report for it. Run natively by the integration
//! tests and, unchanged, inside the VM.
//!
//! Each scenario runs its peers as named threads ("client", "server"): the thread name is the
//! task's comm, so attribution is checked per thread (pid, tid and comm).
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use serde_json::Value;

pub mod child;
pub mod drive;
pub mod forking_client;
pub mod health_check;
pub mod idle;
pub mod load;
pub mod netns;
pub mod out_of_files;
pub mod proc_net;
pub mod scenarios;
pub mod sock;
pub mod storm;

pub use netns::loopback_up;
pub use scenarios::{ALL, run};
pub use sock::Retransmissions;

/// One side of a scenario: a thread whose comm is `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: &'static str,
    pub pid: u32,
    pub tid: u32,
}

/// Something only some kernels report; the expectation says so explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// `tcp:tcp_send_reset` fires also for RSTs sent without a full socket (no socket, TIME_WAIT)
    /// and carries `reason` (6.10+).
    RstReason,
}

/// An event tcperr must report, with ports as roles and processes as actor names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub kind: &'static str,
    /// Actor name, or "-" for no owner.
    pub actor: &'static str,
    pub local: &'static str,
    pub remote: &'static str,
    pub state: &'static str,
    /// errno name, "EOF", or "-".
    pub errno: &'static str,
    /// The cause class tcperr names, or "-".
    pub cause: &'static str,
    /// The cause on kernels that give no RST reason, where tcperr can only infer less.
    pub cause_without_reason: Option<&'static str>,
    pub needs: Option<Needs>,
    /// The connection's retransmissions the event must carry (its `stakes`), as the kernel
    /// reported them to the scenario through `TCP_INFO`.
    pub retransmits: Option<Retransmits>,
}

/// What an event must say of its connection's retransmissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmits {
    /// `stakes.retransmits`: the kernel's `tcpi_total_retrans`.
    pub total: u32,
    /// `stakes.retransmits_in_row`: its `tcpi_retransmits`.
    pub in_row: u32,
    /// `stakes.retransmitting_since_ms` is at least this (the user timeout the kernel waited
    /// out from the first unacknowledged segment).
    pub since_at_least_ms: u32,
    /// Where the kernel says why it drops (`kfree_skb`'s reason): how many of our segments the
    /// story says it dropped.
    pub dropped: Option<u64>,
}

impl Retransmits {
    fn words(total: &str, in_row: &str, since: &str) -> String {
        format!(" retransmits={total} in_row={in_row} since{since}")
    }

    fn line(&self) -> String {
        let mut line = Self::words(
            &self.total.to_string(),
            &self.in_row.to_string(),
            &format!(">={}ms", self.since_at_least_ms),
        );
        if let Some(n) = self.dropped {
            line.push_str(&format!(" dropped={n}"));
        }
        line
    }

    /// The same words for a tcperr JSON event: what it carries, `since` as the bound when it
    /// holds, else as it is.
    fn observed(&self, ev: &Value) -> String {
        let st = &ev["stakes"];
        let n = |k: &str| st[k].as_u64().map_or("-".to_owned(), |v| v.to_string());
        let since = match st["retransmitting_since_ms"].as_u64() {
            Some(ms) if ms >= u64::from(self.since_at_least_ms) => {
                format!(">={}ms", self.since_at_least_ms)
            }
            Some(ms) => format!("={ms}ms"),
            None => "=-".to_owned(),
        };
        let mut line = Self::words(&n("retransmits"), &n("retransmits_in_row"), &since);
        if self.dropped.is_some() {
            // "the kernel dropped N of our segments": the story's count
            let text = ev["explanation"].as_str().unwrap_or_default();
            let n = text
                .split("the kernel dropped ")
                .nth(1)
                .and_then(|r| r.split_once(" of our segment"))
                .map_or("-", |(n, _)| n);
            line.push_str(&format!(" dropped={n}"));
        }
        line
    }
}

impl Expected {
    pub fn line(&self, kernel_has_rst_reason: bool) -> String {
        let mut line = self.base_line(kernel_has_rst_reason);
        if let Some(r) = &self.retransmits {
            line.push_str(&r.line());
        }
        line
    }

    /// The line without the retransmissions: what [`Run::normalise`] gives.
    fn base_line(&self, kernel_has_rst_reason: bool) -> String {
        let cause = match self.cause_without_reason {
            Some(c) if !kernel_has_rst_reason => c,
            _ => self.cause,
        };
        format!(
            "{} {} {}->{} {} {} {cause}",
            self.kind, self.actor, self.local, self.remote, self.state, self.errno
        )
    }
}

/// What one run of a scenario did.
#[derive(Clone, Debug)]
pub struct Run {
    pub scenario: &'static str,
    pub ip: IpAddr,
    /// The server's port; every event of the scenario has it as local or remote port.
    pub server_port: u16,
    pub client_ports: BTreeSet<u16>,
    pub actors: Vec<Actor>,
    pub expected: Vec<Expected>,
    /// CLOCK_MONOTONIC (the clock of the events' `ts_ns`) when the scenario began and ended.
    /// Scenarios run one after another under one tracer, and the kernel may give a later one
    /// the server port an earlier one had: the time tells their events apart.
    pub during_ns: (u64, u64),
}

impl Run {
    /// Whether a `tcperr trace --json` object belongs to this run.
    pub fn owns(&self, ev: &Value) -> bool {
        let ts = ev["ts_ns"].as_u64().unwrap_or(0);
        if !(self.during_ns.0..=self.during_ns.1).contains(&ts) {
            return false;
        }
        let ip = self.ip.to_string();
        let port = |k: &str| ev[k].as_u64().unwrap_or(0);
        let addr = |k: &str| ev[k].as_str().unwrap_or_default() == ip;
        let sp = u64::from(self.server_port);
        (addr("laddr") && port("lport") == sp) || (addr("raddr") && port("rport") == sp)
    }

    fn role(&self, port: u64) -> String {
        if port == u64::from(self.server_port) {
            "server".into()
        } else if u16::try_from(port).is_ok_and(|p| self.client_ports.contains(&p)) {
            "client".into()
        } else {
            format!("port{port}")
        }
    }

    fn actor(&self, ev: &Value) -> String {
        let pid = ev["pid"].as_u64();
        let tid = ev["tid"].as_u64();
        let comm = ev["comm"].as_str();
        let Some(pid) = pid else { return "-".into() };
        self.actors
            .iter()
            .find(|a| {
                u64::from(a.pid) == pid
                    && comm == Some(a.name)
                    && tid.is_none_or(|t| t == u64::from(a.tid))
            })
            .map_or_else(
                || format!("pid{pid}/{}/{}", tid.unwrap_or(0), comm.unwrap_or("?")),
                |a| a.name.to_owned(),
            )
    }

    /// A tcperr JSON event in the form of [`Expected::line`]: ports become roles, processes
    /// actor names; times and port numbers drop out.
    pub fn normalise(&self, ev: &Value) -> String {
        let s = |k: &str| ev[k].as_str().unwrap_or("-").to_owned();
        format!(
            "{} {} {}->{} {} {} {}",
            s("kind"),
            self.actor(ev),
            self.role(ev["lport"].as_u64().unwrap_or(0)),
            self.role(ev["rport"].as_u64().unwrap_or(0)),
            s("state"),
            s("errno"),
            s("cause"),
        )
    }

    /// The expected lines on a kernel that has (or lacks) `rst_reason`, in [`by_socket`] order.
    pub fn expected_lines(&self, kernel_has_rst_reason: bool) -> Vec<String> {
        by_socket(
            self.expected
                .iter()
                .filter(|e| e.needs.is_none() || kernel_has_rst_reason)
                .map(|e| e.line(kernel_has_rst_reason))
                .collect(),
        )
    }

    /// tcperr's reports of this run's sockets as lines, in [`by_socket`] order. A report whose
    /// line is one an expectation asks retransmissions of says what it carries of them.
    pub fn observed_lines<'a>(&self, reports: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
        let line = |r: &Value| {
            let mut line = self.normalise(r);
            let asked = self.expected.iter().find(|e| {
                e.retransmits.is_some() && (e.base_line(true) == line || e.base_line(false) == line)
            });
            if let Some(r_) = asked.and_then(|e| e.retransmits) {
                line.push_str(&r_.observed(r));
            }
            line
        };
        by_socket(reports.into_iter().filter(|r| self.owns(r)).map(line).collect())
    }

    /// The run as JSON, for the `tcperr-scenario` binary.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "scenario": self.scenario,
            "ip": self.ip.to_string(),
            "server_port": self.server_port,
            "client_ports": self.client_ports.iter().collect::<Vec<_>>(),
            "actors": self.actors.iter().map(|a| serde_json::json!({"name": a.name, "pid": a.pid, "tid": a.tid})).collect::<Vec<_>>(),
            "expected": self.expected.iter().map(|e| serde_json::json!({"with_rst_reason": e.line(true), "without_rst_reason": e.line(false), "needs_rst_reason": e.needs == Some(Needs::RstReason)})).collect::<Vec<_>>(),
        })
    }
}

/// Orders lines by socket (the local end's role), keeping each socket's own order. Events of one
/// socket are ordered by the kernel; between two sockets the order of the tracepoints depends on
/// kernel internals (an active RST's `tcp_send_reset` fires after loopback delivered it).
pub fn by_socket(mut lines: Vec<String>) -> Vec<String> {
    let local =
        |l: &String| l.split(' ').nth(2).and_then(|p| p.split("->").next()).map(str::to_owned);
    lines.sort_by_key(local);
    lines
}

pub fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
    }
}
