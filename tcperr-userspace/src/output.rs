//! Human lines and JSON lines.
use std::io::Write;

use crate::{
    fold::Repeated,
    report::{Report, join_host_port},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

pub const HUMAN_HEADER: &str = "TIME            PID     COMM            EVENT         LOCAL -> REMOTE                               STATE        ERROR";

/// Escapes control characters so a hostile task name cannot forge output.
pub fn escape(s: &str) -> String {
    s.chars().flat_map(char::escape_default).collect()
}

pub fn write(out: &mut impl Write, format: Format, r: &Report) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, r)?;
            out.write_all(b"\n")
        }
        Format::Human => {
            let time = r.time.get(11..26).unwrap_or(&r.time);
            let pid = r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            let comm = r.comm.map_or_else(|| "?".to_owned(), |c| escape(c.as_str()));
            let conn = format!(
                "{} -> {}",
                join_host_port(&r.laddr, r.lport),
                join_host_port(&r.raddr, r.rport)
            );
            let state = match r.newstate {
                Some(new) => format!("{}>{new}", r.state),
                None => r.state.to_owned(),
            };
            let error = match (&r.errno, &r.error) {
                (Some(n), Some(w)) if n == w => n.clone(),
                (Some(n), Some(w)) => format!("{n} ({w})"),
                _ => r.reason.clone().unwrap_or_else(|| "-".into()),
            };
            writeln!(
                out,
                "{time} {pid:<7} {comm:<15} {:<13} {conn:<44} {state:<12} {error}: {}",
                r.kind, r.explanation
            )
        }
    }
}

/// A `repeated` line: how many reports of one story were folded.
pub fn write_repeated(out: &mut impl Write, format: Format, r: &Repeated) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, r)?;
            out.write_all(b"\n")
        }
        Format::Human => {
            let time = r.time.get(11..26).unwrap_or(&r.time);
            let pid = r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            let comm = r.comm.map_or_else(|| "?".to_owned(), |c| escape(c.as_str()));
            let conn = format!("* -> {}", r.raddr);
            let error = r.errno.as_deref().unwrap_or("-");
            writeln!(
                out,
                "{time} {pid:<7} {comm:<15} {:<13} {conn:<44} {:<12} {error}: {}",
                r.kind, "-", r.explanation
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(escape("evil\n\x1b[31m"), "evil\\n\\u{1b}[31m");
        assert_eq!(escape("nginx"), "nginx");
    }
}
