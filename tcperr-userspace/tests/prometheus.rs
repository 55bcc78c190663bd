//! A real Prometheus (Debian's `prometheus`, the README's set-up installs it) scrapes a real
//! `tcperr serve` every second while scenarios make real errors; Prometheus's HTTP API then
//! answers with exactly the errors the scenarios caused. Needs root. Alone in its test binary:
//! the errors counted are this process's (its scenario threads are named "client" and
//! "server"), and no other test of this binary makes any.
use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod support;
use support::serve::{Served, free_port, get, url_encode};

/// A Prometheus with its own configuration and data directory, killed and removed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    dir: std::path::PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second; waits until it has scraped it.
    fn scraping(target: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tcperr-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("data dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tcperr\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log"))
            .spawn()
            .expect("prometheus (Debian package `prometheus`; ./dev test installs it)");
        let p = Self { child, addr, dir };
        p.wait_for("up{job=\"tcperr\"}", |v| v.get("") == Some(&1.0));
        p
    }

    /// `query`'s result now, as label value (of the one label it is grouped by, "" if none) →
    /// value; None while Prometheus cannot answer.
    fn query(&self, query: &str) -> Option<BTreeMap<String, f64>> {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        // (not listening yet: no answer)
        std::net::TcpStream::connect(&self.addr).ok()?;
        let (_, body) = Some(get(&self.addr, &path)).filter(|(status, _)| *status == 200)?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        Some(
            result
                .iter()
                .map(|r| {
                    // (the scrape's own labels aside)
                    let label = r["metric"]
                        .as_object()
                        .and_then(|m| {
                            m.iter().find(|(k, _)| {
                                !["__name__", "job", "instance"].contains(&k.as_str())
                            })
                        })
                        .and_then(|(_, v)| v.as_str())
                        .unwrap_or("")
                        .to_owned();
                    let value = r["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(-1.0);
                    (label, value)
                })
                .collect(),
        )
    }

    /// Waits (up to 30 s) until `query` answers something `ok`; returns the last answer.
    fn wait_for(
        &self,
        query: &str,
        ok: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(v) = self.query(query) {
                if ok(&v) {
                    return v;
                }
                last = Some(v);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        panic!("Prometheus: {query} is {last:?} after 30 s; its log:\n{log}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn prometheus_scraping_tcperr_serve_counts_exactly_the_errors_the_scenarios_caused() {
    let served = Served::start(&[]);
    let prometheus = Prometheus::scraping(&served.addr);
    // Each scenario makes one failure a program sees (README "Metrics": what counts).
    for scenario in ["broken_pipe", "broken_pipe", "refused", "reset_by_abort", "unanswered"] {
        tcperr_scenarios::run(scenario).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    }
    let want: BTreeMap<String, f64> =
        [("ECONNREFUSED", 1.0), ("ECONNRESET", 1.0), ("EOF", 1.0), ("EPIPE", 2.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
    let query = "sum by (error) (tcperr_socket_errors_total{comm=~\"client|server\"})";
    prometheus.wait_for(query, |v| *v == want);
    // Nothing more arrives later (a scrape or two after the last event), and what was counted
    // was counted once.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(prometheus.query(query), Some(want));
    let lost = prometheus.query("tcperr_events_lost_total").expect("lost");
    assert_eq!(lost.values().copied().collect::<Vec<_>>(), [0.0]);
    let build = prometheus.query("count(tcperr_build_info{version!=\"\",kernel!=\"\"})");
    assert_eq!(build, Some([("".to_owned(), 1.0)].into()));
    // No series carries a pid, an address or a port but a listener's.
    let series = served.metrics();
    for line in series.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains("pid=") && !line.contains("addr"), "{line}");
    }
    let (code, _) = served.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));
}
