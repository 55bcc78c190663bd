//! `tcperr serve` as its own process: metrics over HTTP while it runs, a clean exit on SIGTERM
//! and SIGINT with nothing left attached, exit 2 and one line when it cannot start. Needs root.
use std::{process::Command, time::Duration};

use tcperr_scenarios::drive;

mod support;
use support::serve::{Served, TCPERR, get};

#[test]
fn serve_counts_a_broken_pipe_and_detaches_on_sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let served = Served::start(&[]);
        let ids = drive::prog_ids(served.pid());
        assert!(ids.len() >= 7, "tcperr serve holds its programs while it runs: {ids:?}");
        let series = "tcperr_socket_errors_total{error=\"EPIPE\",cause=\"write_after_peer_close\",comm=\"client\"}";
        let before = served.sample(series).unwrap_or(0.0);
        tcperr_scenarios::run("broken_pipe").expect("broken_pipe");
        // (read once a second at the latest)
        let mut now = before;
        for _ in 0..30 {
            now = served.sample(series).unwrap_or(0.0);
            if now > before {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(now - before, 1.0, "one EPIPE counted");
        // Every source says which hook serves it.
        let text = served.metrics();
        assert!(
            text.contains(
                "tcperr_source{source=\"rst_received\",hook=\"tp_btf tcp_receive_reset\"} 1"
            ),
            "{text}"
        );
        let (code, stderr) = served.stop(signal);
        assert_eq!(code, Some(0), "exit after signal {signal}: {stderr:#?}");
        assert!(stderr.iter().any(|l| l.contains("stopped:")), "{stderr:#?}");
        // (the kernel frees programs after an RCU grace period)
        let mut left = drive::still_loaded(&ids);
        for _ in 0..20 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = drive::still_loaded(&ids);
        }
        assert_eq!(left, Vec::<u32>::new(), "programs left loaded");
    }
}

#[test]
fn unknown_paths_are_404_and_the_root_points_to_metrics() {
    let served = Served::start(&[]);
    assert_eq!(get(&served.addr, "/nope").0, 404);
    let (status, body) = get(&served.addr, "/");
    assert_eq!((status, body.as_str()), (200, "tcperr serve: metrics at /metrics\n"));
}

#[test]
fn an_address_in_use_gives_exit_2_and_one_line_before_anything_is_attached() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(TCPERR).args(["serve", "--listen", &addr]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [format!("tcperr: cannot listen on {addr}: Address already in use (os error 98)")]
    );
    let out = Command::new(TCPERR).args(["serve", "--listen", "localhost"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "not an address");
}
