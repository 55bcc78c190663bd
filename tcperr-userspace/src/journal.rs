//! The journal: explained events on disk, one JSON object per line (the objects `trace --json`
//! prints), for `tcperr query` to read back, the agent running or not.
//!
//! A directory of append-only segment files, `events-<sequence>.jsonl`, the sequence number
//! zero-padded so that names sort in writing order. Only whole lines reach a file: [`Journal`]
//! buffers what it is given and writes the complete lines at each [`Journal::flush`], each batch
//! with one `write(2)` to a file opened with `O_APPEND`, never a line split across two files. A
//! segment is closed once the next batch would take it past [`SEGMENTS`]th of the limit, and the
//! oldest segments are deleted before a write would take the directory's total past the limit,
//! so that the total never exceeds it.
//!
//! Crashes: a process killed (`kill -9`, a panic) loses what it had not yet flushed (at most one
//! batch, about a second) and at most the line a write was in the middle of, which is then the
//! last line of its segment, without its newline: the reader skips and counts it, and the next
//! [`Journal::open`] starts a new segment rather than appending to it. Older lines are never
//! rewritten. Nothing is fsync'd: what the kernel had not yet written back when the *machine*
//! lost power (by default up to about 30 s, `vm.dirty_expire_centisecs`) is lost, and a
//! segment's end may then hold a torn line or zeroes, which the reader skips and counts as
//! unreadable.
//!
//! One writer at a time: [`Journal::open`] takes an exclusive `flock` on `DIR/.lock` and
//! refuses a directory another process is journaling to.
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// Where `tcperr serve` keeps its journal, and where `tcperr query` reads it, by default.
pub const DEFAULT_DIR: &str = "/var/lib/tcperr";
/// The journal's default size limit: 256 MiB, about 100,000 explained events.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// The smallest limit [`Journal::open`] takes.
pub const MIN_MAX_BYTES: u64 = 64 << 10;
/// The journal is cut into segments of at most this fraction of the limit: deleting the oldest
/// frees an eighth of it at a time.
pub const SEGMENTS: u64 = 8;
/// Lines longer than this are skipped by the reader (counted as unreadable): an event's line is
/// a few KiB, and a file of garbage without newlines must not be read into memory whole.
pub const MAX_LINE: usize = 1 << 20;
/// [`Journal::write`] writes out whole lines itself once this much is buffered.
const BUFFER_LIMIT: usize = 4 << 20;

/// Parses a size limit for the journal: bytes, or with K, M, G or T (binary: 256M is 256 MiB),
/// at least [`MIN_MAX_BYTES`] (for `--journal-max-bytes`; an error is one line).
pub fn parse_max_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        Some(b'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 =
        digits.parse().map_err(|_| format!("{s:?} is not a size (65536, 64K, 256M, 1G)"))?;
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < MIN_MAX_BYTES {
        return Err(format!("{s:?} is too small: a journal takes at least 64K"));
    }
    Ok(bytes)
}

const PREFIX: &str = "events-";
const SUFFIX: &str = ".jsonl";

/// The file name of segment `seq`.
fn segment_name(seq: u64) -> String {
    format!("{PREFIX}{seq:012}{SUFFIX}")
}

/// The sequence number of a segment's file name; None for any other file.
fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first: (sequence number, path).
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(segment_seq) {
            found.push((seq, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(found)
}

/// A journal segment and the bytes it holds.
#[derive(Debug)]
struct Segment {
    seq: u64,
    len: u64,
}

/// What a [`Journal`] has done since it was opened (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes written to segment files.
    pub bytes_written: u64,
    /// Lines written.
    pub lines_written: u64,
    /// Segments started.
    pub rotations: u64,
    /// Segments deleted to stay within the limit.
    pub segments_deleted: u64,
    /// Writes (and deletions) that failed; the lines of a failed write are dropped.
    pub write_errors: u64,
    /// Lines not written: of a failed write, or longer than the whole limit.
    pub lines_dropped: u64,
}

/// The writing end of a journal directory. Written to like stdout (`output::write(&mut
/// journal, Format::Json, &report)`); whole lines reach the files at [`Journal::flush`].
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first; the last one is `current`'s when that is open.
    segments: VecDeque<Segment>,
    /// Bytes in all segments.
    total: u64,
    /// The newest segment, open for appending; None until the next write starts one.
    current: Option<File>,
    /// The next segment's sequence number.
    next_seq: u64,
    /// What was written to the journal but not yet flushed (the last line may be partial).
    pending: Vec<u8>,
    counters: Counters,
    /// Held for the journal's life: the exclusive lock on `DIR/.lock`.
    _lock: File,
}

