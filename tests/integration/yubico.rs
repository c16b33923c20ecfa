//! YubiKey OTP client (spec 07) against a Yubico validation server written here
//! (protocol 2.0): it knows the OTPs it handed out, accepts each once, checks request
//! signatures, signs its answers, records what it was asked, and can misbehave (echo
//! another nonce, sign with another key, answer HTTP 500).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha1::Sha1;
use switchboard::config::{Secret, YubikeyConfig};
use switchboard::features::mfa::yubikey::{YubikeyClient, YubikeyError};

use crate::interop::free_port;

const MODHEX: &[u8] = b"cbdefghijklnrtuv";
const CLIENT_ID: &str = "4711";
const API_KEY: &str = "c3dpdGNoYm9hcmQgeXViaWNvIHRlc3Q=";
const PUBLIC_ID: &str = "vvccccdefghi";

/// How the server gets it wrong, for the client's checks.
#[derive(Clone, Copy, Default, PartialEq)]
pub enum Misbehaviour {
    #[default]
    None,
    /// Answers with a nonce other than the request's.
    WrongNonce,
    /// Signs answers with another key.
    BadSignature,
    /// Answers HTTP 500.
    Down,
}

/// A validation server on 127.0.0.1 for one client.
pub struct ValidationServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
}

struct ServerState {
    client_id: String,
    key: Vec<u8>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Handed out by `otp()` and not used yet.
    fresh: HashSet<String>,
    used: HashSet<String>,
    /// The query parameters of every request, in order.
    requests: Vec<BTreeMap<String, String>>,
    misbehaviour: Misbehaviour,
}

impl ValidationServer {
    pub async fn start(client_id: &str, api_key_b64: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState {
            client_id: client_id.to_owned(),
            key: STANDARD.decode(api_key_b64).unwrap(),
            inner: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/wsapi/2.0/verify", axum::routing::get(verify))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/wsapi/2.0/verify", self.addr)
    }

    /// A new valid 44-character OTP of the key `public_id`: the id, then 128 random
    /// bits in ModHex where a real key has its encrypted token.
    pub fn otp(&self, public_id: &str) -> String {
        let token: String = format!("{:032x}", rand::random::<u128>())
            .bytes()
            .map(|hex| MODHEX[(hex as char).to_digit(16).unwrap() as usize] as char)
            .collect();
        let otp = format!("{public_id}{token}");
        self.state.inner.lock().fresh.insert(otp.clone());
        otp
    }

    pub fn misbehave(&self, how: Misbehaviour) {
        self.state.inner.lock().misbehaviour = how;
    }

    pub fn requests(&self) -> Vec<BTreeMap<String, String>> {
        self.state.inner.lock().requests.clone()
    }
}

/// `GET /wsapi/2.0/verify`: the answer is `key=value` lines, signed with `h`.
async fn verify(
    State(state): State<Arc<ServerState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let request: BTreeMap<String, String> = query.into_iter().collect();
    let mut inner = state.inner.lock();
    inner.requests.push(request.clone());
    let mut answer = BTreeMap::new();
    for echoed in ["otp", "nonce"] {
        if let Some(value) = request.get(echoed) {
            answer.insert(echoed.to_owned(), value.clone());
        }
    }
    answer.insert("status".into(), state.status(&mut inner, &request).into());
    answer.insert("t".into(), "2026-01-01T12:00:00Z0123".into());
    answer.insert("sl".into(), "100".into());
    let mut key = state.key.as_slice();
    match inner.misbehaviour {
        Misbehaviour::None => {}
        Misbehaviour::WrongNonce => {
            answer.insert("nonce".into(), "someoneelsesnonce123".into());
        }
        Misbehaviour::BadSignature => key = b"not the client's key".as_slice(),
        Misbehaviour::Down => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
    let mut body = format!("h={}\r\n", sign(key, &answer));
    for (name, value) in &answer {
        body.push_str(&format!("{name}={value}\r\n"));
    }
    body.push_str("\r\n");
    body.into_response()
}

impl ServerState {
    fn status(&self, inner: &mut Inner, request: &BTreeMap<String, String>) -> &'static str {
        let (Some(id), Some(otp), Some(_nonce)) =
            (request.get("id"), request.get("otp"), request.get("nonce"))
        else {
            return "MISSING_PARAMETER";
        };
        if *id != self.client_id {
            return "NO_SUCH_CLIENT";
        }
        // The protocol lets a client leave requests unsigned.
        if request
            .get("h")
            .is_some_and(|h| *h != sign(&self.key, request))
        {
            return "BAD_SIGNATURE";
        }
        if inner.fresh.remove(otp) {
            inner.used.insert(otp.clone());
            "OK"
        } else if inner.used.contains(otp) {
            "REPLAYED_OTP"
        } else {
            "BAD_OTP"
        }
    }
}

