//! Reading the kernel's files (BTF, tracepoint formats): regular files only, opened without
//! blocking, at most a bound's worth of bytes. Something else mounted over them (a FIFO,
//! `/dev/zero`) is an error, not a hang or a read without end.
use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

/// The kernel's BTF is a few MiB (Debian's 6.12: 6 MiB); a tracepoint format a few KiB.
pub const MAX_BTF: u64 = 64 << 20;
pub const MAX_FORMAT: u64 = 1 << 20;

/// The contents of `path`, a regular file of at most `max` bytes.
pub fn read(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    // (O_NONBLOCK: opening a FIFO for reading would wait for a writer)
    let file = File::options().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut data = Vec::new();
    file.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(data)
}

/// As [`read`], as text.
pub fn read_to_string(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read(path, max)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_a_device_and_an_oversized_file_are_errors_not_hangs() {
        let dir = std::env::temp_dir().join(format!("tcperr-kernel-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read(&fifo, MAX_FORMAT).is_err(), "a FIFO without a writer");
        assert!(read(Path::new("/dev/zero"), MAX_FORMAT).is_err());
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; 11]).unwrap();
        assert!(read(&big, 10).is_err());
        assert_eq!(read(&big, 11).unwrap().len(), 11);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
