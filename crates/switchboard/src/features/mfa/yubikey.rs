//! YubiKey OTP (spec 07): the shape of a Yubico OTP and a client for the Yubico
//! validation protocol 2.0 (developers.yubico.com/OTP/Specifications), which asks the
//! configured validation servers whether an OTP is valid and not replayed.
//!
//! One request is one GET with `id`, `nonce` and `otp`, signed with `h` (HMAC-SHA1
//! under the base64-decoded API key) when a key is configured. An `OK` answer counts
//! only if it echoes our `otp` (the protocol's guard against an answer cut from
//! another request) and our fresh `nonce` (against a recorded answer played back) and,
//! with a key, carries a valid `h`.
//!
//! Hand-written rather than a dependency: the protocol is one signed GET, and the
//! maintained crate (`yubico_ng`) talks to a single server, refuses to run without an
//! API key, and its current releases would add second copies of reqwest, hmac, sha1
//! and base64 to the build.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use url::Url;

use crate::config::YubikeyConfig;
use crate::crypto::{UNAMBIGUOUS, constant_time_eq, random_string};

/// Yubico's hex alphabet: keys that sit at the same place on most keyboard layouts.
const MODHEX: &[u8] = b"cbdefghijklnrtuv";
/// An OTP is a public id of up to 16 ModHex characters followed by 32 of encrypted
/// token; 12 + 32 = 44 is what every YubiKey sends by default.
const OTP_LEN: RangeInclusive<usize> = 32..=48;
const PUBLIC_ID_LEN: usize = 12;
/// The protocol asks for 16 to 40 characters of random data.
const NONCE_LEN: usize = 32;
/// A login waits on this: a server that has not answered by then is skipped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A real answer is a few hundred bytes; anything much longer is not one.
const MAX_ANSWER: usize = 4096;
/// The client id used when none is configured (the protocol requires one; servers
/// that do not sign answers usually ignore it).
const DEFAULT_CLIENT_ID: &str = "1";

/// The OTP in lower case without surrounding whitespace (a YubiKey types Enter after
/// it), if it has the shape of a Yubico OTP.
fn normalise(otp: &str) -> Option<String> {
    let otp = otp.trim().to_ascii_lowercase();
    let shaped = OTP_LEN.contains(&otp.len()) && otp.bytes().all(|b| MODHEX.contains(&b));
    shaped.then_some(otp)
}

/// The 12-character public id (first 12 chars) of a well-formed OTP: 32–48 ModHex
/// characters (`cbdefghijklnrtuv`), normally 44; case-insensitive input normalised to
/// lowercase. `None` otherwise.
pub fn public_id(otp: &str) -> Option<String> {
    let mut otp = normalise(otp)?;
    otp.truncate(PUBLIC_ID_LEN);
    Some(otp)
}

/// Whether a code looks like a YubiKey OTP, so a caller can tell it from a TOTP or
/// backup code (neither is ever 32 ModHex letters).
pub fn is_otp_shape(code: &str) -> bool {
    normalise(code).is_some()
}

#[derive(Debug, thiserror::Error)]
pub enum YubikeyError {
    /// Not shaped like a Yubico OTP; no server was asked.
    #[error("not a YubiKey OTP")]
    Malformed,
    /// A server's definite refusal, with its status (`BAD_OTP`, `REPLAYED_OTP`,
    /// `BAD_SIGNATURE`, `NO_SUCH_CLIENT`, ...).
    #[error("the validation server refused the OTP: {0}")]
    Rejected(String),
    /// No server gave a definite answer, and at least one gave an `OK` that failed its
    /// checks (signature, `otp` or `nonce` echo) or an answer that could not be read:
    /// a misconfigured key, or someone tampering with the answers.
    #[error("the validation server's answer is not trustworthy: {0}")]
    BadResponse(String),
    /// No server could be asked or none answered (also: no server configured, or an
    /// `api_key` that is not base64).
    #[error("no YubiKey validation server available: {0}")]
    Unavailable(String),
}

