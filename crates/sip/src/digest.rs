//! HTTP digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760): HA1, responses,
//! stateless nonces and nonce-count replay tracking. Time is passed in.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;

use base64::Engine;
use foldhash::fast::RandomState;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::header::DigestCredentials;

/// Digest algorithms a PBX offers phones: MD5 for the installed base, SHA-256 for
/// phones that support RFC 8760.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// The algorithm a credentials' `algorithm` parameter names (absent = MD5).
    /// `-sess` variants are not offered and not accepted.
    pub fn from_param(p: Option<&str>) -> Option<Self> {
        match p {
            None => Some(Self::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Self::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Self::Sha256),
            Some(_) => None,
        }
    }

    /// Lowercase hex digest of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        self.hex_of(&[data]).to_string()
    }

    /// Lowercase hex digest of the concatenation of `parts`, kept on the stack: the
    /// registrar computes two per REGISTER.
    fn hex_of(self, parts: &[&[u8]]) -> Hex {
        fn run<D: Digest>(parts: &[&[u8]], out: &mut [u8]) {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            hex::encode_to_slice(d.finalize(), out).expect("sized for the digest");
        }
        let mut buf = [0u8; 64];
        let len = match self {
            Self::Md5 => {
                run::<Md5>(parts, &mut buf[..32]);
                32
            }
            Self::Sha256 => {
                run::<Sha256>(parts, &mut buf);
                64
            }
        };
        Hex { buf, len }
    }
}

/// A lowercase hex digest, on the stack.
pub struct Hex {
    buf: [u8; 64],
    len: usize,
}

impl std::ops::Deref for Hex {
    type Target = str;

    fn deref(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("hex is ASCII")
    }
}

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", &**self)
    }
}

