//! One file per scenario, named after the case a user meets.
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    thread::{self, JoinHandle},
};

use self::accept_queue_overflow::Listener;
use crate::{Actor, Expected, Needs, Run, sock};

mod accept_queue_overflow;
mod broken_pipe;
mod eof;
mod refused;
mod reset_by_abort;
mod reset_by_unread_data;
mod silent_peer;
mod syn_flood;
pub use syn_flood::{kernel_tells_syn_drops, run_with as syn_flood_with};
mod unanswered;

/// Every scenario, by name.
pub const ALL: &[&str] = &[
    "broken_pipe",
    "reset_by_abort",
    "reset_by_unread_data",
    "eof",
    "unanswered",
    "refused",
    "refused_nonblocking",
    "reset_by_abort_ipv6",
    "silent_peer",
    "accept_queue_overflow_reset",
    "accept_queue_overflow_drop",
    "too_many_open_files",
    "prefork_too_many_open_files",
    "syn_flood_accept_queue_full",
    "syn_flood_accept_queue_full_syncookies",
];

/// Runs scenario `name`; Err names the valid ones or says what the kernel did not do.
pub fn run(name: &str) -> Result<Run, String> {
    let started = tcperr_common::clock::monotonic_ns();
    let mut run = match name {
        "broken_pipe" => broken_pipe::run(),
        "reset_by_abort" => reset_by_abort::run(false),
        "reset_by_abort_ipv6" => reset_by_abort::run(true),
        "reset_by_unread_data" => reset_by_unread_data::run(),
        "eof" => eof::run(),
        "unanswered" => unanswered::run(),
        "refused" => refused::run(false),
        "refused_nonblocking" => refused::run(true),
        "silent_peer" => silent_peer::run(),
        "accept_queue_overflow_reset" => accept_queue_overflow::run(true, Listener::Idle),
        "accept_queue_overflow_drop" => accept_queue_overflow::run(false, Listener::Idle),
        "too_many_open_files" => accept_queue_overflow::run(false, Listener::OutOfFiles),
        "prefork_too_many_open_files" => {
            accept_queue_overflow::run(false, Listener::PreforkOutOfFiles)
        }
        "syn_flood_accept_queue_full" => syn_flood::run(false),
        "syn_flood_accept_queue_full_syncookies" => syn_flood::run(true),
        _ => Err(format!("unknown scenario {name:?}; valid: {}", ALL.join(", "))),
    }?;
    // (after the scenario's function returned: its sockets are closed, their last RSTs sent)
    run.during_ns = (started, tcperr_common::clock::monotonic_ns());
    Ok(run)
}

type Outcome<T> = Result<T, String>;

/// Runs `f` on a thread named `name` (its comm), returning the actor and `f`'s result.
fn actor<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> Outcome<T> + Send + 'static,
) -> JoinHandle<(Actor, Outcome<T>)> {
    thread::Builder::new()
        .name(name.into())
        .spawn(move || (Actor { name, pid: sock::pid(), tid: sock::tid() }, f()))
        .expect("spawning a scenario thread")
}

fn join<T>(h: JoinHandle<(Actor, Outcome<T>)>) -> Outcome<(Actor, T)> {
    let (actor, out) = h.join().map_err(|_| "scenario thread panicked".to_owned())?;
    match out {
        Ok(t) => Ok((actor, t)),
        Err(e) => Err(format!("{}: {e}", actor.name)),
    }
}

fn ctx<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// An expected event: `path` is "client->server" or "server->client" (local->remote).
fn ev(
    kind: &'static str,
    actor: &'static str,
    path: &'static str,
    state: &'static str,
    errno: &'static str,
    cause: &'static str,
) -> Expected {
    let (local, remote) = path.split_once("->").expect("path is local->remote");
    Expected {
        kind,
        actor,
        local,
        remote,
        state,
        errno,
        cause,
        cause_without_reason: None,
        needs: None,
        retransmits: None,
    }
}

impl Expected {
    /// The cause tcperr infers on kernels that give no RST reason.
    fn without_reason(mut self, cause: &'static str) -> Self {
        self.cause_without_reason = Some(cause);
        self
    }

    /// The retransmissions the event must carry.
    fn retransmits(mut self, r: crate::Retransmits) -> Self {
        self.retransmits = Some(r);
        self
    }

    /// Marks an event only some kernels report.
    fn needs(mut self, needs: Needs) -> Self {
        self.needs = Some(needs);
        self
    }
}

fn finish(
    scenario: &'static str,
    server: SocketAddr,
    client_ports: impl IntoIterator<Item = u16>,
    actors: Vec<Actor>,
    expected: Vec<Expected>,
) -> Run {
    Run {
        scenario,
        ip: server.ip(),
        server_port: server.port(),
        client_ports: client_ports.into_iter().collect::<BTreeSet<_>>(),
        actors,
        expected,
        during_ns: (0, u64::MAX),
    }
}
