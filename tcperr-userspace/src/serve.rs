//! `tcperr serve`: the always-on agent. The hooks, correlation and explanations of `trace`,
//! counted into Prometheus metrics served over HTTP (`GET /metrics`), with no terminal: its own
//! lines go to stderr through `log` (`RUST_LOG`). Stops on SIGTERM/SIGINT/SIGHUP, detaching
//! everything.
use std::{
    convert::Infallible,
    io::{self, Write},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::{
    correlate::Correlator,
    filter::Filter,
    journal::Journal,
    load::{Config, StartError, Tracer},
    metrics::{self, Metrics},
    output::Format,
    summary::Summary,
    trace::{self, Error, Options, Signals, Sink, Stats},
};

/// Where metrics are served unless `--listen` says otherwise (README "tcperr serve").
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9977";

/// The OpenMetrics text format's media type (Prometheus asks for it first).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct ServeOptions {
    pub listen: SocketAddr,
    /// The journal's directory and size limit; None: no journal.
    pub journal: Option<(PathBuf, u64)>,
    /// Where containers' and pods' names are read (as `trace`'s).
    pub names: crate::container::NameSources,
    pub config: Config,
}

pub async fn run(opts: ServeOptions) -> Result<Stats, Error> {
    // (the address first: a port in use is found before anything is attached)
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::Start(StartError(format!("cannot listen on {}: {e}", opts.listen))))?;
    let local = listener.local_addr().map_err(Error::Io)?;
    let mut journal = match &opts.journal {
        None => None,
        Some((dir, max)) => Some(Journal::open(dir, *max).map_err(|e| {
            Error::Start(StartError(format!("cannot open the journal {}: {e}", dir.display())))
        })?),
    };
    let mut tracer = Tracer::start(&opts.config).map_err(Error::Start)?;
    let metrics = Metrics::new(
        env!("CARGO_PKG_VERSION"),
        &kernel_release(),
        &tracer.selected,
        journal.is_some(),
    );
    let mut metrics = metrics.with_cgroup_root(crate::container::unified_mount());
    tokio::spawn(serve_http(listener, metrics.registry()));
    let mut signals = Signals::register().map_err(Error::Io)?;
    log::info!("hooks: {}", tracer.hook_summary().join(", "));
    if let Some(j) = &journal {
        log::info!("journal: {} (at most {} bytes)", j.dir().display(), j.max_bytes());
    }
    log::info!("serving metrics on http://{local}/metrics");
    // (the events as `trace --json` prints them, storms folded: what the journal keeps)
    let topts = Options {
        format: Format::Json,
        filter: Filter::default(),
        all: false,
        every: false,
        summary_only: false,
        debug_fields: false,
        utc: true,
        names: opts.names.clone(),
        config: opts.config,
    };
    let mut correlator = Correlator::new(tracer.plan.rst_reasons.clone(), false)
        .with_cgroups(crate::container::Cgroups::host(opts.names.clone()), Default::default());
    let mut out = Out { journal: journal.as_mut(), counted: metrics.journal(), failing: false };
    let (mut summary, mut stats, mut write_err) = (Summary::default(), Stats::default(), None);
    let mut sink = Sink::new(&mut correlator, &topts, &mut summary, &mut stats, &mut write_err)
        .with_metrics(&mut metrics);
    trace::follow(&mut tracer, &mut sink, &mut signals, &mut out).await?;
    tracer.drain(|ev| sink.queue(ev, &mut out));
    sink.release(u64::MAX, &mut out);
    sink.flush_folded(&mut out);
    sink.flush(&mut out);
    stats.lost = tracer.lost();

    drop(tracer); // detach before saying so
    log::info!(
        "stopped: {} events seen, {} lost, {} undecodable",
        stats.events_seen,
        stats.lost,
        stats.undecodable
    );
    Ok(stats)
}

/// Where the serve loop's JSON lines go: the journal, whose failures (a full disk) are logged
/// and counted, never fatal: the metrics go on.
struct Out<'a> {
    journal: Option<&'a mut Journal>,
    counted: Option<metrics::JournalCounters>,
    /// A failure was logged and no write has succeeded since (one line per outage).
    failing: bool,
}

impl Write for Out<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.journal {
            Some(j) => j.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(j) = &mut self.journal else { return Ok(()) };
        match j.flush() {
            Ok(()) if self.failing => {
                log::info!("journal: writing again");
                self.failing = false;
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                log::warn!("journal: {e}; events are dropped (counted) until it can be written");
                self.failing = true;
            }
            Err(_) => {}
        }
        if let Some(c) = &mut self.counted {
            c.update(&j.counters());
        }
        Ok(())
    }
}

/// Accepts scrapes until the runtime stops; one task per connection.
async fn serve_http(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // (out of files, for one: the next accept may succeed)
                log::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, Arc::clone(&registry)));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("metrics: connection: {e}");
            }
        });
    }
}

async fn respond(
    req: Request<hyper::body::Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, kind, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, OPENMETRICS, metrics::encode(&registry)),
        (&Method::GET, "/") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "tcperr serve: metrics at /metrics\n".to_owned(),
        ),
        (&Method::GET, _) => {
            (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n".to_owned())
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "only GET\n".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
    Ok(resp)
}

/// The running kernel's release (`uname -r`), for `tcperr_build_info`.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned())
}