/// A client for the configured validation servers; cheap to clone.
#[derive(Clone)]
pub struct YubikeyClient {
    servers: Vec<String>,
    client_id: String,
    /// The HTTP client and decoded API key, or why the configuration cannot be used:
    /// then every verification fails with that reason instead of, say, quietly sending
    /// unsigned requests because the key did not decode.
    ready: Result<Ready, String>,
}

#[derive(Clone)]
struct Ready {
    http: reqwest::Client,
    api_key: Option<Vec<u8>>,
}

/// What one validation server said.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A checked `OK`.
    Valid,
    /// A definite refusal.
    Rejected(String),
    /// Nothing usable (unreachable, HTTP error, `BACKEND_ERROR`...): ask the next one.
    Unavailable(String),
    /// An answer that cannot be trusted: ask the next one, report it if none answers.
    Bad(String),
}

impl YubikeyClient {
    pub fn new(config: &YubikeyConfig) -> Self {
        let client_id = config
            .client_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .unwrap_or(DEFAULT_CLIENT_ID);
        Self {
            servers: config.api_urls.clone(),
            client_id: client_id.to_owned(),
            ready: api_key(config).and_then(|api_key| {
                Ok(Ready {
                    http: http_client()?,
                    api_key,
                })
            }),
        }
    }

    /// Verifies an OTP with the validation servers, trying `api_urls` in order until
    /// one gives a definite answer (network errors, HTTP errors, `BACKEND_ERROR`,
    /// `NOT_ENOUGH_ANSWERS`, `REPLAYED_REQUEST` and untrustworthy answers → the next
    /// server). Each attempt has its own nonce. Asking another server after a doubtful
    /// answer is safe: servers of one service share replay state, so an OTP is
    /// accepted at most once.
    pub async fn verify(&self, otp: &str) -> Result<(), YubikeyError> {
        let otp = normalise(otp).ok_or(YubikeyError::Malformed)?;
        let ready = self
            .ready
            .as_ref()
            .map_err(|why| YubikeyError::Unavailable(why.clone()))?;
        let (mut bad, mut unavailable) = (None, None);
        for server in &self.servers {
            match self.ask(ready, server, &otp).await {
                Answer::Valid => return Ok(()),
                Answer::Rejected(status) => return Err(YubikeyError::Rejected(status)),
                Answer::Unavailable(why) => {
                    tracing::warn!(%server, reason = %why, "YubiKey validation server unavailable");
                    unavailable = Some(format!("{server}: {why}"));
                }
                Answer::Bad(why) => {
                    tracing::warn!(%server, reason = %why, "YubiKey validation answer rejected");
                    bad = Some(format!("{server}: {why}"));
                }
            }
        }
        // A doubtful answer says more (a wrong key, or tampering) than a server that
        // was down.
        Err(match (bad, unavailable) {
            (Some(why), _) => YubikeyError::BadResponse(why),
            (None, Some(why)) => YubikeyError::Unavailable(why),
            (None, None) => YubikeyError::Unavailable("no validation server configured".into()),
        })
    }

    async fn ask(&self, ready: &Ready, server: &str, otp: &str) -> Answer {
        let nonce = random_string(NONCE_LEN, UNAMBIGUOUS);
        let api_key = ready.api_key.as_deref();
        let url = match self.request_url(api_key, server, otp, &nonce) {
            Ok(url) => url,
            Err(why) => return Answer::Unavailable(why),
        };
        let body = match fetch(&ready.http, url).await {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        match parse(&body) {
            Ok(fields) => judge(&fields, otp, &nonce, api_key),
            Err(why) => Answer::Bad(why),
        }
    }

    /// `server?id=..&nonce=..&otp=..[&h=..]`; `h` signs the values as sent (all of
    /// them letters and digits, so URL encoding does not change them).
    fn request_url(
        &self,
        api_key: Option<&[u8]>,
        server: &str,
        otp: &str,
        nonce: &str,
    ) -> Result<Url, String> {
        let mut url = Url::parse(server).map_err(|e| format!("not a URL: {e}"))?;
        let params = [
            ("id", self.client_id.as_str()),
            ("nonce", nonce),
            ("otp", otp),
        ];
        let mut query = url.query_pairs_mut();
        query.extend_pairs(params);
        if let Some(key) = api_key {
            query.append_pair("h", &signature(key, params));
        }
        drop(query);
        Ok(url)
    }
}

/// The decoded API key; an empty or absent one means unsigned requests and answers.
fn api_key(config: &YubikeyConfig) -> Result<Option<Vec<u8>>, String> {
    let Some(text) = config
        .api_key
        .as_ref()
        .map(|key| key.expose().trim())
        .filter(|key| !key.is_empty())
    else {
        return Ok(None);
    };
    STANDARD
        .decode(text)
        .map(Some)
        .map_err(|_| "security.mfa.yubikey.api_key is not base64".into())
}

/// No redirects: a validation server answers itself, and following one would hand the
/// OTP to whatever the redirect names.
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client: {}", describe(&e)))
}

