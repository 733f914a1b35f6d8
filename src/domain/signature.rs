//! OpenSSF model signatures: a Sigstore bundle whose DSSE envelope holds an in-toto
//! statement listing every file of a signed model directory with its sha256
//! (`model_signing sign key …` writes one). Checked here without reading a byte of the
//! files: the signature over the envelope's PAE encoding, by a trusted key, and the
//! statement's files against the version's artifacts under the signed path.

use super::trust::PublicKey;
use crate::error::{Error, Result};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Files one statement may list.
pub const MAX_FILES: usize = 100_000;

fn invalid(detail: impl Into<String>) -> Error {
    Error::new(
        crate::error::Kind::Unprocessable,
        "signature_invalid",
        detail,
    )
    .with_field("bundle")
}

/// A signed directory as an artifact path prefix: empty (every artifact), or relative path
/// segments ending with `/` (`model/`).
pub fn parse_prefix(field: &str, path: &str) -> Result<String> {
    let ok = path.is_empty()
        || (path.len() <= 1024
            && path.strip_suffix('/').is_some_and(|dir| {
                dir.split('/')
                    .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'))
            }));
    if ok {
        Ok(path.to_owned())
    } else {
        Err(Error::validation(
            field,
            "the signed directory as an artifact path prefix ending with '/' (model/), or \"\" for every artifact",
        ))
    }
}

/// DSSE's pre-authentication encoding: what a signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A bundle's parts that matter here.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<Vec<u8>>,
    /// `verificationMaterial.publicKey.hint`: the sha256 (hex) of the signer's public key
    /// as PEM text, when the bundle names one.
    pub hint: Option<String>,
    /// Signed through Sigstore (a certificate instead of a key).
    pub keyless: bool,
}

fn b64(field: &str, v: &Value) -> Result<Vec<u8>> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(format!("{field} is not a string")))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .map_err(|_| invalid(format!("{field} is not base64")))
}

