//! Health endpoints of the plain-HTTP servers tests start (etcd, Flux).

/// `GET path` from the plain-HTTP server at `addr` (`host:port`) with HTTP/1.0: the whole
/// answer, status line, headers and body, or `None` when nothing answers within 2 s.
pub(crate) fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    Some(answer)
}
