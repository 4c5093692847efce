//! Signing keys, checkpoints and key rotation records.
//!
//! Ed25519 (RFC 8032), through `ring`, which the TLS stack already links: no
//! second curve implementation in the binary.
//!
//! - Key file: one line `ed25519-secret:<standard base64 of the 32-byte seed>`,
//!   created with mode 0600 if missing. A key file readable by group or
//!   others is refused: whoever can read it can forge checkpoints.
//! - Public key text: `ed25519:<standard base64 of the 32 bytes>`.
//! - `key_id`: the first 16 lowercase hex digits of SHA-256(public key bytes).
//! - Checkpoint: `sig` = base64 (standard, padded) of the signature over the
//!   ASCII message `sqlgate-checkpoint-v1:{head_seq}:{head}`, where
//!   `head_seq` is the seq of the last record covered (this record's seq − 1)
//!   and `head` its hash in lowercase hex (this record's `prev`). A closing
//!   writer's last checkpoint has `"closing": true` and signs
//!   `sqlgate-closing-checkpoint-v1:{head_seq}:{head}` instead.
//! - Record MAC: HMAC-SHA256 keyed with HMAC-SHA256(seed,
//!   "sqlgate-record-mac-v1"), see [`super::chain`].
//! - Key rotation: `sig_new` by the new key (and `sig_old` by the old one when
//!   it is available) over
//!   `sqlgate-key-rotation-v1:{old_key_id}:{new_key_id}:{head_seq}:{head}`,
//!   `head_seq`/`head` again naming the record before this one. When a log
//!   starts (or finds no earlier checkpoint) the writer announces its key with
//!   a `key_rotation` that has no `old_key_id`; `{old_key_id}` is then empty.

use super::chain::{hex, Hash, RecordMac};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const SECRET_PREFIX: &str = "ed25519-secret:";
const PUBLIC_PREFIX: &str = "ed25519:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the signing key `{path}`: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the signing key `{path}` does not exist: start sqlgate once to create it, or set `[audit] key`")]
    Missing { path: PathBuf },
    #[error("the signing key `{path}` is readable by group or others (mode {mode:o}): run `chmod 600` on it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the signing key `{path}` is not `ed25519-secret:<base64 of 32 bytes>`")]
    Format { path: PathBuf },
    #[error("`{0}` is not a public key: expected `ed25519:<base64 of 32 bytes>`")]
    PublicKey(String),
}

/// An Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(b: [u8; 32]) -> PublicKey {
        PublicKey(b)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses `ed25519:<base64>`.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let bad = || KeyError::PublicKey(text.to_owned());
        let b64 = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let bytes = B64.decode(b64).map_err(|_| bad())?;
        Ok(PublicKey(bytes.try_into().map_err(|_| bad())?))
    }

    /// `ed25519:<base64>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", B64.encode(self.0))
    }

    /// First 16 hex digits of SHA-256 over the 32 key bytes.
    pub fn key_id(&self) -> String {
        hex(&Sha256::digest(self.0)[..8])
    }

    /// Checks a signature given as base64 text; false for anything malformed.
    pub fn verify_b64(&self, message: &[u8], sig_b64: &str) -> bool {
        let Ok(sig) = B64.decode(sig_b64) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &sig)
            .is_ok()
    }
}

/// The writer's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
    mac: RecordMac,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public.key_id())
    }
}

impl SigningKey {
    /// The key for a 32-byte seed (RFC 8032's secret key).
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        // INVARIANT: any 32 bytes are a valid Ed25519 seed; ring only rejects
        // other lengths.
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("a 32-byte seed is valid");
        let public = PublicKey(
            pair.public_key()
                .as_ref()
                .try_into()
                .expect("an Ed25519 public key has 32 bytes"),
        );
        SigningKey {
            pair,
            public,
            mac: RecordMac::for_seed(seed),
        }
    }

    /// The key of the per-record MAC, derived from the same seed.
    pub fn record_mac(&self) -> &RecordMac {
        &self.mac
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The signature as standard padded base64.
    pub fn sign_b64(&self, message: &[u8]) -> String {
        B64.encode(self.pair.sign(message).as_ref())
    }

    /// Reads a key file; never creates one (`sqlgate audit pubkey`).
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing {
                    path: path.to_owned(),
                })
            }
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        check_mode(path)?;
        let bad = || KeyError::Format {
            path: path.to_owned(),
        };
        let b64 = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(bad)?;
        let seed: [u8; 32] = B64
            .decode(b64)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        Ok(SigningKey::from_seed(&seed))
    }

    /// Reads the key file, or creates it (mode 0600) with a fresh random seed.
    pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
        match SigningKey::load(path) {
            Err(KeyError::Missing { .. }) => {}
            other => return other,
        }
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let create = |source| KeyError::Create {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(create)?;
        }
        write_secret(path, &seed).map_err(create)?;
        Ok(SigningKey::from_seed(&seed))
    }
}

