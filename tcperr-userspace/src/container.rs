//! Containers and Kubernetes pods, without the Kubernetes API: a record's cgroup v2 id
//! ([`tcperr_common::SockInfo::cgroup`]) → the cgroup's path on the unified hierarchy (found by
//! walking it: the id is the inode number of the cgroup's directory) → what the path says
//! ([`parse`]: runtime, container id, pod UID, QoS class, systemd unit) → names: a pod's
//! namespace and name from the kubelet's log tree (`--pods-dir`, `<ns>_<pod>_<uid>/<container>/`),
//! its containers' names from the directories below (and, exactly by id, from the kubelet's
//! `containers` links next to it). A name that cannot be had is left out (the id is shown), never
//! guessed.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use serde::Serialize;

/// Which runtime made a container, as its cgroup's name says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Containerd,
    #[serde(rename = "cri-o")]
    Crio,
    Docker,
    Podman,
    /// A systemd service (no container): `unit` names it.
    Systemd,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::Crio => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Systemd => "systemd",
        }
    }
}

/// A Kubernetes pod's QoS class, from its cgroup's parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn name(self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }
}

/// What a cgroup path says about the processes in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    pub runtime: Option<Runtime>,
    /// The container's id (64 hex digits).
    pub container_id: Option<String>,
    /// The pod's UID (with dashes, as the API and the kubelet's log tree write it).
    pub pod_uid: Option<String>,
    pub qos: Option<Qos>,
    /// The systemd service (`name.service`), outside containers.
    pub unit: Option<String>,
}

/// A container id: 64 lower-case hex digits.
fn container_id(s: &str) -> Option<&str> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then_some(s)
}

/// A container's cgroup name: the runtime and the id. `crio-conmon-<id>.scope` and
/// `libpod-conmon-<id>.scope` are the runtime's monitor process, not the container.
fn container_component<'a>(
    c: &'a str,
    under_pod: bool,
    parent: Option<&str>,
) -> Option<(Option<Runtime>, &'a str)> {
    const SCOPES: [(&str, Runtime); 4] = [
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("docker-", Runtime::Docker),
        ("libpod-", Runtime::Podman),
    ];
    for (prefix, runtime) in SCOPES {
        if let Some(id) = c.strip_prefix(prefix).and_then(|r| r.strip_suffix(".scope")) {
            return container_id(id).map(|id| (Some(runtime), id));
        }
    }
    // cgroupfs driver: CRI-O names it `crio-<id>`, docker `/docker/<id>`, podman
    // `/libpod_parent/libpod-<id>`; containerd (and any runtime) a bare id under the pod, which
    // names no runtime.
    if let Some(id) = c.strip_prefix("crio-").and_then(container_id) {
        return Some((Some(Runtime::Crio), id));
    }
    if let Some(id) = c.strip_prefix("libpod-").and_then(container_id) {
        return Some((Some(Runtime::Podman), id));
    }
    let id = container_id(c)?;
    match parent {
        Some("docker") => Some((Some(Runtime::Docker), id)),
        _ if under_pod => Some((None, id)),
        _ => None,
    }
}

/// A pod's cgroup name and its QoS class: systemd driver
/// `kubepods[-burstable|-besteffort]-pod<uid with _>.slice`, cgroupfs driver `pod<uid>` under
/// `kubepods[/burstable|/besteffort]`.
fn pod_component(c: &str, parent: Option<&str>) -> Option<(String, Qos)> {
    if let Some(rest) = c.strip_prefix("kubepods-").and_then(|r| r.strip_suffix(".slice")) {
        let (qos, uid) = if let Some(u) = rest.strip_prefix("burstable-pod") {
            (Qos::Burstable, u)
        } else if let Some(u) = rest.strip_prefix("besteffort-pod") {
            (Qos::BestEffort, u)
        } else {
            (Qos::Guaranteed, rest.strip_prefix("pod")?)
        };
        return pod_uid(&uid.replace('_', "-")).map(|u| (u, qos));
    }
    let uid = pod_uid(c.strip_prefix("pod")?)?;
    let qos = match parent? {
        "burstable" => Qos::Burstable,
        "besteffort" => Qos::BestEffort,
        "kubepods" => Qos::Guaranteed,
        _ => return None,
    };
    Some((uid, qos))
}

