//! Key custody through a real KMS v2 plugin process: the harness's plugin (built on
//! `k8s.io/kms`'s gRPC service, the one the apiserver tests use for encryption at rest)
//! on a unix socket. Restarts, KEK rotation, an unhealthy and a stopped plugin, another
//! plugin's KEK and a moved key, each as an attacker or an outage would meet them.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{IDENTITY, context};
use kseal_custody::{
    Context, Custodian, Error, KmsV2, WrappedIdentity, unwrap_identity, wrap_identity,
};

/// One plugin process with its root key, socket and control file in `dir`.
struct Plugin {
    dir: PathBuf,
    child: Child,
}

impl Plugin {
    fn start(dir: &Path) -> Plugin {
        let socket = dir.join("kms.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(kseal_tests::cluster::binary().unwrap())
            .arg("kms-plugin")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", dir.join("kms.key").display()))
            .arg(format!("--control={}", dir.join("kms.control").display()))
            .spawn()
            .unwrap();
        // Accepting, not only bound: the socket file exists from bind(), and a connection
        // made before listen() is refused.
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the plugin did not accept on its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Plugin {
            dir: dir.to_path_buf(),
            child,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("kms.sock")
    }

    /// What a KMS administrator does: rotate the KEK, or take the plugin's key away.
    fn control(&self, key_id: &str, healthy: bool) {
        let staged = self.dir.join("kms.control.new");
        std::fs::write(&staged, format!("key-id={key_id}\nhealthy={healthy}\n")).unwrap();
        std::fs::rename(staged, self.dir.join("kms.control")).unwrap();
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(plugin: &Plugin) -> Custodian {
    Custodian::KmsV2(KmsV2::new(&plugin.socket(), Duration::from_secs(5)))
}

#[tokio::test]
async fn a_key_wrapped_by_the_plugin_opens_through_it_only_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path());
    let kms = client(&plugin);
    let Custodian::KmsV2(plugin_client) = &kms else {
        unreachable!()
    };
    let status = plugin_client.status().await.unwrap();
    assert_eq!(
        (status.healthz.as_str(), status.version.as_str()),
        ("ok", "v2")
    );

    let wrapped = wrap_identity(&kms, IDENTITY, &context()).await.unwrap();
    assert_eq!(wrapped.kek_id, status.key_id);
    let stored = wrapped.to_json();
    // What a reader of the Secret, or of etcd, gets: no identity in it.
    assert!(!String::from_utf8_lossy(&stored).contains("AGE-SECRET-KEY"));
    let read = WrappedIdentity::from_json(&stored).unwrap();
    let opened = unwrap_identity(&kms, &read, &context()).await.unwrap();
    assert_eq!(&*opened, IDENTITY);

    // Copied to another Secret name or another cluster: the plugin unwraps the data key,
    // the identity still does not open.
    for moved in [
        Context {
            name: "kseal-key-copied".into(),
            ..context()
        },
        Context {
            cluster: "another-cluster".into(),
            ..context()
        },
    ] {
        let err = unwrap_identity(&kms, &read, &moved).await.unwrap_err();
        assert!(matches!(err, Error::WrongContext(_)), "{err}");
    }
}

#[tokio::test]
async fn a_restarted_plugin_and_a_rotated_kek_still_open_every_wrapped_key() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path());
    let kms = client(&plugin);
    let before = wrap_identity(&kms, IDENTITY, &context()).await.unwrap();

    // The KMS administrator rotates the KEK: new keys are wrapped under the new one, the
    // old ones still open.
    plugin.control("kek-rotated", true);
    let after = wrap_identity(&kms, IDENTITY, &context()).await.unwrap();
    assert_eq!(after.kek_id, "kek-rotated");
    assert_ne!(before.kek_id, after.kek_id);
    for wrapped in [&before, &after] {
        let opened = unwrap_identity(&kms, wrapped, &context()).await.unwrap();
        assert_eq!(&*opened, IDENTITY);
    }

    // The plugin restarts (a node reboot, a new sidecar): the same client reconnects.
    plugin.stop();
    let plugin = Plugin::start(dir.path());
    for wrapped in [&before, &after] {
        let opened = unwrap_identity(&kms, wrapped, &context()).await.unwrap();
        assert_eq!(&*opened, IDENTITY);
    }
    drop(plugin);
}

#[tokio::test]
async fn an_unhealthy_or_stopped_plugin_is_an_error_that_names_it_and_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path());
    let kms = client(&plugin);
    let wrapped = wrap_identity(&kms, IDENTITY, &context()).await.unwrap();

    plugin.control("kseal-test-1", false);
    let Custodian::KmsV2(plugin_client) = &kms else {
        unreachable!()
    };
    assert_ne!(plugin_client.status().await.unwrap().healthz, "ok");
    let refused = unwrap_identity(&kms, &wrapped, &context())
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Refused { .. }), "{refused}");
    let wrap_refused = wrap_identity(&kms, IDENTITY, &context()).await.unwrap_err();
    assert!(
        matches!(wrap_refused, Error::Refused { .. }),
        "{wrap_refused}"
    );

    plugin.control("kseal-test-1", true);
    let socket = plugin.socket();
    plugin.stop();
    let down = unwrap_identity(&kms, &wrapped, &context())
        .await
        .unwrap_err();
    assert!(matches!(down, Error::Unreachable { .. }), "{down}");
    for err in [&refused, &wrap_refused, &down] {
        let text = format!("{err} {err:?}");
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
    }
}

#[tokio::test]
async fn another_plugins_kek_does_not_open_the_key() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let our_plugin = Plugin::start(ours.path());
    let their_plugin = Plugin::start(theirs.path());
    let wrapped = wrap_identity(&client(&our_plugin), IDENTITY, &context())
        .await
        .unwrap();
    // Same key id, another root key: as a backup restored beside the wrong KMS key.
    let err = unwrap_identity(&client(&their_plugin), &wrapped, &context())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
}
