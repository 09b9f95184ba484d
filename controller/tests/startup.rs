//! A controller that cannot serve its endpoints does not run: without /healthz, /readyz,
//! /metrics and /v1/recipients nobody could see it, probe it or seal to it, yet it would
//! lead and unseal. A port already taken stops it at once, with the flag and address.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

fn controller(listen: &str, metrics: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    // A kubeconfig that loads (no connection is made before the ports are bound).
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n\
         current-context: x\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
        .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--listen-addr", listen, "--metrics-addr", metrics])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must exit by itself; a controller still running after this long kept going
    // without its endpoints (it would retry the unreachable apiserver forever).
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    panic!(
        "the controller kept running without its endpoints: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_port_already_taken_stops_the_controller() {
    // Held for the whole test.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let free = || {
        kseal_tests::ports::free_port()
            .map(|p| format!("127.0.0.1:{p}"))
            .unwrap()
    };
    for (flag, listen, metrics) in [
        ("--listen-addr", taken.clone(), free()),
        ("--metrics-addr", free(), taken.clone()),
    ] {
        let out = controller(&listen, &metrics);
        assert!(!out.status.success(), "{flag}: exit status");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("binding {flag} {taken}")),
            "{flag}: the error names the flag and address: {err}"
        );
    }
}