/// A pod UID: 8-4-4-4-12 hex digits (a static pod's is a hash of 32 hex digits).
fn pod_uid(s: &str) -> Option<String> {
    let hex = |p: &str| p.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split('-').collect();
    let ok = match parts.as_slice() {
        [a, b, c, d, e] => {
            [a.len(), b.len(), c.len(), d.len(), e.len()] == [8, 4, 4, 4, 12]
                && parts.iter().all(|p| hex(p))
        }
        [one] => one.len() == 32 && hex(one),
        _ => false,
    };
    ok.then(|| s.to_ascii_lowercase())
}

/// What the cgroup `path` (on the unified hierarchy, `/`-separated from its root) says: the
/// innermost container, the pod around it, else the innermost systemd service.
pub fn parse(path: &str) -> Workload {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut w = Workload::default();
    let mut pod_at = None;
    for (i, c) in parts.iter().enumerate() {
        let parent = i.checked_sub(1).map(|p| parts[p]);
        if let Some((uid, qos)) = pod_component(c, parent) {
            (w.pod_uid, w.qos, pod_at) = (Some(uid), Some(qos), Some(i));
        }
    }
    // The innermost container (a container may make cgroups of its own below its scope).
    for (i, c) in parts.iter().enumerate().rev() {
        let parent = i.checked_sub(1).map(|p| parts[p]);
        let under_pod = pod_at.is_some_and(|p| p + 1 == i);
        if let Some((runtime, id)) = container_component(c, under_pod, parent) {
            (w.runtime, w.container_id) = (runtime, Some(id.to_owned()));
            return w;
        }
    }
    if w.pod_uid.is_none()
        && let Some(unit) = parts.iter().rev().find(|c| c.ends_with(".service") && c.len() > 8)
    {
        (w.runtime, w.unit) = (Some(Runtime::Systemd), Some((*unit).to_owned()));
    }
    w
}

/// One cgroup as reports show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// The path on the unified hierarchy, from its root (`/kubepods.slice/...`).
    pub path: String,
    pub workload: Workload,
    /// From the kubelet's log tree, when the pod's directory is there.
    pub namespace: Option<String>,
    pub pod: Option<String>,
    /// The container's name, when it is known for certain.
    pub container: Option<String>,
}

impl Cgroup {
    /// What human lines show beside the process: `namespace/pod` (`pod:` the pod's UID when
    /// its names are not known), else the container's name (Docker's, podman's) or short id,
    /// else the systemd unit.
    pub fn label(&self) -> Option<String> {
        let w = &self.workload;
        if let (Some(ns), Some(pod)) = (&self.namespace, &self.pod) {
            return Some(format!("{ns}/{pod}"));
        }
        if let Some(uid) = &w.pod_uid {
            return Some(format!("pod:{uid}"));
        }
        if let Some(name) = &self.container {
            return Some(name.clone());
        }
        if let Some(id) = &w.container_id {
            return Some(id[..12].to_owned());
        }
        w.unit.clone()
    }
}

/// An event's cgroup as JSON carries it (`cgroup`, `container_id`, `runtime`, `pod`,
/// `namespace`, `container`: null each where not known).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Place {
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub runtime: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub container: Option<String>,
}

impl Place {
    /// The cgroup these fields describe (as `tcperr query` has them: for its filters, its
    /// summary's pods and its lines); None outside any cgroup.
    pub fn to_cgroup(&self) -> Option<Cgroup> {
        let path = self.cgroup.as_ref()?;
        Some(Cgroup {
            path: path.clone(),
            workload: parse(path),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            container: self.container.clone(),
        })
    }

    pub fn of(c: Option<&Cgroup>) -> Self {
        let Some(c) = c else { return Self::default() };
        Place {
            cgroup: Some(c.path.clone()),
            container_id: c.workload.container_id.clone(),
            runtime: c.workload.runtime.map(|r| r.name().to_owned()),
            pod: c.pod.clone(),
            namespace: c.namespace.clone(),
            container: c.container.clone(),
        }
    }

    /// What human lines show after the connection, from these fields alone (as `tcperr query`
    /// has them): `pod:NAMESPACE/POD` (`pod:UID` without names), `container:SHORT_ID`,
    /// `unit:NAME.service`; None outside all three.
    pub fn tag(&self) -> Option<String> {
        let c = self.to_cgroup()?;
        let label = c.label()?;
        Some(if label.starts_with("pod:") {
            label
        } else if c.workload.pod_uid.is_some() {
            format!("pod:{label}")
        } else if c.workload.container_id.is_some() {
            format!("container:{label}")
        } else {
            format!("unit:{label}")
        })
    }
}