/// Protocol 2.0: base64 HMAC-SHA1 of `k=v&...` over the pairs but `h`, sorted by key
/// (a `BTreeMap` iterates in that order).
fn sign(key: &[u8], pairs: &BTreeMap<String, String>) -> String {
    let line: Vec<String> = pairs
        .iter()
        .filter(|(name, _)| *name != "h")
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
    mac.update(line.join("&").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn client(api_key: Option<&str>, urls: &[String]) -> YubikeyClient {
    YubikeyClient::new(&YubikeyConfig {
        enabled: true,
        client_id: Some(CLIENT_ID.into()),
        api_key: api_key.map(Secret::new),
        api_urls: urls.to_vec(),
    })
}

fn rejected(result: Result<(), YubikeyError>) -> String {
    match result {
        Err(YubikeyError::Rejected(status)) => status,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_otp_is_accepted_once() {
    let server = ValidationServer::start(CLIENT_ID, API_KEY).await;
    let client = client(Some(API_KEY), &[server.url()]);
    let otp = server.otp(PUBLIC_ID);

    client.verify(&otp).await.unwrap();
    let request = &server.requests()[0];
    assert_eq!(request["id"], CLIENT_ID);
    assert_eq!(request["otp"], otp);
    let nonce = &request["nonce"];
    assert!((16..=40).contains(&nonce.len()), "{nonce}");
    assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()), "{nonce}");
    assert!(request.contains_key("h"));

    assert_eq!(rejected(client.verify(&otp).await), "REPLAYED_OTP");
    // Each request has its own nonce.
    assert_ne!(server.requests()[1]["nonce"], *nonce);
}

#[tokio::test]
async fn unknown_and_malformed_otps_are_rejected() {
    let server = ValidationServer::start(CLIENT_ID, API_KEY).await;
    let client = client(Some(API_KEY), &[server.url()]);
    let forged = format!("{PUBLIC_ID}{}", "c".repeat(32));
    assert_eq!(rejected(client.verify(&forged).await), "BAD_OTP");

    let otp = server.otp(PUBLIC_ID);
    assert!(matches!(
        client.verify(&otp[..30]).await,
        Err(YubikeyError::Malformed)
    ));
    assert_eq!(server.requests().len(), 1, "a malformed OTP is not sent");
}

#[tokio::test]
async fn a_request_signed_with_another_key_is_refused() {
    let server = ValidationServer::start(CLIENT_ID, API_KEY).await;
    let client = client(Some("b3RoZXIga2V5"), &[server.url()]);
    let otp = server.otp(PUBLIC_ID);
    assert_eq!(rejected(client.verify(&otp).await), "BAD_SIGNATURE");
}

#[tokio::test]
async fn an_answer_with_a_bad_signature_is_not_trusted() {
    let server = ValidationServer::start(CLIENT_ID, API_KEY).await;
    server.misbehave(Misbehaviour::BadSignature);
    let client = client(Some(API_KEY), &[server.url()]);
    let otp = server.otp(PUBLIC_ID);
    assert!(matches!(
        client.verify(&otp).await,
        Err(YubikeyError::BadResponse(_))
    ));
}

#[tokio::test]
async fn an_answer_for_another_nonce_is_not_trusted() {
    let server = ValidationServer::start(CLIENT_ID, API_KEY).await;
    server.misbehave(Misbehaviour::WrongNonce);
    let down = ValidationServer::start(CLIENT_ID, API_KEY).await;
    down.misbehave(Misbehaviour::Down);
    let otp = server.otp(PUBLIC_ID);

    let result = client(Some(API_KEY), &[server.url()]).verify(&otp).await;
    assert!(matches!(result, Err(YubikeyError::BadResponse(_))));
    // Another server being down afterwards does not hide the doubtful answer.
    let otp = server.otp(PUBLIC_ID);
    let result = client(Some(API_KEY), &[server.url(), down.url()])
        .verify(&otp)
        .await;
    assert!(matches!(result, Err(YubikeyError::BadResponse(_))));
    assert_eq!(down.requests().len(), 1);
}

#[tokio::test]
async fn servers_are_tried_in_order_until_one_answers() {
    let closed = format!("http://127.0.0.1:{}/wsapi/2.0/verify", free_port());
    let down = ValidationServer::start(CLIENT_ID, API_KEY).await;
    down.misbehave(Misbehaviour::Down);
    let up = ValidationServer::start(CLIENT_ID, API_KEY).await;
    let otp = up.otp(PUBLIC_ID);

    let urls = [closed.clone(), down.url(), up.url()];
    client(Some(API_KEY), &urls).verify(&otp).await.unwrap();
    assert_eq!(down.requests().len(), 1);
    assert_eq!(up.requests().len(), 1);

    // A definite answer ends the search: the replay is not asked elsewhere.
    let urls = [up.url(), down.url()];
    let result = client(Some(API_KEY), &urls).verify(&otp).await;
    assert_eq!(rejected(result), "REPLAYED_OTP");
    assert_eq!(down.requests().len(), 1);

    let result = client(Some(API_KEY), &[closed, down.url()])
        .verify(&otp)
        .await;
    assert!(matches!(result, Err(YubikeyError::Unavailable(_))));
}

#[tokio::test]
async fn without_an_api_key_nothing_is_signed() {
    let server = ValidationServer::start(CLIENT_ID, API_KEY).await;
    // The client has no key to check answers with, so this one passes.
    server.misbehave(Misbehaviour::BadSignature);
    let client = client(None, &[server.url()]);
    let otp = server.otp(PUBLIC_ID);

    client.verify(&otp).await.unwrap();
    assert!(!server.requests()[0].contains_key("h"));
    // The nonce and OTP echo are still checked.
    server.misbehave(Misbehaviour::WrongNonce);
    let otp = server.otp(PUBLIC_ID);
    assert!(matches!(
        client.verify(&otp).await,
        Err(YubikeyError::BadResponse(_))
    ));
}
