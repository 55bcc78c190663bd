//! Containers and pods, with real kernel objects: cgroup v2 directories made by the test on the
//! unified hierarchy in each runtime's layout (containerd with the systemd driver, the cgroupfs
//! driver, CRI-O, docker, podman, a systemd service), a kubelet-style log tree in a temporary
//! directory given with `--pods-dir`, and processes of the test's own (this binary, re-executed
//! as a helper) that move themselves into those cgroups before they make a socket, each pair in
//! a network namespace of its own. The built `tcperr trace --json` must name every event's
//! cgroup, container, pod and peer exactly: also the RST a peer's abort makes arrive in softirq
//! (in the other process's call), and the RST a socket sends after its process has exited.
//! Needs root. No test harness (`harness = false`): the binary is also the helper.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tcperr_scenarios::{drive, netns, sock};

mod support;

const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, cgroup, ns] = args.as_slice()
        && role == "helper"
    {
        helper(Path::new(cgroup), ns);
        return;
    }
    // (`cargo test` passes harness flags such as --test-threads: ignored)
    let name = "every_event_names_its_container_pod_and_peer_in_each_runtimes_layout";
    every_event_names_its_container_pod_and_peer_in_each_runtimes_layout();
    println!("test {name} ... ok");
}

/// A helper process: moves itself into `cgroup`, enters a new network namespace (`new`) or
/// that of process `ns`, then runs one command per line of stdin, answering each on stdout.
fn helper(cgroup: &Path, ns: &str) {
    std::fs::write(cgroup.join("cgroup.procs"), "0").expect("move into the cgroup");
    if ns == "new" {
        // SAFETY: this process has one thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        netns::loopback_up().expect("lo up");
    } else {
        let f = std::fs::File::open(format!("/proc/{ns}/ns/net")).expect("peer's netns");
        use std::os::fd::AsRawFd;
        // SAFETY: a namespace fd we hold.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
    }
    let mut listener = None;
    let mut conn: Option<TcpStream> = None;
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("command");
        let words: Vec<&str> = line.split(' ').collect();
        let answer = match words.as_slice() {
            ["listen"] => {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind");
                let port = l.local_addr().expect("addr").port();
                listener = Some(l);
                port.to_string()
            }
            ["accept"] => {
                conn = Some(listener.as_ref().expect("listening").accept().expect("accept").0);
                "ok".into()
            }
            ["connect", port] => {
                conn = Some(TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect"));
                "ok".into()
            }
            ["write"] => match conn.as_mut().expect("connected").write(b"request") {
                Ok(n) => format!("wrote {n}"),
                Err(e) => format!("err {}", e.raw_os_error().unwrap_or(0)),
            },
            ["read"] => {
                let c = conn.as_mut().expect("connected");
                sock::wait_for(c, libc::POLLIN, Duration::from_secs(5)).expect("wait");
                let mut buf = [0u8; 64];
                match c.read(&mut buf) {
                    Ok(0) => "eof".into(),
                    Ok(n) => format!("read {n}"),
                    Err(e) => format!("err {}", e.raw_os_error().unwrap_or(0)),
                }
            }
            ["abort"] => {
                let c = conn.take().expect("connected");
                sock::set_linger_zero(&c).expect("SO_LINGER");
                drop(c);
                "ok".into()
            }
            ["close"] => {
                conn.take();
                listener.take();
                "ok".into()
            }
            ["exit"] => std::process::exit(0),
            other => panic!("unknown command {other:?}"),
        };
        writeln!(out, "{answer}").and_then(|()| out.flush()).expect("answer");
    }
}

/// A helper process of the test.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn start(cgroup: &Path, ns: &str) -> Self {
        let me = std::env::current_exe().expect("this binary");
        let mut child = Command::new(me)
            .args(["helper", cgroup.to_str().expect("utf-8"), ns])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn helper");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut h = Self { child, stdin, stdout };
        // (the helper answers once it is in its cgroup and namespace)
        assert_eq!(h.run("close"), "ok");
        h
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn run(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("command");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        assert!(!line.is_empty(), "helper {} ended on {command:?}", self.child.id());
        line.trim_end().to_owned()
    }

    /// Tells it to exit, and reaps it.
    fn exit(mut self) {
        let _ = writeln!(self.stdin, "exit");
        self.child.wait().expect("wait");
    }
}

