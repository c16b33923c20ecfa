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
    let ca = crate::harness::private_ca(dir.path());

    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config
        .sip
        .listen
        .push(SipListen::parse("tls:127.0.0.1:0").unwrap());
    config.sip.tls.cert_file = Some(ca.cert_file.clone());
    config.sip.tls.key_file = Some(ca.key_file.clone());
    let server = TestServer::start_with(db, data_dir, config).await;
    let addr = server.sip_addr(SipTransport::Tls);

    switchboard::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.ca_der.clone()))
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
