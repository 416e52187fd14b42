//! Signature check of one delivery (pluvo-api.md "Webhooks"): `X-Signature` is the base64
//! HMAC-SHA1 of the raw body, keyed with `X-Signature-Salt` followed by the webhook key (the
//! order is assumed from Pluvo's description). The comparison is constant-time
//! (`hmac`'s `verify_slice`), so timing reveals nothing about the expected signature.
//!
//! Input: the two header values and the body bytes exactly as received (never re-serialised
//! JSON). Output: `Ok` or the reason, which is logged but never echoes the key.

use base64::Engine;
use hmac::{KeyInit, Mac};

/// Why a delivery's signature was refused (each answered 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("no `X-Signature` header")]
    MissingSignature,
    #[error("no `X-Signature-Salt` header")]
    MissingSalt,
    #[error("`X-Signature` is not base64")]
    NotBase64,
    #[error("`X-Signature` does not match the body (tampered body, or another webhook key)")]
    Mismatch,
}

/// Check `signature` (base64) against the HMAC-SHA1 of `body` keyed with `salt` + `key`.
pub fn verify(
    key: &[u8],
    salt: Option<&[u8]>,
    signature: Option<&[u8]>,
    body: &[u8],
) -> Result<(), Invalid> {
    let signature = signature.ok_or(Invalid::MissingSignature)?;
    let salt = salt.ok_or(Invalid::MissingSalt)?;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(signature.trim_ascii())
        .map_err(|_| Invalid::NotBase64)?;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&[salt, key].concat())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| Invalid::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // python3: base64(hmac.new(b'salt123' + b'key-abc', BODY, hashlib.sha1).digest())
    const BODY: &[u8] = br#"{"event":"USER_CREATED","id":"1"}"#;
    const SIGNATURE: &[u8] = b"jv6Yylx/vbPEZf9lnA5+m6W8BQs=";

    #[test]
    fn accepts_the_signature_of_an_independent_implementation() {
        assert_eq!(
            verify(b"key-abc", Some(b"salt123"), Some(SIGNATURE), BODY),
            Ok(())
        );
    }

    #[test]
    fn refuses_tampering_other_keys_and_missing_headers() {
        let check = |key: &[u8], salt: Option<&[u8]>, sig: Option<&[u8]>, body: &[u8]| {
            verify(key, salt, sig, body).unwrap_err()
        };
        let tampered = br#"{"event":"USER_CREATED","id":"2"}"#;
        assert_eq!(
            check(b"key-abc", Some(b"salt123"), Some(SIGNATURE), tampered),
            Invalid::Mismatch
        );
        assert_eq!(
            check(b"other", Some(b"salt123"), Some(SIGNATURE), BODY),
            Invalid::Mismatch
        );
        // The salt is part of the key: another salt is another signature.
        assert_eq!(
            check(b"key-abc", Some(b"salt124"), Some(SIGNATURE), BODY),
            Invalid::Mismatch
        );
        assert_eq!(
            check(b"key-abc", Some(b"salt123"), None, BODY),
            Invalid::MissingSignature
        );
        assert_eq!(
            check(b"key-abc", None, Some(SIGNATURE), BODY),
            Invalid::MissingSalt
        );
        assert_eq!(
            check(b"key-abc", Some(b"salt123"), Some(b"%%%"), BODY),
            Invalid::NotBase64
        );
        // A truncated signature is not a prefix match.
        assert_eq!(
            check(b"key-abc", Some(b"salt123"), Some(b"jv6Yylx/"), BODY),
            Invalid::Mismatch
        );
    }
}
