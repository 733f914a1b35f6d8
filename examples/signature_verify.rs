//! Times the check of an OpenSSF model signature over 1,000 files, as the server makes it
//! on `POST …/signatures` (used by BENCHMARKS.md): parse the bundle, verify the ECDSA P-256
//! signature over the DSSE PAE encoding, parse the in-toto statement and match its files
//! to 1,000 artifact rows. No file is read. Beside it, the baseline: parsing the bundle's
//! JSON alone. Prints one JSON line.
//!
//!     cargo run --release --example signature_verify -- 1000 200

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use modelreg::domain::signature::{Envelope, PAYLOAD_TYPE, Statement, pae};
use modelreg::domain::trust::PublicKey;
use std::collections::BTreeMap;
use std::time::Instant;

/// The SubjectPublicKeyInfo DER header of an uncompressed P-256 point.
const P256_SPKI: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let files: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|_| anyhow::anyhow!("key generation"))?;
    let mut spki = hex::decode(P256_SPKI)?;
    spki.extend_from_slice(pair.public_key().as_ref());
    let key = PublicKey::from_spki(&spki).ok_or_else(|| anyhow::anyhow!("spki"))?;
    let digest = |i: usize| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(i.to_le_bytes()));
    let resources: Vec<serde_json::Value> = (0..files)
        .map(|i| serde_json::json!({"name": format!("shard-{i:05}.safetensors"), "algorithm": "sha256", "digest": digest(i)}))
        .collect();
    let statement = serde_json::json!({"_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model", "digest": {"sha256": "00"}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {"serialization": {"method": "files", "hash_type": "sha256", "ignore_paths": [".git"]},
                      "resources": resources}});
    let payload = serde_json::to_vec(&statement)?;
    let signature = pair
        .sign(&SystemRandom::new(), &pae(PAYLOAD_TYPE, &payload))
        .map_err(|_| anyhow::anyhow!("sign"))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let bundle = serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": ""}, "tlogEntries": []},
        "dsseEnvelope": {"payload": b64(&payload), "payloadType": PAYLOAD_TYPE,
                         "signatures": [{"sig": b64(signature.as_ref()), "keyid": ""}]}}))?;
    let artifacts: BTreeMap<String, String> = (0..files)
        .map(|i| (format!("model/shard-{i:05}.safetensors"), digest(i)))
        .collect();
    let (mut check, mut parse) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let value: serde_json::Value = serde_json::from_slice(&bundle)?;
        let envelope = Envelope::parse(&value).map_err(|e| anyhow::anyhow!(e.detail))?;
        anyhow::ensure!(envelope.signed_by(&key), "the signature verifies");
        let s = Statement::parse(&envelope).map_err(|e| anyhow::anyhow!(e.detail))?;
        let n = s
            .matches("model/", &artifacts)
            .map_err(|e| anyhow::anyhow!(e.detail))?;
        anyhow::ensure!(n == files);
        check.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let value: serde_json::Value = serde_json::from_slice(&bundle)?;
        std::hint::black_box(value);
        parse.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let max = check.iter().copied().fold(0.0, f64::max);
    let (c, p) = (p50(&mut check), p50(&mut parse));
    println!(
        "{}",
        serde_json::json!({"files": files, "bundle_bytes": bundle.len(), "rounds": rounds,
            "check_ms": {"p50": c, "max": max}, "bare_parse_ms_p50": p, "ratio": c / p})
    );
    Ok(())
}
