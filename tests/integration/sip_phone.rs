//! A minimal SIP phone for tests: builds REGISTER/OPTIONS requests with the project's
//! own SIP library, answers digest challenges, talks UDP or TCP.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use switchboard_sip::digest::{Algorithm, ha1, response};
use switchboard_sip::header::{AuthHeader, DigestChallenge, DigestCredentials, HeaderName};
use switchboard_sip::{Message, Method, Uri, parse_datagram, parse_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const REALM: &str = "switchboard";

pub enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
}

pub struct Phone {
    pub link: Link,
    pub ext: String,
    pub secret: String,
    pub call_id: String,
    pub cseq: u32,
    pub local: SocketAddr,
    pub user_agent: String,
    branch_seq: u32,
}

impl Phone {
    pub async fn udp(server: SocketAddr, ext: &str, secret: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        Self::new(Link::Udp(socket, server), local, ext, secret)
    }

    pub async fn tcp(server: SocketAddr, ext: &str, secret: &str) -> Self {
        let stream = TcpStream::connect(server).await.unwrap();
        let local = stream.local_addr().unwrap();
        Self::new(Link::Tcp(stream, Vec::new()), local, ext, secret)
    }

    fn new(link: Link, local: SocketAddr, ext: &str, secret: &str) -> Self {
        Self {
            link,
            ext: ext.into(),
            secret: secret.into(),
            call_id: format!("{}-{}@test", ext, rand_word()),
            cseq: 0,
            local,
            user_agent: "TestPhone/1.0".into(),
            branch_seq: 0,
        }
    }

    pub fn transport(&self) -> &'static str {
        match self.link {
            Link::Udp(..) => "UDP",
            Link::Tcp(..) => "TCP",
        }
    }

    /// A REGISTER for this phone's extension with `contacts` (header values), the next
    /// CSeq and a fresh branch.
    pub fn register_request(&mut self, contacts: &[String], expires: Option<u32>) -> Message {
        self.cseq += 1;
        self.branch_seq += 1;
        let uri = Uri::parse(&format!("sip:{REALM}")).unwrap();
        let mut m = Message::request(Method::Register, uri);
        m.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};rport;branch=z9hG4bK{}x{}",
                self.transport(),
                self.local,
                rand_word(),
                self.branch_seq
            ),
        );
        m.push(HeaderName::MaxForwards, "70");
        m.push(
            HeaderName::From,
            format!("<sip:{}@{REALM}>;tag={}", self.ext, rand_word()),
        );
        m.push(HeaderName::To, format!("<sip:{}@{REALM}>", self.ext));
        m.push(HeaderName::CallId, self.call_id.clone());
        m.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        for c in contacts {
            m.push(HeaderName::Contact, c.clone());
        }
        if let Some(e) = expires {
            m.push(HeaderName::Expires, e.to_string());
        }
        m.push(HeaderName::UserAgent, self.user_agent.clone());
        m.push(HeaderName::ContentLength, "0");
        m
    }

    pub fn contact(&self) -> String {
        format!(
            "<sip:{}@{};transport={}>",
            self.ext,
            self.local,
            self.transport().to_lowercase()
        )
    }

    pub async fn send(&mut self, msg: &Message) {
        self.send_raw(&msg.to_bytes()).await;
    }

    pub async fn send_raw(&mut self, data: &[u8]) {
        match &mut self.link {
            Link::Udp(s, to) => {
                s.send_to(data, *to).await.unwrap();
            }
            Link::Tcp(s, _) => s.write_all(data).await.unwrap(),
        }
    }

    /// The next message from the server (10 s at most).
    pub async fn recv(&mut self) -> Message {
        self.try_recv(Duration::from_secs(10))
            .await
            .expect("an answer from the server")
    }

    /// The next UDP datagram as text, unparsed (answers to malformed requests echo
    /// the malformed headers).
    pub async fn recv_text(&mut self) -> String {
        let Link::Udp(s, _) = &mut self.link else {
            panic!("UDP only")
        };
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), s.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Message> {
        tokio::time::timeout(wait, async {
            match &mut self.link {
                Link::Udp(s, _) => {
                    let mut buf = vec![0u8; 65536];
                    let (n, _) = s.recv_from(&mut buf).await.unwrap();
                    parse_datagram(Bytes::copy_from_slice(&buf[..n])).unwrap()
                }
                Link::Tcp(s, pending) => loop {
                    let bytes = Bytes::copy_from_slice(pending);
                    if let Ok(switchboard_sip::Framed::Message(m, used)) = parse_stream(&bytes) {
                        pending.drain(..used);
                        return *m;
                    }
                    let mut buf = [0u8; 8192];
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the server closed the connection");
                    pending.extend_from_slice(&buf[..n]);
                },
            }
        })
        .await
        .ok()
    }

    /// Credentials answering `challenge` for `req`.
    pub fn authorize(&self, req: &mut Message, challenge: &DigestChallenge, nc: u32) {
        let algorithm = Algorithm::from_param(challenge.algorithm.as_deref()).unwrap();
        let h1 = ha1(algorithm, &self.ext, &challenge.realm, &self.secret);
        let uri = req.uri().unwrap().to_string();
        let nc = format!("{nc:08x}");
        let cnonce = rand_word();
        let resp = response(
            algorithm,
            &h1,
            "REGISTER",
            &uri,
            &challenge.nonce,
            &nc,
            &cnonce,
        );
        let creds = DigestCredentials {
            username: self.ext.as_str().into(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.into(),
            response: (*resp).into(),
            algorithm: challenge.algorithm.clone(),
            cnonce: Some(cnonce.into()),
            opaque: None,
            qop: Some("auth".into()),
            nc: Some(nc.into()),
        };
        req.set(HeaderName::Authorization, creds.to_header().to_string());
    }

    /// REGISTER → 401 → REGISTER with credentials (`algorithm` picks the challenge);
    /// returns the final answer.
    pub async fn register_with(
        &mut self,
        contacts: &[String],
        expires: Option<u32>,
        algorithm: &str,
    ) -> Message {
        let req = self.register_request(contacts, expires);
        self.send(&req).await;
        let challenge = self.recv().await;
        assert_eq!(challenge.code(), Some(401), "{challenge}");
        let c = challenges(&challenge)
            .into_iter()
            .find(|c| c.algorithm.as_deref() == Some(algorithm))
            .expect("challenge");
        let mut req = self.register_request(contacts, expires);
        self.authorize(&mut req, &c, 1);
        self.send(&req).await;
        self.recv().await
    }

    pub async fn register(&mut self, expires: u32) -> Message {
        let contact = self.contact();
        self.register_with(&[contact], Some(expires), "MD5").await
    }
}

/// The digest challenges of a 401, in order.
pub fn challenges(resp: &Message) -> Vec<DigestChallenge> {
    resp.header_values(&HeaderName::WwwAuthenticate)
        .map(|v| DigestChallenge::from_header(&AuthHeader::parse(v).unwrap()).unwrap())
        .collect()
}

pub fn rand_word() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:x}{:x}",
        std::process::id(),
        n.wrapping_mul(0x9e3779b97f4a7c15) >> 16
    )
}
