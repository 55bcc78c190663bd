//! tcperr's userspace: probing the kernel, loading and attaching the eBPF programs, decoding
//! records, attributing them to processes, explaining and printing them.
//!
//! Follow one error from kernel to screen by name: hook `tcperr-ebpf/src/<hook>.rs` → record
//! `tcperr_common::event::<Kind>` → [`decode::Event::<Kind>`] → [`correlate::Correlator`] →
//! [`explain::explain`] → [`output::write`].

pub mod btf;
pub mod check;
pub mod cli;
pub mod command;
pub mod container;
pub mod correlate;
pub mod decode;
pub mod drops;
pub mod error_names;
pub mod explain;
pub mod filter;
pub mod fold;
pub mod held_close;
pub mod journal;
pub mod kernel_file;
pub mod known_listeners;
pub mod load;
pub mod metrics;
pub mod output;
pub mod owner;
pub mod privileges;
pub mod probe;
pub mod proc_sockets;
pub mod query;
pub mod read;
pub mod report;
pub mod serve;
pub mod stakes;
pub mod story;
pub mod summary;
pub mod syn_drops;
pub mod trace;
pub mod tracefs;
pub mod tty;
pub mod writer;