/// The unified (cgroup v2) hierarchy's mount point, from `/proc/self/mountinfo`: the cgroup2
/// mount of the hierarchy's root (`/sys/fs/cgroup` on a pure v2 host, `/sys/fs/cgroup/unified` on
/// a hybrid one). In a container with a cgroup namespace of its own (a Kubernetes pod) the
/// runtime's `/sys/fs/cgroup` shows only the container's subtree (its mountinfo root is `/`):
/// a bind mount of the host's (its root shown as `/..` repeated: above the namespace's) is
/// preferred, unless another mount covers it.
pub fn unified_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    unified_in(&info)
}

fn unified_in(mountinfo: &str) -> Option<PathBuf> {
    let mounts: Vec<(&str, String, &str)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            Some((*fields.get(3)?, unescape(fields.get(4)?), right.split(' ').next()?))
        })
        .collect();
    let mut best: Option<(usize, &str)> = None;
    for (i, (root, point, fstype)) in mounts.iter().enumerate() {
        // (the hierarchy's root: `/`, or `/..` as many times as the namespace is deep)
        let ups = root.split('/').filter(|c| !c.is_empty()).collect::<Vec<_>>();
        let top = *root == "/" || ups.iter().all(|c| *c == "..");
        let covered = mounts[i + 1..].iter().any(|m| m.1 == *point);
        if *fstype == "cgroup2" && top && !covered && best.is_none_or(|(n, _)| ups.len() > n) {
            best = Some((ups.len(), point));
        }
    }
    best.map(|(_, p)| PathBuf::from(p))
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the kubelet keeps its log tree (`--pods-dir`).
pub const DEFAULT_PODS_DIR: &str = "/var/log/pods";
/// Docker's data root (`dockerd --data-root`): `containers/<id>/config.v2.json` names each
/// container.
pub const DEFAULT_DOCKER_ROOT: &str = "/var/lib/docker";
/// The containers/storage graph root podman (as root) keeps its containers in
/// (`storage.conf`'s `graphroot`): `overlay-containers/containers.json` names each one.
pub const DEFAULT_STORAGE_ROOT: &str = "/var/lib/containers/storage";

/// Where containers' and pods' names are read: the kubelet's log tree (`--pods-dir`), Docker's
/// data root (`--docker-root`) and podman's storage (`--storage-root`). Each is read only, and
/// a name is shown only when one of them states it for that container id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameSources {
    pub pods_dir: PathBuf,
    pub docker_root: PathBuf,
    pub storage_root: PathBuf,
}

/// The name Docker gave container `id` (its `config.v2.json`'s `Name`, without the leading
/// `/`), if its state is readable there.
fn docker_name(docker_root: &Path, id: &str) -> Option<String> {
    let path = docker_root.join("containers").join(id).join("config.v2.json");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let name = config.get("Name")?.as_str()?.trim_start_matches('/');
    (!name.is_empty()).then(|| name.to_owned())
}

/// Every container's first name in podman's storage (`containers.json`: `[{"id", "names"}]`).
fn storage_names(storage_root: &Path) -> HashMap<String, String> {
    let path = storage_root.join("overlay-containers").join("containers.json");
    let Ok(bytes) = std::fs::read(path) else { return HashMap::new() };
    let Ok(serde_json::Value::Array(all)) = serde_json::from_slice(&bytes) else {
        return HashMap::new();
    };
    all.iter()
        .take(MAX_CGROUPS)
        .filter_map(|c| {
            let id = c.get("id")?.as_str()?;
            let name = c.get("names")?.as_array()?.first()?.as_str()?;
            Some((id.to_owned(), name.to_owned()))
        })
        .collect()
}

/// Walks of the hierarchy stop after this many directories; the id → path map holds at most
/// this many.
const MAX_CGROUPS: usize = 65_536;
/// A walk is made at most this often, however many ids are unknown.
const WALK_EVERY: Duration = Duration::from_millis(100);
/// An id not found is looked for again after this long.
const RETRY_UNKNOWN: Duration = Duration::from_secs(1);
/// The kubelet's log tree is read again at most this often (when a pod is not in it).
const PODS_EVERY: Duration = Duration::from_secs(1);

/// The pods in the kubelet's log tree: UID → (namespace, name, the containers' directory names).
#[derive(Default)]
struct Pods {
    by_uid: HashMap<String, (String, String, Vec<String>)>,
    /// Container id → name, from the kubelet's `containers` directory of links
    /// (`<pod>_<namespace>_<container>-<id>.log`).
    names_by_id: HashMap<String, String>,
    read_at: Option<Instant>,
}

