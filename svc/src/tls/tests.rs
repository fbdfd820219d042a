use super::test_certs::TestCa;
use super::{Listener, Tls, TlsSection};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "p2pimg.test";

fn section(dir: &Path, ca: &mut TestCa, name: &str) -> TlsSection {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    ca.write(&sub, name, &[NAME], Some(NAME))
}

/// One handshake from `client` to `server` on loopback, then a byte each way; the
/// server's result and the client's.
async fn handshake(server: &Tls, client: &Tls) -> (bool, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    let accepting = tokio::spawn(async move {
        let (tcp, from) = listener.accept().await.unwrap();
        match server.accept(Listener::Data, tcp, from).await {
            Some(mut s) => {
                let mut b = [0u8; 1];
                let ok = s.read_exact(&mut b).await.is_ok() && s.write_all(&b).await.is_ok();
                let _ = s.flush().await;
                ok
            }
            None => false,
        }
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client_side = async {
        let mut s = client.connect(tcp, "127.0.0.1").await.map_err(|e| e.to_string())?;
        s.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok(())
    };
    let client_result =
        tokio::time::timeout(Duration::from_secs(10), client_side).await.unwrap_or(Err("timeout".into()));
    (accepting.await.unwrap(), client_result)
}

#[tokio::test]
async fn peers_of_one_ca_talk_and_a_stranger_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new("cluster");
    let a = Tls::load(&section(dir.path(), &mut ca, "a")).unwrap();
    let b = Tls::load(&section(dir.path(), &mut ca, "b")).unwrap();
    assert_eq!(handshake(&a, &b).await, (true, Ok(())));

    let other = tempfile::tempdir().unwrap();
    let mut rogue_ca = TestCa::new("rogue");
    let rogue = Tls::load(&section(other.path(), &mut rogue_ca, "r")).unwrap();
    let (served, client) = handshake(&a, &rogue).await;
    assert!(!served, "a client of another CA is refused");
    assert!(client.is_err(), "{client:?}");
    assert_eq!(a.refused(Listener::Data), 1);
    // The rogue refuses a server of another CA too, and names why.
    let (_, client) = handshake(&rogue, &b).await;
    let e = client.unwrap_err();
    assert!(e.contains("UnknownIssuer") || e.contains("unknown issuer") || e.contains("certificate"), "{e}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new("cluster");
    let server = Tls::load(&section(dir.path(), &mut ca, "s")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s2 = server.clone();
    let accepting = tokio::spawn(async move {
        let (tcp, from) = listener.accept().await.unwrap();
        s2.accept(Listener::Grpc, tcp, from).await.is_some()
    });
    // A TLS client that trusts the CA but shows no certificate.
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(dir.path().join("s/ca.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(NAME).unwrap();
    let mut s = match tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await {
        Ok(s) => s,
        Err(_) => {
            assert!(!accepting.await.unwrap());
            assert_eq!(server.refused(Listener::Grpc), 1);
            return;
        }
    };
    // TLS 1.3: the refusal may arrive after the client's side of the handshake.
    let _ = s.write_all(b"x").await;
    let mut b = [0u8; 1];
    assert!(s.read_exact(&mut b).await.is_err(), "no data without a client certificate");
    assert!(!accepting.await.unwrap());
    assert_eq!(server.refused(Listener::Grpc), 1);
}

#[tokio::test]
async fn renewed_files_are_used_by_new_connections_and_bad_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new("cluster");
    let s = section(dir.path(), &mut ca, "s");
    let server = Tls::load(&s).unwrap();
    let client = Tls::load(&section(dir.path(), &mut ca, "c")).unwrap();
    let before = server.server_config();

    // A renewal: a new certificate and key from the same CA.
    let (cert, key) = ca.leaf(&[NAME]);
    std::fs::write(&s.cert_file, cert).unwrap();
    std::fs::write(&s.key_file, key).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(handshake(&server, &client).await, (true, Ok(())));
    assert_eq!(server.reloads(), 1);
    assert!(!std::sync::Arc::ptr_eq(&before, &server.server_config()));

    // A key that is not the certificate's: logged, and the previous pair stays in use.
    let (_, other_key) = ca.leaf(&[NAME]);
    std::fs::write(&s.key_file, other_key).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(handshake(&server, &client).await, (true, Ok(())));
    assert_eq!(server.reloads(), 1);
}

#[test]
fn load_errors_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new("cluster");
    let good = section(dir.path(), &mut ca, "g");

    let missing = TlsSection { cert_file: dir.path().join("nope.crt"), ..good.clone() };
    let e = Tls::load(&missing).unwrap_err();
    assert_eq!(e.key, "cert_file", "{e}");
    assert!(e.to_string().contains("nope.crt"), "{e}");

    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let empty = TlsSection { ca_file: dir.path().join("empty.pem"), ..good.clone() };
    let e = Tls::load(&empty).unwrap_err();
    assert_eq!(e.key, "ca_file", "{e}");
    assert!(e.message.contains("no `-----BEGIN CERTIFICATE-----`"), "{e}");

    let (_, other_key) = ca.leaf(&[NAME]);
    std::fs::write(dir.path().join("other.key"), other_key).unwrap();
    let mismatched = TlsSection { key_file: dir.path().join("other.key"), ..good.clone() };
    let e = Tls::load(&mismatched).unwrap_err();
    assert_eq!(e.key, "key_file", "{e}");
    assert!(e.message.contains("is the key the one of the certificate"), "{e}");

    let bad_name = TlsSection { server_name: Some("not a name!".into()), ..good };
    assert_eq!(Tls::load(&bad_name).unwrap_err().key, "server_name");
}
