//! The summary: errors by errno × process × peer, with counts and first/last seen, printed on
//! exit, on SIGUSR1, and as the only output with `--summary-only`.
use std::io::Write;

use rustc_hash::FxHashMap;

use serde::Serialize;

use crate::{
    error_names,
    owner::Comm,
    owner::escape,
    report::{Brief, Counted, addr, join_host_port, rfc3339_micros, unix_ns},
};

/// One row (JSON: `{"schema": 1, "kind": "summary", ...}`, the events' key names).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    pub schema: u32,
    pub kind: &'static str,
    pub errno: String,
    pub errno_code: u32,
    /// null for a pod's row (its processes together).
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// `NAMESPACE/POD` where the processes are a Kubernetes pod's: its errors are one row per
    /// pod, whichever of its processes (replicas restart, pids change); else null.
    pub pod: Option<String>,
    /// The remote address, with its port when that port is below the ephemeral range (a
    /// service); clients of a server collapse into one row per address.
    pub peer: String,
    pub count: u64,
    /// When the first and the last of them happened.
    pub first_time: String,
    pub last_time: String,
    /// The same as CLOCK_REALTIME nanoseconds (the human table shows them in its zone).
    #[serde(skip)]
    pub first_unix_ns: i128,
    #[serde(skip)]
    pub last_unix_ns: i128,
}

/// errno, pid (None for a pod's), comm, (family, remote address, service port or 0), the pod:
/// plain values, so that adding an event outside pods to the summary allocates nothing (it runs
/// for every event in an RST storm).
type Key = (u32, Option<u32>, Option<Comm>, (u16, [u8; 16], u16), Option<String>);

/// Times in CLOCK_REALTIME nanoseconds: a journal's events may be of an earlier boot.
#[derive(Clone, Copy)]
struct Tally {
    count: u64,
    first_ns: i128,
    last_ns: i128,
}

#[derive(Default)]
pub struct Summary {
    rows: FxHashMap<Key, Tally>,
    /// Orderly closes seen (an EOF after the peer finished): not errors, counted apart.
    pub closed: u64,
}

/// Ports from here on are taken as ephemeral (Linux's default range starts at 32768).
const EPHEMERAL: u16 = 32768;

impl Summary {
    /// Counts `b` if it is an error a program received (each once: the failed call, not the
    /// RST that announced it), or an orderly close.
    pub fn add(&mut self, b: &Brief) {
        let at = unix_ns(b.ts_ns);
        self.add_n(b, 1, at, at);
    }

    /// Counts `n` events like `b` (a `repeated` line read back from a journal) seen between
    /// `first` and `last` (CLOCK_REALTIME nanoseconds), as [`Summary::add`] counts one.
    pub fn add_n(&mut self, b: &Brief, n: u64, first: i128, last: i128) {
        match b.counts_as {
            Counted::Error => {}
            Counted::Closed => return self.closed += n,
            Counted::Not => return,
        }
        let Some(errno) = b.errno_code else { return };
        let port = if b.rport < EPHEMERAL { b.rport } else { 0 };
        let pod = b
            .cgroup
            .as_deref()
            .and_then(|c| Some(format!("{}/{}", c.namespace.as_ref()?, c.pod.as_ref()?)));
        let pid = if pod.is_some() { None } else { b.pid };
        let key = (errno, pid, b.comm, (b.family, b.raddr, port), pod);
        let t = self.rows.entry(key).or_insert(Tally { count: 0, first_ns: first, last_ns: last });
        t.count += n;
        // (records of different CPUs arrive a little out of order: first and last are by time)
        t.first_ns = t.first_ns.min(first);
        t.last_ns = t.last_ns.max(last);
    }

