//! Encryption at rest: an apiserver's `EncryptionConfiguration`, the KMS v2 plugin the
//! harness runs, and what etcd holds for a Secret.

use super::*;

impl ControlPlane {
    /// Writes an apiserver's `EncryptionConfiguration` (`None`: no
    /// `--encryption-provider-config` at all) and sets the flag; starts the KMS plugin when
    /// the config names its socket. Takes effect when that apiserver next starts, or
    /// within a second when it runs with `--encryption-provider-config-automatic-reload`
    /// (the harness shortens the upstream minute: `KSEAL_ENCRYPTION_CONFIG_POLL`).
    pub async fn write_encryption_config(
        &self,
        apiserver: Component,
        config: Option<&str>,
    ) -> Result<(), Error> {
        let path = self.path(&format!("{}-encryption.yaml", apiserver.name()));
        let flag = format!("--encryption-provider-config={}", path.display());
        let socket = self.path("kms.sock");
        if let Some(config) = config {
            let config = config.replace("KMS_SOCKET", &socket.to_string_lossy());
            // Replaced whole: a reloading apiserver never reads half a file.
            let staged = path.with_extension("yaml.new");
            std::fs::write(&staged, &config)?;
            std::fs::rename(&staged, &path)?;
            if config.contains("unix://") {
                self.start_kms_plugin().await?;
            }
        }
        let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, args)) = commands.iter_mut().find(|(c, _)| *c == apiserver) {
            args.retain(|a| !a.starts_with("--encryption-provider-config="));
            if config.is_some() {
                args.push(flag);
            }
        }
        Ok(())
    }

    /// Starts the KMS v2 plugin (unless it runs) and waits until its socket accepts a
    /// connection (the socket file exists from `bind()`, before `listen()`). Returns the
    /// socket's path: the apiserver's encryption at rest and kseal's key custody can
    /// share the one plugin.
    pub async fn start_kms_plugin(&self) -> Result<PathBuf, Error> {
        let socket = self.path("kms.sock");
        if !self.running(Component::KmsPlugin) {
            self.spawn(Component::KmsPlugin, &binary()?)?;
        }
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if started.elapsed() > START_TIMEOUT {
                return Err("the KMS plugin did not accept connections on its socket".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(socket)
    }

    /// Every key under `prefix` in etcd with its current value, as stored.
    pub async fn stored_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let range = kseal_etcd::Range {
            key: prefix.as_bytes().to_vec(),
            range_end: kseal_etcd::prefix_end(prefix.as_bytes()),
            limit: 0,
            revision: 0,
        };
        let found = self.etcd().await?.range(range).await?;
        Ok(found
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.value))
            .collect())
    }

    /// Restarts the apiserver with a new `EncryptionConfiguration` (`None`: without one),
    /// as an administrator changing a static pod's manifest does.
    pub async fn set_encryption_config(&self, config: Option<&str>) -> Result<(), Error> {
        self.write_encryption_config(Component::ApiServer, config)
            .await?;
        self.restart(Component::ApiServer).await
    }

    /// Steers the KMS v2 plugin: the key id it wraps new data keys under (a rotation, as
    /// a KMS admin's), and whether it answers at all. It reads this on every call; the
    /// apiservers see a change at their next status poll of the plugin (within a minute).
    pub fn set_kms(&self, key_id: &str, healthy: bool) -> Result<(), Error> {
        let path = self.path("kms.control");
        let staged = self.path("kms.control.new");
        std::fs::write(&staged, format!("key-id={key_id}\nhealthy={healthy}\n"))?;
        std::fs::rename(staged, path)?;
        Ok(())
    }

    /// A client to etcd.
    pub async fn etcd(&self) -> Result<kseal_etcd::Client, Error> {
        Ok(kseal_etcd::Client::connect(&[&self.etcd_url], Default::default()).await?)
    }

    /// The bytes etcd holds for a Secret, as the apiserver stored them (`None` when
    /// there is no such key).
    pub async fn stored_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        let range = kseal_etcd::Range {
            key: format!("/registry/secrets/{namespace}/{name}").into_bytes(),
            range_end: Vec::new(),
            limit: 1,
            revision: 0,
        };
        let mut found = self.etcd().await?.range(range).await?;
        Ok(found.kvs.pop().map(|kv| kv.value))
    }
}
