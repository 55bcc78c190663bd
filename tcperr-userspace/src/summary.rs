//! The summary: errors by errno × process × peer, with counts and first/last seen, printed on
//! exit, on SIGUSR1, and as the only output with `--summary-only`.
use std::io::Write;

use rustc_hash::FxHashMap;

use serde::Serialize;

use crate::{output::escape, report::Report};

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    pub errno: String,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// The remote address, with its port when that port is below the ephemeral range (a
    /// service); clients of a server collapse into one row per address.
    pub peer: String,
    pub count: u64,
    pub first: String,
    pub last: String,
}

#[derive(Default)]
pub struct Summary {
    rows: FxHashMap<(String, Option<u32>, Option<String>, String), Row>,
}

/// Ports from here on are taken as ephemeral (Linux's default range starts at 32768).
const EPHEMERAL: u16 = 32768;

impl Summary {
    pub fn add(&mut self, r: &Report) {
        let Some(errno) = &r.errno else { return };
        let peer = if r.rport < EPHEMERAL {
            crate::report::join_host_port(&r.raddr, r.rport)
        } else {
            r.raddr.clone()
        };
        let key = (errno.clone(), r.pid, r.comm.clone(), peer.clone());
        let row = self.rows.entry(key).or_insert_with(|| Row {
            errno: errno.clone(),
            pid: r.pid,
            comm: r.comm.clone(),
            peer,
            count: 0,
            first: r.time.clone(),
            last: r.time.clone(),
        });
        row.count += 1;
        row.last.clone_from(&r.time);
    }

    /// Rows by count, most first.
    pub fn rows(&self) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self.rows.values().collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.first.cmp(&b.first)));
        rows
    }

    pub fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<14} {:>7} {:<7} {:<15} {:<40} {:<26} LAST",
            "ERROR", "COUNT", "PID", "COMM", "PEER", "FIRST"
        )?;
        for r in self.rows() {
            let pid = r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            let comm = r.comm.as_deref().map_or_else(|| "?".to_owned(), escape);
            writeln!(
                out,
                "{:<14} {:>7} {pid:<7} {comm:<15} {:<40} {:<26} {}",
                r.errno, r.count, r.peer, r.first, r.last
            )?;
        }
        Ok(())
    }

    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in self.rows() {
            serde_json::to_writer(&mut *out, &serde_json::json!({ "summary": r }))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(errno: &str, pid: u32, rport: u16, time: &str) -> Report {
        Report {
            time: time.into(),
            pid: Some(pid),
            tid: None,
            comm: Some("app".into()),
            laddr: "10.0.0.1".into(),
            raddr: "10.0.0.2".into(),
            rport,
            errno: Some(errno.into()),
            ..Report::sample()
        }
    }

    #[test]
    fn groups_by_errno_process_and_peer_and_sorts_by_count() {
        let mut s = Summary::default();
        s.add(&report("EPIPE", 1, 8080, "t1"));
        s.add(&report("ECONNRESET", 1, 8080, "t2"));
        s.add(&report("ECONNRESET", 1, 8080, "t3"));
        // Ephemeral remote ports (clients of a server) collapse into one row per address.
        s.add(&report("EOF", 2, 50001, "t4"));
        s.add(&report("EOF", 2, 50002, "t5"));
        let rows = s.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].errno.as_str(), rows[0].count, rows[0].first.as_str(), rows[0].last.as_str()),
            ("ECONNRESET", 2, "t2", "t3")
        );
        assert_eq!((rows[1].peer.as_str(), rows[1].count), ("10.0.0.2", 2));
        assert_eq!(rows[2].peer, "10.0.0.2:8080");
    }
}
