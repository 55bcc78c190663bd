//! Ring-buffer records → typed events. Rejects records of the wrong size or unknown kind; never
//! panics on any input.
use std::{fmt, mem::size_of};

use tcperr_common::{
    AcceptQueueFull, Drop, EventHeader, EventKind, RecvEof, RecvError, RstReceived, RstSent,
    SendError, SockInfo, SocketError, StateChange, tcp::errno,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    RstReceived(RstReceived),
    RstSent(RstSent),
    SendError(SendError),
    RecvError(RecvError),
    RecvEof(RecvEof),
    StateChange(StateChange),
    SocketError(SocketError),
    AcceptQueueFull(AcceptQueueFull),
    Drop(Drop),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short { len: usize },
    UnknownKind(u32),
    Size { kind: EventKind, len: usize, want: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { len } => write!(f, "record of {len} bytes is shorter than a header"),
            Self::UnknownKind(k) => write!(f, "record of unknown kind {k}"),
            Self::Size { kind, len, want } => {
                write!(f, "{kind:?} record is {len} bytes, expected {want}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads a `T` from exactly `size_of::<T>()` bytes.
fn read<T: Copy>(kind: EventKind, bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() != size_of::<T>() {
        return Err(DecodeError::Size { kind, len: bytes.len(), want: size_of::<T>() });
    }
    // SAFETY: the length matches; every T here is #[repr(C)] of integers and byte arrays, for
    // which any bit pattern is valid; read_unaligned needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short { len: bytes.len() });
    }
    let raw_kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let kind = EventKind::from_u32(raw_kind).ok_or(DecodeError::UnknownKind(raw_kind))?;
    Ok(match kind {
        EventKind::RstReceived => Event::RstReceived(read(kind, bytes)?),
        EventKind::RstSent => Event::RstSent(read(kind, bytes)?),
        EventKind::SendError => Event::SendError(read(kind, bytes)?),
        EventKind::RecvError => Event::RecvError(read(kind, bytes)?),
        EventKind::RecvEof => Event::RecvEof(read(kind, bytes)?),
        EventKind::StateChange => Event::StateChange(read(kind, bytes)?),
        EventKind::SocketError => Event::SocketError(read(kind, bytes)?),
        EventKind::AcceptQueueFull => Event::AcceptQueueFull(read(kind, bytes)?),
        EventKind::Drop => Event::Drop(read(kind, bytes)?),
    })
}

impl Event {
    pub fn header(&self) -> &EventHeader {
        match self {
            Self::RstReceived(e) => &e.header,
            Self::RstSent(e) => &e.header,
            Self::SendError(e) => &e.header,
            Self::RecvError(e) => &e.header,
            Self::RecvEof(e) => &e.header,
            Self::StateChange(e) => &e.header,
            Self::SocketError(e) => &e.header,
            Self::AcceptQueueFull(e) => &e.header,
            Self::Drop(e) => &e.header,
        }
    }

    pub fn sock(&self) -> &SockInfo {
        match self {
            Self::RstReceived(e) => &e.sock,
            Self::RstSent(e) => &e.sock,
            Self::SendError(e) => &e.sock,
            Self::RecvError(e) => &e.sock,
            Self::RecvEof(e) => &e.sock,
            Self::StateChange(e) => &e.sock,
            Self::SocketError(e) => &e.sock,
            Self::AcceptQueueFull(e) => &e.sock,
            Self::Drop(e) => &e.sock,
        }
    }

    /// What was at stake on the socket, for the records of calls that failed or read EOF, RSTs
    /// received and errors the kernel set.
    pub fn stakes(&self) -> Option<&tcperr_common::Stakes> {
        match self {
            Self::RstReceived(e) => Some(&e.stakes),
            Self::SendError(e) => Some(&e.stakes),
            Self::RecvError(e) => Some(&e.stakes),
            Self::RecvEof(e) => Some(&e.stakes),
            Self::SocketError(e) => Some(&e.stakes),
            Self::RstSent(_) | Self::StateChange(_) | Self::AcceptQueueFull(_) | Self::Drop(_) => {
                None
            }
        }
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::RstReceived(_) => EventKind::RstReceived,
            Self::RstSent(_) => EventKind::RstSent,
            Self::SendError(_) => EventKind::SendError,
            Self::RecvError(_) => EventKind::RecvError,
            Self::RecvEof(_) => EventKind::RecvEof,
            Self::StateChange(_) => EventKind::StateChange,
            Self::SocketError(_) => EventKind::SocketError,
            Self::AcceptQueueFull(_) => EventKind::AcceptQueueFull,
            Self::Drop(_) => EventKind::Drop,
        }
    }

    /// The event kind's name, as printed and in JSON (`kind`).
    pub fn kind_name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether the event is one a program meets (an error, an EOF, an RST on its socket): those
    /// carry the socket's timeline and story.
    pub fn has_story(&self) -> bool {
        matches!(
            self,
            Self::SendError(_)
                | Self::RecvError(_)
                | Self::RecvEof(_)
                | Self::SocketError(_)
                | Self::RstReceived(_)
        )
    }

    /// The errno this event reports or causes, if any.
    pub fn errno(&self) -> Option<u32> {
        let e = match self {
            Self::RstReceived(e) => e.errno,
            Self::SendError(e) => e.errno,
            Self::RecvError(e) => e.errno,
            Self::SocketError(e) => e.errno,
            // The reset the client reads as ECONNRESET.
            Self::AcceptQueueFull(e) if e.action == AcceptQueueFull::RESET => errno::ECONNRESET,
            Self::RstSent(_)
            | Self::RecvEof(_)
            | Self::StateChange(_)
            | Self::AcceptQueueFull(_)
            | Self::Drop(_) => 0,
        };
        (e != 0).then_some(e)
    }
}

/// The raw bytes of a record, for tests and the synthetic benchmarks.
pub fn encode<T: tcperr_common::event::Event>(event: &T) -> Vec<u8> {
    // SAFETY: T is #[repr(C)] plain data with explicit padding fields; reading its bytes is sound.
    unsafe { std::slice::from_raw_parts((event as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

#[cfg(test)]
mod tests {
    use tcperr_common::tcp::state;

    use super::*;

    fn header(kind: EventKind) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            cpu: 1,
            ts_ns: 5,
            pid_tgid: (7 << 32) | 8,
            comm: *b"client\0\0\0\0\0\0\0\0\0\0",
            sk: 0xffff_8880_0000_1000,
        }
    }

    fn rst_received() -> RstReceived {
        let mut sock = SockInfo::ZERO;
        sock.family = 2;
        sock.state = state::CLOSE_WAIT;
        RstReceived {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(EventKind::RstReceived),
            sock,
            errno: errno::EPIPE,
            _pad: 0,
        }
    }

    #[test]
    fn decodes_each_kind_from_its_bytes() {
        let ev = rst_received();
        assert_eq!(decode(&encode(&ev)), Ok(Event::RstReceived(ev)));
        let eof = RecvEof {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(EventKind::RecvEof),
            sock: SockInfo::ZERO,
            flags: 0,
            _pad: 0,
        };
        assert_eq!(decode(&encode(&eof)).unwrap().kind_name(), "recv_eof");
        let sc = StateChange {
            header: header(EventKind::StateChange),
            sock: SockInfo::ZERO,
            oldstate: 1,
            newstate: 8,
            _pad0: 0,
            _pad1: 0,
        };
        assert_eq!(decode(&encode(&sc)), Ok(Event::StateChange(sc)));
    }

    #[test]
    fn rejects_truncated_records() {
        let bytes = encode(&rst_received());
        for len in [0, 3, size_of::<EventHeader>() - 1] {
            assert_eq!(decode(&bytes[..len]), Err(DecodeError::Short { len }));
        }
        let len = bytes.len() - 1;
        assert!(matches!(decode(&bytes[..len]), Err(DecodeError::Size { .. })));
    }

    #[test]
    fn rejects_unknown_kinds_and_oversized_records() {
        let mut bytes = encode(&rst_received());
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(DecodeError::Size { .. })));
        bytes[..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
    }

    /// A mutation fuzzer over valid records of every kind: flipped bytes, truncation, extension,
    /// spliced headers. Decoding must return Ok or Err, never panic, and a record whose bytes
    /// were only flipped past the kind field stays decodable.
    #[test]
    fn mutated_records_decode_or_fail_cleanly() {
        use tcperr_common::AcceptQueueFull;
        let mut sock = SockInfo::ZERO;
        sock.family = 10;
        let records: Vec<Vec<u8>> = vec![
            encode(&rst_received()),
            encode(&RstSent {
                header: header(EventKind::RstSent),
                sock,
                reason: 3,
                closed_from: 0,
                _pad0: 0,
                _pad1: 0,
                unread: 0,
                _pad2: 0,
            }),
            encode(&SendError {
                stakes: tcperr_common::Stakes::ZERO,
                header: header(EventKind::SendError),
                sock,
                errno: errno::EPIPE,
                _pad: 0,
            }),
            encode(&RecvError {
                stakes: tcperr_common::Stakes::ZERO,
                header: header(EventKind::RecvError),
                sock,
                errno: errno::ECONNRESET,
                flags: 2,
            }),
            encode(&RecvEof {
                stakes: tcperr_common::Stakes::ZERO,
                header: header(EventKind::RecvEof),
                sock,
                flags: 0,
                _pad: 0,
            }),
            encode(&StateChange {
                header: header(EventKind::StateChange),
                sock,
                oldstate: 1,
                newstate: 7,
                _pad0: 0,
                _pad1: 0,
            }),
            encode(&SocketError {
                stakes: tcperr_common::Stakes::ZERO,
                header: header(EventKind::SocketError),
                sock,
                errno: errno::ETIMEDOUT,
                _pad: 0,
            }),
            encode(&AcceptQueueFull {
                header: header(EventKind::AcceptQueueFull),
                sock,
                backlog: 1,
                queued: 2,
                action: 1,
                syncookies: tcperr_common::ABSENT,
            }),
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..200_000 {
            let mut r = records[next(records.len())].clone();
            match next(4) {
                0 => {
                    let i = next(r.len());
                    r[i] ^= 1 << next(8);
                    // Past the kind field, any bit pattern is a valid record.
                    if i >= 4 {
                        assert!(decode(&r).is_ok());
                        continue;
                    }
                }
                1 => r.truncate(next(r.len())),
                2 => r.extend((0..next(64) + 1).map(|_| next(256) as u8)),
                _ => {
                    let other = &records[next(records.len())];
                    r[..4].copy_from_slice(&other[..4]);
                }
            }
            let _ = decode(&r);
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8 % 9 // small values hit valid kinds often
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