const UID_API: &str = "6a1f0c2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
const UID_CHECKOUT: &str = "7b2e1d3f-4c5e-4f60-9bac-1d2e3f4a5b6c";
const UID_CART: &str = "8c3f2e40-5d6f-4071-acbd-2e3f4a5b6c7d";

fn id(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// The unified hierarchy's mount (cgroup2 in /proc/self/mountinfo, at its root).
fn unified() -> Option<PathBuf> {
    tcperr_userspace::container::unified_mount()
}

/// The cgroups of the test, under `/tcperr-test-PID` on the unified hierarchy, removed on drop
/// (deepest first, once their processes have left).
struct Cgroups {
    root: PathBuf,
    top: String,
    made: Vec<PathBuf>,
}

impl Cgroups {
    fn make(&mut self, rel: &str) -> (PathBuf, String) {
        let path = format!("{}{rel}", self.top);
        let mut dir = self.root.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
                self.made.push(dir.clone());
            }
        }
        (dir, path)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            if let Err(e) = std::fs::remove_dir(dir) {
                eprintln!("rmdir {dir:?}: {e}");
            }
        }
    }
}

/// What the test checks of an event: kind, whose (the helper's role), and where.
fn summary(ev: &Value, roles: &[(u32, &str)]) -> String {
    let role = |pid: &Value| {
        pid.as_u64()
            .and_then(|p| roles.iter().find(|(r, _)| u64::from(*r) == p))
            .map_or("?".to_owned(), |(_, n)| (*n).to_owned())
    };
    let s = |k: &str| ev[k].as_str().map_or("-".to_owned(), str::to_owned);
    let short = |v: String| if v.len() == 64 { v[..4].to_owned() } else { v };
    format!(
        "{} {} cgroup={} runtime={} id={} pod={}/{} container={} peer={} peer_pod={}/{}",
        s("kind"),
        role(&ev["pid"]),
        s("cgroup"),
        s("runtime"),
        short(s("container_id")),
        s("namespace"),
        s("pod"),
        s("container"),
        role(&ev["peer_pid"]),
        s("peer_namespace"),
        s("peer_pod"),
    )
}

