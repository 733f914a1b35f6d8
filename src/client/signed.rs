//! Checking what `download` and `sync` fetch against a version's signature.
//!
//! When the stage's policy requires a signature (`signed_by`), or public keys are given on
//! the command line, the version's artifact listing must be exactly what a signature lists
//! for the signed directory, file by file and sha256 by sha256, before a byte is fetched;
//! each file's bytes are then checked against that sha256 as they arrive. With local keys the
//! signature itself is verified here too, so that the server's word is not needed.

use super::http::Api;
use super::transfer::Remote;
use super::{Exit, Failure};
use crate::domain::signature::{Envelope, Statement};
use crate::domain::trust::PublicKey;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Public keys to verify signatures with on this side (`--public-key`, repeatable).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Verify the version's signature with this PEM public key here, and refuse files it
    /// does not cover (repeat for several keys). Without it, a stage whose policy requires
    /// a signature is still checked, trusting the server's verification.
    #[arg(long = "public-key", value_name = "PEM")]
    pub public_keys: Vec<PathBuf>,
}

impl KeyArgs {
    /// The keys, read and parsed: a file that is not a supported PEM public key is a usage
    /// error (exit 2).
    pub fn load(&self) -> Result<Vec<PublicKey>, Failure> {
        self.public_keys
            .iter()
            .map(|p| {
                let pem = std::fs::read_to_string(p)
                    .map_err(|e| Failure::usage(format!("{}: {e}", p.display())))?;
                PublicKey::from_pem("public_key", &pem)
                    .map_err(|e| Failure::usage(format!("{}: {}", p.display(), e.detail)))
            })
            .collect()
    }
}

/// What a version must carry before its files are fetched.
#[derive(Debug)]
pub struct Requirement {
    /// Key names the stage's policy accepts (empty: any key the server verified).
    keys: Vec<String>,
    /// The artifacts that must be covered: those under this prefix (`""`: all).
    path: String,
    /// Keys to verify the signature with here.
    local: Vec<PublicKey>,
    /// Where the requirement comes from, for messages.
    why: String,
}

/// The signature that covered a version's files.
#[derive(Debug, Clone)]
pub struct Covered {
    pub key: Option<String>,
    pub path: String,
    pub files: usize,
    /// Checked here with a `--public-key` (not only by the server).
    pub verified_here: bool,
}

impl Covered {
    pub fn to_json(&self) -> Value {
        json!({"key": self.key, "path": self.path, "files": self.files,
               "verified_here": self.verified_here})
    }

    pub fn describe(&self) -> String {
        format!(
            "signed by {} over {} ({} files{})",
            self.key.as_deref().unwrap_or("an unnamed key"),
            if self.path.is_empty() {
                "every artifact"
            } else {
                &self.path
            },
            self.files,
            if self.verified_here {
                ", verified here"
            } else {
                ""
            }
        )
    }
}

/// What the stage's policy (when a stage is followed) and the local keys ask of a version;
/// `None` when neither asks for a signature.
pub async fn requirement(
    api: &Api,
    model: &str,
    stage: Option<&str>,
    keys: &KeyArgs,
) -> Result<Option<Requirement>, Failure> {
    let local = keys.load()?;
    let rule = match stage {
        Some(stage) => match api
            .get(&["models", model, "stages", stage, "policy"], &[])
            .await
        {
            Ok(p) => p
                .get("signed_by")
                .and_then(parse_rule)
                .map(|(keys, path)| (keys, path, format!("the policy of {model}@{stage}"))),
            Err(f)
                if f.problem
                    .as_ref()
                    .is_some_and(|p| p["code"] == "policy_not_found") =>
            {
                None
            }
            Err(f) => return Err(f),
        },
        None => None,
    };
    Ok(match rule {
        Some((keys, path, why)) => Some(Requirement {
            keys,
            path,
            local,
            why,
        }),
        None if !local.is_empty() => Some(Requirement {
            keys: Vec::new(),
            path: String::new(),
            local,
            why: "--public-key".to_owned(),
        }),
        None => None,
    })
}

/// `["key", …]` or `{"keys": […], "path": "…"}`, as the policy shows it.
fn parse_rule(v: &Value) -> Option<(Vec<String>, String)> {
    let names = |a: &Value| -> Option<Vec<String>> {
        Some(
            a.as_array()?
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
        )
    };
    match v {
        Value::Array(_) => Some((names(v)?, String::new())),
        Value::Object(o) => Some((
            names(o.get("keys")?)?,
            o.get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )),
        _ => None,
    }
}

/// Finds a signature on the version that meets `req` and lists exactly the artifacts
/// `remotes` (as the server lists them) under its signed directory; refuses the version
/// when there is none.
pub async fn check(
    api: &Api,
    model: &str,
    version: i64,
    req: &Requirement,
    remotes: &[Remote],
) -> Result<Covered, Failure> {
    let v = version.to_string();
    let listed = api
        .get(&["models", model, "versions", &v, "signatures"], &[])
        .await?;
    let signatures = listed["items"].as_array().cloned().unwrap_or_default();
    judge(model, version, req, remotes, &signatures)
}