impl Journal {
    /// Opens the journal in `dir` (created, mode 0750, if missing) with a size limit of
    /// `max_bytes` (at least [`MIN_MAX_BYTES`]): deletes the oldest segments if the directory
    /// holds more (a lowered limit), and continues the newest segment if it has room and ends
    /// in a whole line, else starts a new one. Fails if another process holds the journal.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Journal> {
        if max_bytes < MIN_MAX_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a journal's size limit is at least {MIN_MAX_BYTES} bytes"),
            ));
        }
        fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
        let lock = lock(dir)?;
        let mut segs = VecDeque::new();
        let mut total = 0;
        for (seq, path) in segments(dir)? {
            let len = fs::metadata(&path)?.len();
            total += len;
            segs.push_back(Segment { seq, len });
        }
        let next_seq = segs.back().map_or(1, |s| s.seq + 1);
        let mut journal = Journal {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / SEGMENTS).max(1),
            segments: segs,
            total,
            current: None,
            next_seq,
            pending: Vec::new(),
            counters: Counters::default(),
            _lock: lock,
        };
        while journal.total > max_bytes && !journal.segments.is_empty() {
            journal.delete_oldest();
        }
        journal.continue_newest()?;
        Ok(journal)
    }

    /// Reopens the newest segment for appending when it has room and ends with a newline (a
    /// segment cut short by a crash stays as it is: its torn line stays its last).
    fn continue_newest(&mut self) -> io::Result<()> {
        let Some(newest) = self.segments.back() else { return Ok(()) };
        if newest.len >= self.segment_bytes {
            return Ok(());
        }
        let path = self.dir.join(segment_name(newest.seq));
        let mut file = OpenOptions::new().read(true).append(true).open(&path)?;
        if newest.len > 0 {
            use std::io::{Seek, SeekFrom};
            let mut last = [0u8];
            file.seek(SeekFrom::Start(newest.len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                return Ok(());
            }
        }
        self.current = Some(file);
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size limit.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes the segments hold now (never more than the limit).
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Bytes written since the journal was opened.
    pub fn bytes_written(&self) -> u64 {
        self.counters.bytes_written
    }

    /// Everything counted since the journal was opened.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Deletes the oldest segment (closing it first if it is the one being written).
    fn delete_oldest(&mut self) {
        let Some(oldest) = self.segments.pop_front() else { return };
        if self.segments.is_empty() {
            self.current = None;
        }
        self.total -= oldest.len;
        match fs::remove_file(self.dir.join(segment_name(oldest.seq))) {
            Ok(()) => self.counters.segments_deleted += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                self.counters.write_errors += 1;
                log::warn!("journal: cannot delete segment {}: {e}", oldest.seq);
            }
        }
    }

    /// Starts a new segment.
    fn rotate(&mut self) -> io::Result<()> {
        self.current = None;
        let seq = self.next_seq;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o640)
            .open(self.dir.join(segment_name(seq)))?;
        self.next_seq += 1;
        self.segments.push_back(Segment { seq, len: 0 });
        self.counters.rotations += 1;
        self.current = Some(file);
        Ok(())
    }

    /// Appends `chunk` (whole lines; at most a segment's worth unless it is one line) to the
    /// current segment, or to a new one when it would not fit, deleting the oldest segments
    /// first as far as the limit needs.
    fn append(&mut self, chunk: &[u8], lines: u64) -> io::Result<()> {
        let len = chunk.len() as u64;
        let newest = self.segments.back().map_or(0, |s| s.len);
        if self.current.is_none() || (newest > 0 && newest + len > self.segment_bytes) {
            self.rotate()?;
        }
        let used = self.segments.back().map_or(0, |s| s.len);
        while self.total + len > self.max_bytes && self.segments.len() > 1 {
            self.delete_oldest();
        }
        if self.total + len > self.max_bytes {
            // (one line longer than the whole limit)
            self.counters.lines_dropped += lines;
            return Ok(());
        }
        let Some(file) = self.current.as_mut() else { return Ok(()) };
        let res = file.write_all(chunk);
        // (what a failed write left in the file is counted as written: it is there)
        let written = match &res {
            Ok(()) => len,
            Err(_) => file.metadata().map_or(len, |m| m.len().saturating_sub(used)),
        };
        if let Some(seg) = self.segments.back_mut() {
            seg.len += written;
        }
        self.total += written;
        self.counters.bytes_written += written;
        match res {
            Ok(()) => {
                self.counters.lines_written += lines;
                Ok(())
            }
            Err(e) => {
                // A new segment for what follows: a torn line stays the last of its segment.
                self.current = None;
                Err(e)
            }
        }
    }

    /// Writes the whole lines buffered, batched into as few writes as the segments allow.
    fn write_lines(&mut self) -> io::Result<()> {
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else { return Ok(()) };
        let whole: Vec<u8> = self.pending.drain(..=end).collect();
        let mut first_err = None;
        let mut start = 0;
        while start < whole.len() {
            let used = match self.current {
                Some(_) => self.segments.back().map_or(0, |s| s.len),
                None => 0,
            };
            let line_end = |from: usize| {
                whole[from..].iter().position(|&b| b == b'\n').map_or(whole.len(), |i| from + i + 1)
            };
            let mut end = line_end(start);
            let mut lines = 1;
            // Room left: this segment's, or a fresh one's when the first line does not fit.
            let room = if used > 0 && used + (end - start) as u64 > self.segment_bytes {
                self.segment_bytes
            } else {
                self.segment_bytes.saturating_sub(used)
            };
            while end < whole.len() && ((line_end(end) - start) as u64) <= room {
                end = line_end(end);
                lines += 1;
            }
            if let Err(e) = self.append(&whole[start..end], lines) {
                self.counters.write_errors += 1;
                self.counters.lines_dropped += lines;
                first_err.get_or_insert(e);
            }
            start = end;
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Write for Journal {
    /// Buffers `buf` (any part of a line); writes out whole lines once more than a few MiB are
    /// buffered, else at [`Journal::flush`].
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() > BUFFER_LIMIT {
            self.write_lines()?;
        }
        Ok(buf.len())
    }

    /// Writes every whole line buffered (a partial last line waits for its end). A failed write
    /// drops its lines (counted) and returns the error; the journal goes on with the next.
    fn flush(&mut self) -> io::Result<()> {
        self.write_lines()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.write_lines();
    }
}

/// Takes the exclusive lock on `DIR/.lock`, or says which process holds the journal.
fn lock(dir: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".lock");
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).mode(0o640).open(&path)?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another process is writing the journal {} (it holds {})",
                    dir.display(),
                    path.display()
                ),
            ));
        }
        return Err(e);
    }
    Ok(file)
}

