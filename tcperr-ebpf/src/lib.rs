#![no_std]
//! The programs are the `tcperr` binary target (src/main.rs); this empty library only lets
//! tcperr-userspace name this crate as a build-dependency (so cargo rebuilds on change).
