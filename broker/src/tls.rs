//! STOMP over TLS: `[[tls]]` listeners (rustls with the `ring` provider).
//!
//! [`server_config`] reads a listener's PEM files once, at start (errors name the file);
//! [`serve_tls`] is [`crate::server::serve_stomp`] with a TLS handshake: the accept loop only
//! admits (connection limits), and the handshake runs inside the connection's task under
//! `server.connect_timeout_ms`, so a client that stalls it holds only its own task.
//!
//! With `client_ca`, clients are asked for a certificate; one that verifies against those CAs
//! names a user by its subject CN ([`peer_common_name`], then
//! [`crate::auth::Authenticator::authenticate_cert`]). `require_client_cert` makes the handshake
//! fail without one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use stompd_config::TlsListenerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::server::ConnectionCounter;
use crate::session;

/// A `[[tls]]` listener that cannot be set up. Every case names the file it is about; none
/// prints key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid PEM: {message}", file.display())]
    Pem { file: PathBuf, message: String },
    #[error("{}: no {what} found (expected a PEM \"-----BEGIN {marker}-----\" section)", file.display())]
    Missing {
        file: PathBuf,
        what: &'static str,
        marker: &'static str,
    },
    #[error("{}: unusable {what}: {source}", file.display())]
    Rejected {
        file: PathBuf,
        what: &'static str,
        source: rustls::Error,
    },
    #[error("{}: client CA certificates: {message}", file.display())]
    ClientCa { file: PathBuf, message: String },
}

fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::Read {
        file: file.to_path_buf(),
        source,
    })
}

fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            file: file.to_path_buf(),
            what: "certificate",
            marker: "CERTIFICATE",
        });
    }
    Ok(certs)
}

fn private_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(file)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            file: file.to_path_buf(),
            what: "private key",
            marker: "PRIVATE KEY",
        },
        e => TlsError::Pem {
            file: file.to_path_buf(),
            message: e.to_string(),
        },
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the listener's certificate chain, key and (if set) client CAs, and builds the rustls
/// configuration: TLS 1.2 and 1.3, safe defaults, client certificates requested when
/// `client_ca` is set and required when `require_client_cert` is.
pub fn server_config(tls: &TlsListenerConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&tls.cert)?;
    let key = private_key(&tls.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected {
            file: tls.cert.clone(),
            what: "protocol versions",
            source,
        })?;
    let builder = match &tls.client_ca {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    file: ca_file.clone(),
                    message: e.to_string(),
                })?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            if !tls.require_client_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| TlsError::ClientCa {
                file: ca_file.clone(),
                message: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rejected {
            // Most likely a key that does not belong to the certificate, or an unsupported key type.
            file: tls.key.clone(),
            what: "private key for this certificate",
            source,
        })?;
    Ok(Arc::new(config))
}

/// [`server_config`] as the acceptor [`serve_tls`] takes.
pub fn acceptor(tls: &TlsListenerConfig) -> Result<TlsAcceptor, TlsError> {
    server_config(tls).map(TlsAcceptor::from)
}

/// Accepts STOMP-over-TLS connections until `shutdown` is cancelled; like
/// [`crate::server::serve_stomp`], with the TLS handshake inside each connection's task, bounded
/// by `server.connect_timeout_ms` and abandoned at shutdown.
///
/// A connection over the limits is closed at once without a handshake (a plain-text ERROR would
/// mean nothing to a TLS client, and a handshake is the work the limits are there to avoid).
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    broker: Arc<Broker>,
    counter: Arc<ConnectionCounter>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = broker.config();
        let slot = match counter.try_acquire(
            peer.ip(),
            config.server.connection_limit(),
            config.server.connection_limit_per_ip(),
        ) {
            Ok(slot) => slot,
            Err(reason) => {
                tracing::info!(%peer, reason, protocol = "stomp+tls", "connection refused");
                drop(stream);
                continue;
            }
        };
        let timeout = config.server.connect_timeout();
        let acceptor = acceptor.clone();
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
            let tls_stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
                        return;
                    }
                },
            };
            let cert_cn = peer_common_name(tls_stream.get_ref().1);
            run_session(tls_stream, peer, cert_cn, broker, shutdown).await;
        });
    }
}

/// Hands a TLS connection to its session. The one place the certificate's CN meets the
/// session: until `session::run` takes it, a certificate is verified but logs nobody in.
async fn run_session(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    cert_cn: Option<String>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    if let Some(cn) = &cert_cn {
        tracing::debug!(%peer, client_cn = %cn, "verified client certificate");
    }
    session::run(stream, peer, cert_cn, broker, shutdown).await;
}

/// The subject CN of the client's certificate, if the client presented one (rustls only keeps
/// certificates that verified against `client_ca`). `None` also when the subject has no CN,
/// more than one CN (ambiguous), a CN that is not text, or one with control characters.
pub fn peer_common_name(conn: &ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    subject_common_name(leaf.as_ref())
}