/// How far a segment's modification time may trail the times of the events in it (the events'
/// wall-clock times come from the kernel's monotonic clock and an offset taken at start).
const MTIME_SLACK: Duration = Duration::from_secs(60);

/// The reading end of a journal: its lines, oldest first, across its segments. Lines that are
/// not whole are skipped and counted.
#[derive(Debug)]
pub struct Reader {
    segments: std::vec::IntoIter<(u64, PathBuf)>,
    current: Option<BufReader<File>>,
    /// Lines cut short: the last line of a segment without its newline (a write that a crash or
    /// `kill -9` cut off, or one being written right now).
    pub torn: u64,
    /// Lines longer than [`MAX_LINE`], skipped.
    pub too_long: u64,
    /// Segments read (or being read).
    pub segments_read: u64,
}

/// Reads the journal in `dir`: an error if the directory cannot be read (missing, not a
/// directory, no permission).
pub fn read(dir: &Path) -> io::Result<Reader> {
    Ok(Reader {
        segments: segments(dir)?.into_iter(),
        current: None,
        torn: 0,
        too_long: 0,
        segments_read: 0,
    })
}

impl Reader {
    /// Skips the segments last written before `t` (less a minute of slack): none of their
    /// events can be at or after `t`.
    pub fn skip_before(mut self, t: SystemTime) -> Self {
        let cut = t.checked_sub(MTIME_SLACK).unwrap_or(SystemTime::UNIX_EPOCH);
        let kept: Vec<(u64, PathBuf)> = self
            .segments
            .filter(|(_, path)| {
                fs::metadata(path).and_then(|m| m.modified()).map_or(true, |m| m >= cut)
            })
            .collect();
        self.segments = kept.into_iter();
        self
    }

