//! str0m's crypto provider, in pure Rust (RustCrypto and dimpl's RustCrypto backend).
//!
//! Why our own: str0m 0.25's `rust-crypto` feature needs `str0m-rust-crypto` 0.7, which the
//! registry we build from does not have, and its 0.6 predecessor turns on dimpl's `rcgen`
//! feature, which compiles aws-lc-sys (C, cmake-era build times) just to make the DTLS
//! certificate. This is the same glue as `str0m-rust-crypto` (SRTP ciphers, STUN's
//! HMAC-SHA1, fingerprint hashes, DTLS through dimpl) plus a self-signed certificate built
//! with `x509-cert` and `p256` instead of rcgen. It is handed to each `Rtc` through
//! `RtcConfig::set_crypto_provider`, so no process-wide state is installed.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, AeadCore, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePrivateKey;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use str0m::config::{CryptoProvider, DtlsCert, DtlsVersion};
use str0m::crypto::dtls::{DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, ProtocolVersion};
use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80Cipher, CryptoError, Sha1HmacProvider,
    Sha1Provider, Sha256Provider, SrtpProvider, SupportedAeadAes128Gcm, SupportedAeadAes256Gcm,
    SupportedAes128CmSha1_80,
};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::der::Encode;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoRef;
use x509_cert::time::{Time, Validity};
use x509_cert::{SubjectPublicKeyInfo, TbsCertificate};

/// The provider for one `Rtc`; all parts are stateless statics, so this is cheap.
pub(super) fn provider() -> Arc<CryptoProvider> {
    static SRTP: Srtp = Srtp;
    static HMAC: HmacSha1 = HmacSha1;
    static SHA1: Sha1Hash = Sha1Hash;
    static SHA256: Sha256Hash = Sha256Hash;
    static DTLS: Dtls = Dtls;
    Arc::new(CryptoProvider {
        srtp_provider: &SRTP,
        sha1_hmac_provider: &HMAC,
        sha1_provider: &SHA1,
        sha256_provider: &SHA256,
        dtls_provider: &DTLS,
    })
}

/// A fresh self-signed ECDSA P-256 certificate for DTLS (what browsers make too).
///
/// Nobody checks its name or dates: WebRTC authenticates the certificate by the
/// `a=fingerprint` of the SDP. So the validity is fixed (2025 to RFC 5280's "no
/// expiry") rather than read from the clock. The key and serial come from the OS RNG.
pub(super) fn generate_certificate() -> Result<DtlsCert, String> {
    let key = random_signing_key()?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| format!("OS random source: {e}"))?;
    // Positive and without a leading zero byte, as DER INTEGERs want.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let serial = SerialNumber::new(&serial).map_err(|e| format!("serial number: {e}"))?;
    let not_before = Time::from_str("2025-01-01T00:00:00Z").map_err(|e| format!("date: {e}"))?;
    let validity = Validity::new(not_before, Time::INFINITY);
    let name = Name::from_str("CN=switchboard").map_err(|e| format!("name: {e}"))?;
    let spki = SubjectPublicKeyInfo::from_key(key.verifying_key())
        .map_err(|e| format!("public key: {e}"))?;
    let builder = CertificateBuilder::new(SelfSigned(name), serial, validity, spki)
        .map_err(|e| format!("certificate: {e}"))?;
    let certificate = builder
        .build::<_, DerSignature>(&key)
        .map_err(|e| format!("signing the certificate: {e}"))?
        .to_der()
        .map_err(|e| format!("encoding the certificate: {e}"))?;
    // dimpl loads the key as PKCS#8.
    let private_key = key
        .to_pkcs8_der()
        .map_err(|e| format!("encoding the key: {e}"))?
        .as_bytes()
        .to_vec();
    Ok(DtlsCert {
        certificate,
        private_key,
    })
}

fn random_signing_key() -> Result<SigningKey, String> {
    // A random 32-byte string is a valid scalar but with probability ~2^-32; retry then.
    for _ in 0..8 {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| format!("OS random source: {e}"))?;
        if let Ok(key) = SigningKey::from_slice(&secret) {
            return Ok(key);
        }
    }
    Err("could not draw a P-256 key".into())
}

/// Issuer = subject, no extensions: the smallest certificate DTLS accepts.
struct SelfSigned(Name);

impl BuilderProfile for SelfSigned {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.0.clone()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------------------------------
// Hashes and STUN's HMAC.

#[derive(Debug)]
struct HmacSha1;

impl Sha1HmacProvider for HmacSha1 {
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        // HMAC takes keys of any length, so this cannot fail; a zero tag would only fail
        // the integrity check.
        let Ok(mut mac) = <Hmac<Sha1> as hmac::KeyInit>::new_from_slice(key) else {
            return [0; 20];
        };
        for payload in payloads {
            mac.update(payload);
        }
        mac.finalize().into_bytes().into()
    }
}

