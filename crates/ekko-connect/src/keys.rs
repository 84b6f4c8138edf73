//! RS256 signing keys. Each key is a PKCS#8 PEM file `DIR/keys/<kid>.pem` (mode 0600), created
//! on first start. The newest key signs; every key on disk verifies (so that `ekko keys rotate`
//! can add a key without invalidating tokens already issued). `kid` is the key's RFC 7638
//! thumbprint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The parsed private key: parsed once here, not on every signature.
    pair: KeyPair,
    /// base64url modulus and exponent, for the JWKS.
    n: String,
    e: String,
    created: std::time::SystemTime,
}

impl SigningKey {
    /// Signs `claims` (a serializable value) as an RS256 JWT with this key's `kid`.
    pub fn sign_jwt<T: serde::Serialize>(&self, claims: &T) -> Result<String, String> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut msg = URL_SAFE_NO_PAD.encode(header.to_string());
        msg.push('.');
        msg.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .map_err(|e| format!("RSA signing failed: {e}"))?;
        msg.push('.');
        msg.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(msg)
    }
}

pub struct SigningKeys {
    /// Newest last; the last one signs.
    keys: Vec<SigningKey>,
}

const PEM_LABEL: &str = "PRIVATE KEY";

fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {PEM_LABEL}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    out
}

fn pem_decode(text: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let start = text.find(&begin).ok_or("no PKCS#8 'PRIVATE KEY' block")? + begin.len();
    let stop = text[start..].find(&end).ok_or("unterminated PEM block")? + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .map_err(|e| format!("bad base64 in PEM: {e}"))
}

fn load_key(path: &Path) -> Result<SigningKey, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let der = pem_decode(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let pair = KeyPair::from_pkcs8(&der)
        .map_err(|e| format!("{}: not an RSA key: {e}", path.display()))?;
    let public = pair.public_key();
    let n_raw = public.modulus().big_endian_without_leading_zero().to_vec();
    let e_raw = public.exponent().big_endian_without_leading_zero().to_vec();
    let n = URL_SAFE_NO_PAD.encode(&n_raw);
    let e = URL_SAFE_NO_PAD.encode(&e_raw);
    // RFC 7638: members in lexicographic order, no whitespace.
    let thumbprint_input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
    let encoding = EncodingKey::from_rsa_pem(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let decoding = DecodingKey::from_rsa_raw_components(&n_raw, &e_raw);
    let created = fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH);
    Ok(SigningKey {
        kid,
        encoding,
        decoding,
        pair,
        n,
        e,
        created,
    })
}

fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// Generates a new RSA-2048 key and writes it with mode 0600 (never readable by others, even
/// for an instant: the file is created with that mode).
pub fn generate_key_file(data_dir: &Path) -> Result<PathBuf, String> {
    let dir = keys_dir(data_dir);
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let pair =
        KeyPair::generate(KeySize::Rsa2048).map_err(|e| format!("generating an RSA key: {e}"))?;
    let der = pair
        .as_der()
        .map_err(|e| format!("encoding the RSA key: {e}"))?;
    let pem = pem_encode(der.as_ref());
    let tmp = dir.join(format!(".new-{}.pem", std::process::id()));
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        f.write_all(pem.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    }
    let key = load_key(&tmp)?;
    let path = dir.join(format!("{}.pem", key.kid));
    fs::rename(&tmp, &path).map_err(|e| format!("renaming to {}: {e}", path.display()))?;
    Ok(path)
}

impl SigningKeys {
    /// Loads every key in `DIR/keys`, generating one if there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, String> {
        let mut keys = Self::load(data_dir)?;
        if keys.keys.is_empty() {
            generate_key_file(data_dir)?;
            keys = Self::load(data_dir)?;
        }
        Ok(keys)
    }

    fn load(data_dir: &Path) -> Result<Self, String> {
        let dir = keys_dir(data_dir);
        let mut keys = Vec::new();
        if dir.exists() {
            for entry in
                fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?
            {
                let path = entry.map_err(|e| e.to_string())?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.ends_with(".pem") && !name.starts_with('.') {
                    keys.push(load_key(&path)?);
                }
            }
        }
        keys.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.kid.cmp(&b.kid)));
        Ok(SigningKeys { keys })
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &SigningKey {
        self.keys
            .last()
            .expect("load_or_create guarantees at least one key")
    }

    pub fn by_kid(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The JWKS document (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .rev()
            .map(|k| serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid, "n": k.n, "e": k.e}))
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_one_private_key_with_mode_0600_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = SigningKeys::load_or_create(dir.path()).unwrap();
        let b = SigningKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(a.current().kid, b.current().kid);
        let files: Vec<_> = fs::read_dir(dir.path().join("keys")).unwrap().collect();
        assert_eq!(files.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(files[0].as_ref().unwrap().path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let jwks = a.jwks();
        assert_eq!(jwks["keys"][0]["kid"], a.current().kid.as_str());
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
    }
}