    /// The next line of the current segment (its newline removed), None at its end.
    fn line(
        file: &mut BufReader<File>,
        torn: &mut u64,
        too_long: &mut u64,
    ) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let mut skipping = false;
        loop {
            let buf = file.fill_buf()?;
            if buf.is_empty() {
                // The segment ends without a newline: a torn line (or nothing).
                if !line.is_empty() || skipping {
                    *torn += 1;
                }
                return Ok(None);
            }
            let (part, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if !skipping {
                if line.len() + part.len() > MAX_LINE {
                    skipping = true;
                    line = Vec::new();
                } else {
                    line.extend_from_slice(part);
                }
            }
            let used = done.unwrap_or(buf.len());
            file.consume(used);
            if done.is_some() {
                if skipping {
                    *too_long += 1;
                    skipping = false;
                    continue;
                }
                return Ok(Some(line));
            }
        }
    }
}

impl Iterator for Reader {
    /// A whole line (without its newline), or why a segment could not be read.
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(file) = self.current.as_mut() {
                match Self::line(file, &mut self.torn, &mut self.too_long) {
                    Ok(Some(line)) => return Some(Ok(line)),
                    Ok(None) => self.current = None,
                    Err(e) => {
                        self.current = None;
                        return Some(Err(e));
                    }
                }
            }
            let (_, path) = self.segments.next()?;
            match File::open(&path) {
                Ok(f) => {
                    self.segments_read += 1;
                    self.current = Some(BufReader::with_capacity(64 << 10, f));
                }
                // (deleted by the writer since the directory was listed: rotated away)
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Some(Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("tcperr-journal-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Line `i`: a JSON object of about 200 bytes that says its number.
    fn line(i: u64) -> String {
        format!("{{\"n\":{i},\"explanation\":\"{}\"}}\n", "x".repeat(180))
    }

    /// The bytes the segment files in `dir` hold, and how many there are.
    fn on_disk(dir: &Path) -> (u64, usize) {
        let segs = segments(dir).unwrap();
        (segs.iter().map(|(_, p)| fs::metadata(p).unwrap().len()).sum(), segs.len())
    }

    /// Every whole line of the journal, and the reader's counts.
    fn read_all(dir: &Path) -> (Vec<String>, Reader) {
        let mut reader = read(dir).unwrap();
        let lines = reader
            .by_ref()
            .map(|l| String::from_utf8(l.unwrap()).unwrap())
            .collect::<Vec<String>>();
        (lines, reader)
    }

    fn numbers(lines: &[String]) -> Vec<u64> {
        lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["n"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn a_journal_at_its_limit_stays_under_it_and_drops_its_oldest_lines_first() {
        let tmp = TempDir::new("limit");
        let max = MIN_MAX_BYTES;
        let mut j = Journal::open(&tmp.0, max).unwrap();
        for i in 0..3000 {
            j.write_all(line(i).as_bytes()).unwrap();
            if i % 7 == 0 {
                j.flush().unwrap();
                let (bytes, _) = on_disk(&tmp.0);
                assert!(bytes <= max, "{bytes} bytes on disk after line {i}, limit {max}");
                assert_eq!(bytes, j.total_bytes());
            }
        }
        j.flush().unwrap();
        let (bytes, files) = on_disk(&tmp.0);
        assert!(bytes <= max);
        // The space is used: all but at most one segment's worth of it.
        assert!(bytes >= max - max / SEGMENTS - 200, "{bytes} of {max}");
        assert!(files <= SEGMENTS as usize + 1, "{files} segments");
        let c = j.counters();
        assert!(c.segments_deleted > 0 && c.rotations > SEGMENTS, "{c:?}");
        assert_eq!((c.lines_written, c.write_errors, c.lines_dropped), (3000, 0, 0));
        let (lines, reader) = read_all(&tmp.0);
        assert_eq!((reader.torn, reader.too_long), (0, 0));
        // What is left is the newest lines, in order, up to the last one written.
        let n = numbers(&lines);
        let first = n[0];
        assert!(first > 0, "the oldest went first");
        assert_eq!(n, (first..3000).collect::<Vec<u64>>());
    }

    #[test]
    fn a_line_written_in_pieces_reaches_a_file_only_whole() {
        let tmp = TempDir::new("pieces");
        let mut j = Journal::open(&tmp.0, MIN_MAX_BYTES).unwrap();
        let l = line(1);
        let (a, rest) = l.as_bytes().split_at(10);
        let (b, c) = rest.split_at(50);
        j.write_all(a).unwrap();
        j.flush().unwrap();
        assert_eq!(on_disk(&tmp.0).0, 0, "no part of a line is written");
        j.write_all(b).unwrap();
        j.flush().unwrap();
        assert_eq!(on_disk(&tmp.0).0, 0);
        // The rest of it and the start of the next one.
        j.write_all(c).unwrap();
        j.write_all(&line(2).as_bytes()[..20]).unwrap();
        j.flush().unwrap();
        assert_eq!(on_disk(&tmp.0).0, l.len() as u64);
        assert_eq!(numbers(&read_all(&tmp.0).0), [1]);
    }

    #[test]
    fn a_batch_is_never_split_across_segments_mid_line() {
        // Lines of varied lengths, flushed in batches of varied sizes, across many rotations:
        // every segment holds whole lines only.
        let tmp = TempDir::new("split");
        let mut j = Journal::open(&tmp.0, MIN_MAX_BYTES).unwrap();
        let mut written = 0u64;
        for batch in 0..300u64 {
            for _ in 0..(batch % 13) {
                let pad = "y".repeat((written * 37 % 700) as usize);
                j.write_all(format!("{{\"n\":{written},\"p\":\"{pad}\"}}\n").as_bytes()).unwrap();
                written += 1;
            }
            j.flush().unwrap();
        }
        for (_, path) in segments(&tmp.0).unwrap() {
            let bytes = fs::read(&path).unwrap();
            assert_eq!(bytes.last(), Some(&b'\n'), "{}", path.display());
            for l in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                serde_json::from_slice::<serde_json::Value>(l).expect("a whole line");
            }
        }
        let n = numbers(&read_all(&tmp.0).0);
        assert_eq!(n.last(), Some(&(written - 1)));
        assert_eq!(n, (n[0]..written).collect::<Vec<u64>>());
    }

    #[test]
    fn a_restart_continues_the_newest_segment_after_its_last_line() {
        let tmp = TempDir::new("restart");
        {
            let mut j = Journal::open(&tmp.0, DEFAULT_MAX_BYTES).unwrap();
            for i in 0..10 {
                j.write_all(line(i).as_bytes()).unwrap();
            }
            j.flush().unwrap();
        }
        let mut j = Journal::open(&tmp.0, DEFAULT_MAX_BYTES).unwrap();
        for i in 10..20 {
            j.write_all(line(i).as_bytes()).unwrap();
        }
        j.flush().unwrap();
        assert_eq!(on_disk(&tmp.0).1, 1, "one segment, continued");
        assert_eq!(j.counters().rotations, 0);
        assert_eq!(numbers(&read_all(&tmp.0).0), (0..20).collect::<Vec<u64>>());
    }

    #[test]
    fn a_lowered_limit_deletes_the_oldest_segments_at_open() {
        let tmp = TempDir::new("lowered");
        let mut j = Journal::open(&tmp.0, 4 * MIN_MAX_BYTES).unwrap();
        for i in 0..2000 {
            j.write_all(line(i).as_bytes()).unwrap();
            j.flush().unwrap();
        }
        drop(j);
        assert!(on_disk(&tmp.0).0 > MIN_MAX_BYTES);
        let j = Journal::open(&tmp.0, MIN_MAX_BYTES).unwrap();
        assert!(on_disk(&tmp.0).0 <= MIN_MAX_BYTES);
        drop(j);
        let n = numbers(&read_all(&tmp.0).0);
        assert_eq!(n, (n[0]..2000).collect::<Vec<u64>>(), "the newest kept");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_counted_and_the_next_writer_starts_a_new_segment() {
        let tmp = TempDir::new("torn");
        {
            let mut j = Journal::open(&tmp.0, DEFAULT_MAX_BYTES).unwrap();
            for i in 0..5 {
                j.write_all(line(i).as_bytes()).unwrap();
            }
            j.flush().unwrap();
        }
        // What a kill -9 in the middle of a write leaves: the start of a line.
        let (_, newest) = segments(&tmp.0).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&newest).unwrap();
        f.write_all(&line(5).as_bytes()[..77]).unwrap();
        drop(f);
        let (lines, reader) = read_all(&tmp.0);
        assert_eq!(numbers(&lines), [0, 1, 2, 3, 4]);
        assert_eq!(reader.torn, 1);
        // The restarted writer leaves the torn line where it is, the last of its segment.
        let mut j = Journal::open(&tmp.0, DEFAULT_MAX_BYTES).unwrap();
        j.write_all(line(6).as_bytes()).unwrap();
        j.flush().unwrap();
        assert_eq!(on_disk(&tmp.0).1, 2);
        let (lines, reader) = read_all(&tmp.0);
        assert_eq!(numbers(&lines), [0, 1, 2, 3, 4, 6]);
        assert_eq!(reader.torn, 1);
    }

    #[test]
    fn garbage_zeroes_and_overlong_lines_are_read_without_panic() {
        let tmp = TempDir::new("garbage");
        fs::create_dir_all(&tmp.0).unwrap();
        let mut bytes = line(1).into_bytes();
        bytes.extend_from_slice(b"\x00\x00\x00\xff\xfe not json\n");
        bytes.extend(std::iter::repeat_n(b'z', MAX_LINE + 10));
        bytes.push(b'\n');
        bytes.extend_from_slice(line(2).as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, 4096)); // a power loss's zeroes, no newline
        fs::write(tmp.0.join(segment_name(1)), &bytes).unwrap();
        // Pseudo-random bytes in another segment: lines of whatever they hold.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(tmp.0.join(segment_name(2)), &noise).unwrap();
        fs::write(tmp.0.join("notes.txt"), "not a segment\n").unwrap();
        let (lines, reader) = {
            let mut reader = read(&tmp.0).unwrap();
            let lines: Vec<Vec<u8>> = reader.by_ref().map(Result::unwrap).collect();
            (lines, reader)
        };
        assert_eq!(lines[0], line(1).trim_end().as_bytes());
        assert_eq!(lines[1], b"\x00\x00\x00\xff\xfe not json");
        assert_eq!(lines[2], line(2).trim_end().as_bytes(), "the overlong line is skipped");
        assert_eq!(reader.too_long, 1);
        assert_eq!(reader.torn, 2, "the zeroes, and the noise's last line");
        assert_eq!(reader.segments_read, 2);
        let newlines = noise.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines.len(), 3 + newlines);
    }

    #[test]
    fn a_second_writer_and_a_limit_below_the_minimum_are_refused() {
        let tmp = TempDir::new("second");
        let _first = Journal::open(&tmp.0, DEFAULT_MAX_BYTES).unwrap();
        let e = Journal::open(&tmp.0, DEFAULT_MAX_BYTES).unwrap_err();
        assert!(e.to_string().contains("another process"), "{e}");
        let e = Journal::open(&tmp.0.join("sub"), MIN_MAX_BYTES - 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_line_longer_than_the_whole_limit_is_dropped_and_counted() {
        let tmp = TempDir::new("huge");
        let mut j = Journal::open(&tmp.0, MIN_MAX_BYTES).unwrap();
        j.write_all(line(1).as_bytes()).unwrap();
        let huge = format!("{{\"p\":\"{}\"}}\n", "h".repeat(MIN_MAX_BYTES as usize));
        j.write_all(huge.as_bytes()).unwrap();
        j.write_all(line(2).as_bytes()).unwrap();
        j.flush().unwrap();
        assert_eq!(j.counters().lines_dropped, 1);
        assert!(on_disk(&tmp.0).0 <= MIN_MAX_BYTES);
        assert_eq!(numbers(&read_all(&tmp.0).0).last(), Some(&2));
    }

    #[test]
    fn reading_since_a_time_skips_the_segments_last_written_well_before_it() {
        let tmp = TempDir::new("mtime");
        fs::create_dir_all(&tmp.0).unwrap();
        for seq in 1..=3 {
            fs::write(tmp.0.join(segment_name(seq)), line(seq)).unwrap();
        }
        let now = SystemTime::now();
        let two_hours_ago = now - Duration::from_secs(7200);
        let old = File::options().append(true).open(tmp.0.join(segment_name(1))).unwrap();
        old.set_modified(two_hours_ago).unwrap();
        let lines = |since| {
            let reader = read(&tmp.0).unwrap().skip_before(since);
            numbers(&reader.map(|l| String::from_utf8(l.unwrap()).unwrap()).collect::<Vec<_>>())
        };
        assert_eq!(lines(now - Duration::from_secs(3600)), [2, 3]);
        // Within the slack of the segment's time: read (its events may be a little later).
        assert_eq!(lines(two_hours_ago + MTIME_SLACK / 2), [1, 2, 3]);
        assert_eq!(lines(two_hours_ago + MTIME_SLACK + Duration::from_secs(1)), [2, 3]);
    }

    #[test]
    fn journal_size_limits_take_binary_suffixes_and_a_minimum() {
        assert_eq!(parse_max_bytes("256M"), Ok(DEFAULT_MAX_BYTES));
        assert_eq!(parse_max_bytes("64k"), Ok(MIN_MAX_BYTES));
        assert_eq!(parse_max_bytes("1T"), Ok(1 << 40));
        assert_eq!(parse_max_bytes("100000"), Ok(100_000));
        assert!(parse_max_bytes("4K").unwrap_err().contains("too small"));
        assert!(parse_max_bytes("lots").unwrap_err().contains("not a size"));
        assert!(parse_max_bytes("99999999999T").unwrap_err().contains("too large"));
        assert!(parse_max_bytes("").is_err());
        assert!(parse_max_bytes("-1M").is_err());
    }

    #[test]
    fn a_missing_journal_cannot_be_read() {
        let e = read(Path::new("/nonexistent/tcperr-journal")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
