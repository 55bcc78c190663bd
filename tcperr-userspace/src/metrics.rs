//! `tcperr serve`'s Prometheus metrics: what programs on this host experienced, counted by the
//! same classes `trace` prints (README "Metrics"). Built with the official client
//! (`prometheus-client`), encoded as OpenMetrics text on each scrape.
//!
//! Label values are bounded: errno names, cause classes, hook names, listening ports and
//! process names (`comm`) — never a pid, an address or an ephemeral port. Process names are the
//! one unbounded value, so the number of label sets is capped ([`MAX_LABEL_SETS`]); an event
//! past the cap is still counted, under `comm="other"`, and counted again in
//! `tcperr_label_sets_refused_total`.
use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};
use rustc_hash::FxHashSet;

use crate::{
    error_names,
    load::Selected,
    report::{Brief, Counted},
};

/// The most label sets `tcperr_socket_errors_total`, `tcperr_resets_total` and
/// `tcperr_accept_queue_overflows_total` hold together (README "Metrics").
pub const MAX_LABEL_SETS: usize = 2000;

/// The `comm` of events counted after the cap was reached.
const OTHER: &str = "other";

/// The labels of `tcperr_socket_errors_total`: one place for them, so that later labels
/// (container, pod) are added once.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// errno name (EPIPE, ECONNRESET, ECONNREFUSED, ETIMEDOUT) or EOF.
    pub error: String,
    /// tcperr's cause class (README "Causes"), "unknown" when it names none.
    pub cause: String,
    /// The process (thread) name the kernel keeps, 15 characters.
    pub comm: String,
    /// The process's Kubernetes namespace, pod and container; empty outside Kubernetes (and
    /// where the kubelet's log tree does not name them).
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResetLabels {
    /// "sent" (this host reset a connection) or "received".
    pub direction: &'static str,
    pub cause: String,
    /// As [`ErrorLabels`]: the pod of the socket's process.
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// How long the series of a container whose cgroup is gone are kept before they are removed
/// (a last scrape sees their final counts; churning pods do not leak series).
pub const GONE_GRACE_NS: u64 = 300_000_000_000;

/// The series of one pod's container, and its cgroup (to tell when it is gone).
struct PodSeries {
    cgroup: String,
    gone_since: Option<u64>,
    sets: FxHashSet<LabelSet>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    /// The listener's port.
    pub port: u16,
    /// As [`ErrorLabels`]: the pod of the listener's process.
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// The drop's cause class (README "Causes": queue_overflow, filtered, ...): a handful of
    /// values, so not under the cap.
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// What is traced (send_error, rst_received, ...).
    pub source: String,
    /// The hook serving it ("tp_btf tcp_receive_reset", ...), "off" when none could.
    pub hook: String,
}

/// One counted label set, whichever family it belongs to (for the cap).
#[derive(Hash, PartialEq, Eq)]
enum LabelSet {
    Error(ErrorLabels),
    Reset(ResetLabels),
    Port(PortLabels),
}

/// The registry (shared with the HTTP task that encodes it) and the metrics the serve loop
/// counts into.
pub struct Metrics {
    registry: Arc<Registry>,
    socket_errors: Family<ErrorLabels, Counter>,
    resets: Family<ResetLabels, Counter>,
    overflows: Family<PortLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    orderly_closes: Counter,
    events: Counter,
    lost: Counter,
    undecodable: Counter,
    refused: Counter,
    /// Label sets counted so far, for the cap.
    seen: FxHashSet<LabelSet>,
    /// The kernel side's lost count when last read (its counter is cumulative).
    lost_before: u64,
    /// The journal's counters, once registered.
    journal: Option<[Counter; 4]>,
    /// The series labelled with a pod, by (namespace, pod, container).
    pods: rustc_hash::FxHashMap<(String, String, String), PodSeries>,
    /// The unified hierarchy's mount, where a pod's cgroup is looked for.
    cgroup_root: Option<std::path::PathBuf>,
}

impl Metrics {
    /// The metrics of an agent running `version` on kernel `kernel`, whose sources are served
    /// as `selected` says; with the journal's counters if it keeps one.
    pub fn new(version: &str, kernel: &str, selected: &[Selected], journal: bool) -> Self {
        let mut r = Registry::default();
        let journal = journal.then(|| {
            let mut counter = |name: &str, help: &str| {
                let c = Counter::default();
                r.register(name, help, c.clone());
                c
            };
            [
                counter("tcperr_journal_bytes", "Bytes written to the journal"),
                counter("tcperr_journal_lines", "Events (lines) written to the journal"),
                counter(
                    "tcperr_journal_lines_dropped",
                    "Events not journaled: a write failed (disk full) or the line was too long",
                ),
                counter("tcperr_journal_write_errors", "Journal writes or deletions that failed"),
            ]
        });
        let socket_errors = Family::<ErrorLabels, Counter>::default();
        r.register(
            "tcperr_socket_errors",
            "Errors programs received from TCP sockets (a failed call, an EOF that ended a request), by error, cause and process name",
            socket_errors.clone(),
        );
        let resets = Family::<ResetLabels, Counter>::default();
        r.register(
            "tcperr_resets",
            "TCP resets this host sent or received, by cause",
            resets.clone(),
        );
        let overflows = Family::<PortLabels, Counter>::default();
        r.register(
            "tcperr_accept_queue_overflows",
            "Connections a listener's full accept queue could not take, by listening port",
            overflows.clone(),
        );
        let drops = Family::<DropLabels, Counter>::default();
        r.register(
            "tcperr_drops",
            "TCP segments the kernel dropped for a reason users act on (drop events), by cause",
            drops.clone(),
        );
        let orderly_closes = Counter::default();
        r.register(
            "tcperr_orderly_closes",
            "EOFs of orderly closes (the peer finished): not errors, counted for comparison",
            orderly_closes.clone(),
        );
        let events = Counter::default();
        r.register("tcperr_events", "Kernel records handled", events.clone());
        let lost = Counter::default();
        r.register(
            "tcperr_events_lost",
            "Kernel records lost because the ring buffer was full",
            lost.clone(),
        );
        let undecodable = Counter::default();
        r.register(
            "tcperr_events_undecodable",
            "Kernel records that could not be decoded",
            undecodable.clone(),
        );
        let refused = Counter::default();
        r.register(
            "tcperr_label_sets_refused",
            "Events counted under comm=\"other\" because the label set cap was reached",
            refused.clone(),
        );
        r.register(
            "tcperr_build",
            "tcperr's version and the kernel it runs on",
            Info::new(vec![("version", version.to_owned()), ("kernel", kernel.to_owned())]),
        );
        let sources = Family::<SourceLabels, Gauge>::default();
        r.register(
            "tcperr_source",
            "Each traced source and the hook serving it: 1 when attached, 0 when off",
            sources.clone(),
        );
        for s in selected {
            let (hook, on) = match &s.hook {
                Some(h) => (h.attach.to_string(), 1),
                None => ("off".to_owned(), 0),
            };
            let labels = SourceLabels { source: s.source.name().to_owned(), hook };
            sources.get_or_create(&labels).set(on);
        }
        Self {
            registry: Arc::new(r),
            socket_errors,
            resets,
            overflows,
            drops,
            orderly_closes,
            events,
            lost,
            undecodable,
            refused,
            seen: FxHashSet::default(),
            lost_before: 0,
            journal,
            pods: Default::default(),
            cgroup_root: None,
        }
    }

    /// Series of pods' containers are removed once their cgroup under `root` (the unified
    /// hierarchy's mount) has been gone for [`GONE_GRACE_NS`].
    pub fn with_cgroup_root(mut self, root: Option<std::path::PathBuf>) -> Self {
        self.cgroup_root = root;
        self
    }

    /// Removes the series of containers gone for longer than the grace period (once a second).
    pub fn sweep(&mut self, now_ns: u64) {
        let Some(root) = self.cgroup_root.clone() else { return };
        self.sweep_with(now_ns, |cgroup| root.join(cgroup.trim_start_matches('/')).exists());
    }

    fn sweep_with(&mut self, now_ns: u64, exists: impl Fn(&str) -> bool) {
        let mut gone = Vec::new();
        for (key, p) in &mut self.pods {
            if exists(&p.cgroup) {
                p.gone_since = None;
            } else if now_ns.saturating_sub(*p.gone_since.get_or_insert(now_ns)) >= GONE_GRACE_NS {
                gone.push(key.clone());
            }
        }
        for key in gone {
            let Some(p) = self.pods.remove(&key) else { continue };
            for set in p.sets {
                match &set {
                    LabelSet::Error(l) => self.socket_errors.remove(l),
                    LabelSet::Reset(l) => self.resets.remove(l),
                    LabelSet::Port(l) => self.overflows.remove(l),
                };
                self.seen.remove(&set);
            }
        }
    }

    /// Notes that `set` is a series of the pod `b` names (to be removed when it is gone).
    fn note_pod(&mut self, b: &Brief, set: LabelSet) {
        let Some(c) = b.cgroup.as_deref() else { return };
        let Some(pod) = c.pod.clone() else { return };
        let key =
            (c.namespace.clone().unwrap_or_default(), pod, c.container.clone().unwrap_or_default());
        let p = self.pods.entry(key).or_insert_with(|| PodSeries {
            cgroup: c.path.clone(),
            gone_since: None,
            sets: FxHashSet::default(),
        });
        // (a restarted container: a new cgroup under the same names)
        if p.cgroup != c.path {
            p.cgroup.clone_from(&c.path);
            p.gone_since = None;
        }
        p.sets.insert(set);
    }

    /// The journal's counters, for the writer to update (None without a journal).
    pub fn journal(&self) -> Option<JournalCounters> {
        let [bytes, lines, dropped, errors] = self.journal.clone()?;
        Some(JournalCounters { bytes, lines, dropped, errors, last: Default::default() })
    }

    /// The registry, for the HTTP task.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Counts one event, as the summary does (each error a program received once).
    pub fn count(&mut self, b: &Brief) {
        let cause = || b.cause.map_or("unknown", |c| c.name()).to_owned();
        let c = b.cgroup.as_deref();
        let name = |f: fn(&crate::container::Cgroup) -> &Option<String>| {
            c.and_then(|c| f(c).clone()).unwrap_or_default()
        };
        let (namespace, pod) = (name(|c| &c.namespace), name(|c| &c.pod));
        // (Kubernetes' names only: a Docker or podman container's name would make series that
        // nothing removes when it is gone)
        let container = if pod.is_empty() { String::new() } else { name(|c| &c.container) };
        match b.counts_as {
            Counted::Error => {
                let error = error_names::name(b.errno_code.unwrap_or(0));
                let comm = b.comm.as_ref().map_or_else(String::new, |c| c.as_str().to_owned());
                let labels = ErrorLabels {
                    error,
                    cause: cause(),
                    comm,
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    container: container.clone(),
                };
                if self.admit(LabelSet::Error(labels.clone())) {
                    self.socket_errors.get_or_create(&labels).inc();
                    self.note_pod(b, LabelSet::Error(labels));
                } else {
                    let labels = ErrorLabels { comm: OTHER.to_owned(), ..labels };
                    self.socket_errors.get_or_create(&labels).inc();
                }
            }
            Counted::Closed => {
                self.orderly_closes.inc();
            }
            Counted::Not => {}
        }
        let direction = match b.kind {
            "rst_received" => Some("received"),
            "rst_sent" => Some("sent"),
            _ => None,
        };
        if let Some(direction) = direction {
            let labels = ResetLabels {
                direction,
                cause: cause(),
                namespace: namespace.clone(),
                pod: pod.clone(),
                container: container.clone(),
            };
            // (bounded by directions × causes × pods: past the cap, still counted)
            self.admit(LabelSet::Reset(labels.clone()));
            self.resets.get_or_create(&labels).inc();
            self.note_pod(b, LabelSet::Reset(labels));
        }
        if b.kind == "drop" {
            self.drops.get_or_create(&DropLabels { cause: cause() }).inc();
        }
        if b.kind == "accept_queue_full" {
            let labels = PortLabels { port: b.lport, namespace, pod, container };
            if self.admit(LabelSet::Port(labels.clone())) {
                self.overflows.get_or_create(&labels).inc();
                self.note_pod(b, LabelSet::Port(labels));
            }
        }
    }

    /// Whether `set` may be counted under its own labels: known already, or under the cap. A
    /// refusal is counted.
    fn admit(&mut self, set: LabelSet) -> bool {
        if self.seen.contains(&set) {
            return true;
        }
        if self.seen.len() >= MAX_LABEL_SETS {
            self.refused.inc();
            return false;
        }
        self.seen.insert(set);
        true
    }

    /// Records handled: `seen` events, `undecodable` of them not decoded.
    pub fn handled(&self, undecodable: bool) {
        self.events.inc();
        if undecodable {
            self.undecodable.inc();
        }
    }

    /// The kernel side's cumulative count of lost records.
    pub fn set_lost(&mut self, total: u64) {
        if total > self.lost_before {
            self.lost.inc_by(total - self.lost_before);
            self.lost_before = total;
        }
    }
}

/// The journal's counters in the registry, updated from [`crate::journal::Counters`].
pub struct JournalCounters {
    bytes: Counter,
    lines: Counter,
    dropped: Counter,
    errors: Counter,
    last: crate::journal::Counters,
}

impl JournalCounters {
    /// Adds what the journal did since the last update (its counts are cumulative).
    pub fn update(&mut self, now: &crate::journal::Counters) {
        let add = |c: &Counter, new: u64, old: u64| {
            c.inc_by(new.saturating_sub(old));
        };
        add(&self.bytes, now.bytes_written, self.last.bytes_written);
        add(&self.lines, now.lines_written, self.last.lines_written);
        add(&self.dropped, now.lines_dropped, self.last.lines_dropped);
        add(&self.errors, now.write_errors, self.last.write_errors);
        self.last = *now;
    }
}

/// The registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // (writing to a String cannot fail)
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{owner::Comm, story::Cause};

    fn error(comm: &str, errno: u32, cause: Cause) -> Brief {
        Brief {
            ts_ns: 1,
            kind: "send_error",
            pid: Some(7),
            comm: Some(Comm::new(comm)),
            family: tcperr_common::tcp::AF_INET,
            raddr: [0; 16],
            lport: 40000,
            rport: 80,
            errno_code: Some(errno),
            cause: Some(cause),
            shown: true,
            counts_as: Counted::Error,
            cgroup: None,
        }
    }

    /// The sample lines of `prefix`, sorted (a family's order is its hash map's).
    fn sample(text: &str, prefix: &str) -> Vec<String> {
        let mut lines: Vec<String> =
            text.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect();
        lines.sort();
        lines
    }

    #[test]
    fn errors_are_counted_by_errno_cause_and_process_name_without_pids_or_ports() {
        let mut m = Metrics::new("0.1.0", "6.18.0", &[], false);
        m.count(&error("curl", 32, Cause::WriteAfterPeerClose));
        m.count(&error("curl", 32, Cause::WriteAfterPeerClose));
        m.count(&error("nginx", 104, Cause::PeerAborted));
        let text = encode(&m.registry());
        assert_eq!(
            sample(&text, "tcperr_socket_errors_total"),
            [
                "tcperr_socket_errors_total{error=\"ECONNRESET\",cause=\"peer_aborted\",comm=\"nginx\",namespace=\"\",pod=\"\",container=\"\"} 1",
                "tcperr_socket_errors_total{error=\"EPIPE\",cause=\"write_after_peer_close\",comm=\"curl\",namespace=\"\",pod=\"\",container=\"\"} 2",
            ]
        );
        assert!(!text.contains("40000") && !text.contains("pid"), "{text}");
        assert!(
            text.contains("tcperr_build_info{version=\"0.1.0\",kernel=\"6.18.0\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn drops_are_counted_by_cause_shown_or_not() {
        let mut m = Metrics::new("0.1.0", "6.18.0", &[], false);
        let drop = |cause| Brief {
            kind: "drop",
            errno_code: None,
            shown: false,
            counts_as: Counted::Not,
            ..error("server", 0, cause)
        };
        m.count(&drop(Cause::Filtered));
        m.count(&drop(Cause::Filtered));
        m.count(&drop(Cause::QueueOverflow));
        let text = encode(&m.registry());
        assert_eq!(
            sample(&text, "tcperr_drops_total"),
            [
                "tcperr_drops_total{cause=\"filtered\"} 2",
                "tcperr_drops_total{cause=\"queue_overflow\"} 1",
            ]
        );
        assert!(sample(&text, "tcperr_socket_errors_total").is_empty(), "{text}");
    }

    #[test]
    fn past_the_label_set_cap_events_are_still_counted_under_other_and_the_refusal_is_counted() {
        let mut m = Metrics::new("0.1.0", "6.18.0", &[], false);
        for i in 0..MAX_LABEL_SETS + 5 {
            m.count(&error(&format!("p{i}"), 32, Cause::WriteAfterPeerClose));
        }
        let text = encode(&m.registry());
        let errors = sample(&text, "tcperr_socket_errors_total");
        assert_eq!(errors.len(), MAX_LABEL_SETS + 1, "the cap and one `other` set");
        assert!(
            errors.contains(
                &"tcperr_socket_errors_total{error=\"EPIPE\",cause=\"write_after_peer_close\",comm=\"other\",namespace=\"\",pod=\"\",container=\"\"} 5"
                    .to_owned()
            ),
            "{errors:?}"
        );
        assert_eq!(
            sample(&text, "tcperr_label_sets_refused_total"),
            ["tcperr_label_sets_refused_total 5"]
        );
    }

    #[test]
    fn a_pods_series_carry_its_names_and_go_a_grace_period_after_its_cgroup() {
        use crate::container::{Cgroup, parse};
        let cgroup = |path: &str, ns: &str, pod: &str| {
            Some(std::rc::Rc::new(Cgroup {
                path: path.to_owned(),
                workload: parse(path),
                namespace: Some(ns.to_owned()),
                pod: Some(pod.to_owned()),
                container: Some("app".to_owned()),
            }))
        };
        let mut m = Metrics::new("0.1.0", "6.18.0", &[], false);
        let gone = "/kubepods/besteffort/pod7b2e1d3f-4c5e-4f60-9bac-1d2e3f4a5b6c/x";
        let alive = "/kubepods/besteffort/pod8c3f2e40-5d6f-4071-acbd-2e3f4a5b6c7d/y";
        m.count(&Brief {
            cgroup: cgroup(gone, "shop", "checkout-7d9"),
            ..error("java", 104, Cause::PeerAborted)
        });
        m.count(&Brief {
            kind: "rst_received",
            counts_as: Counted::Not,
            cgroup: cgroup(gone, "shop", "checkout-7d9"),
            ..error("java", 104, Cause::PeerReset)
        });
        m.count(&Brief {
            cgroup: cgroup(alive, "pay", "api-5f6"),
            ..error("api", 32, Cause::WriteAfterPeerClose)
        });
        m.count(&error("curl", 32, Cause::WriteAfterPeerClose));
        m.count(&Brief {
            kind: "accept_queue_full",
            counts_as: Counted::Not,
            lport: 8080,
            cgroup: cgroup(gone, "shop", "checkout-7d9"),
            ..error("java", 104, Cause::AcceptQueueOverflow)
        });
        let text = encode(&m.registry());
        assert!(text.contains("tcperr_accept_queue_overflows_total{port=\"8080\",namespace=\"shop\",pod=\"checkout-7d9\",container=\"app\"} 1"), "{text}");
        assert!(text.contains("tcperr_socket_errors_total{error=\"ECONNRESET\",cause=\"peer_aborted\",comm=\"java\",namespace=\"shop\",pod=\"checkout-7d9\",container=\"app\"} 1"), "{text}");
        assert!(text.contains("tcperr_resets_total{direction=\"received\",cause=\"peer_reset\",namespace=\"shop\",pod=\"checkout-7d9\",container=\"app\"} 1"), "{text}");
        let exists = |p: &str| p == alive;
        m.sweep_with(1_000, exists);
        m.sweep_with(1_000 + GONE_GRACE_NS - 1, exists);
        assert!(encode(&m.registry()).contains("checkout-7d9"), "kept within the grace period");
        m.sweep_with(1_000 + GONE_GRACE_NS, exists);
        let text = encode(&m.registry());
        assert!(!text.contains("checkout-7d9"), "{text}");
        assert!(text.contains("pod=\"api-5f6\""), "{text}");
        assert!(text.contains("comm=\"curl\""), "series outside pods stay: {text}");
        // counted again after it came back: a series of its own from 1
        m.count(&Brief {
            cgroup: cgroup(gone, "shop", "checkout-7d9"),
            ..error("java", 104, Cause::PeerAborted)
        });
        assert!(encode(&m.registry()).contains("pod=\"checkout-7d9\",container=\"app\"} 1"));
    }

    #[test]
    fn lost_records_are_counted_from_the_kernels_cumulative_count() {
        let mut m = Metrics::new("0.1.0", "6.18.0", &[], false);
        m.set_lost(3);
        m.set_lost(3);
        m.set_lost(10);
        let text = encode(&m.registry());
        assert_eq!(sample(&text, "tcperr_events_lost_total"), ["tcperr_events_lost_total 10"]);
    }
}