fn write_secret(path: &Path, seed: &[u8; 32]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: never overwrite a key another process just made.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{SECRET_PREFIX}{}", B64.encode(seed))?;
    f.sync_all()
}

fn check_mode(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// The message a checkpoint signs; a closing writer's last checkpoint
/// (`closing: true`) signs another one, so the mark can't be added to (or
/// taken from) a checkpoint without the key.
pub fn checkpoint_message(head_seq: u64, head: &Hash, closing: bool) -> String {
    let kind = if closing {
        "closing-checkpoint"
    } else {
        "checkpoint"
    };
    format!("sqlgate-{kind}-v1:{head_seq}:{}", hex(head))
}

/// The message a key rotation signs (`old_key_id` empty when announcing the
/// first key).
pub fn rotation_message(old_key_id: &str, new_key_id: &str, head_seq: u64, head: &Hash) -> String {
    format!(
        "sqlgate-key-rotation-v1:{old_key_id}:{new_key_id}:{head_seq}:{}",
        hex(head)
    )
}

/// The body of a checkpoint covering records up to `head_seq` (hash
/// `head`), marked `closing` when it is a closing writer's last.
pub fn checkpoint_body(
    key: &SigningKey,
    head_seq: u64,
    head: &Hash,
    closing: bool,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "kind": "checkpoint",
        "key_id": key.public().key_id(),
        "head_seq": head_seq,
        "head": hex(head),
        "sig": key.sign_b64(checkpoint_message(head_seq, head, closing).as_bytes()),
    });
    if closing {
        v["closing"] = true.into();
    }
    v
}

/// The body of a `key_rotation` record; `old_key_id` is `None` when no earlier
/// key is known. `sig_old` is there when the writer holds the old secret too
/// (`[audit] previous_key`), which lets a verifier that trusts the old key
/// trust the new one.
pub fn rotation_body(
    new: &SigningKey,
    old_key_id: Option<&str>,
    old: Option<&SigningKey>,
    head_seq: u64,
    head: &Hash,
) -> serde_json::Value {
    let new_id = new.public().key_id();
    let msg = rotation_message(old_key_id.unwrap_or(""), &new_id, head_seq, head);
    let mut v = serde_json::json!({
        "kind": "key_rotation",
        "new_key_id": new_id,
        "new_public_key": new.public().to_text(),
        "sig_new": new.sign_b64(msg.as_bytes()),
    });
    if let (Some(old_id), Some(o)) = (old_key_id, v.as_object_mut()) {
        o.insert("old_key_id".into(), old_id.into());
        if let Some(old) = old.filter(|k| k.public().key_id() == old_id) {
            o.insert("sig_old".into(), old.sign_b64(msg.as_bytes()).into());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_1() {
        // RFC 8032 §7.1 TEST 1: empty message.
        let seed: [u8; 32] = (0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
                        [i * 2..i * 2 + 2],
                    16,
                )
                .unwrap()
            })
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let k = SigningKey::from_seed(&seed);
        assert_eq!(
            hex(k.public().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = B64.decode(k.sign_b64(b"")).unwrap();
        assert_eq!(hex(&sig), "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
        assert!(k.public().verify_b64(b"", &k.sign_b64(b"")));
        assert!(!k.public().verify_b64(b"x", &k.sign_b64(b"")));
        assert!(!k.public().verify_b64(b"", "not base64!"));
    }

    #[test]
    fn public_key_text_round_trips() {
        let k = SigningKey::from_seed(&[1; 32]);
        let text = k.public().to_text();
        assert_eq!(PublicKey::parse(&text).unwrap(), *k.public());
        assert!(PublicKey::parse("ed25519:AAAA").is_err());
        assert!(PublicKey::parse("rsa:AAAA").is_err());
        assert_eq!(k.public().key_id().len(), 16);
    }
}
