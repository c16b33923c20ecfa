//! A minimal SIP phone for tests: builds REGISTER/OPTIONS requests with the project's
//! own SIP library, answers digest challenges, talks UDP or TCP.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use switchboard_sip::digest::{Algorithm, ha1, response};
use switchboard_sip::header::{AuthHeader, DigestChallenge, DigestCredentials, HeaderName};
use switchboard_sip::{Message, Method, Uri, parse_datagram, parse_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const REALM: &str = "switchboard";

pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

pub enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
    /// SIP over WebSocket (RFC 7118), as a browser phone talks to `/sip`.
    Ws(Box<WebSocket>),
}

pub struct Phone {
    pub link: Link,
    pub ext: String,
    pub secret: String,
    pub call_id: String,
    pub cseq: u32,
    pub local: SocketAddr,
    pub user_agent: String,
    /// The digest algorithm it answers a call's 407 with.
    pub call_algorithm: &'static str,
    branch_seq: u32,
}

impl Phone {
    pub async fn udp(server: SocketAddr, ext: &str, secret: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        Self::new(Link::Udp(socket, server), local, ext, secret)
    }

    /// [`Self::udp`] from another local address (`127.0.0.2`: another machine to
    /// threat detection).
    pub async fn udp_from(server: SocketAddr, ext: &str, secret: &str, ip: &str) -> Self {
        let socket = UdpSocket::bind((ip, 0)).await.unwrap();
        let local = socket.local_addr().unwrap();
        Self::new(Link::Udp(socket, server), local, ext, secret)
    }

    pub async fn tcp(server: SocketAddr, ext: &str, secret: &str) -> Self {
        let stream = TcpStream::connect(server).await.unwrap();
        let local = stream.local_addr().unwrap();
        Self::new(Link::Tcp(stream, Vec::new()), local, ext, secret)
    }

