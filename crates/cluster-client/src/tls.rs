//! The TLS connector a [`TlsConfig`] stands for: the trusted CAs, the client certificate for mutual
//! TLS, read from the PEM files the configuration names, with rustls on the ring provider.
//!
//! cluster-config holds paths only; the files are read and parsed here, when a connection is built. A
//! connector is made once per configuration and reused by every connection (seeds, discovered nodes,
//! probe and admin connections): building one parses every certificate, and a client opens many
//! connections. The cache is keyed by the files' modification times too, so certificates rotated on
//! disk are read again by the next connection built.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cluster_config::TlsConfig;
use fred::types::config::TlsConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::Error;

/// What a connector was built from: the settings, and when each named file last changed.
type Key = (TlsConfig, Vec<Option<SystemTime>>);

/// The connector for `config`, built on first use and shared afterwards.
pub(crate) fn connector(config: &TlsConfig) -> Result<TlsConnector, Error> {
    static CACHE: Mutex<Option<HashMap<Key, TlsConnector>>> = Mutex::new(None);
    let key = (config.clone(), modified_times(config));
    if let Ok(cache) = CACHE.lock()
        && let Some(connector) = cache.as_ref().and_then(|c| c.get(&key))
    {
        return Ok(connector.clone());
    }
    let connector = TlsConnector::from(client_config(config)?);
    if let Ok(mut cache) = CACHE.lock() {
        // Superseded entries (older file times) are dropped so rotations do not accumulate.
        let cache = cache.get_or_insert_with(HashMap::new);
        cache.retain(|(settings, _), _| settings != config);
        cache.insert(key, connector.clone());
    }
    Ok(connector)
}

fn modified_times(config: &TlsConfig) -> Vec<Option<SystemTime>> {
    let mut files: Vec<&Path> = config.ca_file().into_iter().collect();
    if let Some((cert, key)) = config.client_auth() {
        files.extend([cert, key]);
    }
    files
        .into_iter()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

/// The rustls client settings: the CA file's certificates (else the system's roots), and the client
/// certificate and key when set. Certificate verification is never switched off.
pub(crate) fn client_config(config: &TlsConfig) -> Result<ClientConfig, Error> {
    // ring rather than the process default: an application that also links aws-lc-rs would leave
    // rustls without a single default provider. rustls deprecates the ring provider only because ring
    // has no post-quantum key exchange, which Redis servers do not offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match config.ca_file() {
        Some(path) => ca_roots(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsFile {
            setting: "REDIS_TLS",
            path: String::new(),
            problem: format!("the TLS provider refused the default protocol versions: {e}"),
        })?
        .with_root_certificates(roots);
    match config.client_auth() {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_path, key_path)) => {
            let chain = certificates(cert_path, "REDIS_TLS_CERT_FILE")?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                // The parser's message names what it looked for, never the key's bytes.
                file_error(
                    "REDIS_TLS_KEY_FILE",
                    key_path,
                    format!(
                        "no usable private key ({e}); give a PEM file with one PKCS#8, PKCS#1 or SEC1 key"
                    ),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                file_error(
                    "REDIS_TLS_KEY_FILE",
                    key_path,
                    format!(
                        "the key does not suit the certificate in REDIS_TLS_CERT_FILE ({e}); give the key \
                         that belongs to that certificate"
                    ),
                )
            })
        }
    }
}

fn file_error(setting: &'static str, path: &Path, problem: String) -> Error {
    Error::TlsFile {
        setting,
        path: path.display().to_string(),
        problem,
    }
}

/// Every certificate in a PEM file; an empty or unreadable file is an error naming it.
fn certificates(path: &Path, setting: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            file_error(
                setting,
                path,
                format!("unreadable PEM ({e}); give a file of `-----BEGIN CERTIFICATE-----` blocks"),
            )
        })?;
    if certs.is_empty() {
        return Err(file_error(
            setting,
            path,
            "holds no `-----BEGIN CERTIFICATE-----` block; give the PEM certificate file".into(),
        ));
    }
    Ok(certs)
}