/// The choice [`check`] makes, from what the server answered.
fn judge(
    model: &str,
    version: i64,
    req: &Requirement,
    remotes: &[Remote],
    signatures: &[Value],
) -> Result<Covered, Failure> {
    let artifacts: BTreeMap<String, String> = remotes
        .iter()
        .map(|r| (r.path.clone(), r.sha256.clone()))
        .collect();
    let mut refused = Vec::new();
    for s in signatures {
        let key = s["key"].as_str().map(str::to_owned);
        let path = s["path"].as_str().unwrap_or_default();
        let named = key.as_deref().unwrap_or("a keyless signer");
        if !req.keys.is_empty() && !key.as_ref().is_some_and(|k| req.keys.contains(k)) {
            continue;
        }
        if req.local.is_empty() && s["verified"] != true {
            continue;
        }
        if !req.path.starts_with(path) {
            refused.push(format!("{named}'s covers only {path}"));
            continue;
        }
        let envelope = match Envelope::parse(&s["bundle"]) {
            Ok(e) => e,
            Err(e) => {
                refused.push(format!("{named}'s bundle: {}", e.detail));
                continue;
            }
        };
        let verified_here = !req.local.is_empty();
        if verified_here && !req.local.iter().any(|k| envelope.signed_by(k)) {
            refused.push(format!("{named}'s does not verify with the given keys"));
            continue;
        }
        let files = Statement::parse(&envelope).and_then(|st| st.matches(path, &artifacts));
        match files {
            Ok(files) => {
                return Ok(Covered {
                    key,
                    path: path.to_owned(),
                    files,
                    verified_here,
                });
            }
            Err(e) => refused.push(format!("{named}'s: {}", e.detail)),
        }
    }
    let over = if req.path.is_empty() {
        "every artifact".to_owned()
    } else {
        format!("the artifacts under {}", req.path)
    };
    let by = if req.keys.is_empty() {
        String::new()
    } else {
        format!(" by {}", req.keys.join(" or "))
    };
    let found = if refused.is_empty() {
        "there is none".to_owned()
    } else {
        format!("none fits: {}", refused.join("; "))
    };
    Err(Failure::new(
        Exit::Refused,
        format!(
            "{model}/{version}: {} requires a signature{by} over {over}, and {found}; nothing was fetched [signature_required]",
            req.why
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/signing")
            .join(name)
    }

    fn bundle() -> Value {
        serde_json::from_slice(&std::fs::read(fixture("model.sig")).unwrap()).unwrap()
    }

    fn key(name: &str) -> PublicKey {
        PublicKey::from_pem("k", &std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
    }

    /// The fixture's files as the server would list them under `model/`, plus a README.
    fn remotes() -> Vec<Remote> {
        use sha2::{Digest, Sha256};
        let mut out: Vec<Remote> = ["config.json", "weights.bin", "tokenizer/vocab.txt"]
            .iter()
            .map(|f| {
                let bytes = std::fs::read(fixture(&format!("model/{f}"))).unwrap();
                Remote {
                    path: format!("model/{f}"),
                    size: bytes.len() as u64,
                    sha256: hex::encode(Sha256::digest(&bytes)),
                }
            })
            .collect();
        out.push(Remote {
            path: "README.md".into(),
            size: 1,
            sha256: "00".repeat(32),
        });
        out
    }

    fn signature(key: &str, verified: bool, path: &str) -> Value {
        json!({"key": key, "verified": verified, "path": path, "bundle": bundle()})
    }

    fn req(keys: &[&str], path: &str, local: Vec<PublicKey>) -> Requirement {
        Requirement {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            path: path.into(),
            local,
            why: "the policy of fraud@production".into(),
        }
    }

    #[test]
    fn the_listing_must_be_what_was_signed() {
        let sig = [signature("ci-2026", true, "model/")];
        let ok = judge(
            "fraud",
            3,
            &req(&["ci-2026"], "model/", vec![]),
            &remotes(),
            &sig,
        );
        let covered = ok.unwrap();
        assert_eq!((covered.files, covered.verified_here), (3, false));
        // Verified here with the signer's key; refused with another key.
        let here = judge(
            "fraud",
            3,
            &req(&[], "model/", vec![key("key.pub")]),
            &remotes(),
            &sig,
        );
        assert!(here.unwrap().verified_here);
        let other = judge(
            "fraud",
            3,
            &req(&[], "model/", vec![key("other.pub")]),
            &remotes(),
            &sig,
        )
        .unwrap_err();
        assert_eq!(other.exit, Exit::Refused);
        assert!(
            other
                .message
                .contains("does not verify with the given keys")
        );
        // A listing that differs from the signed files (the server or its bucket changed).
        let mut changed = remotes();
        changed[1].sha256 = "11".repeat(32);
        let e = judge(
            "fraud",
            3,
            &req(&["ci-2026"], "model/", vec![]),
            &changed,
            &sig,
        )
        .unwrap_err();
        assert!(e.message.contains("model/weights.bin"), "{}", e.message);
        assert!(e.message.ends_with("[signature_required]"));
        // None at all, by another key, unverified, or over too little.
        for (sigs, rule) in [
            (vec![], req(&["ci-2026"], "model/", vec![])),
            (sig.to_vec(), req(&["release"], "model/", vec![])),
            (
                vec![signature("ci-2026", false, "model/")],
                req(&["ci-2026"], "model/", vec![]),
            ),
            (sig.to_vec(), req(&["ci-2026"], "", vec![])),
        ] {
            assert!(judge("fraud", 3, &rule, &remotes(), &sigs).is_err());
        }
    }

    #[test]
    fn a_policy_rule_reads_in_both_forms() {
        assert_eq!(
            parse_rule(&json!(["a", "b"])),
            Some((vec!["a".to_owned(), "b".to_owned()], String::new()))
        );
        assert_eq!(
            parse_rule(&json!({"keys": ["a"], "path": "model/"})),
            Some((vec!["a".to_owned()], "model/".to_owned()))
        );
        assert_eq!(parse_rule(&json!(true)), None);
    }
}