    /// Rows by count, most first.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<(&Key, &Tally)> = self.rows.iter().collect();
        rows.sort_by(|a, b| {
            b.1.count.cmp(&a.1.count).then_with(|| a.1.first_ns.cmp(&b.1.first_ns))
        });
        rows.into_iter()
            .map(|((errno, pid, comm, (family, raddr, port), pod), t)| {
                let (errno, pid, comm, family, raddr, port) =
                    (*errno, *pid, *comm, *family, *raddr, *port);
                let host = addr(family, &raddr).to_string();
                Row {
                    schema: crate::report::SCHEMA,
                    kind: "summary",
                    errno: error_names::name(errno),
                    errno_code: errno,
                    pid,
                    comm: comm.map(|c| c.to_string()),
                    pod: pod.clone(),
                    peer: if port != 0 { join_host_port(&host, port) } else { host },
                    count: t.count,
                    first_time: rfc3339_micros(t.first_ns),
                    last_time: rfc3339_micros(t.last_ns),
                    first_unix_ns: t.first_ns,
                    last_unix_ns: t.last_ns,
                }
            })
            .collect()
    }

    pub fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        // (a POD column only where a row is a pod's)
        let pods = self.rows.keys().any(|k| k.4.is_some());
        if !self.rows.is_empty() {
            let pod = if pods { format!(" {:<32}", "POD") } else { String::new() };
            writeln!(
                out,
                "{:<14} {:>7} {:<7} {:<15}{pod} {:<40} {:<32} LAST",
                "ERROR", "COUNT", "PID", "COMM", "PEER", "FIRST"
            )?;
        }
        for r in self.rows() {
            let pid = r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            let comm = r.comm.as_deref().map_or_else(|| "?".to_owned(), escape);
            let pod = match (pods, &r.pod) {
                (false, _) => String::new(),
                (true, p) => {
                    format!(" {:<32}", p.as_deref().map_or_else(|| "-".to_owned(), escape))
                }
            };
            writeln!(
                out,
                "{:<14} {:>7} {pid:<7} {comm:<15}{pod} {:<40} {:<32} {}",
                r.errno,
                r.count,
                r.peer,
                crate::output::human_time(r.first_unix_ns),
                crate::output::human_time(r.last_unix_ns)
            )?;
        }
        if self.closed > 0 {
            writeln!(
                out,
                "(and {} orderly closes: EOF after the peer finished, not errors)",
                self.closed
            )?;
        }
        Ok(())
    }

    /// One `{"kind": "summary", ...}` object per row.
    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in self.rows() {
            serde_json::to_writer(&mut *out, &r)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The summary in the output's format: JSON objects, or the table (nothing at all when
    /// there is nothing to say; `after_interrupt`: a terminal that just echoed ^C gets a new
    /// line first).
    pub fn write(
        &self,
        out: &mut impl Write,
        format: crate::output::Format,
        after_interrupt: bool,
    ) -> std::io::Result<()> {
        if format == crate::output::Format::Json {
            return self.write_json(out);
        }
        if self.rows.is_empty() && self.closed == 0 {
            return Ok(());
        }
        if after_interrupt {
            out.write_all(b"\n")?;
        }
        self.write_table(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::wall_time;

    fn brief(errno: u32, pid: u32, rport: u16, ts_ns: u64) -> Brief {
        let mut raddr = [0; 16];
        raddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        Brief {
            ts_ns,
            pid: Some(pid),
            comm: Some(Comm::new("app")),
            raddr,
            rport,
            errno_code: Some(errno),
            ..Brief::sample()
        }
    }

    #[test]
    fn groups_by_errno_process_and_peer_and_sorts_by_count() {
        let mut s = Summary::default();
        s.add(&brief(32, 1, 8080, 1_000));
        s.add(&brief(104, 1, 8080, 2_000));
        s.add(&brief(104, 1, 8080, 3_000));
        // Ephemeral remote ports (clients of a server) collapse into one row per address.
        s.add(&brief(0, 2, 50001, 4_000));
        s.add(&brief(0, 2, 50002, 5_000));
        let rows = s.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (
                rows[0].errno.as_str(),
                rows[0].count,
                rows[0].first_time.clone(),
                rows[0].last_time.clone()
            ),
            ("ECONNRESET", 2, wall_time(2_000), wall_time(3_000))
        );
        assert_eq!(rows[1].errno, "EOF");
        assert_eq!((rows[1].peer.as_str(), rows[1].count), ("10.0.0.2", 2));
        assert_eq!(rows[2].peer, "10.0.0.2:8080");
    }

    #[test]
    fn a_repeated_line_counts_as_its_count_with_first_and_last_by_time() {
        let mut s = Summary::default();
        let b = brief(104, 1, 8080, 0);
        s.add_n(&b, 5, 2_000, 9_000);
        s.add_n(&b, 1, 1_000, 1_000); // (an earlier one, read after)
        s.add_n(&Brief { counts_as: Counted::Closed, ..b.clone() }, 3, 0, 0);
        s.add_n(&Brief { counts_as: Counted::Not, ..b }, 7, 0, 0);
        let rows = s.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].count, rows[0].first_unix_ns, rows[0].last_unix_ns), (6, 1_000, 9_000));
        assert_eq!(s.closed, 3);
    }
}