fn read_pods(dir: &Path) -> Pods {
    let mut pods = Pods { read_at: Some(Instant::now()), ..Pods::default() };
    let Ok(entries) = std::fs::read_dir(dir) else { return pods };
    for e in entries.flatten().take(MAX_CGROUPS) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        // `<namespace>_<pod>_<uid>`: neither names nor UIDs hold `_`
        let parts: Vec<&str> = name.split('_').collect();
        let [ns, pod, uid] = parts.as_slice() else { continue };
        let Some(uid) = pod_uid(uid) else { continue };
        let mut containers: Vec<String> = std::fs::read_dir(e.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|c| c.file_name().to_str().map(str::to_owned))
            .collect();
        containers.sort();
        pods.by_uid.insert(uid, ((*ns).to_owned(), (*pod).to_owned(), containers));
    }
    if let Some(links) = dir.parent().map(|p| p.join("containers"))
        && let Ok(entries) = std::fs::read_dir(links)
    {
        for e in entries.flatten().take(MAX_CGROUPS) {
            let name = e.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else { continue };
            let Some((front, id)) = stem.rsplit_once('-') else { continue };
            let Some(id) = container_id(id) else { continue };
            let parts: Vec<&str> = front.splitn(3, '_').collect();
            if let [_, _, container] = parts.as_slice() {
                pods.names_by_id.insert(id.to_owned(), (*container).to_owned());
            }
        }
    }
    pods
}

/// cgroup v2 ids → [`Cgroup`]s: cached, looked for again when unknown, bounded.
pub struct Cgroups {
    root: Option<PathBuf>,
    names: NameSources,
    /// id (low 32 bits of the directory's inode) → path from the root, filled by walks.
    paths: FxHashMap<u32, String>,
    /// Resolved ids; None: not found at the time (looked for again after [`RETRY_UNKNOWN`]).
    /// (looked up for every event: a fast hash)
    resolved: FxHashMap<u32, (Option<Rc<Cgroup>>, Instant)>,
    walked_at: Option<Instant>,
    pods: Pods,
    /// podman's containers by id, and when its storage was last read.
    podman: (HashMap<String, String>, Option<Instant>),
}

impl Cgroups {
    /// On the unified hierarchy at `root` (None: no cgroup v2 here, nothing resolves), names
    /// from `names`.
    pub fn new(root: Option<PathBuf>, names: NameSources) -> Self {
        Self {
            root,
            names,
            paths: FxHashMap::default(),
            resolved: FxHashMap::default(),
            walked_at: None,
            pods: Pods::default(),
            podman: (HashMap::new(), None),
        }
    }

    /// The unified hierarchy this host mounts, names from `names`.
    pub fn host(names: NameSources) -> Self {
        Self::new(unified_mount(), names)
    }

    /// The cgroup of id `id` (0: none).
    pub fn get(&mut self, id: u32) -> Option<Rc<Cgroup>> {
        if id == 0 {
            return None;
        }
        let now = Instant::now();
        if let Some((found, at)) = self.resolved.get(&id) {
            match found {
                // (names the log tree did not have yet are looked for again)
                Some(c) if c.workload.pod_uid.is_none() || c.pod.is_some() => {
                    return Some(c.clone());
                }
                Some(_) if self.pods.read_at.is_some_and(|t| now - t < PODS_EVERY) => {
                    return found.clone();
                }
                None if now - *at < RETRY_UNKNOWN => return None,
                _ => {}
            }
        }
        if !self.paths.contains_key(&id) && self.walked_at.is_none_or(|t| now - t >= WALK_EVERY) {
            self.walk();
        }
        let found = self.paths.get(&id).cloned().map(|path| Rc::new(self.named(path)));
        if self.resolved.len() >= MAX_CGROUPS {
            self.resolved.clear();
        }
        self.resolved.insert(id, (found.clone(), now));
        found
    }