    /// A browser-like phone on the HTTP server's `/sip` WebSocket.
    pub async fn ws(http: SocketAddr, ext: &str, secret: &str) -> Self {
        let (socket, _) = connect_sip_websocket(http, Some("sip"))
            .await
            .expect("the SIP WebSocket opens");
        let local = match socket.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap(),
            _ => unreachable!("plain ws://"),
        };
        Self::new(Link::Ws(Box::new(socket)), local, ext, secret)
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
            call_algorithm: "MD5",
            branch_seq: 0,
        }
    }

    pub fn transport(&self) -> &'static str {
        match self.link {
            Link::Udp(..) => "UDP",
            Link::Tcp(..) => "TCP",
            Link::Ws(..) => "WS",
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
        if let Link::Ws(_) = self.link {
            // What JsSIP sends: a made-up host only the connection leads to.
            return format!("<sip:{}@df7jal23ls0d.invalid;transport=ws>", self.ext);
        }
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
            Link::Ws(s) => {
                let text = String::from_utf8(data.to_vec()).unwrap();
                s.send(WsMessage::text(text)).await.unwrap();
            }
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
                Link::Ws(s) => loop {
                    match s.next().await {
                        Some(Ok(WsMessage::Text(t))) => {
                            return parse_datagram(Bytes::copy_from_slice(t.as_bytes())).unwrap();
                        }
                        Some(Ok(WsMessage::Binary(b))) => return parse_datagram(b).unwrap(),
                        Some(Ok(_)) => continue,
                        other => panic!("the server closed the SIP WebSocket: {other:?}"),
                    }
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
        let method = req.method().unwrap().as_str().to_owned();
        let resp = response(
            algorithm,
            &h1,
            &method,
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
        // A registrar challenges with 401, a proxy (the PBX placing a call) with 407.
        let header = if method == "REGISTER" {
            HeaderName::Authorization
        } else {
            HeaderName::ProxyAuthorization
        };
        req.set(header, creds.to_header().to_string());
    }

    /// A new branch for a request of ours.
    pub fn via(&mut self) -> switchboard_sip::header::Via {
        self.branch_seq += 1;
        switchboard_sip::header::Via::parse(&format!(
            "SIP/2.0/{} {};rport;branch=z9hG4bK{}x{}",
            self.transport(),
            self.local,
            rand_word(),
            self.branch_seq
        ))
        .unwrap()
    }

    /// Calls `number` (INVITE with an SDP offer, 407, INVITE with credentials) until it
    /// is answered; ACKs the 200 and returns the dialog.
    pub async fn call(&mut self, number: &str) -> switchboard_sip::dialog::Dialog {
        let sdp = format!(
            "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n",
            self.local.port() + 2
        );
        let (invite, ok) = self.invite(number, &sdp).await;
        assert_eq!(ok.code(), Some(200), "{ok}");
        let dialog = switchboard_sip::dialog::Dialog::as_uac(&invite, &ok).unwrap();
        let mut ack = dialog.ack(2, &self.via());
        ack.push(HeaderName::ContentLength, "0");
        self.send(&ack).await;
        dialog
    }

    /// INVITE `number` with `sdp`, 407, INVITE with credentials: that INVITE and its
    /// final answer (a non-2xx is acknowledged).
    pub async fn invite(&mut self, number: &str, sdp: &str) -> (Message, Message) {
        let call_id = format!("{}@test", rand_word());
        let tag = rand_word();
        let invite =
            |phone: &mut Self, seq: u32| phone.invite_request(number, sdp, &call_id, &tag, seq);
        let first = invite(self, 1);
        self.send(&first).await;
        let challenge = self.final_response().await;
        assert_eq!(challenge.code(), Some(407), "{challenge}");
        let ack = switchboard_sip::transaction::ack_for(&first, &challenge).unwrap();
        self.send(&ack).await;
        let c = challenge
            .header_values(&HeaderName::ProxyAuthenticate)
            .filter_map(|v| AuthHeader::parse(v).ok())
            .filter_map(|h| DigestChallenge::from_header(&h).ok())
            .find(|c| c.algorithm.as_deref() == Some(self.call_algorithm))
            .expect("a challenge with the phone's algorithm");
        let mut second = invite(self, 2);
        self.authorize(&mut second, &c, 1);
        self.send(&second).await;
        let answer = self.final_response().await;
        if answer.code().is_some_and(|c| c >= 300) {
            let ack = switchboard_sip::transaction::ack_for(&second, &answer).unwrap();
            self.send(&ack).await;
        }
        (second, answer)
    }

    /// An out-of-dialog INVITE to `number` (no credentials), with `sdp` when not empty.
    pub fn invite_request(
        &mut self,
        number: &str,
        sdp: &str,
        call_id: &str,
        from_tag: &str,
        seq: u32,
    ) -> Message {
        let uri = Uri::parse(&format!("sip:{number}@{REALM}")).unwrap();
        let mut m = Message::request(Method::Invite, uri);
        m.push(HeaderName::Via, self.via().to_string());
        m.push(HeaderName::MaxForwards, "70");
        m.push(
            HeaderName::From,
            format!("<sip:{}@{REALM}>;tag={from_tag}", self.ext),
        );
        m.push(HeaderName::To, format!("<sip:{number}@{REALM}>"));
        m.push(HeaderName::CallId, call_id);
        m.push(HeaderName::CSeq, format!("{seq} INVITE"));
        m.push(HeaderName::Contact, self.contact());
        if sdp.is_empty() {
            m.push(HeaderName::ContentLength, "0");
        } else {
            m.set_body("application/sdp", sdp.to_owned());
        }
        m
    }

    /// The next final response (provisional ones skipped).
    async fn final_response(&mut self) -> Message {
        loop {
            let m = self.recv().await;
            if m.code().is_some_and(|c| c >= 200) {
                return m;
            }
        }
    }

    /// Answers `req` with `code` (a UAS in an existing dialog: the To is kept).
    pub async fn answer(&mut self, req: &Message, code: u16) {
        let mut resp = Message::response_to(req, code, None);
        resp.push(HeaderName::ContentLength, "0");
        self.send(&resp).await;
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

/// Opens `ws://HTTP/sip` offering `protocol` as the subprotocol (none: `None`).
pub async fn connect_sip_websocket(
    http: SocketAddr,
    protocol: Option<&str>,
) -> Result<
    (
        WebSocket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let mut request = format!("ws://{http}/sip").into_client_request().unwrap();
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await
}
