//! The throw-away CA: the serving certificates and the client certificates of named
//! users and groups.

use super::*;

pub(super) fn issuer(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

impl ControlPlane {
    /// A serving certificate for `127.0.0.1` from the cluster's CA (certificate, key), for
    /// something clients should trust as they trust the apiserver.
    pub fn serving_certificate(&self) -> Result<(String, String), Error> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        Ok((params.signed_by(&key, &self.ca)?.pem(), key.serialize_pem()))
    }

    /// A client certificate for `name` in `groups`, signed by the cluster's CA.
    pub fn user(&self, name: &str, groups: &[&str]) -> Result<Credential, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        Ok(Credential::Certificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