#[derive(Debug)]
struct Sha1Hash;

impl Sha1Provider for Sha1Hash {
    fn sha1(&self, data: &[u8]) -> [u8; 20] {
        Sha1::digest(data).into()
    }
}

#[derive(Debug)]
struct Sha256Hash;

impl Sha256Provider for Sha256Hash {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
}

// ---------------------------------------------------------------------------------------
// SRTP: AES-CM with HMAC-SHA1-80 and AES-GCM (RFC 3711, RFC 7714).

#[derive(Debug)]
struct Srtp;

impl SrtpProvider for Srtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        &AesCmFactory
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &Gcm128Factory
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &Gcm256Factory
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        if let Ok(cipher) = aes::Aes128::new_from_slice(key) {
            ecb_round(|block| cipher.encrypt_block(block), input, output);
        }
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        if let Ok(cipher) = aes::Aes256::new_from_slice(key) {
            ecb_round(|block| cipher.encrypt_block(block), input, output);
        }
    }
}

/// The key-derivation round str0m asks for: one 16-byte block through AES-ECB followed by
/// a full PKCS#7 padding block (how OpenSSL's ECB mode behaves, which str0m mirrors).
/// str0m always passes 16 bytes in and 32 out; anything else leaves `output` alone.
fn ecb_round(encrypt: impl Fn(&mut aes::Block), input: &[u8], output: &mut [u8]) {
    let (Ok(first), Some(out)) = (<[u8; 16]>::try_from(input), output.get_mut(..32)) else {
        return;
    };
    let mut block = aes::Block::from(first);
    encrypt(&mut block);
    out[..16].copy_from_slice(&block);
    let mut padding = aes::Block::from([0x10; 16]);
    encrypt(&mut padding);
    out[16..].copy_from_slice(&padding);
}

#[derive(Debug)]
struct AesCmFactory;

impl SupportedAes128CmSha1_80 for AesCmFactory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn Aes128CmSha1_80Cipher> {
        Box::new(AesCm { key })
    }
}

#[derive(Debug)]
struct AesCm {
    key: [u8; 16],
}

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

impl Aes128CmSha1_80Cipher for AesCm {
    fn encrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let out = output
            .get_mut(..input.len())
            .ok_or_else(|| CryptoError::Other("SRTP output buffer too small".into()))?;
        out.copy_from_slice(input);
        Aes128Ctr::new(&self.key.into(), &(*iv).into()).apply_keystream(out);
        Ok(())
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        // Counter mode is its own inverse.
        self.encrypt(iv, input, output)
    }
}

#[derive(Debug)]
struct Gcm128Factory;

impl SupportedAeadAes128Gcm for Gcm128Factory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Box::new(Gcm(Aes128Gcm::new(&key.into())))
    }
}

#[derive(Debug)]
struct Gcm256Factory;

impl SupportedAeadAes256Gcm for Gcm256Factory {
    fn create_cipher(&self, key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Box::new(Gcm(Aes256Gcm::new(&key.into())))
    }
}

/// Either AES-GCM key size; the two str0m traits have the same shape.
struct Gcm<C>(C);

impl<C> std::fmt::Debug for Gcm<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gcm")
    }
}

impl<C: Aead + AeadCore<NonceSize = U12>> Gcm<C> {
    fn seal(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let nonce = aes_gcm::aead::Nonce::<C>::from(*iv);
        let sealed = self
            .0
            .encrypt(&nonce, Payload { msg: input, aad })
            .map_err(|_| CryptoError::Other("AES-GCM encryption failed".into()))?;
        copy_out(&sealed, output)?;
        Ok(())
    }

    fn open(
        &self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let nonce = aes_gcm::aead::Nonce::<C>::from(*iv);
        let aad = aads.concat();
        let opened = self
            .0
            .decrypt(
                &nonce,
                Payload {
                    msg: input,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Other("AES-GCM authentication failed".into()))?;
        copy_out(&opened, output)
    }
}

fn copy_out(data: &[u8], output: &mut [u8]) -> Result<usize, CryptoError> {
    output
        .get_mut(..data.len())
        .ok_or_else(|| CryptoError::Other("SRTP output buffer too small".into()))?
        .copy_from_slice(data);
    Ok(data.len())
}

impl<C: Aead + AeadCore<NonceSize = U12> + Send + Sync> AeadAes128GcmCipher for Gcm<C> {
    fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.seal(iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open(iv, aads, input, output)
    }
}

impl<C: Aead + AeadCore<NonceSize = U12> + Send + Sync> AeadAes256GcmCipher for Gcm<C> {
    fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.seal(iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open(iv, aads, input, output)
    }
}

// ---------------------------------------------------------------------------------------
// DTLS through dimpl (its RustCrypto backend is the default once its `rust-crypto`
// feature is on, which our Cargo.toml turns on).

#[derive(Debug)]
struct Dtls;

impl DtlsProvider for Dtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        generate_certificate().ok()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let certificate = dimpl::DtlsCertificate {
            certificate: cert.certificate.clone(),
            private_key: cert.private_key.clone(),
        };
        // ICE has already proven the peer's address, so DTLS cookies add nothing.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?,
        );
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, certificate, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, certificate, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, certificate, now),
            other => return Err(CryptoError::Other(format!("unsupported {other}"))),
        };
        Ok(Box::new(DtlsSession(dtls)))
    }
}

