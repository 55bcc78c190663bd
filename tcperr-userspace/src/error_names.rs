//! errno names (`EPIPE`; `EOF` for 0, a 0-byte read after the peer's FIN), the words programs
//! print for them (Go's wording, which glibc's `strerror` matches up to capitalisation), and
//! parsing them. The numbers themselves are `tcperr_common::tcp::errno`.

/// (number, name, words) for the errors TCP sockets report.
const TABLE: &[(u32, &str, &str)] = &[
    (1, "EPERM", "operation not permitted"),
    (4, "EINTR", "interrupted system call"),
    (5, "EIO", "input/output error"),
    (9, "EBADF", "bad file descriptor"),
    (11, "EAGAIN", "resource temporarily unavailable"),
    (12, "ENOMEM", "cannot allocate memory"),
    (13, "EACCES", "permission denied"),
    (14, "EFAULT", "bad address"),
    (22, "EINVAL", "invalid argument"),
    (23, "ENFILE", "too many open files in system"),
    (24, "EMFILE", "too many open files"),
    (32, "EPIPE", "broken pipe"),
    (71, "EPROTO", "protocol error"),
    (74, "EBADMSG", "bad message"),
    (90, "EMSGSIZE", "message too long"),
    (95, "EOPNOTSUPP", "operation not supported"),
    (97, "EAFNOSUPPORT", "address family not supported by protocol"),
    (98, "EADDRINUSE", "address already in use"),
    (99, "EADDRNOTAVAIL", "cannot assign requested address"),
    (100, "ENETDOWN", "network is down"),
    (101, "ENETUNREACH", "network is unreachable"),
    (102, "ENETRESET", "network dropped connection on reset"),
    (103, "ECONNABORTED", "software caused connection abort"),
    (104, "ECONNRESET", "connection reset by peer"),
    (105, "ENOBUFS", "no buffer space available"),
    (106, "EISCONN", "transport endpoint is already connected"),
    (107, "ENOTCONN", "transport endpoint is not connected"),
    (108, "ESHUTDOWN", "cannot send after transport endpoint shutdown"),
    (110, "ETIMEDOUT", "connection timed out"),
    (111, "ECONNREFUSED", "connection refused"),
    (112, "EHOSTDOWN", "host is down"),
    (113, "EHOSTUNREACH", "no route to host"),
    (114, "EALREADY", "operation already in progress"),
    (115, "EINPROGRESS", "operation now in progress"),
    (125, "ECANCELED", "operation canceled"),
];

/// The name for `--errno` filters and JSON that stands for a 0-byte read after the peer's FIN.
pub const EOF: &str = "EOF";

/// The errno's name (`EPIPE`), `EOF` for 0 (a 0-byte read after the peer's FIN), `E<n>` for
/// one TCP sockets do not report.
pub fn name(errno: u32) -> String {
    known(errno, |(_, name, _)| name).unwrap_or_else(|| format!("E{errno}"))
}

/// The words programs print for the errno (`broken pipe`), `EOF` for 0.
pub fn words(errno: u32) -> String {
    known(errno, |(.., words)| words).unwrap_or_else(|| format!("errno {errno}"))
}

/// `pick` of the errno's table entry; `EOF` for 0; None for an errno not in the table.
fn known(
    errno: u32,
    pick: fn(&(u32, &'static str, &'static str)) -> &'static str,
) -> Option<String> {
    if errno == 0 {
        return Some(EOF.to_owned());
    }
    TABLE.iter().find(|(n, ..)| *n == errno).map(|e| pick(e).to_owned())
}

/// Parses an errno given by name (`EPIPE`, `epipe`), by number (`32`), or `EOF` (returns 0,
/// as does `0`: EOF's `errno_code`). Refuses those tcperr never reports, which no filter could
/// match: EAGAIN and EINTR (a healthy program meets them all the time) and the kernel's
/// internal restart codes.
pub fn parse(s: &str) -> Result<u32, String> {
    if s.eq_ignore_ascii_case(EOF) {
        return Ok(0);
    }
    let n = match s.parse::<u32>() {
        Ok(n) if n < 4096 => n,
        Ok(_) => return Err(format!("errno {s} out of range 0..4095")),
        Err(_) => TABLE
            .iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(s))
            .map(|(n, ..)| *n)
            .ok_or_else(|| {
                format!("unknown errno name {s:?} (try EPIPE, ECONNRESET, ECONNREFUSED, ETIMEDOUT, EOF or a number)")
            })?,
    };
    match n {
        4 | 11 | 512..=516 => Err(format!(
            "{s} is never reported: a healthy program meets it all the time (try EPIPE, ECONNRESET, ECONNREFUSED, ETIMEDOUT, EOF)"
        )),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_words_match_what_programs_print() {
        assert_eq!((name(32).as_str(), words(32).as_str()), ("EPIPE", "broken pipe"));
        assert_eq!(words(104), "connection reset by peer");
        assert_eq!(words(111), "connection refused");
        assert_eq!(name(4000), "E4000");
        assert_eq!((name(0).as_str(), words(0).as_str()), ("EOF", "EOF"));
        assert_eq!(parse(&name(0)), Ok(0));
    }

    #[test]
    fn parses_names_numbers_and_eof() {
        assert_eq!(parse("EPIPE"), Ok(32));
        assert_eq!(parse("econnreset"), Ok(104));
        assert_eq!(parse("110"), Ok(110));
        assert_eq!(parse("eof"), Ok(0));
        assert!(parse("EWHAT").is_err());
        assert_eq!(parse("0"), Ok(0), "EOF's errno_code");
        assert!(parse("-5").is_err());
        // Never reported, so no filter of them could match.
        for never in ["EAGAIN", "eintr", "11", "512"] {
            assert!(parse(never).is_err(), "{never}");
        }
    }
}
