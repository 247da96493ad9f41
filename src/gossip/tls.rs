//! Certificates (rcgen) and rustls/quinn configurations.
//!
//! With `[tls]`: mutual TLS. The server requires a client certificate
//! chaining to the cluster CA (`WebPkiClientVerifier`); the client verifies
//! the server against the same CA with SNI [`SERVER_NAME`]. A node holding
//! a certificate from another CA fails the handshake in both directions.
//!
//! Without `[tls]` (refused unless the bind address is loopback): a
//! throwaway self-signed certificate is generated at start and the client
//! skips certificate verification. QUIC cannot run without TLS, and there
//! is no CA to verify against; on loopback only local processes can reach
//! the port, so this gives encryption but no authentication. The handshake
//! signature is still checked against the presented certificate.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::WebPkiClientVerifier,
    DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{GossipError, TlsPaths};

/// SNI used between nodes; every node certificate carries it as a SAN.
pub(crate) const SERVER_NAME: &str = "hybrid-cache-node";
/// ALPN of the gossip protocol (keeps other QUIC/TLS protocols out).
const ALPN: &[u8] = b"hc-gossip/1";

fn tls_err(context: &str, e: impl std::fmt::Display) -> GossipError {
    GossipError::Tls(format!("{context}: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>, GossipError> {
    fs::read(path).map_err(|source| GossipError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, GossipError> {
    let data = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&format!("invalid PEM certificate in {}", path.display()), e))?;
    if certs.is_empty() {
        return Err(GossipError::Tls(format!(
            "no certificate found in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, GossipError> {
    let data = read(path)?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| tls_err(&format!("invalid PEM private key in {}", path.display()), e))
}

/// Builds the quinn server and client configurations.
pub(crate) fn quinn_configs(
    tls: Option<&TlsPaths>,
    transport: Arc<quinn::TransportConfig>,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), GossipError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = [&rustls::version::TLS13];
    let (mut server, mut client) = match tls {
        Some(paths) => {
            let mut roots = RootCertStore::empty();
            for ca in load_certs(&paths.ca)? {
                roots
                    .add(ca)
                    .map_err(|e| tls_err(&format!("bad CA in {}", paths.ca.display()), e))?;
            }
            let roots = Arc::new(roots);
            let chain = load_certs(&paths.cert)?;
            let key = load_key(&paths.key)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| tls_err("client verifier", e))?;
            let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| tls_err("server config", e))?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| tls_err("node certificate/key", e))?;
            let client = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| tls_err("client config", e))?
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_err("node certificate/key", e))?;
            (server, client)
        }
        None => {
            let ck = rcgen::generate_simple_self_signed(vec![
                SERVER_NAME.to_string(),
                "localhost".to_string(),
            ])
            .map_err(|e| tls_err("self-signed certificate", e))?;
            let key = PrivateKeyDer::try_from(ck.key_pair.serialize_der())
                .map_err(|e| tls_err("self-signed key", e))?;
            let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| tls_err("server config", e))?
                .with_no_client_auth()
                .with_single_cert(vec![ck.cert.der().clone()], key)
                .map_err(|e| tls_err("self-signed certificate", e))?;
            let client = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| tls_err("client config", e))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LoopbackNoVerify(provider.clone())))
                .with_no_client_auth();
            (server, client)
        }
    };
    server.alpn_protocols = vec![ALPN.to_vec()];
    client.alpn_protocols = vec![ALPN.to_vec()];
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
        .map_err(|e| tls_err("QUIC server config", e))?;
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
        .map_err(|e| tls_err("QUIC client config", e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport);
    Ok((server, client))
}

/// Accepts any server certificate. Only used without `[tls]`, which
/// `Gossip::start` allows on loopback binds only (see module docs).
#[derive(Debug)]
struct LoopbackNoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for LoopbackNoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.')
}

fn write_file(path: PathBuf, contents: &str, secret: bool) -> Result<(), GossipError> {
    let io = |source| GossipError::Io {
        path: path.clone(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&path).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Writes `ca.pem`, `ca.key`, `{node}.pem`, `{node}.key` into `out_dir`.
///
/// Node certificates are signed by the new CA, name the node id (CN and SAN) plus the
/// shared SNI `hybrid-cache-node`, and are valid for both server and client
/// authentication. Keys are written with mode 0600.
pub fn generate_certs(out_dir: &Path, nodes: &[String]) -> Result<(), GossipError> {
    if nodes.is_empty() {
        return Err(GossipError::Config("no node ids given".into()));
    }
    for n in nodes {
        if !valid_node_id(n) {
            return Err(GossipError::InvalidNodeId(n.clone()));
        }
    }
    let gen = |e: rcgen::Error| GossipError::CertGen(e.to_string());
    fs::create_dir_all(out_dir).map_err(|source| GossipError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate().map_err(gen)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hybrid-cache cluster CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen)?;
    write_file(out_dir.join("ca.pem"), &ca_cert.pem(), false)?;
    write_file(out_dir.join("ca.key"), &ca_key.serialize_pem(), true)?;

    for node in nodes {
        // The node id (what frames are checked against) plus the SNI every node dials with;
        // no generic names (`localhost`, `127.0.0.1`) that would fit any node.
        let mut sans = vec![node.clone()];
        if node != SERVER_NAME {
            sans.push(SERVER_NAME.to_string());
        }
        let key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::new(sans).map_err(gen)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(gen)?;
        write_file(out_dir.join(format!("{node}.pem")), &cert.pem(), false)?;
        write_file(
            out_dir.join(format!("{node}.key")),
            &key.serialize_pem(),
            true,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_name_their_node_id_and_no_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate_certs(dir.path(), &["n1".to_string(), "n2".to_string()]).expect("certs");
        let cert = load_certs(&dir.path().join("n1.pem"))
            .expect("n1.pem")
            .remove(0);
        let ee = webpki::EndEntityCert::try_from(&cert).expect("parse");
        let valid_for = |name: &str| {
            ServerName::try_from(name)
                .map(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
                .unwrap_or(false)
        };
        assert!(valid_for("n1"));
        assert!(valid_for(SERVER_NAME));
        for other in ["n2", "localhost", "127.0.0.1"] {
            assert!(
                !valid_for(other),
                "n1's certificate must not be valid for {other}"
            );
        }
    }
}
