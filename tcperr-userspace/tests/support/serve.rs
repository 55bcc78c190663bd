//! A `tcperr serve` started as its own process, and plain HTTP GETs against it (and against
//! Prometheus) without an HTTP client crate: `Connection: close`, the body is the rest.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");

/// A running `tcperr serve`, killed when dropped.
pub struct Served {
    pub child: Child,
    /// The address it serves metrics on.
    pub addr: String,
    /// Its stderr lines after the one naming the address.
    pub stderr: mpsc::Receiver<String>,
}

impl Served {
    /// Starts `tcperr serve --listen 127.0.0.1:0 ARGS` and waits until it says where it serves.
    /// Without a journal unless ARGS give one (tests never write the host's /var/lib/tcperr).
    pub fn start(args: &[&str]) -> Self {
        let journal = args.iter().any(|a| a.starts_with("--journal") || *a == "--no-journal");
        let mut child = Command::new(TCPERR)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(if journal { &[][..] } else { &["--no-journal"][..] })
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcperr serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(at) = line.split("serving metrics on http://").nth(1) {
                        let addr = at.trim_end_matches("/metrics").to_owned();
                        return Self { child, addr, stderr: rx };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("tcperr serve did not start: {seen:#?}");
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The metrics page.
    pub fn metrics(&self) -> String {
        let (status, body) = get(&self.addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The value of the sample line that starts with `series` (name and labels, exactly as
    /// encoded), if there is one.
    pub fn sample(&self, series: &str) -> Option<f64> {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.trim().parse().expect("a number"))
    }

    /// Sends `signal`, waits for the exit; returns its code and the rest of its stderr.
    pub fn stop(mut self, signal: i32) -> (Option<i32>, Vec<String>) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = self.child.wait().expect("wait");
        // (its last lines are still on their way through the reader thread: until the pipe's end)
        let mut rest = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            rest.push(line);
        }
        (status.code(), rest)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `addr` (HTTP/1.1, `Connection: close`): the status and the body.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read the response");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    // (a chunked body, as Prometheus sends large answers: the chunks joined)
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `s` with everything but unreserved URL characters percent-encoded (a query parameter).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A port free on 127.0.0.1 now (the kernel's choice for an unbound listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind").port()
}