/// The body of a 2xx answer, at most `MAX_ANSWER` bytes.
async fn fetch(http: &reqwest::Client, url: Url) -> Result<Vec<u8>, Answer> {
    let unavailable = |e: reqwest::Error| Answer::Unavailable(describe(&e));
    let mut response = http.get(url).send().await.map_err(unavailable)?;
    if !response.status().is_success() {
        return Err(Answer::Unavailable(format!("HTTP {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(Answer::Bad("answer too long".into()));
        }
    }
    Ok(body)
}

/// A reqwest error with its causes ("error sending request: ... Connection refused")
/// and without the URL, which carries the OTP and the request signature.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `key=value` lines of an answer (CRLF or LF; blank lines skipped). A key given
/// twice is refused: which of the two the signature covers would be ambiguous.
fn parse(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "answer is not UTF-8".to_owned())?;
    let mut fields = BTreeMap::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| "answer has a line without '='".to_owned())?;
        if fields.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("answer gives `{key:.32}` twice"));
        }
    }
    Ok(fields)
}

/// What an answer means. Only `OK` is checked for integrity: a forged refusal can only
/// deny a login, which whoever can forge answers can do by dropping them anyway, and
/// servers cannot sign some refusals (`NO_SUCH_CLIENT` has no key to sign with).
fn judge(
    fields: &BTreeMap<String, String>,
    otp: &str,
    nonce: &str,
    api_key: Option<&[u8]>,
) -> Answer {
    match fields.get("status").map(String::as_str) {
        Some("OK") => match check_ok(fields, otp, nonce, api_key) {
            Ok(()) => Answer::Valid,
            Err(why) => Answer::Bad(why),
        },
        // The server's own trouble (or, for REPLAYED_REQUEST, a nonce it has seen,
        // which ours never repeat): another server may well answer.
        Some(status @ ("BACKEND_ERROR" | "NOT_ENOUGH_ANSWERS" | "REPLAYED_REQUEST")) => {
            Answer::Unavailable(status.to_owned())
        }
        Some(
            status @ ("BAD_OTP"
            | "REPLAYED_OTP"
            | "BAD_SIGNATURE"
            | "MISSING_PARAMETER"
            | "NO_SUCH_CLIENT"
            | "OPERATION_NOT_ALLOWED"),
        ) => Answer::Rejected(status.to_owned()),
        Some(status) => Answer::Bad(format!("unknown status {status:.32}")),
        None => Answer::Bad("answer has no status".into()),
    }
}

/// An `OK` counts if it is signed with our key (when we have one) and echoes our OTP
/// and nonce.
fn check_ok(
    fields: &BTreeMap<String, String>,
    otp: &str,
    nonce: &str,
    api_key: Option<&[u8]>,
) -> Result<(), String> {
    if let Some(key) = api_key {
        let given = fields.get("h").ok_or("answer is not signed")?;
        let expected = signature(key, fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            return Err("answer signature does not verify".into());
        }
    }
    echoed(fields, "otp", otp)?;
    echoed(fields, "nonce", nonce)
}