fn every_event_names_its_container_pod_and_peer_in_each_runtimes_layout() {
    let Some(root) = unified() else {
        println!("skipped: no cgroup v2 (unified) hierarchy mounted on this host");
        return;
    };
    let top = format!("/tcperr-test-{}", std::process::id());
    let mut cg = Cgroups { root, top: top.clone(), made: Vec::new() };
    let (api_id, checkout_id, cart_id, docker_id, podman_id) =
        (id('a'), id('b'), id('c'), id('d'), id('e'));
    let api_uid = UID_API.replace('-', "_");
    let (api, api_path) = cg.make(&format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{api_uid}.slice/cri-containerd-{api_id}.scope"
    ));
    let (checkout, checkout_path) =
        cg.make(&format!("/kubepods/besteffort/pod{UID_CHECKOUT}/{checkout_id}"));
    let cart_uid = UID_CART.replace('-', "_");
    let (cart, cart_path) =
        cg.make(&format!("/kubepods.slice/kubepods-pod{cart_uid}.slice/crio-{cart_id}.scope"));
    // (CRI-O's monitor beside it: a cgroup that is not the container)
    cg.make(&format!("/kubepods.slice/kubepods-pod{cart_uid}.slice/crio-conmon-{cart_id}.scope"));
    let (docker, docker_path) = cg.make(&format!("/system.slice/docker-{docker_id}.scope"));
    let (podman, podman_path) =
        cg.make(&format!("/machine.slice/libpod-{podman_id}.scope/container"));
    let (service, service_path) = cg.make("/system.slice/tcperr-test-client.service");

    // The kubelet's log tree: pay/api-5f6 (one container), shop/checkout-7d9 (two, and the
    // kubelet's link naming this one by id), shop/cart-1a2 (two, no link: no name).
    let tmp = std::env::temp_dir().join(format!("tcperr-containers-{}", std::process::id()));
    let pods = tmp.join("pods");
    for dir in [
        format!("pay_api-5f6_{UID_API}/api"),
        format!("shop_checkout-7d9_{UID_CHECKOUT}/app"),
        format!("shop_checkout-7d9_{UID_CHECKOUT}/init"),
        format!("shop_cart-1a2_{UID_CART}/cart"),
        format!("shop_cart-1a2_{UID_CART}/sidecar"),
    ] {
        std::fs::create_dir_all(pods.join(dir)).expect("pods dir");
    }
    std::fs::create_dir_all(tmp.join("containers")).expect("containers dir");
    std::fs::write(tmp.join(format!("containers/checkout-7d9_shop_app-{checkout_id}.log")), "")
        .expect("link");

    // Docker's and podman's own state, as each keeps it: the docker container is "web-1", the
    // podman one is "worker" (and another podman container, no cgroup here, "other").
    let docker_root = tmp.join("docker");
    std::fs::create_dir_all(docker_root.join(format!("containers/{docker_id}"))).expect("docker");
    std::fs::write(
        docker_root.join(format!("containers/{docker_id}/config.v2.json")),
        format!(r#"{{"ID":"{docker_id}","Name":"/web-1","State":{{"Running":true}}}}"#),
    )
    .expect("docker state");
    let storage_root = tmp.join("storage");
    std::fs::create_dir_all(storage_root.join("overlay-containers")).expect("storage");
    std::fs::write(
        storage_root.join("overlay-containers/containers.json"),
        format!(
            r#"[{{"id":"{}","names":["other"]}},{{"id":"{podman_id}","names":["worker"],"image":"x"}}]"#,
            id('f')
        ),
    )
    .expect("podman state");

    let pods_arg = pods.to_str().expect("utf-8").to_owned();
    let (docker_arg, storage_arg) = (
        docker_root.to_str().expect("utf-8").to_owned(),
        storage_root.to_str().expect("utf-8").to_owned(),
    );
    let tcperr = drive::start(
        Path::new(TCPERR),
        &[
            "--pods-dir",
            &pods_arg,
            "--docker-root",
            &docker_arg,
            "--storage-root",
            &storage_arg,
            "--cgroup",
            &top,
        ],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|(code, e)| panic!("tcperr did not start ({code:?}): {e}"));
    let by_pod = drive::start(
        Path::new(TCPERR),
        &["--pods-dir", &pods_arg, "--pod", "shop/checkout-7d9"],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|(code, e)| panic!("tcperr --pod did not start ({code:?}): {e}"));

    // 1. containerd (systemd driver) aborts a connection from a cgroupfs-driver pod: the RST
    //    reaches the client in softirq, inside the server's close().
    let mut server = Helper::start(&api, "new");
    let mut client = Helper::start(&checkout, &server.pid().to_string());
    let port = server.run("listen");
    assert_eq!(client.run(&format!("connect {port}")), "ok");
    assert_eq!(server.run("accept"), "ok");
    assert_eq!(server.run("abort"), "ok");
    assert_eq!(client.run("read"), "err 104");
    let (api_pid, checkout_pid) = (server.pid(), client.pid());
    server.exit();
    client.exit();

    // 2. A CRI-O pod's process closes and exits; the docker container writes to it twice: the
    //    first draws the RST the orphaned socket sends (after its owner exited, in the writer's
    //    call), the second fails with EPIPE.
    let mut server = Helper::start(&cart, "new");
    let mut client = Helper::start(&docker, &server.pid().to_string());
    let port = server.run("listen");
    assert_eq!(client.run(&format!("connect {port}")), "ok");
    assert_eq!(server.run("accept"), "ok");
    assert_eq!(server.run("close"), "ok");
    let cart_pid = server.pid();
    server.exit();
    assert_eq!(client.run("read"), "eof");
    assert_eq!(client.run("write"), "wrote 7");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(client.run("write"), "err 32");
    let docker_pid = client.pid();
    client.exit();

    // 3. A systemd service's request is left unread by a podman container, which closes: its
    //    kernel resets.
    let mut server = Helper::start(&podman, "new");
    let mut client = Helper::start(&service, &server.pid().to_string());
    let port = server.run("listen");
    assert_eq!(client.run(&format!("connect {port}")), "ok");
    assert_eq!(server.run("accept"), "ok");
    assert_eq!(client.run("write"), "wrote 7");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.run("close"), "ok");
    assert_eq!(client.run("read"), "err 104");
    let (podman_pid, service_pid) = (server.pid(), client.pid());
    server.exit();
    client.exit();

    let stopped = drive::stop(tcperr).expect("stop");
    let stopped_by_pod = drive::stop(by_pod).expect("stop --pod");
    assert_eq!(stopped.code, 0, "{:?}", stopped.stderr);
    support::assert_all_schema(&stopped.events);
    let roles = [
        (api_pid, "api"),
        (checkout_pid, "checkout"),
        (cart_pid, "cart"),
        (docker_pid, "docker"),
        (podman_pid, "podman"),
        (service_pid, "service"),
    ];
    let events: Vec<&Value> = stopped.events.iter().filter(|e| e["kind"] != "summary").collect();
    let got: BTreeSet<String> = events.iter().map(|e| summary(e, &roles)).collect();
    let want: BTreeSet<String> = [
        // (an abort's RST names no peer: the client's socket is not yet known by its 4-tuple)
        format!("rst_sent api cgroup={api_path} runtime=containerd id=aaaa pod=pay/api-5f6 container=api peer=? peer_pod=-/-"),
        // (softirq: the running task was the server's)
        format!("rst_received checkout cgroup={checkout_path} runtime=- id=bbbb pod=shop/checkout-7d9 container=app peer=api peer_pod=pay/api-5f6"),
        format!("recv_error checkout cgroup={checkout_path} runtime=- id=bbbb pod=shop/checkout-7d9 container=app peer=api peer_pod=pay/api-5f6"),
        // (its owner has exited; the running task was the docker container's)
        format!("rst_sent cart cgroup={cart_path} runtime=cri-o id=cccc pod=shop/cart-1a2 container=- peer=docker peer_pod=-/-"),
        format!("rst_received docker cgroup={docker_path} runtime=docker id=dddd pod=-/- container=web-1 peer=cart peer_pod=shop/cart-1a2"),
        format!("send_error docker cgroup={docker_path} runtime=docker id=dddd pod=-/- container=web-1 peer=cart peer_pod=shop/cart-1a2"),
        format!("rst_sent podman cgroup={podman_path} runtime=podman id=eeee pod=-/- container=worker peer=? peer_pod=-/-"),
        format!("rst_received service cgroup={service_path} runtime=systemd id=- pod=-/- container=- peer=podman peer_pod=-/-"),
        format!("recv_error service cgroup={service_path} runtime=systemd id=- pod=-/- container=- peer=podman peer_pod=-/-"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        got,
        want,
        "\nmissing: {:#?}\nunexpected: {:#?}\nall: {:#?}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>(),
        stopped.events
    );
    // The explanation names the peer's pod (and the container, the unit) too.
    let line = |kind: &str, pid: u32| {
        stopped
            .events
            .iter()
            .find(|e| e["kind"] == kind && e["pid"] == pid)
            .and_then(|e| e["explanation"].as_str())
            .unwrap_or_else(|| panic!("no {kind} of {pid}"))
            .to_owned()
    };
    let failed = line("recv_error", checkout_pid);
    assert!(
        failed.contains(&format!("(pid {api_pid} ")) && failed.contains(" in pay/api-5f6)"),
        "{failed}"
    );
    let failed = line("send_error", docker_pid);
    assert!(failed.contains(" in shop/cart-1a2)"), "{failed}");
    let failed = line("recv_error", service_pid);
    // (podman's own name for it, from its storage)
    assert!(failed.contains(" in worker)"), "{failed}");
    // The summary: a pod's errors are its row (no pid), the others their process's.
    let rows: BTreeSet<String> = stopped
        .events
        .iter()
        .filter(|e| e["kind"] == "summary")
        .map(|e| format!("{} pod={} pid={}", e["errno"], e["pod"], e["pid"]))
        .collect();
    let want: BTreeSet<String> = [
        format!("\"ECONNRESET\" pod=null pid={service_pid}"),
        "\"ECONNRESET\" pod=\"shop/checkout-7d9\" pid=null".to_owned(),
        format!("\"EPIPE\" pod=null pid={docker_pid}"),
    ]
    .into_iter()
    .collect();
    assert_eq!(rows, want);
    // --pod: that pod's events only.
    let kinds: BTreeSet<(String, u64)> = stopped_by_pod
        .events
        .iter()
        .filter(|e| e["kind"] != "summary")
        .map(|e| (e["kind"].as_str().unwrap_or("?").to_owned(), e["pid"].as_u64().unwrap_or(0)))
        .collect();
    let want: BTreeSet<(String, u64)> = [
        ("rst_received".to_owned(), u64::from(checkout_pid)),
        ("recv_error".to_owned(), u64::from(checkout_pid)),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, want, "{:#?}", stopped_by_pod.events);
    drop(cg);
    std::fs::remove_dir_all(&tmp).expect("rm pods dir");
}
