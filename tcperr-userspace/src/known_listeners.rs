//! The listeners that called `listen()` before tcperr started, put into the kernel side's map of
//! listeners (`tcperr-ebpf/src/listeners_iter.rs`), once, right after the hooks are attached
//! (from then on moves to and from LISTEN keep the map). The `tcp` BPF iterator walks the TCP
//! sockets of the network namespace it is opened in: one is opened in each namespace some task
//! is in (`/proc/PID/task/TID/ns/net`, one per namespace inode), from a short-lived thread that
//! enters it with `setns()`. Entering another namespace needs CAP_SYS_ADMIN, reading another
//! user's task links CAP_SYS_PTRACE: without them only the namespaces tcperr may enter are
//! walked. A listener closed during the walk may be noted after its move out of LISTEN: its
//! entry then names no listener of that port, and the next `listen()` on the port replaces it.
use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::PathBuf,
};

use aya::{Ebpf, programs::Iter};
use tcperr_common::names;

/// How many namespaces were walked, and the ones that could not be (with why).
#[derive(Debug, Default)]
pub struct Walked {
    pub namespaces: usize,
    pub skipped: Vec<String>,
}

/// Loads the iterator, walks each namespace's TCP sockets with it, and unloads it.
pub fn note_all(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<Walked, String> {
    let prog: &mut Iter = ebpf
        .program_mut(names::program::LISTENERS_ITER)
        .ok_or("the listeners iterator is not in the object")?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load("tcp", btf).map_err(|e| format!("loading iter/tcp: {e}"))?;
    let own = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()).ok();
    let mut walked = Walked::default();
    for (ino, path) in namespaces() {
        let link = prog
            .attach()
            .and_then(|id| prog.take_link(id))
            .map_err(|e| format!("attaching iter/tcp: {e}"))?;
        let res = if Some(ino) == own {
            walk(link)
        } else {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let ns = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    // SAFETY: a namespace descriptor; only this thread moves into it.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(format!("setns: {}", std::io::Error::last_os_error()));
                    }
                    walk(link)
                })
                .join()
                .unwrap_or_else(|_| Err("the walking thread panicked".into()))
            })
        };
        match res {
            Ok(()) => walked.namespaces += 1,
            Err(e) => walked.skipped.push(format!("net:[{ino}]: {e}")),
        }
    }
    let _ = prog.unload();
    Ok(walked)
}

/// Runs the iterator in the calling thread's namespace to its end.
fn walk(link: aya::programs::iter::IterLink) -> Result<(), String> {
    let mut file = link.into_file().map_err(|e| format!("bpf_iter_create: {e}"))?;
    let mut sink = Vec::new();
    file.read_to_end(&mut sink).map_err(|e| format!("reading the iterator: {e}"))?;
    Ok(())
}

/// Each network namespace some task is in: its inode, and a task's link to it.
fn namespaces() -> BTreeMap<u64, PathBuf> {
    let mut found = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else { continue };
        for t in tasks.flatten() {
            let link = t.path().join("ns/net");
            if let Ok(m) = std::fs::metadata(&link) {
                found.entry(m.ino()).or_insert(link);
            }
        }
    }
    found
}
