//! Throwaway credentials for one control plane: a CA, the API server's serving certificate,
//! the service-account signing key, an admin token, and (for a node cluster) more certificates
//! and tokens issued by the same CA and token file.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub struct Pki {
    pub ca_pem: String,
    /// The CA certificate on disk (for the kubelet's client CA and the controller manager).
    pub ca_cert: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
    pub token_file: PathBuf,
    pub admin_token: String,
}

impl Pki {
    /// Credentials for an API server that answers on loopback and on `extra_sans` (addresses a
    /// node cluster's pods and kubelet reach it by).
    pub fn create(dir: &Path, extra_sans: &[String]) -> Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sip-envtest-ca");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let serving_key = KeyPair::generate()?;
        let mut names = vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes.default.svc".to_string(),
        ];
        names.extend(extra_sans.iter().cloned());
        let mut serving = CertificateParams::new(names)?;
        serving
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        let serving_cert = serving.signed_by(&serving_key, &ca)?;

        let sa_key = KeyPair::generate()?;
        let admin_token = random_token();

        let pki = Pki {
            ca_pem: ca.pem(),
            ca_cert: dir.join("ca.crt"),
            ca,
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            service_account_key: dir.join("service-account.key"),
            service_account_pub: dir.join("service-account.pub"),
            token_file: dir.join("tokens.csv"),
            admin_token,
        };
        std::fs::write(&pki.ca_cert, &pki.ca_pem)?;
        std::fs::write(&pki.serving_cert, serving_cert.pem())?;
        std::fs::write(&pki.serving_key, serving_key.serialize_pem())?;
        std::fs::write(&pki.service_account_key, sa_key.serialize_pem())?;
        // The verifying side reads public keys only (PKIX), not PKCS#8 private keys.
        std::fs::write(&pki.service_account_pub, sa_key.public_key_pem())?;
        // system:masters bypasses RBAC: the harness itself is the cluster admin.
        std::fs::write(
            &pki.token_file,
            format!(
                "{},sip-envtest-admin,sip-envtest-admin,system:masters\n",
                pki.admin_token
            ),
        )?;
        Ok(pki)
    }

    /// A certificate for the subject `common_name` in `organization` (a group, for a client), valid for
    /// `names` (a server's), signed by the CA: written to `<dir>/<file>.crt` and `.key`.
    pub fn issue(
        &self,
        dir: &Path,
        file: &str,
        (common_name, organization): (&str, Option<&str>),
        names: &[String],
    ) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        if let Some(o) = organization {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, o);
        }
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert = params.signed_by(&key, &self.ca)?;
        let (crt, pem_key) = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&crt, cert.pem())?;
        std::fs::write(&pem_key, key.serialize_pem())?;
        Ok((crt, pem_key))
    }

    /// Adds a token for `user` in `groups` to the API server's token file (read at its start)
    /// and returns it.
    pub fn add_token(&self, user: &str, groups: &[&str]) -> Result<String> {
        use std::io::Write as _;
        let token = random_token();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.token_file)?;
        writeln!(file, "{token},{user},{user},\"{}\"", groups.join(","))?;
        Ok(token)
    }
}

/// A token nobody can guess for the lifetime of a test run; it never leaves the machine.
fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..4u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i ^ std::process::id() as u64);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
