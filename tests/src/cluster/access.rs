//! Credentials (ServiceAccount tokens from the TokenRequest API, cluster-admin
//! bindings), kubeconfigs and clients, and the wait until RBAC lets a user in.

use super::*;

impl ControlPlane {
    /// A token for the ServiceAccount `namespace/name` from the TokenRequest API (valid
    /// for a day), creating the ServiceAccount if it does not exist.
    pub async fn service_account(&self, namespace: &str, name: &str) -> Result<Credential, Error> {
        let admin = self.client(&self.admin).await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        if accounts.get_opt(name).await?.is_none() {
            let mut sa = ServiceAccount::default();
            sa.metadata.name = Some(name.to_owned());
            accounts.create(&PostParams::default(), &sa).await?;
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(86_400),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?;
        let token = token
            .status
            .and_then(|s| s.token)
            .ok_or("TokenRequest answered without a token")?;
        Ok(Credential::Token(token))
    }

    /// A bearer token with cluster-admin rights (the ServiceAccount
    /// `kube-system/kseal-admin`), for clients whose requests pass through a proxy that
    /// ends TLS, where a client certificate cannot follow.
    pub async fn admin_token(&self) -> Result<Credential, Error> {
        let token = self.service_account("kube-system", "kseal-admin").await?;
        self.bind_cluster_admin("kube-system", "kseal-admin")
            .await?;
        Ok(token)
    }

    /// Binds the ServiceAccount `namespace/name` to cluster-admin (a ClusterRoleBinding
    /// named after it), once.
    pub async fn bind_cluster_admin(&self, namespace: &str, name: &str) -> Result<(), Error> {
        use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client(&self.admin).await?);
        if bindings.get_opt(name).await?.is_some() {
            return Ok(());
        }
        let mut binding = ClusterRoleBinding {
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "cluster-admin".into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.into(),
                namespace: Some(namespace.into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        binding.metadata.name = Some(name.into());
        bindings.create(&PostParams::default(), &binding).await?;
        // The RBAC authorizer reads bindings from its own watch: a request right after
        // the create can still be refused (403). Wait until it answers as the binding says.
        self.wait_until_allowed(&format!("system:serviceaccount:{namespace}:{name}"))
            .await
    }

    /// Waits (up to 30 s) until the authorizer lets `user` create ConfigMaps anywhere, as
    /// a SubjectAccessReview answers.
    async fn wait_until_allowed(&self, user: &str) -> Result<(), Error> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
        };
        let reviews: Api<SubjectAccessReview> = Api::all(self.client(&self.admin).await?);
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.into()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("create".into()),
                    resource: Some("configmaps".into()),
                    namespace: Some("default".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let answer = reviews.create(&PostParams::default(), &review).await?;
            if answer.status.is_some_and(|s| s.allowed) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{user}: still not allowed 30 s after its binding").into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A kubeconfig for `credential` with `namespace` as its default.
    pub fn kubeconfig(&self, credential: &Credential, namespace: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let user = match credential {
            Credential::Token(token) => format!("    token: {token}\n"),
            Credential::Certificate { cert_pem, key_pem } => format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(cert_pem),
                b64(key_pem)
            ),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kseal-test\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: kseal-test\n  user:\n{user}contexts:\n- name: kseal-test\n  context:\n    cluster: kseal-test\n    user: kseal-test\n    namespace: {namespace}\ncurrent-context: kseal-test\n",
            url = self.url,
            ca = b64(&self.ca_pem),
        )
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to `path`, readable by its owner only.
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        credential: &Credential,
        namespace: &str,
    ) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(self.kubeconfig(credential, namespace).as_bytes())
    }

    /// A kube-rs client for `credential`.
    pub async fn client(&self, credential: &Credential) -> Result<Client, Error> {
        self.client_at(&self.url, credential).await
    }

    /// A kube-rs client for `credential` to the apiserver at `url`.
    pub async fn client_at(&self, url: &str, credential: &Credential) -> Result<Client, Error> {
        let kubeconfig = self
            .kubeconfig(credential, "default")
            .replacen(&self.url, url, 1);
        let kubeconfig = Kubeconfig::from_yaml(&kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }
}
