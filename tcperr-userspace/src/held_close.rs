//! The held-CLOSE protocol, userspace side (kernel side: `tcperr-ebpf/src/held_close.rs`).
//!
//! The programs hold an abort's move to CLOSE back in a per-CPU slot for the RST that follows
//! in the same call, and send it inside that RST's record ([`tcperr_common::RstSent`]'s
//! `closed_from`): one record fewer per abort. Here the RST is unfolded into the two events it
//! stands for, and a move held too long (an RST the kernel could not allocate, on an otherwise
//! quiet CPU) is claimed from the slot; should the programs release that one into the ring buffer
//! later, its copy is dropped.
use std::time::{Duration, Instant};

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use tcperr_common::{EventHeader, SockInfo, StateChange, clock::monotonic_ns};

use crate::decode::{DecodeError, Event};

/// How often [`HeldClose::sweep`] looks for moves to CLOSE held back too long.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// A held move to CLOSE is taken by its RST microseconds later, in the same call; one this old
/// is waiting for an RST that never came (and for the next move held on its CPU to push it out).
pub const HELD_FOR_LONG: Duration = Duration::from_millis(200);

/// The events a record stands for, in order: an RST that carries its socket's move to CLOSE is
/// that move, then the RST; any other record is itself.
pub fn unfold(ev: Event) -> (Option<Event>, Event) {
    match &ev {
        Event::RstSent(rst) => (rst.folded_close().map(Event::StateChange), ev),
        _ => (None, ev),
    }
}

/// What tells one held move to CLOSE from another: its CPU, socket and time.
type Key = (u32, u64, u64);

fn key(c: &StateChange) -> Key {
    (c.header.cpu, c.header.sk, c.header.ts_ns)
}

/// The programs' per-CPU slot (map `HELD_CLOSE`) and the moves claimed from it.
pub struct HeldClose {
    slot: PerCpuArray<MapData, StateChange>,
    /// Held moves delivered from here: the programs may still release one into the ring buffer
    /// later, and that copy is dropped.
    claimed: Vec<Key>,
    last_sweep: Instant,
}

impl HeldClose {
    pub fn new(slot: PerCpuArray<MapData, StateChange>) -> Self {
        Self { slot, claimed: Vec::new(), last_sweep: Instant::now() }
    }

    /// Hands over the events of one record from the ring buffer: none for a move to CLOSE
    /// already claimed from the slot, two for an RST carrying its move to CLOSE.
    #[inline]
    pub fn pass(
        &mut self,
        record: Result<Event, DecodeError>,
        f: &mut impl FnMut(Result<Event, DecodeError>),
    ) {
        match record {
            Ok(Event::StateChange(c)) if self.was_claimed(&c) => {}
            Ok(ev) => {
                let (close, ev) = unfold(ev);
                if let Some(close) = close {
                    f(Ok(close));
                }
                f(Ok(ev));
            }
            Err(e) => f(Err(e)),
        }
    }

    /// At most every [`SWEEP_EVERY`]: hands over the moves to CLOSE held for longer than
    /// [`HELD_FOR_LONG`].
    pub fn sweep(&mut self, f: &mut impl FnMut(Result<Event, DecodeError>)) {
        if self.last_sweep.elapsed() < SWEEP_EVERY {
            return;
        }
        self.last_sweep = Instant::now();
        let Ok(values): Result<PerCpuValues<StateChange>, _> = self.slot.get(&0, 0) else {
            return;
        };
        let now_ns = monotonic_ns();
        for held in values.iter().filter(|h| h.header.sk != 0) {
            let key = key(held);
            if now_ns.saturating_sub(held.header.ts_ns) < HELD_FOR_LONG.as_nanos() as u64
                || self.claimed.contains(&key)
            {
                continue;
            }
            // One claim per CPU at most: this one was held after the older claim, which the
            // programs released into the ring buffer then (and its copy was dropped there).
            self.claimed.retain(|k| k.0 != key.0);
            self.claimed.push(key);
            f(Ok(Event::StateChange(*held)));
        }
    }

    /// Whether `c` is a held move to CLOSE already handed over from the slot (and forgets it).
    fn was_claimed(&mut self, c: &StateChange) -> bool {
        let key = key(c);
        let before = self.claimed.len();
        self.claimed.retain(|k| *k != key);
        self.claimed.len() != before
    }

    /// Test support: puts `close` in CPU `cpu`'s slot (and empties the other CPUs'), as the
    /// programs would if the RST that should carry it never came (the kernel failing to
    /// allocate it cannot be provoked).
    pub fn hold_for_test(&mut self, cpu: usize, close: StateChange) -> Result<(), String> {
        let n = aya::util::nr_cpus().map_err(|(_, e)| e.to_string())?.get() as usize;
        let none = StateChange {
            header: EventHeader { kind: 0, cpu: 0, ts_ns: 0, pid_tgid: 0, comm: [0; 16], sk: 0 },
            sock: SockInfo::ZERO,
            oldstate: 0,
            newstate: 0,
            _pad0: 0,
            _pad1: 0,
        };
        let mut values = vec![none; n];
        *values.get_mut(cpu).ok_or("no such CPU")? = close;
        let values = PerCpuValues::try_from(values).map_err(|e| e.to_string())?;
        self.slot.set(0, values, 0).map_err(|e| e.to_string())
    }
}
