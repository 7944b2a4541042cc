//! The mesh's certificates, made as Istio's CA (istiod) makes them: one root CA per mesh
//! start, and one workload certificate per service account whose only identity is its URI
//! SAN, the SPIFFE ID `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` (empty
//! subject, so the SAN extension is critical), usable as client and as server certificate
//! because every sidecar serves its inbound side and calls out on its outbound side.
//!
//! Written as PEM files that the Envoys read at start (Istio delivers the same by SDS).

use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::MeshError;

/// A root CA that signs workload certificates.
pub struct MeshCa {
    name: String,
    root_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("MeshCa").field("name", &self.name).finish()
    }
}

/// The files of one workload certificate, as a sidecar's TLS contexts name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadFiles {
    /// The SPIFFE ID the certificate carries.
    pub spiffe_id: String,
    /// The certificate chain (leaf), PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// The root CA the peers' certificates are verified against, PEM.
    pub root: PathBuf,
}

fn failed(subject: &str) -> impl Fn(rcgen::Error) -> MeshError + '_ {
    move |e| MeshError::Certificate {
        subject: subject.to_owned(),
        reason: e.to_string(),
    }
}

impl MeshCa {
    /// A new root CA named after `trust_domain` (a fresh key each time: certificates of
    /// another mesh start, or of another CA, never verify here).
    pub fn generate(trust_domain: &str) -> Result<MeshCa, MeshError> {
        let name = format!("root CA of {trust_domain}");
        let err = failed(&name);
        let key = KeyPair::generate().map_err(&err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(&err)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, trust_domain);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let root_pem = params.self_signed(&key).map_err(&err)?.pem();
        Ok(MeshCa {
            name: name.clone(),
            root_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// A workload certificate for `spiffe_id`: (certificate PEM, key PEM).
    pub fn issue(&self, spiffe_id: &str) -> Result<(String, String), MeshError> {
        let err = failed(spiffe_id);
        let key = KeyPair::generate().map_err(&err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = Ia5String::try_from(spiffe_id).map_err(&err)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(&err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues the certificate of `spiffe_id` into `dir` as `<stem>.pem` and `<stem>.key`,
    /// beside the root as `root.pem`.
    pub fn write_workload(
        &self,
        dir: &Path,
        stem: &str,
        spiffe_id: &str,
    ) -> Result<WorkloadFiles, MeshError> {
        std::fs::create_dir_all(dir).map_err(|e| MeshError::io(dir, e))?;
        let root = dir.join("root.pem");
        if !root.is_file() {
            write(&root, &self.root_pem)?;
        }
        let (cert_pem, key_pem) = self.issue(spiffe_id)?;
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write(&cert, &cert_pem)?;
        write(&key, &key_pem)?;
        Ok(WorkloadFiles {
            spiffe_id: spiffe_id.to_owned(),
            cert,
            key,
            root,
        })
    }
}

fn write(path: &Path, text: &str) -> Result<(), MeshError> {
    std::fs::write(path, text).map_err(|e| MeshError::io(path, e))
}
