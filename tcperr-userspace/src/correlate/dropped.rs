//! Segments the kernel dropped, joined into the story of the connection they belonged to: a
//! `drop` event is shown alone only with `--all`, but an error on its connection (a timeout
//! behind a firewall, a socket filter) says how many of whose segments were dropped, and why.
//! Kept by the sender's tuple, bounded in number and age.
use rustc_hash::FxHashMap;

use crate::story::{Tuple, mirror};

/// How long a connection's drops are remembered after the last one.
const KEEP_NS: u64 = 300_000_000_000;
/// Connections whose drops are kept at most (then the oldest quarter goes).
const CAP: usize = 16_384;
/// Distinct reasons kept per connection.
const REASONS: usize = 3;

/// The drops of one direction of one connection.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub count: u64,
    /// The kernel's names of the reasons, in the order first met.
    pub reasons: Vec<&'static str>,
    pub last_ns: u64,
}

#[derive(Default)]
pub struct Dropped {
    by_sender: FxHashMap<Tuple, Tally>,
}

impl Dropped {
    /// Notes a segment dropped on connection `t` (as the drop's socket sees it: the receiver's
    /// unless `outgoing`) for `reason`.
    pub fn note(&mut self, t: Tuple, outgoing: bool, reason: Option<&'static str>, ts_ns: u64) {
        let sender = if outgoing { t } else { mirror(&t) };
        if self.by_sender.len() >= CAP && !self.by_sender.contains_key(&sender) {
            let mut times: Vec<u64> = self.by_sender.values().map(|d| d.last_ns).collect();
            let cut = *times.select_nth_unstable(CAP / 4).1;
            self.by_sender.retain(|_, d| d.last_ns > cut);
        }
        let d = self.by_sender.entry(sender).or_default();
        d.count += 1;
        d.last_ns = d.last_ns.max(ts_ns);
        if let Some(r) = reason
            && d.reasons.len() < REASONS
            && !d.reasons.contains(&r)
        {
            d.reasons.push(r);
        }
    }

    /// Forgets what is older than [`KEEP_NS`] before `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        self.by_sender.retain(|_, d| now_ns.saturating_sub(d.last_ns) < KEEP_NS);
    }

    pub fn len(&self) -> usize {
        self.by_sender.len()
    }

    /// What connection `conn` (seen from our end) lost before `ts_ns`: our segments, then the
    /// peer's to us.
    pub fn of(&self, conn: &Tuple, ts_ns: u64) -> (Option<&Tally>, Option<&Tally>) {
        let recent = |d: &&Tally| d.last_ns <= ts_ns && ts_ns - d.last_ns < KEEP_NS;
        (self.by_sender.get(conn).filter(recent), self.by_sender.get(&mirror(conn)).filter(recent))
    }
}

/// The words for an error's story: "; the kernel dropped 3 of our segments to PEER
/// (SOCKET_FILTER)", and the same of the peer's.
pub fn clause(ours: Option<&Tally>, theirs: Option<&Tally>, peer: &str) -> String {
    let n = |d: &Tally| {
        let what = if d.count == 1 { "segment" } else { "segments" };
        let why = if d.reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.reasons.join(", "))
        };
        (d.count, what, why)
    };
    let mut s = String::new();
    if let Some(d) = ours {
        let (count, what, why) = n(d);
        s.push_str(&format!("; the kernel dropped {count} of our {what} to {peer}{why}"));
    }
    if let Some(d) = theirs {
        let (count, what, why) = n(d);
        s.push_str(&format!("; the kernel dropped {count} {what} from {peer} to us{why}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(lport: u16, rport: u16) -> Tuple {
        (7, 2, [1; 16], lport, [2; 16], rport)
    }

    #[test]
    fn drops_join_the_connection_of_their_sender_in_both_directions() {
        let mut d = Dropped::default();
        // Received at the server (local 80): the client's segments.
        d.note(t(80, 5000), false, Some("SOCKET_FILTER"), 10);
        d.note(t(80, 5000), false, Some("SOCKET_FILTER"), 20);
        // Sent by the server, dropped on the way out.
        d.note(t(80, 5000), true, Some("NETFILTER_DROP"), 30);
        let client = mirror(&t(80, 5000));
        let (ours, theirs) = d.of(&client, 40);
        assert_eq!(ours.map(|x| (x.count, x.reasons.clone())), Some((2, vec!["SOCKET_FILTER"])));
        assert_eq!(theirs.map(|x| x.count), Some(1));
        assert_eq!(
            clause(ours, None, "p:80"),
            "; the kernel dropped 2 of our segments to p:80 (SOCKET_FILTER)"
        );
        // Another connection, another namespace: nothing.
        assert_eq!(d.of(&t(81, 5000), 40).0.map(|x| x.count), None);
        let mut other_ns = client;
        other_ns.0 = 8;
        assert!(d.of(&other_ns, 40).0.is_none());
        // Drops after the error are not its story; old ones are forgotten.
        assert!(d.of(&client, 5).0.is_none());
        d.expire(KEEP_NS + 31);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn the_tally_is_bounded() {
        let mut d = Dropped::default();
        for p in 0..(CAP as u32 + 10) {
            d.note(t((p % 60000) as u16 + 1, (p / 60000) as u16 + 1), false, None, u64::from(p));
        }
        assert!(d.len() <= CAP, "{}", d.len());
    }
}
