//! What was at stake on a socket when a call on it failed or read EOF (`tcperr_common::Stakes`,
//! read from `struct tcp_sock` on the kernel's error paths): bytes sent, acknowledged, received
//! and left unread, retransmissions, and how long ago data last went each way. The facts the
//! EOF classes are decided from, and the numbers the story quotes.
use serde::Serialize;
use tcperr_common::Stakes;

/// The JSON `stakes` object.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct View {
    /// Data bytes sent (retransmissions included), acknowledged by the peer, and received.
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// Bytes we wrote that the peer never acknowledged.
    pub unacked: u32,
    /// Bytes that arrived but the program never read.
    pub unread: u32,
    pub retransmits: u32,
    /// Milliseconds since data was last sent and last received (null where the kernel's tick
    /// rate could not be told).
    pub since_send_ms: Option<f64>,
    pub since_receive_ms: Option<f64>,
    /// Milliseconds from when the oldest segment still being retransmitted was first sent to
    /// the record (the kernel's `retrans_stamp`); null when nothing was being retransmitted.
    pub retransmitting_since_ms: Option<u32>,
    /// Retransmissions in a row that went unanswered (`icsk_retransmits`).
    pub retransmits_in_row: u32,
    /// The retransmission timeout as backed off by then (`icsk_rto`), in milliseconds; null
    /// where the kernel's tick rate could not be told.
    pub rto_ms: Option<f64>,
    /// Keepalive or zero-window probes unanswered (`icsk_probes_out`).
    pub probes_unanswered: u32,
}

/// The control units the sequence numbers hold besides data, one each: our SYN while it is
/// unacknowledged, our FIN once sent, the peer's FIN once it came.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Units {
    pub syn_out: bool,
    pub fin_out: bool,
    pub fin_in: bool,
}

impl Units {
    /// From the socket's state, and what its timeline saw (`peer_fin`: the peer's FIN came;
    /// `our_fin`: this side closed with a FIN) for a socket whose state no longer says.
    pub fn of(state: u8, peer_fin: bool, our_fin: bool) -> Self {
        use tcperr_common::tcp::state::*;
        Self {
            syn_out: matches!(state, SYN_SENT | SYN_RECV),
            fin_out: our_fin || matches!(state, FIN_WAIT1 | CLOSING | LAST_ACK),
            fin_in: peer_fin || matches!(state, CLOSE_WAIT | LAST_ACK | CLOSING | TIME_WAIT),
        }
    }
}

impl View {
    /// The stakes `s` of a record made at `ts_ns`, its sequence space less the control `units`.
    pub fn of(s: &Stakes, ts_ns: u64, units: Units) -> Self {
        let fin_in = u32::from(units.fin_in);
        let control_out = u32::from(units.syn_out) + u32::from(units.fin_out);
        let tick_ms = hz(s.jiffies, ts_ns).map(|hz| 1000.0 / f64::from(hz));
        let ago = |t: u32| tick_ms.map(|ms| f64::from((s.jiffies as u32).wrapping_sub(t)) * ms);
        Self {
            bytes_sent: s.bytes_sent,
            // (the peer's acknowledgement of our SYN is counted too)
            bytes_acked: s.bytes_acked.saturating_sub(1).min(s.bytes_sent),
            bytes_received: s.bytes_received.saturating_sub(u64::from(fin_in)),
            unacked: s.write_seq.wrapping_sub(s.snd_una).saturating_sub(control_out),
            // (a FIN the program has read EOF at is in both: then no data is left unread)
            unread: s.rcv_nxt.wrapping_sub(s.copied_seq).saturating_sub(fin_in),
            retransmits: s.total_retrans,
            since_send_ms: ago(s.lsndtime),
            since_receive_ms: ago(s.lrcvtime),
            retransmitting_since_ms: retransmitting_since(s.retrans_stamp, ts_ns),
            retransmits_in_row: s.retransmits,
            rto_ms: tick_ms.filter(|_| s.rto > 0).map(|ms| f64::from(s.rto) * ms),
            probes_unanswered: s.probes_out,
        }
    }
}

/// How long before `ts_ns` (CLOCK_MONOTONIC) the kernel's `retrans_stamp` was: TCP's clock is
/// CLOCK_MONOTONIC in milliseconds, kept in 32 bits. None when it is 0 (nothing being
/// retransmitted), or later than the record (a connection on microsecond timestamps, whose
/// stamp is on another scale), or older than the clock could say (a day).
pub fn retransmitting_since(retrans_stamp: u32, ts_ns: u64) -> Option<u32> {
    if retrans_stamp == 0 {
        return None;
    }
    let since = ((ts_ns / 1_000_000) as u32).wrapping_sub(retrans_stamp);
    (since < 86_400_000).then_some(since)
}

