//! `--pid`, `--comm`, `--port`, `--errno`: each repeatable; a report must match every flag given
//! (any of its values).
use crate::report::Brief;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub ports: Vec<u16>,
    /// errno numbers; 0 stands for EOF.
    pub errnos: Vec<u32>,
    /// `-- CMD`: only the command and its descendants (the event's owner, as attributed).
    pub followed: Option<crate::command::Followed>,
    /// `--container`, `--pod`, `--namespace`, `--cgroup`: applied where the event's cgroup is
    /// resolved (`Correlator::with_cgroups`), before the other flags.
    pub containers: crate::container::Selector,
}

/// The kernel keeps 15 bytes of a task name.
const COMM_LEN: usize = 15;

pub fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a process id (a positive integer)")),
        Ok(p) => Ok(p),
    }
}

pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a TCP port (1-65535)")),
        Ok(p) => Ok(p),
    }
}

pub fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty process name".into());
    }
    // Match what the kernel stores: the first 15 bytes.
    let mut end = s.len().min(COMM_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(s[..end].to_owned())
}

impl Filter {
    pub fn matches(&self, r: &Brief) -> bool {
        (self.pids.is_empty() || r.pid.is_some_and(|p| self.pids.contains(&p)))
            && (self.comms.is_empty()
                || r.comm.is_some_and(|c| self.comms.iter().any(|f| f == c.as_str())))
            && (self.ports.is_empty()
                || self.ports.contains(&r.lport)
                || self.ports.contains(&r.rport))
            && (self.errnos.is_empty() || r.errno_code.is_some_and(|e| self.errnos.contains(&e)))
            && self.followed.as_ref().is_none_or(|f| r.pid.is_some_and(|p| f.contains(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Brief {
        Brief::sample()
    }

    #[test]
    fn every_flag_must_match_and_any_value_of_a_flag_does() {
        let r = report();
        assert!(Filter::default().matches(&r));
        assert!(Filter { ports: vec![1, 8080], ..Default::default() }.matches(&r));
        assert!(Filter { ports: vec![40000], ..Default::default() }.matches(&r));
        assert!(!Filter { ports: vec![8081], ..Default::default() }.matches(&r));
        assert!(Filter { pids: vec![42], errnos: vec![32], ..Default::default() }.matches(&r));
        assert!(!Filter { pids: vec![42], errnos: vec![104], ..Default::default() }.matches(&r));
        assert!(!Filter { comms: vec!["wget".into()], ..Default::default() }.matches(&r));
    }

    #[test]
    fn events_without_owner_or_errno_never_match_those_filters() {
        let mut r = report();
        r.pid = None;
        r.errno_code = None;
        assert!(!Filter { pids: vec![42], ..Default::default() }.matches(&r));
        assert!(!Filter { errnos: vec![32], ..Default::default() }.matches(&r));
    }

    #[test]
    fn parses_flag_values_or_says_what_is_wrong() {
        assert_eq!(parse_pid("17"), Ok(17));
        assert!(parse_pid("0").unwrap_err().contains("process id"));
        assert!(parse_pid("-3").is_err());
        assert!(parse_pid("abc").is_err());
        assert_eq!(parse_port("443"), Ok(443));
        assert!(parse_port("65536").unwrap_err().contains("1-65535"));
        assert!(parse_port("0").is_err());
        assert_eq!(parse_comm("a-very-long-process-name").unwrap(), "a-very-long-pro");
        assert!(parse_comm("").is_err());
    }
}