    /// The cgroup at `path`, with the names the log tree has for it.
    fn named(&mut self, path: String) -> Cgroup {
        let workload = parse(&path);
        let mut c = Cgroup { path, workload, namespace: None, pod: None, container: None };
        let Some(uid) = c.workload.pod_uid.clone() else {
            c.container = self.runtime_name(&c.workload);
            return c;
        };
        let stale = self.pods.read_at.is_none_or(|t| t.elapsed() >= PODS_EVERY);
        if stale && (!self.pods.by_uid.contains_key(&uid) || self.pods.read_at.is_none()) {
            self.pods = read_pods(&self.names.pods_dir);
        }
        if let Some((ns, pod, containers)) = self.pods.by_uid.get(&uid) {
            (c.namespace, c.pod) = (Some(ns.clone()), Some(pod.clone()));
            let by_id =
                c.workload.container_id.as_ref().and_then(|id| self.pods.names_by_id.get(id));
            c.container = match (by_id, containers.as_slice()) {
                (Some(name), _) => Some(name.clone()),
                // (the one container the pod has logs of: the name is certain only then)
                (None, [only]) if c.workload.container_id.is_some() => Some(only.clone()),
                _ => None,
            };
        }
        c
    }

    /// The name Docker or podman gave a container outside Kubernetes, from its runtime's state
    /// (podman's storage is read again at most every [`PODS_EVERY`] while an id is missing).
    fn runtime_name(&mut self, w: &Workload) -> Option<String> {
        let id = w.container_id.as_deref()?;
        match w.runtime? {
            Runtime::Docker => docker_name(&self.names.docker_root, id),
            Runtime::Podman => {
                let (names, read_at) = &mut self.podman;
                if !names.contains_key(id) && read_at.is_none_or(|t| t.elapsed() >= PODS_EVERY) {
                    *names = storage_names(&self.names.storage_root);
                    *read_at = Some(Instant::now());
                }
                names.get(id).cloned()
            }
            _ => None,
        }
    }

    /// Walks the hierarchy, noting every directory's id and path (at most [`MAX_CGROUPS`];
    /// paths of cgroups gone since the last walk are kept while there is room: an event after
    /// its container ended still names it).
    fn walk(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.walked_at = Some(Instant::now());
        let Some(root) = self.root.clone() else { return };
        let mut found = FxHashMap::default();
        let mut stack = vec![(root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else { continue };
            found.insert(
                meta.ino() as u32,
                if rel.is_empty() { "/".to_owned() } else { rel.clone() },
            );
            if found.len() >= MAX_CGROUPS {
                break;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && let Some(name) = e.file_name().to_str()
                {
                    stack.push((e.path(), format!("{rel}/{name}")));
                }
            }
        }
        for (id, path) in self.paths.drain() {
            if found.len() >= MAX_CGROUPS {
                break;
            }
            found.entry(id).or_insert(path);
        }
        self.paths = found;
    }
}

/// `--cgroup PATH`: a path on the unified hierarchy from its root.
pub fn parse_cgroup_path(s: &str) -> Result<String, String> {
    let ok = s.starts_with('/') && !s.split('/').any(|c| c == ".." || c == ".");
    if !ok {
        return Err(format!(
            "{s:?} is not a cgroup path (from the unified hierarchy's root, e.g. /system.slice/nginx.service)"
        ));
    }
    let trimmed = s.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() })
}

/// A Kubernetes name (a DNS-1123 subdomain: lower-case letters, digits, `-` and `.`).
fn k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// `--namespace NS`.
pub fn parse_namespace(s: &str) -> Result<String, String> {
    if k8s_name(s) && !s.contains('.') && s.len() <= 63 {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a Kubernetes namespace (lower-case letters, digits and -)"))
    }
}

/// `--pod [NS/]NAME`.
pub fn parse_pod(s: &str) -> Result<(Option<String>, String), String> {
    let bad =
        || format!("{s:?} is not a pod ([NAMESPACE/]NAME, lower-case letters, digits, - and .)");
    match s.split_once('/') {
        Some((ns, name)) => {
            let ns = parse_namespace(ns).map_err(|_| bad())?;
            k8s_name(name).then(|| (Some(ns), name.to_owned())).ok_or_else(bad)
        }
        None => k8s_name(s).then(|| (None, s.to_owned())).ok_or_else(bad),
    }
}

/// `--container ID|NAME`: an id (or the start of one, at least 12 hex digits) or a name.
pub fn parse_container(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    ok.then(|| s.to_owned()).ok_or_else(|| format!("{s:?} is not a container id or name"))
}