/// HA1 = H(username ":" realm ":" password): what a registrar needs to verify a digest
/// response, and all it stores of a SIP secret.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The expected `response` for `qop=auth`: KD(HA1, nonce:nc:cnonce:qop:H(method:uri)).
pub fn response(
    algorithm: Algorithm,
    ha1: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> Hex {
    let ha2 = algorithm.hex_of(&[method.as_bytes(), b":", uri.as_bytes()]);
    algorithm.hex_of(&[
        ha1.as_bytes(),
        b":",
        nonce.as_bytes(),
        b":",
        nc.as_bytes(),
        b":",
        cnonce.as_bytes(),
        b":auth:",
        ha2.as_bytes(),
    ])
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestFailure {
    /// An algorithm other than MD5 or SHA-256.
    Algorithm,
    /// No `qop=auth`, `nc` or `cnonce`: without them replays cannot be detected.
    Qop,
    /// The response does not match the secret.
    Response,
}

/// Checks `creds` against `ha1` (computed with the credentials' algorithm) for a
/// request with `method`. Comparison in constant time.
pub fn verify(
    creds: &DigestCredentials,
    ha1: &str,
    method: &str,
) -> Result<Algorithm, DigestFailure> {
    let algorithm =
        Algorithm::from_param(creds.algorithm.as_deref()).ok_or(DigestFailure::Algorithm)?;
    let (Some(qop), Some(nc), Some(cnonce)) = (&creds.qop, &creds.nc, &creds.cnonce) else {
        return Err(DigestFailure::Qop);
    };
    if !qop.eq_ignore_ascii_case("auth") {
        return Err(DigestFailure::Qop);
    }
    let expected = response(algorithm, ha1, method, &creds.uri, &creds.nonce, nc, cnonce);
    // Hex digits in either case; lowercased on the stack, compared in constant time.
    let given = creds.response.as_bytes();
    let mut lower = [0u8; 64];
    let same_length = given.len() == expected.len;
    let n = given.len().min(lower.len());
    for (l, g) in lower.iter_mut().zip(&given[..n]) {
        *l = g.to_ascii_lowercase();
    }
    if same_length && bool::from(expected.as_bytes().ct_eq(&lower[..expected.len])) {
        Ok(algorithm)
    } else {
        Err(DigestFailure::Response)
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks stateless nonces: `base64url(issued-at ‖ salt ‖ HMAC(key,
/// issued-at ‖ salt ‖ source address))`. Nothing is stored per challenge; a nonce is
/// only valid from the address it was issued to and for `lifetime` seconds. The salt
/// (randomness the caller supplies) makes every challenge's nonce unique.
#[derive(Clone)]
pub struct NonceMint {
    key: [u8; 32],
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Genuine but expired: challenge again with `stale=true`.
    Stale,
    /// Not ours, altered, or from another address.
    Invalid,
}

impl NonceMint {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, issued: u64, salt: &[u8], source: IpAddr) -> [u8; 16] {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&issued.to_be_bytes());
        mac.update(salt);
        match source {
            IpAddr::V4(a) => mac.update(&a.octets()),
            IpAddr::V6(a) => mac.update(&a.octets()),
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    pub fn issue(&self, now_secs: u64, source: IpAddr, salt: u64) -> String {
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&now_secs.to_be_bytes());
        raw[8..16].copy_from_slice(&salt.to_be_bytes());
        let mac = self.mac(now_secs, &raw[8..16], source);
        raw[16..].copy_from_slice(&mac);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn check(
        &self,
        nonce: &str,
        now_secs: u64,
        source: IpAddr,
        lifetime_secs: u64,
    ) -> NonceCheck {
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(nonce) else {
            return NonceCheck::Invalid;
        };
        if raw.len() != 32 {
            return NonceCheck::Invalid;
        }
        let issued = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        if !bool::from(self.mac(issued, &raw[8..16], source).ct_eq(&raw[16..])) {
            return NonceCheck::Invalid;
        }
        if issued > now_secs + 5 {
            return NonceCheck::Invalid;
        }
        if now_secs.saturating_sub(issued) > lifetime_secs {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }

    /// When a valid nonce was issued (for the nonce-count table's expiry).
    pub fn issued_at(nonce: &str) -> Option<u64> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()?;
        raw.get(..8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
}

/// The highest nonce count seen per nonce, so that a replayed (nonce, nc) pair is
/// refused. Entries live as long as their nonce; the table is bounded, and when it is
/// full of live nonces the oldest go first, in O(1): every registration brings a new
/// nonce, so under a storm the table is always full.
///
/// Nonces are keyed by a keyed 64-bit hash (per table, random) rather than stored: a
/// collision between two live nonces can only make the second look used, which costs
/// that phone one more challenge, never accepts a replay.
#[derive(Debug, Default)]
pub struct NonceCounts {
    /// hash of the nonce → (highest nc, tag of the request that used it, expiry).
    seen: HashMap<u64, (u32, u64, u64), RandomState>,
    /// The keys in the order they arrived, with their expiry: the eviction queue.
    order: VecDeque<(u64, u64)>,
    hasher: RandomState,
    capacity: usize,
}

impl NonceCounts {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashMap::default(),
            order: VecDeque::new(),
            hasher: RandomState::default(),
            capacity: capacity.max(1),
        }
    }

    /// Records `nc` for `nonce` (which expires at `expires_at`). `request_tag`
    /// identifies the request (e.g. a hash of its branch): the same request again is a
    /// retransmission, not a replay. False when the pair was used by another request.
    pub fn accept(
        &mut self,
        nonce: &str,
        nc: u32,
        request_tag: u64,
        now_secs: u64,
        expires_at: u64,
    ) -> bool {
        let key = self.hasher.hash_one(nonce);
        if let Some((last, tag, _)) = self.seen.get_mut(&key) {
            if nc < *last || (nc == *last && *tag != request_tag) {
                return false;
            }
            *last = nc;
            *tag = request_tag;
            return true;
        }
        if self.seen.len() >= self.capacity {
            // Expired entries first; if the table is still full of live nonces, the
            // oldest tenth goes (those phones get a fresh challenge at worst).
            while let Some(&(k, exp)) = self.order.front()
                && exp <= now_secs
            {
                self.order.pop_front();
                self.seen.remove(&k);
            }
            if self.seen.len() >= self.capacity {
                for _ in 0..=self.capacity / 10 {
                    let Some((k, _)) = self.order.pop_front() else {
                        break;
                    };
                    self.seen.remove(&k);
                }
            }
        }
        self.seen.insert(key, (nc, request_tag, expires_at));
        self.order.push_back((key, expires_at));
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::AuthHeader;

    #[test]
    fn ha1_matches_the_rfc_examples() {
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / "Circle Of Life".
        assert_eq!(
            ha1(
                Algorithm::Md5,
                "Mufasa",
                "testrealm@host.com",
                "Circle Of Life"
            ),
            "939e7578ed9e3c518a452acee763bce9"
        );
        // RFC 7616 §3.9.1: Mufasa / http-auth@example.org / "Circle of Life".
        assert_eq!(
            ha1(
                Algorithm::Sha256,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life"
            ),
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
    }

    #[test]
    fn responses_match_rfc_7616() {
        // RFC 7616 §3.9.1 example (qop=auth, nc=00000001).
        let h1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = response(
            Algorithm::Sha256,
            &h1,
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert_eq!(
            &*r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let h1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = response(
            Algorithm::Md5,
            &h1,
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert_eq!(&*r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn verification() {
        let h1 = ha1(Algorithm::Md5, "1001", "switchboard", "secret-1001-x");
        let resp = response(
            Algorithm::Md5,
            &h1,
            "REGISTER",
            "sip:switchboard",
            "n1",
            "00000001",
            "c1",
        );
        let header = format!(
            r#"Digest username="1001",realm="switchboard",nonce="n1",uri="sip:switchboard",response="{resp}",qop=auth,nc=00000001,cnonce="c1""#
        );
        let creds = DigestCredentials::from_header(&AuthHeader::parse(&header).unwrap()).unwrap();
        assert_eq!(verify(&creds, &h1, "REGISTER"), Ok(Algorithm::Md5));
        assert_eq!(verify(&creds, &h1, "INVITE"), Err(DigestFailure::Response));
        // Hex digits in either case; a prefix or an overlong response is wrong.
        let mut upper = creds.clone();
        upper.response = resp.to_ascii_uppercase().into();
        assert_eq!(verify(&upper, &h1, "REGISTER"), Ok(Algorithm::Md5));
        for bad in [&resp[..31], &format!("{resp}0"), &resp.repeat(3), ""] {
            let mut c = creds.clone();
            c.response = bad.into();
            assert_eq!(verify(&c, &h1, "REGISTER"), Err(DigestFailure::Response));
        }
        let wrong = ha1(Algorithm::Md5, "1001", "switchboard", "other");
        assert_eq!(
            verify(&creds, &wrong, "REGISTER"),
            Err(DigestFailure::Response)
        );
        let mut no_qop = creds.clone();
        no_qop.qop = None;
        assert_eq!(verify(&no_qop, &h1, "REGISTER"), Err(DigestFailure::Qop));
        let mut sess = creds;
        sess.algorithm = Some("MD5-sess".into());
        assert_eq!(
            verify(&sess, &h1, "REGISTER"),
            Err(DigestFailure::Algorithm)
        );
    }

    #[test]
    fn nonces() {
        let mint = NonceMint::new([7; 32]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = mint.issue(1000, ip, 42);
        assert_ne!(
            mint.issue(1000, ip, 43),
            n,
            "the salt makes each nonce unique"
        );
        assert_eq!(mint.check(&n, 1100, ip, 300), NonceCheck::Valid);
        assert_eq!(mint.check(&n, 1301, ip, 300), NonceCheck::Stale);
        assert_eq!(
            mint.check(&n, 1100, "192.0.2.2".parse().unwrap(), 300),
            NonceCheck::Invalid
        );
        assert_eq!(
            NonceMint::new([8; 32]).check(&n, 1100, ip, 300),
            NonceCheck::Invalid
        );
        assert_eq!(mint.check("garbage!", 1100, ip, 300), NonceCheck::Invalid);
        let mut tampered = n.clone().into_bytes();
        tampered[0] ^= 1;
        assert_eq!(
            mint.check(&String::from_utf8(tampered).unwrap(), 1100, ip, 300),
            NonceCheck::Invalid
        );
        assert_eq!(NonceMint::issued_at(&n), Some(1000));
    }

    #[test]
    fn nonce_counts_refuse_replays() {
        let mut nc = NonceCounts::new(3);
        assert!(nc.accept("a", 1, 7, 0, 100));
        assert!(
            nc.accept("a", 1, 7, 0, 100),
            "the same request again is a retransmission"
        );
        assert!(
            !nc.accept("a", 1, 8, 0, 100),
            "another request with the same nc is a replay"
        );
        assert!(nc.accept("a", 2, 8, 0, 100));
        assert!(!nc.accept("a", 1, 9, 0, 100));
        for n in ["b", "c", "d", "e"] {
            assert!(nc.accept(n, 1, 1, 50, 100));
        }
        assert!(nc.len() <= 3);
        // The oldest went first: the newest is still remembered.
        assert!(!nc.accept("e", 1, 2, 50, 100), "e is still known");
    }

    #[test]
    fn a_full_table_drops_expired_nonces_before_live_ones() {
        let mut nc = NonceCounts::new(4);
        assert!(nc.accept("old", 1, 1, 0, 10));
        for n in ["a", "b", "c"] {
            assert!(nc.accept(n, 1, 1, 0, 1000));
        }
        // Full: "old" has expired at 20 and makes room; a, b, c stay.
        assert!(nc.accept("d", 1, 1, 20, 1000));
        assert_eq!(nc.len(), 4);
        for n in ["a", "b", "c", "d"] {
            assert!(!nc.accept(n, 1, 9, 20, 1000), "{n} is remembered");
        }
        // A storm of fresh nonces keeps the table bounded.
        for i in 0..1000 {
            assert!(nc.accept(&format!("n{i}"), 1, 1, 20, 1000));
        }
        assert!(nc.len() <= 4);
    }
}
