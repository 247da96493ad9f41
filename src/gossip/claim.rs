//! Under mutual TLS a peer may only speak for the node id its certificate names: reading
//! the peer's certificate and checking a claim against it.
//!
//! Why its own file: both the receiver (every frame that names a node) and the stats query
//! (the answer's sender) check claims, and neither should import the other for it.

use rustls::pki_types::CertificateDer;

use super::Inner;

/// The peer's end-entity certificate (mutual TLS only).
pub(super) fn peer_certificate(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().cloned()
}

/// Under mutual TLS a peer may only claim the node id its certificate is valid for (the CA
/// issues one certificate per node id); without TLS (loopback only) any claim is accepted.
pub(super) fn claim_allowed(
    inner: &Inner,
    cert: Option<&CertificateDer<'static>>,
    node_id: &str,
) -> bool {
    if !inner.mtls {
        return true;
    }
    let Some(cert) = cert else {
        return false;
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(node_id) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}
