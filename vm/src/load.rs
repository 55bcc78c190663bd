//! Request/response load for the benchmarks: a 1-byte ping-pong over one loopback connection,
//! every send and receive succeeding (tcperr's hot path).
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use crate::loopback;

/// Round trips (each: two sends, two receives) until `rounds` are done or `duration` passed;
/// returns (round trips, elapsed).
pub fn ping_pong(rounds: u64, duration: Duration) -> std::io::Result<(u64, Duration)> {
    let listener = TcpListener::bind(loopback(false))?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut b = [7u8; 1];
    let start = Instant::now();
    let mut n = 0;
    while n < rounds && (n % 1024 != 0 || start.elapsed() < duration) {
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        n += 1;
    }
    let elapsed = start.elapsed();
    drop(c);
    echo.join().map_err(|_| std::io::Error::other("echo thread panicked"))??;
    Ok((n, elapsed))
}