/// The container filters of `trace` (`--container`, `--pod`, `--namespace`, `--cgroup`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub containers: Vec<String>,
    pub pods: Vec<(Option<String>, String)>,
    pub namespaces: Vec<String>,
    pub cgroups: Vec<String>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.pods.is_empty()
            && self.namespaces.is_empty()
            && self.cgroups.is_empty()
    }

    /// Whether an event of cgroup `c` matches every flag given (any of its values).
    pub fn matches(&self, c: Option<&Cgroup>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(c) = c else { return false };
        let id = c.workload.container_id.as_deref();
        (self.containers.is_empty()
            || self.containers.iter().any(|f| {
                c.container.as_deref() == Some(f.as_str())
                    || id.is_some_and(|id| f.len() >= 12 && id.starts_with(f.as_str()))
            }))
            && (self.pods.is_empty()
                || self.pods.iter().any(|(ns, name)| {
                    c.pod.as_deref() == Some(name.as_str())
                        && ns.as_ref().is_none_or(|ns| c.namespace.as_deref() == Some(ns.as_str()))
                }))
            && (self.namespaces.is_empty()
                || self.namespaces.iter().any(|ns| c.namespace.as_deref() == Some(ns.as_str())))
            && (self.cgroups.is_empty()
                || self.cgroups.iter().any(|p| {
                    p == "/"
                        || c.path == *p
                        || c.path.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('/'))
                }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c3b2a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
    const UID: &str = "0b2e7d4c-1a3f-4e5d-9c8b-7a6f5e4d3c2b";

    fn w(
        runtime: Option<Runtime>,
        id: Option<&str>,
        uid: Option<&str>,
        qos: Option<Qos>,
    ) -> Workload {
        Workload {
            runtime,
            container_id: id.map(str::to_owned),
            pod_uid: uid.map(str::to_owned),
            qos,
            unit: None,
        }
    }

    #[test]
    fn every_layout_in_use_parses_to_its_runtime_container_pod_and_qos() {
        let u = UID.replace('-', "_");
        let table: Vec<(String, Workload)> = vec![
            // containerd, systemd driver, each QoS class
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope"
                ),
                w(Some(Runtime::Containerd), Some(ID), Some(UID), Some(Qos::Burstable)),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope"
                ),
                w(Some(Runtime::Containerd), Some(ID), Some(UID), Some(Qos::BestEffort)),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{ID}.scope"),
                w(Some(Runtime::Containerd), Some(ID), Some(UID), Some(Qos::Guaranteed)),
            ),
            // cgroupfs driver: the runtime is not in the path
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                w(None, Some(ID), Some(UID), Some(Qos::Burstable)),
            ),
            (
                format!("/kubepods/pod{UID}/{ID}"),
                w(None, Some(ID), Some(UID), Some(Qos::Guaranteed)),
            ),
            (
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
                w(Some(Runtime::Crio), Some(ID), Some(UID), Some(Qos::BestEffort)),
            ),
            // CRI-O, systemd driver; its monitor is not the container
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/crio-{ID}.scope"
                ),
                w(Some(Runtime::Crio), Some(ID), Some(UID), Some(Qos::Burstable)),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/crio-conmon-{ID}.scope"
                ),
                w(None, None, Some(UID), Some(Qos::Burstable)),
            ),
            // a pod's own slice (no container)
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice"),
                w(None, None, Some(UID), Some(Qos::Burstable)),
            ),
            // docker, both drivers; podman, with the sub-cgroup it makes inside the scope
            (
                format!("/system.slice/docker-{ID}.scope"),
                w(Some(Runtime::Docker), Some(ID), None, None),
            ),
            (format!("/docker/{ID}"), w(Some(Runtime::Docker), Some(ID), None, None)),
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                w(Some(Runtime::Podman), Some(ID), None, None),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                w(Some(Runtime::Podman), Some(ID), None, None),
            ),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), w(None, None, None, None)),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                ),
                w(Some(Runtime::Podman), Some(ID), None, None),
            ),
            // an id-looking name anywhere else is not a container
            (format!("/system.slice/{ID}"), w(None, None, None, None)),
            ("/".to_owned(), w(None, None, None, None)),
            ("/user.slice/user-1000.slice/session-3.scope".to_owned(), w(None, None, None, None)),
        ];
        for (path, want) in table {
            assert_eq!(parse(&path), want, "{path}");
        }
    }

    #[test]
    fn a_systemd_service_is_named_by_its_unit() {
        let p = parse("/system.slice/nginx.service");
        assert_eq!((p.runtime, p.unit.as_deref()), (Some(Runtime::Systemd), Some("nginx.service")));
        let p = parse("/system.slice/containerd.service/kubepods-x");
        assert_eq!(p.unit.as_deref(), Some("containerd.service"));
    }

    #[test]
    fn the_unified_mount_is_the_cgroup2_mount_of_the_hierarchys_root() {
        let hybrid = "30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                      42 30 0:39 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(unified_in(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let v2 = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(unified_in(v2), Some(PathBuf::from("/sys/fs/cgroup")));
        let nested = "35 24 0:30 /kubepods.slice/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(unified_in(nested), None);
        assert_eq!(unified_in("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"), None);
        let spaced = "35 24 0:30 / /mnt/c\\040g rw - cgroup2 cgroup2 rw\n";
        assert_eq!(unified_in(spaced), Some(PathBuf::from("/mnt/c g")));
        // a pod: the runtime's mount of its own namespace, the host's /sys (its cgroup mount
        // covered by that one) and the host's hierarchy mounted apart
        let pod = "700 600 0:30 /../../.. /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n\
                   701 600 0:30 / /sys/fs/cgroup ro - cgroup2 cgroup rw\n\
                   702 600 0:30 /../../.. /host/sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(unified_in(pod), Some(PathBuf::from("/host/sys/fs/cgroup")));
    }

    #[test]
    fn labels_prefer_the_pods_names_then_its_uid_then_the_container_then_the_unit() {
        let c = |ns: Option<&str>, pod: Option<&str>, w: Workload| Cgroup {
            path: "/x".into(),
            workload: w,
            namespace: ns.map(Into::into),
            pod: pod.map(Into::into),
            container: None,
        };
        let k8s = w(Some(Runtime::Containerd), Some(ID), Some(UID), Some(Qos::Burstable));
        assert_eq!(c(Some("shop"), Some("api-7d9"), k8s.clone()).label().unwrap(), "shop/api-7d9");
        assert_eq!(c(None, None, k8s).label().unwrap(), format!("pod:{UID}"));
        let docker = w(Some(Runtime::Docker), Some(ID), None, None);
        assert_eq!(c(None, None, docker).label().unwrap(), &ID[..12]);
        assert_eq!(
            c(None, None, parse("/system.slice/sshd.service")).label().unwrap(),
            "sshd.service"
        );
        assert_eq!(c(None, None, parse("/user.slice")).label(), None);
    }

    #[test]
    fn docker_and_podman_names_come_from_their_own_state_and_never_a_wrong_one() {
        let tmp = std::env::temp_dir().join(format!("tcperr-runtimes-{}", std::process::id()));
        let (docker_root, storage_root) = (tmp.join("docker"), tmp.join("storage"));
        let other = "9".repeat(64);
        std::fs::create_dir_all(docker_root.join(format!("containers/{ID}"))).unwrap();
        std::fs::write(
            docker_root.join(format!("containers/{ID}/config.v2.json")),
            r#"{"Name":"/web-1","Config":{"Hostname":"x"}}"#,
        )
        .unwrap();
        std::fs::create_dir_all(docker_root.join(format!("containers/{other}"))).unwrap();
        std::fs::write(docker_root.join(format!("containers/{other}/config.v2.json")), "{trunc")
            .unwrap();
        std::fs::create_dir_all(storage_root.join("overlay-containers")).unwrap();
        std::fs::write(
            storage_root.join("overlay-containers/containers.json"),
            format!(r#"[{{"id":"{ID}","names":["worker","alias"]}},{{"id":"{other}"}}]"#),
        )
        .unwrap();
        let names = NameSources { docker_root, storage_root, ..NameSources::default() };
        let mut cg = Cgroups::new(None, names);
        let name = |cg: &mut Cgroups, path: String| cg.named(path).container;
        assert_eq!(
            name(&mut cg, format!("/system.slice/docker-{ID}.scope")).as_deref(),
            Some("web-1")
        );
        assert_eq!(name(&mut cg, format!("/docker/{ID}")).as_deref(), Some("web-1"));
        assert_eq!(
            name(&mut cg, format!("/machine.slice/libpod-{ID}.scope")).as_deref(),
            Some("worker")
        );
        // Unreadable state, no entry, no names: the id alone, never a guess.
        assert_eq!(name(&mut cg, format!("/system.slice/docker-{other}.scope")), None);
        assert_eq!(name(&mut cg, format!("/machine.slice/libpod-{other}.scope")), None);
        assert_eq!(name(&mut cg, format!("/system.slice/docker-{}.scope", "8".repeat(64))), None);
        // (a CRI-O container outside Kubernetes has no state tcperr reads)
        assert_eq!(name(&mut cg, format!("/system.slice/crio-{ID}.scope")), None);
        let c = cg.named(format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(c.label().as_deref(), Some("web-1"));
        let _ = std::fs::remove_dir_all(tmp);
    }

    #[test]
    fn names_come_from_the_kubelets_log_tree_and_never_a_wrong_one() {
        let tmp = std::env::temp_dir().join(format!("tcperr-pods-{}", std::process::id()));
        let pods = tmp.join("pods");
        let uid2 = "11111111-2222-3333-4444-555555555555";
        std::fs::create_dir_all(pods.join(format!("shop_api-7d9_{UID}/app"))).unwrap();
        std::fs::create_dir_all(pods.join(format!("pay_two_{uid2}/a"))).unwrap();
        std::fs::create_dir_all(pods.join(format!("pay_two_{uid2}/b"))).unwrap();
        std::fs::create_dir_all(pods.join("not-a-pod")).unwrap();
        let mut cg =
            Cgroups::new(None, NameSources { pods_dir: pods.clone(), ..NameSources::default() });
        let one = cg.named(format!("/kubepods/burstable/pod{UID}/{ID}"));
        assert_eq!(
            (one.namespace.as_deref(), one.pod.as_deref(), one.container.as_deref()),
            (Some("shop"), Some("api-7d9"), Some("app"))
        );
        // two containers' logs: which one this is cannot be told from the tree alone
        let two = cg.named(format!("/kubepods/burstable/pod{uid2}/{ID}"));
        assert_eq!((two.pod.as_deref(), two.container), (Some("two"), None));
        // ... but the kubelet's links name it by id
        std::fs::create_dir_all(tmp.join("containers")).unwrap();
        std::fs::write(tmp.join(format!("containers/two_pay_b-{ID}.log")), "").unwrap();
        let mut cg = Cgroups::new(None, NameSources { pods_dir: pods, ..NameSources::default() });
        let two = cg.named(format!("/kubepods/burstable/pod{uid2}/{ID}"));
        assert_eq!(two.container.as_deref(), Some("b"));
        // a pod without a directory: no names
        let none =
            cg.named(format!("/kubepods/pod{}/{ID}", "99999999-2222-3333-4444-555555555555"));
        assert_eq!((none.namespace, none.pod, none.container), (None, None, None));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn filter_values_are_checked() {
        assert_eq!(parse_cgroup_path("/system.slice/").unwrap(), "/system.slice");
        assert!(parse_cgroup_path("system.slice").is_err());
        assert!(parse_cgroup_path("/a/../b").is_err());
        assert_eq!(parse_pod("shop/api-7d9").unwrap(), (Some("shop".into()), "api-7d9".into()));
        assert_eq!(parse_pod("api-7d9").unwrap(), (None, "api-7d9".into()));
        assert!(parse_pod("Shop/api").is_err());
        assert!(parse_pod("a/b/c").is_err());
        assert!(parse_namespace("kube.system").is_err());
        assert!(parse_container("").is_err());
        assert!(parse_container("a b").is_err());
    }

    #[test]
    fn the_selector_matches_names_ids_and_cgroup_subtrees() {
        let c = Cgroup {
            path: format!("/kubepods/burstable/pod{UID}/{ID}"),
            workload: parse(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            namespace: Some("shop".into()),
            pod: Some("api-7d9".into()),
            container: Some("app".into()),
        };
        let s = |f: fn(&mut Selector)| {
            let mut s = Selector::default();
            f(&mut s);
            s.matches(Some(&c))
        };
        assert!(s(|_| {}));
        assert!(s(|s| s.containers = vec!["app".into()]));
        assert!(s(|s| s.containers = vec![ID[..12].into()]));
        assert!(!s(|s| s.containers = vec![ID[..6].into()]));
        assert!(s(|s| s.pods = vec![(Some("shop".into()), "api-7d9".into())]));
        assert!(!s(|s| s.pods = vec![(Some("pay".into()), "api-7d9".into())]));
        assert!(s(|s| s.namespaces = vec!["shop".into()]));
        assert!(s(|s| s.cgroups = vec!["/kubepods/burstable".into()]));
        assert!(!s(|s| s.cgroups = vec!["/kubepods/burst".into()]));
        assert!(!Selector { namespaces: vec!["shop".into()], ..Selector::default() }.matches(None));
    }
}
