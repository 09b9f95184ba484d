//! Ports for the servers tests start (etcd, kube-apiserver, the controller).
//!
//! A port from `bind(":0")` comes from the kernel's ephemeral range, and is free only
//! until something else takes it: any outgoing connection on the machine may be given it
//! as its local port before the server binds it, and kube-apiserver then exits with
//! "address already in use". So ports here come from below the ephemeral range, where
//! the kernel never hands them out by itself, and each is reserved across the test
//! processes running in parallel by a lock on a file named after it, held until the
//! process that took it exits.

use std::fs::{File, TryLockError};
use std::io;
use std::net::TcpListener;
use std::sync::Mutex;

/// The locks this process holds; dropping one would free its port for another process.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A port no other test process holds and nothing on the machine listens on.
pub fn free_port() -> io::Result<u16> {
    let (low, high) = unassigned_range();
    let dir = std::env::temp_dir().join("kseal-ports");
    std::fs::create_dir_all(&dir)?;
    let span = u32::from(high - low);
    let start = rand::random::<u32>() % span;
    for offset in 0..span {
        let port = low + ((start + offset) % span) as u16;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => return Err(e),
        }
        // The wildcard address covers loopback and the host's own (some tests serve on it).
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock);
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port in {low}..{high}"),
    ))
}

/// Ports the kernel does not pick for outgoing connections: below
/// `net.ipv4.ip_local_port_range` when there is room there, else above it.
fn unassigned_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut ends = text.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((ends.next()??, ends.next()??))
        });
    match ephemeral {
        Some((low, _)) if low >= 12_000 => (10_000, low),
        Some((_, high)) if high <= 63_000 => (high + 1, u16::MAX),
        _ => (10_000, 32_768),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_outside_the_ephemeral_range() {
        let (low, high) = unassigned_range();
        let ports: Vec<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        assert!(ports.iter().all(|p| (low..high).contains(p)), "{ports:?}");
    }
}
