//! Trusted public keys: the keys whose signatures over a version's files the registry
//! accepts. A key is a PEM `PUBLIC KEY` (an X.509 SubjectPublicKeyInfo, as
//! `openssl pkey -pubout` writes it): ECDSA P-256 or P-384, Ed25519, or RSA of 2048 bits
//! or more. Its fingerprint is the sha256 of that DER.

use crate::error::{Error, Result};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The longest key name.
pub const MAX_NAME: usize = 64;
/// The largest PEM accepted (an RSA-16384 key is about 2.8 KiB).
const MAX_PEM: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Ed25519 => "ed25519",
            Self::Rsa => "rsa",
        }
    }

    pub fn from_stored(s: &str) -> Result<Self> {
        Ok(match s {
            "ecdsa-p256" => Self::EcdsaP256,
            "ecdsa-p384" => Self::EcdsaP384,
            "ed25519" => Self::Ed25519,
            "rsa" => Self::Rsa,
            other => return Err(Error::internal(format!("stored key algorithm {other:?}"))),
        })
    }
}

/// A validated public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub algorithm: Algorithm,
    /// Bits of the key (the curve's size, or the RSA modulus').
    pub bits: u32,
    /// The SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// The key itself (the SubjectPublicKeyInfo's bit string).
    key: Vec<u8>,
}

/// Checks a key name: 1–64 letters, digits, `.`, `_` and `-`.
pub fn parse_name(field: &str, s: &str) -> Result<String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Error::validation(
            field,
            format!("key name {s:?}: 1 to {MAX_NAME} letters, digits, '.', '_' or '-'"),
        ))
    }
}

