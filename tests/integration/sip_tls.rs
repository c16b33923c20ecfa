//! SIP over TLS with a certificate from the configuration (`sip.tls`).

use std::sync::Arc;

use bytes::Bytes;
use switchboard::config::{SipListen, SipTransport};
use switchboard_sip::{Framed, parse_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestDb, TestServer, test_config};

#[tokio::test]
async fn options_and_register_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    std::fs::write(dir.path().join("sip.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.path().join("sip.key"), leaf_key.serialize_pem()).unwrap();

    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config
        .sip
        .listen
        .push(SipListen::parse("tls:127.0.0.1:0").unwrap());
    config.sip.tls.cert_file = Some(dir.path().join("sip.pem"));
    config.sip.tls.key_file = Some(dir.path().join("sip.key"));
    let server = TestServer::start_with(db, data_dir, config).await;
    let addr = server.sip_addr(SipTransport::Tls);

    switchboard::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.der().to_vec()))
        .unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the certificate verifies");

    let options = format!(
        "OPTIONS sip:switchboard SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKtls1\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@switchboard>;tag=1\r\nTo: <sip:switchboard>\r\nCall-ID: tls-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(options.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let resp = loop {
        let mut buf = [0u8; 4096];
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed the TLS connection");
        pending.extend_from_slice(&buf[..n]);
        if let Ok(Framed::Message(m, _)) = parse_stream(&Bytes::copy_from_slice(&pending)) {
            break m;
        }
    };
    assert_eq!(resp.code(), Some(200), "{resp}");
    assert_eq!(resp.call_id().unwrap(), "tls-1");
    server.stop().await;
}
