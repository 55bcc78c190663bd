//! What `/proc/net/tcp` tells about the calling thread's network namespace.
use std::{io, time::Duration};

/// Waits until the pending connection from local client port `client_port` (a request socket of
/// a listener in the calling thread's network namespace) has had its SYN-ACK retransmitted by
/// timer `times` times (`retrnsmt` in /proc/net/tcp).
pub fn wait_for_synack_retransmits(
    client_port: u16,
    times: u32,
    timeout: Duration,
) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let table = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
        let done = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f
                .get(2)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let syn_recv = f.get(3) == Some(&"03");
            let retrans = f.get(6).and_then(|r| u32::from_str_radix(r, 16).ok()).unwrap_or(0);
            port == Some(client_port) && syn_recv && retrans >= times
        });
        if done {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no SYN-ACK retransmission seen"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the calling thread's network namespace holds no socket of local port `local` and
/// remote port `remote` any more (what an RST sent to it does: the socket is unhashed at once,
/// when the RST is processed — which, on a loaded or emulated CPU, can be after the sender's
/// close() returned).
pub fn wait_until_gone(local: u16, remote: u16, timeout: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let port = |a: Option<&&str>| {
        a.and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    loop {
        let table = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
        let present = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            port(f.get(1)) == Some(local) && port(f.get(2)) == Some(remote)
        });
        if !present {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the socket is still there"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
