//! The output stage's last step: one thread owns stdout, behind a bounded queue, so that a
//! reader that stops reading (a pipe nobody drains, a stopped terminal) can never block the
//! pipeline or signal handling. What does not fit in the queue is counted, not printed.
use std::{
    io::{self, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread,
    time::Duration,
};

/// Chunks waiting for the writer thread, and the size at which one is handed over.
const QUEUED_CHUNKS: usize = 64;
const CHUNK_BYTES: usize = 64 * 1024;

/// A `Write` that queues for the thread writing `W` (stdout): writes never block. Lines are
/// handed over on `flush` (and whenever 64 KiB are waiting); a chunk the full queue refuses is
/// dropped and its lines counted in [`Self::unwritten`]. Once the thread met an error (the
/// reader is gone: EPIPE), every call returns that error.
pub struct QueuedOut {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    failed: Arc<Mutex<Option<io::ErrorKind>>>,
    done: Receiver<()>,
    /// Lines handed to the thread, and dropped because its queue was full.
    handed: u64,
    dropped: u64,
    /// Lines the thread has written.
    written: Arc<AtomicU64>,
}

impl QueuedOut {
    /// Starts the thread that writes to `out`.
    pub fn start<W: Write + Send + 'static>(mut out: W) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUED_CHUNKS);
        let (done_tx, done) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let failed_w = Arc::clone(&failed);
        let written = Arc::new(AtomicU64::new(0));
        let written_w = Arc::clone(&written);
        // (should the thread not start, every chunk meets a closed queue and is counted)
        let _ = thread::Builder::new().name("tcperr-out".into()).spawn(move || {
            for chunk in rx {
                if let Err(e) = out.write_all(&chunk).and_then(|()| out.flush()) {
                    *failed_w.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.kind());
                    break;
                }
                written_w.fetch_add(lines(&chunk), Ordering::Relaxed);
            }
            let _ = done_tx.send(());
        });
        Self {
            buf: Vec::with_capacity(CHUNK_BYTES),
            tx: Some(tx),
            failed,
            done,
            handed: 0,
            dropped: 0,
            written,
        }
    }

    /// Lines not written so far: dropped at a full queue, or waiting in it (which, once
    /// [`Self::finish`] gave up, will never be).
    pub fn unwritten(&self) -> u64 {
        let waiting = self.handed.saturating_sub(self.written.load(Ordering::Relaxed));
        self.dropped + waiting + lines(&self.buf)
    }

    fn failure(&self) -> Option<io::Error> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).map(io::Error::from)
    }

    /// Hands what is buffered to the thread, or counts its lines as unwritten.
    fn hand_over(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        let n = lines(&chunk);
        let sent = self.tx.as_ref().map(|tx| tx.try_send(chunk));
        match sent {
            Some(Ok(())) => self.handed += n,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                self.dropped += n;
            }
        }
    }

    /// Hands over the rest and waits up to `within` for the thread to write everything; false
    /// if it could not (the reader is not reading): the thread is left behind, and the process
    /// may exit.
    pub fn finish(&mut self, within: Duration) -> bool {
        self.hand_over();
        self.tx = None;
        self.done.recv_timeout(within).is_ok()
    }
}

fn lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

impl Write for QueuedOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.hand_over();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_over();
        self.failure().map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output that never takes a byte: a reader that stopped reading. Says when a write
    /// began (the thread holds a chunk from then on).
    struct Stuck(Arc<Mutex<()>>, mpsc::Sender<()>);

    impl Write for Stuck {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let _ = self.1.send(());
            let _held = self.0.lock(); // (the test holds it until it ends)
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_stops_reading_never_blocks_the_writer_and_what_is_dropped_is_counted() {
        let gate = Arc::new(Mutex::new(()));
        let _closed = gate.lock().expect("gate");
        let (began, writing) = mpsc::channel();
        let mut out = QueuedOut::start(Stuck(Arc::clone(&gate), began));
        out.write_all(b"one line\n").expect("never an error");
        out.flush().expect("never blocks");
        writing.recv_timeout(Duration::from_secs(30)).expect("the thread takes it, and is stuck");
        for _ in 0..(QUEUED_CHUNKS + 9) {
            out.write_all(b"one line\n").expect("never an error");
            out.flush().expect("never blocks");
        }
        // One chunk is in the thread's hands, QUEUED_CHUNKS wait, the rest were dropped: none
        // was written, and every line is counted.
        assert_eq!(out.dropped, 9);
        assert!(!out.finish(Duration::from_millis(100)), "the stuck reader holds it up");
        assert_eq!(out.unwritten(), QUEUED_CHUNKS as u64 + 10);
    }

    #[test]
    fn a_reader_that_is_gone_is_an_error_for_every_later_write() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = QueuedOut::start(Gone);
        out.write_all(b"line\n").expect("queued");
        // (the thread may meet the error before flush looks: then flush reports it already)
        let flushed = out.flush().map_err(|e| e.kind());
        assert!(matches!(flushed, Ok(()) | Err(io::ErrorKind::BrokenPipe)), "{flushed:?}");
        assert!(out.finish(Duration::from_secs(5)), "the thread ends on the error");
        assert_eq!(out.write(b"x").map_err(|e| e.kind()), Err(io::ErrorKind::BrokenPipe));
    }
}