/// The subject CN of a DER X.509 certificate; see [`peer_common_name`].
///
/// A minimal DER walk, enough for this one field: `Certificate ::= SEQUENCE { tbsCertificate
/// SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity, subject, ... } }`,
/// `Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }`. Every length is checked
/// against what is left; malformed input gives `None`, never a panic.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const CN: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3

    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xA0 {
        rest = after; // [0] EXPLICIT version
    }
    let (_, rest) = expect(rest, 0x02)?; // serialNumber
    let (_, rest) = expect(rest, SEQUENCE)?; // signature AlgorithmIdentifier
    let (_, rest) = expect(rest, SEQUENCE)?; // issuer
    let (_, rest) = expect(rest, SEQUENCE)?; // validity
    let (mut subject, _) = expect(rest, SEQUENCE)?;

    let mut found = None;
    while !subject.is_empty() {
        let (mut rdn, after) = expect(subject, SET)?;
        subject = after;
        while !rdn.is_empty() {
            let (attribute, after) = expect(rdn, SEQUENCE)?;
            rdn = after;
            let (oid, value) = expect(attribute, OID)?;
            if oid != CN {
                continue;
            }
            if found.is_some() {
                return None; // two CNs: which one is the user? Neither.
            }
            let (tag, content, trailing) = tlv(value)?;
            if !trailing.is_empty() {
                return None;
            }
            found = Some(directory_string(tag, content)?);
        }
    }
    found.filter(|cn| !cn.is_empty() && !cn.chars().any(char::is_control))
}

/// One DER element: (tag, contents, what follows). Single-byte tags; definite lengths only.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None; // multi-byte tag: none on this path
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None; // indefinite (BER) or absurdly long
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    Some((tag, content, after))
}

/// The contents of an element that must have `tag`, and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, after) = tlv(input)?;
    (t == tag).then_some((content, after))
}