fn echoed(fields: &BTreeMap<String, String>, name: &str, sent: &str) -> Result<(), String> {
    let got = fields.get(name).map_or(&[][..], |v| v.as_bytes());
    if constant_time_eq(got, sent.as_bytes()) {
        Ok(())
    } else {
        Err(format!("answer does not echo our {name}"))
    }
}

/// The protocol's signature: base64 of the HMAC-SHA1, under `key`, of the pairs other
/// than `h`, sorted by key, as `k=v` joined by `&`.
fn signature<'a>(key: &[u8], pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<_> = pairs.into_iter().filter(|(k, _)| *k != "h").collect();
    pairs.sort_unstable();
    let line: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(line.join("&").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// The API key of Yubico's test vectors
    /// (developers.yubico.com/OTP/Specifications/Test_vectors.html).
    const KEY: &str = "mG5be6ZJU1qBGz24yPh/ESM3UdU=";
    const OTP: &str = "cccccckdvvulethkhtvkrtbeukiettvfceekurncllcj";

    fn key() -> Vec<u8> {
        STANDARD.decode(KEY).unwrap()
    }

    fn client(api_key: Option<&str>, urls: &[&str]) -> YubikeyClient {
        YubikeyClient::new(&YubikeyConfig {
            enabled: true,
            client_id: Some("1".into()),
            api_key: api_key.map(Secret::new),
            api_urls: urls.iter().map(|u| u.to_string()).collect(),
        })
    }

    #[test]
    fn otp_shape_and_public_id() {
        assert!(is_otp_shape(OTP));
        assert_eq!(public_id(OTP).as_deref(), Some("cccccckdvvul"));
        // Caps lock, and the Enter a YubiKey types after the OTP.
        assert_eq!(
            public_id(&format!("{}\n", OTP.to_uppercase())).as_deref(),
            Some("cccccckdvvul")
        );
        assert!(is_otp_shape(&"c".repeat(32)));
        assert!(is_otp_shape(&"v".repeat(48)));
        assert!(!is_otp_shape(&"c".repeat(31)));
        assert!(!is_otp_shape(&"c".repeat(49)));
        // 'a' is not ModHex; TOTP and backup codes are never OTPs.
        assert!(!is_otp_shape(&format!("a{}", &OTP[1..])));
        assert!(!is_otp_shape("123456"));
        assert!(!is_otp_shape("ABCD-EFGH"));
        assert!(!is_otp_shape(&format!("{}é", &OTP[..43])));
        assert_eq!(public_id("123456"), None);
    }

    /// Yubico's request vector, given out of order to show the sorting.
    #[test]
    fn request_signature_matches_the_yubico_vector() {
        let pairs = [
            ("otp", "vvungrrdhvtklknvrtvuvbbkeidikkvgglrvdgrfcdft"),
            ("id", "1"),
            ("nonce", "jrFwbaYFhn0HoxZIsd9LQ6w2ceU"),
        ];
        assert_eq!(signature(&key(), pairs), "+ja8S3IjbX593/LAgTBixwPNGX4=");
    }

    #[test]
    fn request_url_carries_the_url_encoded_signature() {
        let otp = "vvungrrdhvtklknvrtvuvbbkeidikkvgglrvdgrfcdft";
        let nonce = "jrFwbaYFhn0HoxZIsd9LQ6w2ceU";
        let client = client(Some(KEY), &[]);
        let url = client
            .request_url(
                Some(&key()),
                "https://api.example/wsapi/2.0/verify",
                otp,
                nonce,
            )
            .unwrap();
        assert!(
            url.query()
                .unwrap()
                .ends_with("&h=%2Bja8S3IjbX593%2FLAgTBixwPNGX4%3D")
        );
        let params: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(params["id"], "1");
        assert_eq!(params["otp"], otp);
        assert_eq!(params["nonce"], nonce);
        assert_eq!(params["h"], "+ja8S3IjbX593/LAgTBixwPNGX4=");

        let unsigned = client.request_url(None, "http://h/v", otp, nonce).unwrap();
        assert!(!unsigned.query().unwrap().contains("h="));
    }

    /// Yubico's response vector, as the server would send it.
    fn answer(extra: &str) -> BTreeMap<String, String> {
        parse(
            format!(
                "h=iCV9uFJDtuyELQsxFPnR80Yj2XU=\r\nt=2019-06-06T05:14:15Z0369\r\n\
                 otp={OTP}\r\nnonce=0123456789abcdef\r\nsl=25\r\nstatus=OK\r\n{extra}\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_signed_ok_that_echoes_our_request_is_valid() {
        let nonce = "0123456789abcdef";
        assert_eq!(judge(&answer(""), OTP, nonce, Some(&key())), Answer::Valid);
        assert_eq!(judge(&answer(""), OTP, nonce, None), Answer::Valid);
    }

    #[test]
    fn an_ok_failing_its_checks_is_bad() {
        const NONCE: &str = "0123456789abcdef";
        let key = key();
        let signed = |fields: &BTreeMap<String, String>, otp: &str, nonce: &str| {
            judge(fields, otp, nonce, Some(&key))
        };
        let bad = |answer: Answer| matches!(answer, Answer::Bad(_));
        // A field the signature does not cover.
        assert!(bad(signed(&answer("sessionuse=3"), OTP, NONCE)));
        let mut unsigned = answer("");
        unsigned.remove("h");
        assert!(bad(signed(&unsigned, OTP, NONCE)));
        assert_eq!(judge(&unsigned, OTP, NONCE, None), Answer::Valid);
        // Another request's answer: signed, but not for our nonce or OTP.
        assert!(bad(signed(&answer(""), OTP, "0123456789abcdeF")));
        let other_otp = format!("{}c", &OTP[..43]);
        assert!(bad(signed(&answer(""), &other_otp, NONCE)));
        let mut no_nonce = answer("");
        no_nonce.remove("nonce");
        assert!(bad(judge(&no_nonce, OTP, NONCE, None)));
    }

    #[test]
    fn statuses() {
        let with = |status: &str| {
            let fields = parse(format!("status={status}\r\n").as_bytes()).unwrap();
            judge(&fields, OTP, "n", Some(&key()))
        };
        assert_eq!(
            with("REPLAYED_OTP"),
            Answer::Rejected("REPLAYED_OTP".into())
        );
        assert_eq!(with("BAD_OTP"), Answer::Rejected("BAD_OTP".into()));
        assert_eq!(
            with("NO_SUCH_CLIENT"),
            Answer::Rejected("NO_SUCH_CLIENT".into())
        );
        assert_eq!(
            with("BACKEND_ERROR"),
            Answer::Unavailable("BACKEND_ERROR".into())
        );
        assert!(matches!(with("MAYBE"), Answer::Bad(_)));
        assert!(matches!(with("OK"), Answer::Bad(_)));
        assert!(matches!(
            judge(&BTreeMap::new(), OTP, "n", None),
            Answer::Bad(_)
        ));
    }

    #[test]
    fn unreadable_answers() {
        assert!(parse(b"<html>oops</html>").is_err());
        assert!(parse(b"status=OK\r\nstatus=BAD_OTP\r\n").is_err());
        assert!(parse(b"status=OK\xff").is_err());
        // Base64 values end in '=': only the first one separates key and value.
        assert_eq!(parse(b"h=ab==\n").unwrap()["h"], "ab==");
    }

    #[tokio::test]
    async fn configuration_errors_fail_without_asking_anyone() {
        let servers = ["http://127.0.0.1:9/verify"];
        assert!(matches!(
            client(Some(KEY), &servers).verify("123456").await,
            Err(YubikeyError::Malformed)
        ));
        let Err(YubikeyError::Unavailable(why)) =
            client(Some("YOUR_API_KEY"), &servers).verify(OTP).await
        else {
            panic!("a key that is not base64 must not verify anything");
        };
        assert!(why.contains("api_key"), "{why}");
        assert!(matches!(
            client(Some(KEY), &[]).verify(OTP).await,
            Err(YubikeyError::Unavailable(_))
        ));
    }
}