const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// A DER reader over one buffer: each call takes one element of the expected tag.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn take(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.0.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 3 || rest.len() < n {
                return None;
            }
            let (bytes, after) = rest.split_at(n);
            rest = after;
            let len = bytes.iter().fold(0usize, |l, b| (l << 8) | usize::from(*b));
            // Definite, minimal lengths only (DER).
            if len < 0x80 || bytes[0] == 0 {
                return None;
            }
            len
        };
        if rest.len() < len {
            return None;
        }
        let (value, after) = rest.split_at(len);
        self.0 = after;
        Some(value)
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// The bits of an unsigned big-endian integer's DER content.
fn integer_bits(content: &[u8]) -> u32 {
    let trimmed: &[u8] = match content.iter().position(|b| *b != 0) {
        Some(i) => &content[i..],
        None => return 0,
    };
    (trimmed.len() as u32 - 1) * 8 + (8 - trimmed[0].leading_zeros())
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY`; a 422 naming `field` when it is not one this registry
    /// trusts.
    pub fn from_pem(field: &str, pem: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::validation(
                field,
                format!(
                    "{why}: a PEM \"PUBLIC KEY\" (openssl pkey -pubout) of ECDSA P-256 or P-384, Ed25519, or RSA of 2048 bits or more"
                ),
            )
        };
        if pem.len() > MAX_PEM {
            return Err(bad("too long"));
        }
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|r| r.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or_else(|| bad("not a PEM public key"))?;
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("the PEM's base64 does not decode"))?;
        Self::from_spki(&der).ok_or_else(|| bad("not a key of a supported kind"))
    }

    /// Parses a SubjectPublicKeyInfo DER.
    pub fn from_spki(der: &[u8]) -> Option<Self> {
        let mut outer = Der(der);
        let spki = outer.take(0x30)?;
        if !outer.done() {
            return None;
        }
        let mut spki_r = Der(spki);
        let mut alg = Der(spki_r.take(0x30)?);
        let bits_string = spki_r.take(0x03)?;
        if !spki_r.done() {
            return None;
        }
        // The bit string's first byte counts unused bits: none in a key.
        let (&unused, key) = bits_string.split_first()?;
        if unused != 0 {
            return None;
        }
        let oid = alg.take(0x06)?;
        let (algorithm, bits) = if oid == OID_EC {
            let curve = alg.take(0x06)?;
            match curve {
                c if c == OID_P256 && key.len() == 65 && key[0] == 4 => (Algorithm::EcdsaP256, 256),
                c if c == OID_P384 && key.len() == 97 && key[0] == 4 => (Algorithm::EcdsaP384, 384),
                _ => return None,
            }
        } else if oid == OID_ED25519 {
            if key.len() != 32 {
                return None;
            }
            (Algorithm::Ed25519, 256)
        } else if oid == OID_RSA {
            // Parameters NULL; the key is RSAPublicKey { modulus, publicExponent }.
            alg.take(0x05)?;
            let mut rsa = Der(key);
            let mut fields = Der(rsa.take(0x30)?);
            let modulus = fields.take(0x02)?;
            fields.take(0x02)?;
            let bits = integer_bits(modulus);
            if !fields.done() || !rsa.done() || !(2048..=16384).contains(&bits) {
                return None;
            }
            (Algorithm::Rsa, bits)
        } else {
            return None;
        };
        if !alg.done() {
            return None;
        }
        Some(Self {
            algorithm,
            bits,
            spki: der.to_vec(),
            key: key.to_vec(),
        })
    }

    /// `sha256:<hex>` of the SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.spki)))
    }

    /// The key as PEM, 64 characters a line.
    pub fn to_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.spki);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// Whether `signature` is this key's over `message`: ECDSA (DER signatures) with
    /// SHA-256 on P-256 and SHA-384 on P-384, Ed25519, RSA PKCS#1 v1.5 or PSS with SHA-256.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
        let ok = |alg: &'static dyn sig::VerificationAlgorithm| {
            UnparsedPublicKey::new(alg, &self.key)
                .verify(message, signature)
                .is_ok()
        };
        match self.algorithm {
            Algorithm::EcdsaP256 => ok(&sig::ECDSA_P256_SHA256_ASN1),
            Algorithm::EcdsaP384 => ok(&sig::ECDSA_P384_SHA384_ASN1),
            Algorithm::Ed25519 => ok(&sig::ED25519),
            Algorithm::Rsa => {
                ok(&sig::RSA_PKCS1_2048_8192_SHA256) || ok(&sig::RSA_PSS_2048_8192_SHA256)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        use std::io::Write;
        let mut child = std::process::Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl");
        if let Some(i) = input {
            child.stdin.take().unwrap().write_all(i).unwrap();
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?}");
        out.stdout
    }

    /// A private key made by `openssl genpkey` with these arguments, in `dir`; its public PEM.
    fn genpkey(dir: &std::path::Path, args: &[&str]) -> String {
        let key = dir.join("k.pem");
        let mut all = vec!["genpkey", "-out", key.to_str().unwrap()];
        all.extend_from_slice(args);
        openssl(&all, None);
        String::from_utf8(openssl(
            &["pkey", "-in", key.to_str().unwrap(), "-pubout"],
            None,
        ))
        .unwrap()
    }

    /// A key (openssl genpkey arguments), its public PEM, and a signature over `message`
    /// (openssl dgst, or pkeyutl for Ed25519).
    fn key_and_signature(args: &[&str], digest: Option<&str>, message: &[u8]) -> (String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let msg = dir.path().join("m");
        std::fs::write(&msg, message).unwrap();
        let public = genpkey(dir.path(), args);
        let signature = match digest {
            Some(d) => openssl(
                &[
                    "dgst",
                    d,
                    "-sign",
                    key.to_str().unwrap(),
                    msg.to_str().unwrap(),
                ],
                None,
            ),
            None => openssl(
                &[
                    "pkeyutl",
                    "-sign",
                    "-rawin",
                    "-inkey",
                    key.to_str().unwrap(),
                    "-in",
                    msg.to_str().unwrap(),
                ],
                None,
            ),
        };
        (public, signature)
    }

    #[test]
    fn every_supported_kind_parses_and_verifies() {
        let message = b"DSSEv1 28 application/vnd.in-toto+json 2 {}";
        for (genpkey, digest, algorithm, bits) in [
            (
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
                Some("-sha256"),
                Algorithm::EcdsaP256,
                256,
            ),
            (
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
                Some("-sha384"),
                Algorithm::EcdsaP384,
                384,
            ),
            (
                &["-algorithm", "ED25519"][..],
                None,
                Algorithm::Ed25519,
                256,
            ),
            (
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
                Some("-sha256"),
                Algorithm::Rsa,
                2048,
            ),
        ] {
            let (pem, signature) = key_and_signature(genpkey, digest, message);
            let key = PublicKey::from_pem("public_key", &pem).unwrap();
            assert_eq!((key.algorithm, key.bits), (algorithm, bits));
            assert!(key.verify(message, &signature), "{algorithm:?}");
            assert!(!key.verify(b"another message", &signature), "{algorithm:?}");
            let mut bent = signature.clone();
            let last = bent.len() - 1;
            bent[last] ^= 1;
            assert!(!key.verify(message, &bent), "{algorithm:?}");
            // The PEM it shows parses to the same key.
            assert_eq!(PublicKey::from_pem("k", &key.to_pem()).unwrap(), key);
            assert!(key.fingerprint().starts_with("sha256:") && key.fingerprint().len() == 71);
        }
    }

    #[test]
    fn unsupported_and_malformed_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rsa1024 = genpkey(
            dir.path(),
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
        );
        let x25519 = genpkey(dir.path(), &["-algorithm", "X25519"]);
        let p521 = genpkey(
            dir.path(),
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
        );
        for pem in [
            p521.as_str(),
            rsa1024.as_str(),
            x25519.as_str(),
            "",
            "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----",
            "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----",
        ] {
            let e = PublicKey::from_pem("public_key", pem).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("public_key"), "{pem}");
        }
        // Trailing bytes after the structure.
        let p256 = genpkey(
            dir.path(),
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        );
        let mut der = PublicKey::from_pem("k", &p256).unwrap().spki;
        der.push(0);
        assert!(PublicKey::from_spki(&der).is_none());
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_name("name", "ci-release.2026").is_ok());
        for bad in ["", "a b", "a/b", &"k".repeat(65)] {
            assert!(parse_name("name", bad).is_err(), "{bad:?}");
        }
    }
}