impl Envelope {
    pub fn parse(bundle: &Value) -> Result<Self> {
        let media = bundle
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !media.starts_with("application/vnd.dev.sigstore.bundle") {
            return Err(invalid(
                "not a Sigstore bundle (mediaType application/vnd.dev.sigstore.bundle…)",
            ));
        }
        let env = bundle
            .get("dsseEnvelope")
            .ok_or_else(|| invalid("the bundle has no dsseEnvelope: not a model signature"))?;
        let payload_type = env
            .get("payloadType")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("dsseEnvelope.payloadType is missing"))?
            .to_owned();
        let payload = b64(
            "dsseEnvelope.payload",
            env.get("payload").unwrap_or(&Value::Null),
        )?;
        let signatures = env
            .get("signatures")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty() && s.len() <= 16)
            .ok_or_else(|| invalid("dsseEnvelope.signatures: 1 to 16 signatures"))?
            .iter()
            .map(|s| {
                b64(
                    "dsseEnvelope.signatures[].sig",
                    s.get("sig").unwrap_or(&Value::Null),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let material = bundle.get("verificationMaterial");
        let hint = material
            .and_then(|m| m.get("publicKey"))
            .and_then(|k| k.get("hint"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .map(str::to_owned);
        let keyless = material.is_some_and(|m| {
            m.get("certificate").is_some() || m.get("x509CertificateChain").is_some()
        });
        Ok(Self {
            payload_type,
            payload,
            signatures,
            hint,
            keyless,
        })
    }

    /// Whether one of the signatures is `key`'s over the envelope.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        let message = pae(&self.payload_type, &self.payload);
        self.signatures.iter().any(|s| key.verify(&message, s))
    }
}

/// Whether `hint` names `key` (the sha256 of its PEM text, as model_signing writes it).
pub fn hint_names(hint: &str, key: &PublicKey) -> bool {
    hex::encode(Sha256::digest(key.to_pem().as_bytes())) == hint
}

/// What a model-signing statement says was signed.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Path within the signed directory → sha256 (hex).
    pub files: BTreeMap<String, String>,
    /// Paths the signer left out, within the signed directory.
    pub ignored: Vec<String>,
}

impl Statement {
    pub fn parse(envelope: &Envelope) -> Result<Self> {
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(invalid(format!(
                "payload type {:?}: a model signature carries {PAYLOAD_TYPE}",
                envelope.payload_type
            )));
        }
        let v: Value = serde_json::from_slice(&envelope.payload)
            .map_err(|_| invalid("the payload is not JSON"))?;
        if v.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
            return Err(invalid("the payload is not an in-toto v1 statement"));
        }
        if v.get("predicateType").and_then(Value::as_str) != Some(PREDICATE_TYPE) {
            return Err(invalid(format!(
                "predicate type {}: a model signature's is {PREDICATE_TYPE}",
                v.get("predicateType").unwrap_or(&Value::Null)
            )));
        }
        let predicate = v.get("predicate").unwrap_or(&Value::Null);
        let serialization = predicate.get("serialization").unwrap_or(&Value::Null);
        let method = serialization.get("method").and_then(Value::as_str);
        if method.is_some_and(|m| m != "files") {
            return Err(invalid(format!(
                "serialization method {method:?}: only whole files (\"files\") can be matched to artifacts"
            )));
        }
        let resources = predicate
            .get("resources")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("the statement lists no resources"))?;
        if resources.len() > MAX_FILES {
            return Err(invalid(format!("more than {MAX_FILES} files")));
        }
        let mut files = BTreeMap::new();
        for r in resources {
            let name = r.get("name").and_then(Value::as_str);
            let algorithm = r.get("algorithm").and_then(Value::as_str);
            let digest = r.get("digest").and_then(Value::as_str);
            let (Some(name), Some(digest)) = (name, digest) else {
                return Err(invalid("a resource without name or digest"));
            };
            if algorithm != Some("sha256") {
                return Err(invalid(format!(
                    "{name}: hashed with {algorithm:?}; artifacts are known by sha256"
                )));
            }
            if files
                .insert(name.to_owned(), digest.to_ascii_lowercase())
                .is_some()
            {
                return Err(invalid(format!("{name} is listed twice")));
            }
        }
        let ignored = serialization
            .get("ignore_paths")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|p| p.trim_end_matches('/').to_owned())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self { files, ignored })
    }

    fn ignores(&self, path: &str) -> bool {
        self.ignored
            .iter()
            .any(|i| !i.is_empty() && (path == i || path.starts_with(&format!("{i}/"))))
    }

    /// Compares the statement with the artifacts under `prefix` (path → sha256): no file
    /// missing, none extra (but those the signer ignored), none different.
    pub fn matches(&self, prefix: &str, artifacts: &BTreeMap<String, String>) -> Result<usize> {
        let under: BTreeMap<&str, &str> = artifacts
            .iter()
            .filter_map(|(p, d)| Some((p.strip_prefix(prefix)?, d.as_str())))
            .filter(|(p, _)| !self.ignores(p))
            .collect();
        let missing: Vec<&str> = self
            .files
            .keys()
            .map(String::as_str)
            .filter(|f| !under.contains_key(f))
            .collect();
        let extra: Vec<&str> = under
            .keys()
            .copied()
            .filter(|p| !self.files.contains_key(*p))
            .collect();
        let different: Vec<&str> = self
            .files
            .iter()
            .filter(|(f, d)| under.get(f.as_str()).is_some_and(|a| a != d))
            .map(|(f, _)| f.as_str())
            .collect();
        if missing.is_empty() && extra.is_empty() && different.is_empty() {
            return Ok(self.files.len());
        }
        let list = |what: &str, files: &[&str]| -> Option<String> {
            if files.is_empty() {
                return None;
            }
            let shown: Vec<String> = files
                .iter()
                .take(10)
                .map(|f| format!("{prefix}{f}"))
                .collect();
            let more = files.len().saturating_sub(10);
            Some(format!(
                "{what}: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ))
        };
        let parts: Vec<String> = [
            list("signed but not among the version's artifacts", &missing),
            list("artifacts the signature does not cover", &extra),
            list("different from what was signed", &different),
        ]
        .into_iter()
        .flatten()
        .collect();
        Err(Error::new(
            crate::error::Kind::Unprocessable,
            "signature_mismatch",
            format!(
                "the signed files are not the version's files under {prefix:?}: {}",
                parts.join("; ")
            ),
        )
        .with_field("bundle"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pae_is_dsse_v1() {
        // The DSSE specification's own example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn a_signed_directory_is_a_prefix_ending_with_a_slash() {
        for ok in ["", "model/", "a/b/c/"] {
            assert_eq!(parse_prefix("path", ok).unwrap(), ok);
        }
        for bad in [
            "model",
            "/model/",
            "model//",
            "../model/",
            "a/./b/",
            "a\\b/",
            "/",
        ] {
            assert!(parse_prefix("path", bad).is_err(), "{bad:?}");
        }
    }

    fn statement(resources: Value, ignore: Value) -> Envelope {
        let payload = json!({"_type": STATEMENT_TYPE, "subject": [{"name": "model", "digest": {"sha256": "00"}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {"serialization": {"method": "files", "hash_type": "sha256", "ignore_paths": ignore},
                          "resources": resources}});
        Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: serde_json::to_vec(&payload).unwrap(),
            signatures: vec![],
            hint: None,
            keyless: false,
        }
    }

    #[test]
    fn the_statement_is_matched_file_by_file() {
        let env = statement(
            json!([{"name": "a.bin", "algorithm": "sha256", "digest": "AA"},
                   {"name": "sub/b.txt", "algorithm": "sha256", "digest": "bb"}]),
            json!([".git"]),
        );
        let s = Statement::parse(&env).unwrap();
        let artifacts: BTreeMap<String, String> = [
            ("model/a.bin", "aa"),
            ("model/sub/b.txt", "bb"),
            ("model/.git/HEAD", "cc"),
            ("README.md", "dd"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        assert_eq!(s.matches("model/", &artifacts).unwrap(), 2);
        // At the root, README.md is not covered.
        let e = s.matches("", &artifacts).unwrap_err();
        assert_eq!(e.code, "signature_mismatch");
        let mut changed = artifacts.clone();
        changed.insert("model/a.bin".into(), "ff".into());
        changed.remove("model/sub/b.txt");
        changed.insert("model/c.bin".into(), "ee".into());
        let e = s.matches("model/", &changed).unwrap_err();
        assert!(
            e.detail
                .contains("signed but not among the version's artifacts: model/sub/b.txt"),
            "{}",
            e.detail
        );
        assert!(
            e.detail
                .contains("artifacts the signature does not cover: model/c.bin"),
            "{}",
            e.detail
        );
        assert!(
            e.detail
                .contains("different from what was signed: model/a.bin"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn other_payloads_and_malformed_bundles_are_invalid() {
        let mut other = statement(json!([]), json!([]));
        other.payload_type = "text/plain".into();
        assert_eq!(
            Statement::parse(&other).unwrap_err().code,
            "signature_invalid"
        );
        let provenance = Envelope {
            payload: serde_json::to_vec(&json!({"_type": STATEMENT_TYPE, "predicateType": "https://slsa.dev/provenance/v1"})).unwrap(),
            ..statement(json!([]), json!([]))
        };
        assert!(
            Statement::parse(&provenance)
                .unwrap_err()
                .detail
                .contains("predicate type")
        );
        let twice = statement(
            json!([{"name": "a", "algorithm": "sha256", "digest": "aa"}, {"name": "a", "algorithm": "sha256", "digest": "aa"}]),
            json!([]),
        );
        assert!(Statement::parse(&twice).is_err());
        for bundle in [
            json!({}),
            json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}),
            json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                   "dsseEnvelope": {"payloadType": PAYLOAD_TYPE, "payload": "!!", "signatures": [{"sig": "AA=="}]}}),
            json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                   "dsseEnvelope": {"payloadType": PAYLOAD_TYPE, "payload": "e30=", "signatures": []}}),
        ] {
            assert_eq!(
                Envelope::parse(&bundle).unwrap_err().code,
                "signature_invalid",
                "{bundle}"
            );
        }
    }

    /// The bundle `model_signing sign key` (model-signing 1.1.1) wrote for the fixture
    /// directory: its signature verifies with the fixture key, under its hint, and not with
    /// another key.
    #[test]
    fn a_real_model_signing_bundle_verifies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signing");
        let bundle: Value =
            serde_json::from_slice(&std::fs::read(dir.join("model.sig")).unwrap()).unwrap();
        let key = PublicKey::from_pem("k", &std::fs::read_to_string(dir.join("key.pub")).unwrap())
            .unwrap();
        let other = PublicKey::from_pem(
            "k",
            &std::fs::read_to_string(dir.join("other.pub")).unwrap(),
        )
        .unwrap();
        let env = Envelope::parse(&bundle).unwrap();
        assert!(env.signed_by(&key));
        assert!(!env.signed_by(&other));
        assert!(hint_names(env.hint.as_deref().unwrap(), &key));
        assert!(!hint_names(env.hint.as_deref().unwrap(), &other));
        let s = Statement::parse(&env).unwrap();
        let files: Vec<&str> = s.files.keys().map(String::as_str).collect();
        assert_eq!(
            files,
            vec!["config.json", "tokenizer/vocab.txt", "weights.bin"]
        );
        // A payload changed by one byte no longer verifies.
        let mut bent = env.clone();
        bent.payload[10] ^= 1;
        assert!(!bent.signed_by(&key));
    }
}