fn ca_roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "REDIS_TLS_CA_FILE")? {
        roots.add(cert).map_err(|e| {
            file_error(
                "REDIS_TLS_CA_FILE",
                path,
                format!(
                    "a certificate is not a usable CA ({e}); give the CA certificate that signed the servers'"
                ),
            )
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Error::TlsFile {
            setting: "REDIS_TLS_CA_FILE",
            path: String::new(),
            problem: format!(
                "it is unset and no system root certificate could be loaded ({} errors); set it to the CA \
                 that signed the servers' certificates",
                found.errors.len()
            ),
        });
    }
    Ok(roots)
}

/// Whether a connection error says the server's certificate was not trusted (an unknown issuer, a
/// name it does not carry, an expired or malformed certificate), as rustls words it.
pub(crate) fn is_untrusted_certificate(message: &str) -> bool {
    // rustls's Display (`invalid peer certificate: UnknownIssuer`) or, wrapped in an I/O error as fred
    // passes it on, its Debug (`InvalidCertificate(UnknownIssuer)`).
    message.contains("invalid peer certificate") || message.contains("InvalidCertificate(")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(vars: &[(&str, &str)]) -> TlsConfig {
        let mut all = vec![("REDIS_CLUSTER_NODES", "rediss://h:1")];
        all.extend_from_slice(vars);
        cluster_config::ClusterConfig::from_env_vars(all)
            .unwrap_or_else(|error| panic!("{error}"))
            .tls_config()
            .cloned()
            .unwrap_or_else(|| panic!("TLS is on"))
    }

    #[test]
    fn bad_pem_files_are_named_with_what_to_fix() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here").unwrap_or_else(|e| panic!("{e}"));
        let empty = empty.to_str().unwrap_or_else(|| panic!("UTF-8 path"));
        let error = client_config(&tls(&[("REDIS_TLS_CA_FILE", empty)]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("REDIS_TLS_CA_FILE"), "{error}");
        assert!(error.contains(empty), "{error}");
        assert!(error.contains("BEGIN CERTIFICATE"), "{error}");

        // A key file holding a certificate instead of a key, with a secret-looking canary beside it.
        let ca = dir.path().join("ca.pem");
        let key = dir.path().join("client.key");
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&ca, cert.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&key, format!("{}\ncanary-secret-31c9\n", cert.cert.pem()))
            .unwrap_or_else(|e| panic!("{e}"));
        let (ca, key) = (ca.to_string_lossy(), key.to_string_lossy());
        let error = client_config(&tls(&[
            ("REDIS_TLS_CA_FILE", &ca),
            ("REDIS_TLS_CERT_FILE", &ca),
            ("REDIS_TLS_KEY_FILE", &key),
        ]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(error.contains("REDIS_TLS_KEY_FILE"), "{error}");
        assert!(error.contains("no usable private key"), "{error}");
        assert!(!error.contains("canary"), "{error}");

        // The right key is accepted, and the connector is built once and then shared.
        std::fs::write(key.as_ref(), cert.signing_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
        let settings = tls(&[
            ("REDIS_TLS_CA_FILE", &ca),
            ("REDIS_TLS_CERT_FILE", &ca),
            ("REDIS_TLS_KEY_FILE", &key),
        ]);
        assert!(client_config(&settings).is_ok());
        assert!(connector(&settings).is_ok());
        assert!(connector(&settings).is_ok());
    }

    #[test]
    fn untrusted_certificates_are_recognized() {
        assert!(is_untrusted_certificate(
            "invalid peer certificate: UnknownIssuer"
        ));
        assert!(is_untrusted_certificate(
            "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }"
        ));
        assert!(!is_untrusted_certificate("Connection reset by peer"));
    }
}