/// A DirectoryString as text: UTF8String, PrintableString, IA5String (ASCII) or BMPString
/// (UTF-16BE). TeletexString and UniversalString are refused rather than guessed at.
fn directory_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        0x0C => std::str::from_utf8(content).ok().map(str::to_owned),
        0x13 | 0x16 => content
            .is_ascii()
            .then(|| String::from_utf8_lossy(content).into_owned()),
        0x1E => {
            let pairs = content.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return None;
            }
            let units = pairs.map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
        ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    use stompd_config::Config;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;

    use super::*;

    struct Issued {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn self_signed(cn: &str) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Issued { cert, key }
    }

    fn ca(cn: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Issued { cert, key }
    }

    fn issue(ca: &Issued, dn: DistinguishedName, client: bool) -> Issued {
        let names = if client {
            Vec::new()
        } else {
            vec!["localhost".to_owned()]
        };
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = dn;
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        Issued { cert, key }
    }

    fn dn(cn: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "stompd tests");
        dn.push(DnType::CommonName, cn);
        dn
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }

    fn listener_config(dir: &Path, server: &Issued) -> TlsListenerConfig {
        TlsListenerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: write(dir, "server.crt", &server.cert.pem()),
            key: write(dir, "server.key", &server.key.serialize_pem()),
            client_ca: None,
            require_client_cert: false,
        }
    }

    fn client_config(
        trusted: &rcgen::Certificate,
        identity: Option<&Issued>,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(trusted.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some(id) => builder
                .with_client_auth_cert(
                    vec![id.cert.der().clone()],
                    PrivateKeyDer::from_pem_slice(id.key.serialize_pem().as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }

    /// Reads up to and including the first NUL (end of a STOMP frame).
    async fn read_frame<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while s.read(&mut byte).await.unwrap() == 1 {
            if byte[0] == 0 {
                break;
            }
            out.push(byte[0]);
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn connect_over_tls_gets_connected() {
        let dir = tempfile::tempdir().unwrap();
        let server = self_signed("localhost");
        let acceptor =
            TlsAcceptor::from(server_config(&listener_config(dir.path(), &server)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = Broker::new(Config::embedded());
        let counter = Arc::new(ConnectionCounter::default());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let serving = tokio::spawn(serve_tls(
            listener,
            acceptor,
            broker,
            counter.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));

        let connector = TlsConnector::from(client_config(&server.cert, None));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
            .await
            .unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut tls))
            .await
            .unwrap();
        assert!(frame.starts_with("CONNECTED\n"), "{frame:?}");
        assert!(frame.contains("version:1.2\n"), "{frame:?}");
        assert_eq!(counter.open(), 1);

        // A client that never finishes the handshake holds its own task only, and is dropped
        // after connect_timeout (10 s by default; here we only check others are not blocked).
        let _stalled = TcpStream::connect(addr).await.unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut second = connector.connect(name, tcp).await.unwrap();
        second
            .write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
            .await
            .unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut second))
            .await
            .unwrap();
        assert!(frame.starts_with("CONNECTED\n"), "{frame:?}");

        shutdown.cancel();
        serving.await.unwrap();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn handshake_times_out_inside_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let server = self_signed("localhost");
        let acceptor =
            TlsAcceptor::from(server_config(&listener_config(dir.path(), &server)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config::embedded();
        config.server.connect_timeout_ms = 200;
        let counter = Arc::new(ConnectionCounter::default());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let serving = tokio::spawn(serve_tls(
            listener,
            acceptor,
            Broker::new(config),
            counter.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        // The server gives up on the handshake and closes: EOF (or a reset), well within 5 s.
        let r = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("server did not close a stalled handshake");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        tokio::time::timeout(Duration::from_secs(5), async {
            while counter.open() != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        shutdown.cancel();
        serving.await.unwrap();
    }

    #[tokio::test]
    async fn over_the_limit_closed_before_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let server = self_signed("localhost");
        let acceptor =
            TlsAcceptor::from(server_config(&listener_config(dir.path(), &server)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config::embedded();
        config.server.max_connections = 1;
        let counter = Arc::new(ConnectionCounter::default());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let serving = tokio::spawn(serve_tls(
            listener,
            acceptor,
            Broker::new(config),
            counter.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        let _first = TcpStream::connect(addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while counter.open() != 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        let connector = TlsConnector::from(client_config(&server.cert, None));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        assert!(connector.connect(name, tcp).await.is_err());
        assert_eq!(counter.open(), 1);
        shutdown.cancel();
        serving.await.unwrap();
    }

    /// Client-certificate listener: returns the server's TLS config and the CA.
    fn mutual(dir: &Path, require: bool) -> (Arc<ServerConfig>, Issued, Issued) {
        let authority = ca("stompd test CA");
        let server = issue(&authority, dn("localhost"), false);
        let mut tls = listener_config(dir, &server);
        tls.client_ca = Some(write(dir, "ca.pem", &authority.cert.pem()));
        tls.require_client_cert = require;
        (server_config(&tls).unwrap(), authority, server)
    }

    /// Handshakes `client` with `server` over loopback; the server side's CN, or the error.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Result<Option<String>, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = TlsAcceptor::from(server)
                .accept(tcp)
                .await
                .map_err(|e| e.to_string())?;
            let cn = peer_common_name(tls.get_ref().1);
            // Let the client's side of the handshake complete.
            let _ = tls.write_all(b"x").await;
            let _ = tls.shutdown().await;
            Ok::<_, String>(cn)
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        if let Ok(mut tls) = TlsConnector::from(client).connect(name, tcp).await {
            let mut buf = [0u8; 1];
            let _ = tls.read(&mut buf).await;
        }
        accept.await.unwrap()
    }

    #[tokio::test]
    async fn client_certificate_cn_is_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let (server, authority, _) = mutual(dir.path(), false);
        let alice = issue(&authority, dn("alice"), true);
        let cn = handshake(server.clone(), client_config(&authority.cert, Some(&alice)))
            .await
            .unwrap();
        assert_eq!(cn.as_deref(), Some("alice"));
        // Optional client certificates: a client without one connects, with no CN.
        let cn = handshake(server, client_config(&authority.cert, None))
            .await
            .unwrap();
        assert_eq!(cn, None);
    }

    #[tokio::test]
    async fn required_client_certificate_must_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (server, authority, _) = mutual(dir.path(), true);
        let r = handshake(server.clone(), client_config(&authority.cert, None)).await;
        assert!(r.is_err(), "{r:?}");
        // A certificate from another CA does not verify.
        let other = ca("someone else's CA");
        let mallory = issue(&other, dn("alice"), true);
        let r = handshake(
            server.clone(),
            client_config(&authority.cert, Some(&mallory)),
        )
        .await;
        assert!(r.is_err(), "{r:?}");
        let bob = issue(&authority, dn("bob"), true);
        let r = handshake(server, client_config(&authority.cert, Some(&bob))).await;
        assert_eq!(r.unwrap().as_deref(), Some("bob"));
    }

    #[test]
    fn subject_cn_from_real_certificates() {
        let authority = ca("stompd test CA");
        let leaf = issue(&authority, dn("alice"), true);
        assert_eq!(
            subject_common_name(leaf.cert.der()).as_deref(),
            Some("alice")
        );
        assert_eq!(
            subject_common_name(authority.cert.der()).as_deref(),
            Some("stompd test CA")
        );

        let mut no_cn = DistinguishedName::new();
        no_cn.push(DnType::OrganizationName, "no cn here");
        let leaf = issue(&authority, no_cn, true);
        assert_eq!(subject_common_name(leaf.cert.der()), None);

        let mut two = DistinguishedName::new();
        two.push(DnType::CommonName, "alice");
        two.push(DnType::CommonName, "bob");
        let leaf = issue(&authority, two, true);
        // rcgen may keep only one; if both are there, the answer must be None.
        let got = subject_common_name(leaf.cert.der());
        assert!(got.is_none() || got.as_deref() == Some("bob"), "{got:?}");

        for (value, want) in [
            (
                DnValue::PrintableString("printable".try_into().unwrap()),
                Some("printable"),
            ),
            (DnValue::Utf8String("zoë".into()), Some("zoë")),
            (DnValue::BmpString("bmp".try_into().unwrap()), Some("bmp")),
            (DnValue::Utf8String("evil\nname".into()), None),
            (DnValue::Utf8String(String::new()), None),
            (DnValue::TeletexString("t61".try_into().unwrap()), None),
        ] {
            let mut d = DistinguishedName::new();
            d.push(DnType::CommonName, value);
            let leaf = issue(&authority, d, true);
            assert_eq!(subject_common_name(leaf.cert.der()).as_deref(), want);
        }
    }

    #[test]
    fn subject_cn_on_hostile_der_is_none_not_a_panic() {
        let authority = ca("stompd test CA");
        let leaf = issue(&authority, dn("alice"), true);
        let der = leaf.cert.der().to_vec();
        // Every truncation, and every single-byte corruption of the first 300 bytes.
        for len in 0..der.len() {
            let _ = subject_common_name(&der[..len]);
        }
        for i in 0..der.len().min(300) {
            for flip in [0x01, 0x80, 0xFF] {
                let mut bad = der.clone();
                bad[i] ^= flip;
                let _ = subject_common_name(&bad);
            }
        }
        assert_eq!(subject_common_name(&[]), None);
        assert_eq!(
            subject_common_name(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]),
            None
        );
        assert_eq!(subject_common_name(&[0x30, 0x80, 0x00, 0x00]), None);
        assert_eq!(subject_common_name(&[0x1F, 0x00]), None);
    }

    #[test]
    fn hand_built_der_walk() {
        // SEQUENCE { SEQUENCE { INTEGER 1, SEQ{}, SEQ{}, SEQ{}, SEQ{ SET{ SEQ{ OID 2.5.4.3, UTF8 "x" } } } } }
        let attr = [0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0C, 0x01, b'x'];
        let mut rdn = vec![0x31, attr.len() as u8];
        rdn.extend_from_slice(&attr);
        let mut subject = vec![0x30, rdn.len() as u8];
        subject.extend_from_slice(&rdn);
        let mut tbs_body = vec![0x02, 0x01, 0x01, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00];
        tbs_body.extend_from_slice(&subject);
        let mut tbs = vec![0x30, tbs_body.len() as u8];
        tbs.extend_from_slice(&tbs_body);
        // Long-form length on the outer SEQUENCE.
        let mut cert = vec![0x30, 0x81, tbs.len() as u8];
        cert.extend_from_slice(&tbs);
        assert_eq!(subject_common_name(&cert).as_deref(), Some("x"));
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let server = self_signed("localhost");
        let good = listener_config(dir.path(), &server);

        let mut t = good.clone();
        t.cert = dir.path().join("missing.crt");
        let e = server_config(&t).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read", t.cert.display())),
            "{e}"
        );

        let mut t = good.clone();
        t.cert = write(dir.path(), "empty.crt", "not pem at all\n");
        let e = server_config(&t).unwrap_err().to_string();
        assert!(e.contains("empty.crt: no certificate found"), "{e}");

        let mut t = good.clone();
        t.key = write(dir.path(), "cert-as-key.pem", &server.cert.pem());
        let e = server_config(&t).unwrap_err().to_string();
        assert!(e.contains("cert-as-key.pem: no private key found"), "{e}");

        let other = self_signed("other");
        let mut t = good.clone();
        t.key = write(dir.path(), "other.key", &other.key.serialize_pem());
        let e = server_config(&t).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: unusable", t.key.display())),
            "{e}"
        );
        // The error names the file, never the key material.
        assert!(!e.contains("PRIVATE KEY-----"), "{e}");

        let mut t = good.clone();
        t.client_ca = Some(write(dir.path(), "ca-empty.pem", ""));
        let e = server_config(&t).unwrap_err().to_string();
        assert!(e.contains("ca-empty.pem: no certificate found"), "{e}");

        let mut t = good;
        t.cert = write(
            dir.path(),
            "broken.crt",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let e = server_config(&t).unwrap_err().to_string();
        assert!(e.contains("broken.crt: invalid PEM"), "{e}");
    }
}