/// Whether the last data of the connection went out from us, after the last data that came in
/// (`lsndtime` later than `lrcvtime`, in ticks; the same tick is not "after"), or we sent data
/// and never received any.
pub fn wrote_last(s: &Stakes, v: &View) -> bool {
    let sent = v.bytes_acked > 0 || v.unacked > 0;
    sent && (v.bytes_received == 0 || (s.lsndtime.wrapping_sub(s.lrcvtime) as i32) > 0)
}

/// Whether the socket was accepted from a listener (which it keeps the backlog of) rather than
/// connected.
pub fn accepted(s: &Stakes) -> bool {
    s.backlog > 0
}

/// The kernel's tick rate (`CONFIG_HZ`), from one reading of `jiffies` and CLOCK_MONOTONIC made
/// together: jiffies start at `2^32 - 300 * HZ` at boot (`INITIAL_JIFFIES`, so that their
/// wrap-around is met five minutes in), so `jiffies - 2^32 = HZ * (uptime - 300 s)`. The rates
/// Linux is built with are few; the one that fits best is taken. None within a second of that
/// five-minute mark, where they cannot be told apart.
pub fn hz(jiffies: u64, ts_ns: u64) -> Option<u32> {
    let from_mark = ts_ns as f64 / 1e9 - 300.0;
    if from_mark.abs() < 1.0 || jiffies == 0 {
        return None;
    }
    let ticks = jiffies.wrapping_sub(1 << 32) as i64 as f64;
    [100u32, 250, 300, 1000]
        .into_iter()
        .map(|hz| (hz, (ticks - f64::from(hz) * from_mark).abs()))
        .filter(|&(hz, off)| off < f64::from(hz) * 0.5 + 2.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(hz, _)| hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jiffies(hz: u64, uptime_ns: u64) -> u64 {
        (1u64 << 32) - 300 * hz + hz * uptime_ns / 1_000_000_000
    }

    #[test]
    fn the_tick_rate_follows_from_jiffies_and_the_monotonic_clock() {
        for hz_ in [100, 250, 300, 1000] {
            for uptime_s in [5, 120, 298, 302, 3_600, 86_400 * 40] {
                let ns = uptime_s * 1_000_000_000 + 123_456_789;
                assert_eq!(hz(jiffies(hz_, ns), ns), Some(hz_ as u32), "{hz_} Hz at {uptime_s} s");
            }
        }
        let mark = 300_000_000_000;
        assert_eq!(hz(jiffies(250, mark), mark), None, "at the five-minute mark");
    }

    #[test]
    fn retransmitting_since_is_the_monotonic_ms_clock_less_the_stamp_across_its_wrap() {
        let ts = 5_000_000_000_123_456_u64; // 5,000,000,000 ms: past the 32-bit wrap
        let now_ms = (ts / 1_000_000) as u32;
        assert_eq!(retransmitting_since(now_ms.wrapping_sub(1_500), ts), Some(1_500));
        assert_eq!(retransmitting_since(0, ts), None, "nothing retransmitting");
        assert_eq!(retransmitting_since(now_ms.wrapping_add(7), ts), None, "a later stamp");
        let s = Stakes { retrans_stamp: now_ms - 600, rto: 200, retransmits: 2, ..Stakes::ZERO };
        let v = View::of(&s, ts, Units::default());
        assert_eq!((v.retransmitting_since_ms, v.retransmits_in_row), (Some(600), 2));
    }

    #[test]
    fn unacknowledged_and_unread_bytes_come_from_sequence_numbers_across_their_wrap() {
        let s = Stakes {
            write_seq: 10,
            snd_una: u32::MAX - 5,
            rcv_nxt: 3,
            copied_seq: u32::MAX,
            bytes_received: 9,
            ..Stakes::ZERO
        };
        let v = View::of(&s, 0, Units::default());
        assert_eq!((v.unacked, v.unread, v.bytes_received), (16, 4, 9));
        // After the peer's FIN: its one unit is neither data received nor unread.
        let fin_in = Units { fin_in: true, ..Units::default() };
        let v = View::of(&s, 0, fin_in);
        assert_eq!((v.unread, v.bytes_received), (3, 8));
        // An unacknowledged SYN, or our FIN, is no byte we wrote.
        let connecting = Stakes { write_seq: 1001, snd_una: 1000, ..Stakes::ZERO };
        assert_eq!(
            View::of(&connecting, 0, Units::of(tcperr_common::tcp::state::SYN_SENT, false, false))
                .unacked,
            0
        );
        let closing = Stakes { write_seq: 1005, snd_una: 1000, ..Stakes::ZERO };
        assert_eq!(
            View::of(&closing, 0, Units::of(tcperr_common::tcp::state::FIN_WAIT1, false, false))
                .unacked,
            4
        );
    }
}
