//! Reading: the ring buffer's records, decoded and reassembled into the events they stand for
//! ([`crate::held_close`]), the count of records lost, and waiting for more.
use std::os::fd::{AsRawFd, RawFd};

use crate::{
    decode::{DecodeError, Event, decode},
    load::Tracer,
};

impl Tracer {
    /// Decodes every record waiting in the ring buffer and hands over its events; returns how
    /// many records there were. An RST that carries its socket's move to CLOSE is handed over
    /// as that move and then the RST, as if the kernel side had sent both; moves to CLOSE held
    /// back too long are claimed from the programs' slot ([`crate::held_close`]).
    pub fn drain(&mut self, mut f: impl FnMut(Result<Event, DecodeError>)) -> usize {
        let held = &mut self.held;
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            n += 1;
            held.pass(decode(&item), &mut f);
        }
        held.sweep(&mut f);
        // (the programs' diagnostics, with -vv: rare, read whenever the records are)
        if let Some(logs) = &mut self.logs {
            logs.flush();
        }
        n
    }

    /// Decodes every record waiting in the ring buffer, as the programs wrote it (no move to
    /// CLOSE taken out of its RST, none claimed from the slot); returns how many there were.
    pub fn drain_records(&mut self, mut f: impl FnMut(Result<Event, DecodeError>)) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            n += 1;
            f(decode(&item));
        }
        n
    }

    /// Records the programs could not write because the ring buffer was full, all CPUs.
    pub fn lost(&self) -> u64 {
        self.lost.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Blocks until records are waiting or `timeout` passes; true if records are waiting.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let mut p = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) == 1 }
    }

    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}
