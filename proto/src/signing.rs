//! Signed results: an agent's ed25519 key signs every report over a canonical encoding of its
//! lease id and result, so the coordinator (and `quantgrid merge`, later, from the stored
//! bytes) can attribute a result to one machine's key and refuse one signed by another.
//!
//! The signed bytes are `quantgrid report v1`, NUL, the lease id, NUL, then the result's
//! protobuf encoding (the `payload`, stored beside the result). Protobuf encoding is
//! deterministic for these messages (no maps; unset fields are not encoded), so the coordinator
//! re-encodes the result it decoded and gets the agent's bytes; an agent newer than its
//! coordinator, with fields the coordinator does not know, would not verify (upgrade the
//! coordinator first).

use crate::pb;
pub use ed25519_dalek::SigningKey;
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use std::path::Path;

const DOMAIN: &[u8] = b"quantgrid report v1";

/// The bytes a report's signature covers.
pub fn signed_bytes(lease_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + lease_id.len() + payload.len() + 2);
    out.extend_from_slice(DOMAIN);
    out.push(0);
    out.extend_from_slice(lease_id.as_bytes());
    out.push(0);
    out.extend_from_slice(payload);
    out
}

/// A result's canonical encoding (what is stored as its payload).
pub fn payload(result: &pb::CellResult) -> Vec<u8> {
    result.encode_to_vec()
}

/// The result a stored payload holds.
pub fn decode_payload(payload: &[u8]) -> Result<quantgrid_matrix::CellResult, String> {
    let wire = pb::CellResult::decode(payload).map_err(|e| e.to_string())?;
    quantgrid_matrix::CellResult::try_from(&wire).map_err(|e| e.to_string())
}

/// A report of `result` on `lease_id`, signed with `key`.
pub fn report(key: &SigningKey, lease_id: &str, result: pb::CellResult) -> pb::Report {
    let signature = key
        .sign(&signed_bytes(lease_id, &payload(&result)))
        .to_bytes()
        .to_vec();
    pb::Report {
        lease_id: lease_id.to_string(),
        result: Some(result),
        signature,
    }
}

/// A short, stable name of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public: &[u8]) -> String {
    Sha256::digest(public)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the public key is not an ed25519 key")]
    BadKey,
    #[error("the signature is not 64 bytes")]
    Malformed,
    #[error(
        "the signature does not match the result and lease (signed by another key, or changed)"
    )]
    Mismatch,
}

/// Checks `signature` over `lease_id` and `payload` against `public` (32 bytes).
pub fn verify(
    public: &[u8],
    lease_id: &str,
    payload: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let public: [u8; 32] = public.try_into().map_err(|_| SignatureError::BadKey)?;
    let key = VerifyingKey::from_bytes(&public).map_err(|_| SignatureError::BadKey)?;
    let signature = Signature::from_slice(signature).map_err(|_| SignatureError::Malformed)?;
    key.verify(&signed_bytes(lease_id, payload), &signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the agent key {0}")]
    Read(std::path::PathBuf, #[source] std::io::Error),
    #[error("the agent key {0} is not 64 hex digits (an ed25519 seed)")]
    Malformed(std::path::PathBuf),
    #[error("cannot write the agent key {0}")]
    Write(std::path::PathBuf, #[source] std::io::Error),
    #[error("no randomness for a new key")]
    Random,
}

/// A new random signing key.
pub fn generate_key() -> Result<SigningKey, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|_| KeyFileError::Random)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The text of a key file: the seed in hex, one line.
pub fn key_file_text(key: &SigningKey) -> String {
    let hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}\n")
}

/// Reads a key file written by [`key_file_text`].
pub fn read_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| KeyFileError::Read(path.to_path_buf(), e))?;
    let hex = text.trim();
    let bad = || KeyFileError::Malformed(path.to_path_buf());
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// The key at `path`, made (readable by its owner only) when there is none yet.
pub fn load_or_create_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    if path.exists() {
        return read_key(path);
    }
    let key = generate_key()?;
    // written whole under a private name, then linked into place: two agents starting at once
    // on a fresh machine end up with one key, the first one linked
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    let write = || -> std::io::Result<bool> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        std::io::Write::write_all(&mut f, key_file_text(&key).as_bytes())?;
        f.sync_all()?;
        let linked = match std::fs::hard_link(&tmp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        std::fs::remove_file(&tmp)?;
        Ok(linked)
    };
    let linked = write().map_err(|e| KeyFileError::Write(path.to_path_buf(), e))?;
    if linked { Ok(key) } else { read_key(path) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> pb::CellResult {
        pb::CellResult {
            cell_id: "c1".into(),
            status: pb::Status::Pass as i32,
            effective_bits: 4,
            ..Default::default()
        }
    }

    #[test]
    fn a_signed_report_verifies_and_nothing_else_does() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let public = key.verifying_key().to_bytes();
        let r = report(&key, "lease-1", result());
        let body = payload(r.result.as_ref().expect("result"));
        assert_eq!(verify(&public, "lease-1", &body, &r.signature), Ok(()));
        // another lease, another result, another key: refused
        assert_eq!(
            verify(&public, "lease-2", &body, &r.signature),
            Err(SignatureError::Mismatch)
        );
        let mut changed = result();
        changed.status = pb::Status::Fail as i32;
        assert_eq!(
            verify(&public, "lease-1", &payload(&changed), &r.signature),
            Err(SignatureError::Mismatch)
        );
        let forged = report(&other, "lease-1", result());
        assert_eq!(
            verify(&public, "lease-1", &body, &forged.signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&public, "lease-1", &body, &[]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(key_id(&public).len(), 16);
        assert_ne!(key_id(&public), key_id(&other.verifying_key().to_bytes()));
    }

    #[test]
    fn the_payload_survives_decoding_and_encoding_again() {
        // what the coordinator verifies is its own re-encoding of what it decoded
        let r = report(&SigningKey::from_bytes(&[1; 32]), "l", result());
        let wire = r.encode_to_vec();
        let decoded = pb::Report::decode(wire.as_slice()).expect("decode");
        assert_eq!(
            payload(decoded.result.as_ref().expect("result")),
            payload(r.result.as_ref().expect("result"))
        );
    }

    #[test]
    fn a_key_file_is_made_once_for_its_owner_and_read_back() {
        let dir = std::env::temp_dir().join(format!("qg-key-{}", std::process::id()));
        let path = dir.join("agent.key");
        let _ = std::fs::remove_dir_all(&dir);
        let made = load_or_create_key(&path).expect("made");
        let again = load_or_create_key(&path).expect("read");
        assert_eq!(made.to_bytes(), again.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key\n").expect("write");
        assert!(matches!(read_key(&path), Err(KeyFileError::Malformed(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