struct DtlsSession(dimpl::Dtls);

impl std::fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DtlsSession")
    }
}

impl DtlsInstance for DtlsSession {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn array<const N: usize>(s: &str) -> [u8; N] {
        hex(s).try_into().unwrap()
    }

    const NIST_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const NIST_BLOCK: &str = "6bc1bee22e409f96e93d7e117393172a";

    #[test]
    fn aes_cm_matches_sp800_38a() {
        // SP 800-38A F.5.1, CTR-AES128.Encrypt, first block.
        let mut cipher = AesCmFactory.create_cipher(array(NIST_KEY), true);
        let mut out = [0u8; 16];
        let iv = array("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        cipher.encrypt(&iv, &hex(NIST_BLOCK), &mut out).unwrap();
        assert_eq!(out.to_vec(), hex("874d6191b620e3261bef6864990db6ce"));
        let mut back = [0u8; 16];
        cipher.decrypt(&iv, &out, &mut back).unwrap();
        assert_eq!(back.to_vec(), hex(NIST_BLOCK));
        assert!(cipher.encrypt(&iv, &[0; 32], &mut [0; 16]).is_err());
    }

    #[test]
    fn ecb_round_is_one_block_and_a_padding_block() {
        // SP 800-38A F.1.1, ECB-AES128.Encrypt, first block.
        let mut out = [0u8; 32];
        Srtp.srtp_aes_128_ecb_round(&hex(NIST_KEY), &hex(NIST_BLOCK), &mut out);
        assert_eq!(out[..16].to_vec(), hex("3ad77bb40d7a3660a89ecaf32466ef97"));
        let cipher = aes::Aes128::new_from_slice(&hex(NIST_KEY)).unwrap();
        let mut padding = aes::Block::from([0x10; 16]);
        cipher.encrypt_block(&mut padding);
        assert_eq!(out[16..], padding[..]);
    }

    #[test]
    fn aes_gcm_matches_the_gcm_spec() {
        // McGrew & Viega, test case 2: zero key, IV and plaintext block.
        let mut cipher = Gcm128Factory.create_cipher([0; 16], true);
        let mut sealed = [0u8; 32];
        cipher
            .encrypt(&[0; 12], &[], &[0; 16], &mut sealed)
            .unwrap();
        assert_eq!(
            sealed.to_vec(),
            hex("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf")
        );
        let mut opened = [0u8; 32];
        let len = cipher
            .decrypt(&[0; 12], &[&[]], &sealed, &mut opened)
            .unwrap();
        assert_eq!(opened[..len], [0; 16]);
        sealed[0] ^= 1;
        assert!(
            cipher
                .decrypt(&[0; 12], &[&[]], &sealed, &mut opened)
                .is_err()
        );
        // The AAD may come in pieces.
        let mut cipher = Gcm256Factory.create_cipher([7; 32], true);
        cipher
            .encrypt(&[1; 12], b"header", b"audio", &mut sealed)
            .unwrap();
        let len = cipher
            .decrypt(&[1; 12], &[b"hea", b"der"], &sealed[..5 + 16], &mut opened)
            .unwrap();
        assert_eq!(&opened[..len], b"audio");
    }

    #[test]
    fn hashes_and_hmac_match_their_rfcs() {
        // RFC 2202 test case 1.
        assert_eq!(
            HmacSha1
                .sha1_hmac(&[0x0b; 20], &[b"Hi ", b"There"])
                .to_vec(),
            hex("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        assert_eq!(
            Sha256Hash.sha256(b"abc").to_vec(),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            Sha1Hash.sha1(b"abc").to_vec(),
            hex("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
    }

    #[test]
    fn certificates_are_self_signed_p256_and_fresh() {
        use p256::pkcs8::DecodePrivateKey;
        use x509_cert::der::Decode;
        let a = generate_certificate().unwrap();
        let b = generate_certificate().unwrap();
        assert_ne!(a.certificate, b.certificate);
        let cert = x509_cert::Certificate::from_der(&a.certificate).unwrap();
        let tbs = cert.tbs_certificate();
        assert_eq!(tbs.issuer(), tbs.subject());
        let key = SigningKey::from_pkcs8_der(&a.private_key).unwrap();
        let spki = SubjectPublicKeyInfo::from_key(key.verifying_key()).unwrap();
        assert_eq!(tbs.subject_public_key_info(), &spki);
    }
}
