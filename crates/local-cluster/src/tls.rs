//! TLS nodes: certificates generated at start (a CA, a server certificate for `127.0.0.1` and
//! `localhost`, a client certificate for mutual TLS), the `redis.conf` lines that make a node speak TLS
//! only, and the connector local-cluster's own admin connections use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Whether TLS nodes ask their clients for a certificate (`tls-auth-clients`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsClientAuth {
    /// `tls-auth-clients optional`: a client may present a certificate (it is then checked), or none.
    #[default]
    Optional,
    /// `tls-auth-clients yes`: mutual TLS; a client without a certificate signed by the CA is refused.
    Required,
}

/// The certificates of TLS nodes, as PEM files in the cluster's directory.
///
/// The server certificate carries the IP `127.0.0.1` and the name `localhost`, so a client checks it
/// against the node's own host. The client certificate is signed by the same CA.
#[derive(Clone, Serialize, Deserialize)]
pub struct TlsFiles {
    dir: PathBuf,
    client_auth: TlsClientAuth,
    /// The admin connector, built on first use: every admin command opens a connection.
    #[serde(skip)]
    connector: OnceLock<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("dir", &self.dir)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// `builder` with this CA and the client certificate and key (a node that does not require the
    /// client certificate ignores it).
    pub fn configure(
        &self,
        builder: cluster_config::ClusterConfigBuilder,
    ) -> cluster_config::ClusterConfigBuilder {
        builder
            .tls_ca_file(self.ca_file())
            .tls_cert_file(self.client_cert_file())
            .tls_key_file(self.client_key_file())
    }

    /// Generates a CA, a server certificate and a client certificate into `dir` (created if needed).
    pub(crate) fn generate(dir: &Path, client_auth: TlsClientAuth) -> Result<TlsFiles, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let failed = |what: &str, e: rcgen::Error| Error::Invalid(format!("generating the {what}: {e}"));
        let ca_key = KeyPair::generate().map_err(|e| failed("CA key", e))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| failed("CA", e))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "local-cluster test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| failed("CA", e))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |name: &str, purposes: Vec<ExtendedKeyUsagePurpose>| -> Result<(String, String), Error> {
            let key = KeyPair::generate().map_err(|e| failed("key", e))?;
            let mut params = CertificateParams::new(vec!["localhost".to_string()])
                .map_err(|e| failed("certificate", e))?;
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = purposes;
            let cert = params
                .signed_by(&key, &issuer)
                .map_err(|e| failed("certificate", e))?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        // A node is a TLS client too (cluster bus, replication) and presents its server certificate
        // then, so that certificate serves both purposes.
        let (server_cert, server_key) = leaf(
            "local-cluster server",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let (client_cert, client_key) =
            leaf("local-cluster client", vec![ExtendedKeyUsagePurpose::ClientAuth])?;
        let files = TlsFiles {
            dir: dir.to_path_buf(),
            client_auth,
            connector: OnceLock::new(),
        };
        for (path, text) in [
            (files.ca_file(), ca_cert.pem()),
            (files.server_cert_file(), server_cert),
            (files.server_key_file(), server_key),
            (files.client_cert_file(), client_cert),
            (files.client_key_file(), client_key),
        ] {
            std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(files)
    }

    /// The CA certificate that signed the server and client certificates (for `REDIS_TLS_CA_FILE`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The client certificate for mutual TLS (for `REDIS_TLS_CERT_FILE`).
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.join("client.crt")
    }

    /// The client certificate's private key (for `REDIS_TLS_KEY_FILE`).
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// The nodes' certificate (SANs `localhost` and `127.0.0.1`).
    pub fn server_cert_file(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The nodes' private key.
    pub fn server_key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Whether the nodes require a client certificate.
    pub fn client_auth(&self) -> TlsClientAuth {
        self.client_auth
    }

    /// The `redis.conf` lines that make a node listen for TLS only on `port`: the plain port is closed
    /// (`port 0`), and the cluster bus and replication use TLS too.
    pub(crate) fn conf_lines(&self, port: u16) -> String {
        let auth = match self.client_auth {
            TlsClientAuth::Optional => "optional",
            TlsClientAuth::Required => "yes",
        };
        format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
             tls-cluster yes\ntls-replication yes\ntls-auth-clients {auth}\n",
            self.server_cert_file().display(),
            self.server_key_file().display(),
            self.ca_file().display(),
        )
    }

    /// The connector of local-cluster's admin connections: it trusts the CA and presents the client
    /// certificate, so it works whether or not the nodes require one.
    pub(crate) fn connector(&self) -> Result<tokio_rustls::TlsConnector, Error> {
        if let Some(connector) = self.connector.get() {
            return Ok(connector.clone());
        }
        let unusable = |what: String| Error::Invalid(format!("the generated TLS files are unusable: {what}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca_file()).map_err(|e| unusable(e.to_string()))? {
            roots
                .add(cert.map_err(|e| unusable(e.to_string()))?)
                .map_err(|e| unusable(e.to_string()))?;
        }
        let chain = CertificateDer::pem_file_iter(self.client_cert_file())
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| unusable(e.to_string()))?;
        let key =
            PrivateKeyDer::from_pem_file(self.client_key_file()).map_err(|e| unusable(e.to_string()))?;
        // ring, as in cluster-client; deprecated by rustls only for its lack of post-quantum exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| unusable(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        Ok(self.connector.get_or_init(|| connector).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_make_a_connector_and_conf_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = TlsFiles::generate(dir.path(), TlsClientAuth::Required).unwrap_or_else(|e| panic!("{e}"));
        for path in [
            files.ca_file(),
            files.server_cert_file(),
            files.server_key_file(),
            files.client_cert_file(),
            files.client_key_file(),
        ] {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(text.starts_with("-----BEGIN"), "{}", path.display());
        }
        assert!(files.connector().is_ok());
        let lines = files.conf_lines(7000);
        assert!(lines.starts_with("port 0\ntls-port 7000\n"), "{lines}");
        assert!(lines.contains("tls-auth-clients yes"), "{lines}");
        assert!(lines.contains("tls-cluster yes\ntls-replication yes"), "{lines}");
    }
}
