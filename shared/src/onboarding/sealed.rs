//! A manual integration's Meta access token, sealed at rest: AES-256-GCM under the app
//! secret's `integration_encryption_key` (base64 of 32 bytes), a random nonce per value stored
//! with it, and the number's `phone_number_id` as associated data, so a sealed token copied
//! onto another number does not open. Neither the key nor a token ever prints.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::PhoneNumberId;
use crate::secrets::AppSecrets;

/// The stored form's prefix: the scheme, so a later one can be told apart.
const VERSION: &str = "v1:";
const NONCE_LEN: usize = 12;
/// What the associated data starts with: the purpose, then the number.
const PURPOSE: &[u8] = b"whatsapp-access-token:";

/// Why tokens cannot be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// No `integration_encryption_key` in the app secret.
    #[error("the integration encryption key is not configured")]
    NoKey,
    /// The key is not base64 of exactly 32 bytes.
    #[error("the integration encryption key is not base64 of 32 bytes")]
    BadKey,
    /// Another key sealed it, it belongs to another number, or it was altered.
    #[error("the sealed token does not open with this key for this number")]
    DoesNotOpen,
    #[error("the token could not be sealed")]
    Seal,
}

/// The key tokens are sealed under. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct EncryptionKey(Aes256Gcm);

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(redacted)")
    }
}

impl EncryptionKey {
    /// The key of the app secret; none, or a malformed one, fails closed.
    pub fn from_secrets(secrets: &AppSecrets) -> Result<Self, SealError> {
        let raw = secrets
            .integration_encryption_key
            .as_ref()
            .ok_or(SealError::NoKey)?;
        Self::parse(raw.expose_secret())
    }

    /// Parses base64 of 32 bytes.
    pub fn parse(base64: &str) -> Result<Self, SealError> {
        let bytes = STANDARD
            .decode(base64.trim())
            .map_err(|_| SealError::BadKey)?;
        Aes256Gcm::new_from_slice(&bytes)
            .map(Self)
            .map_err(|_| SealError::BadKey)
    }

    /// Seals `token` for `phone_number_id` under a fresh random nonce.
    pub fn seal(
        &self,
        phone_number_id: &PhoneNumberId,
        token: &SecretString,
    ) -> Result<SealedToken, SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(phone_number_id);
        let ciphertext = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        Ok(SealedToken {
            nonce: nonce.into(),
            ciphertext,
        })
    }

    /// Opens a token sealed for `phone_number_id`.
    pub fn open(
        &self,
        phone_number_id: &PhoneNumberId,
        sealed: &SealedToken,
    ) -> Result<SecretString, SealError> {
        let aad = associated_data(phone_number_id);
        let plain = self
            .0
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::DoesNotOpen)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| SealError::DoesNotOpen)
    }
}

fn associated_data(phone_number_id: &PhoneNumberId) -> Vec<u8> {
    [PURPOSE, phone_number_id.as_str().as_bytes()].concat()
}

/// A sealed token: the nonce and the ciphertext (with its tag). Stored as the string
/// `v1:<base64 of nonce ‖ ciphertext>`; its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedToken {
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedToken(redacted)")
    }
}

impl SealedToken {
    /// The stored form.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(NONCE_LEN + self.ciphertext.len());
        bytes.extend_from_slice(&self.nonce);
        bytes.extend_from_slice(&self.ciphertext);
        format!("{VERSION}{}", STANDARD.encode(bytes))
    }

    /// Parses the stored form; `None` when it is not one.
    pub fn decode(raw: &str) -> Option<Self> {
        let bytes = STANDARD.decode(raw.strip_prefix(VERSION)?).ok()?;
        // At least a nonce and the 16-byte tag.
        if bytes.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        Some(Self {
            nonce: nonce.try_into().ok()?,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

impl Serialize for SealedToken {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for SealedToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::decode(&raw).ok_or_else(|| serde::de::Error::custom("not a sealed token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 ASCII bytes
    const TOKEN: &str = "EAAJBsecret-token-of-the-workspace";

    fn key() -> EncryptionKey {
        EncryptionKey::parse(KEY).unwrap()
    }

    fn pn(raw: &str) -> PhoneNumberId {
        PhoneNumberId::parse(raw).unwrap()
    }

    #[test]
    fn a_sealed_token_opens_to_the_token_and_its_stored_form_does_not_contain_it() {
        let sealed = key().seal(&pn("111"), &SecretString::from(TOKEN)).unwrap();
        let stored = sealed.encode();
        assert!(stored.starts_with("v1:") && !stored.contains(TOKEN));
        let decoded = SealedToken::decode(&stored).unwrap();
        let opened = key().open(&pn("111"), &decoded).unwrap();
        assert_eq!(opened.expose_secret(), TOKEN);
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let token = SecretString::from(TOKEN);
        let a = key().seal(&pn("111"), &token).unwrap();
        let b = key().seal(&pn("111"), &token).unwrap();
        assert_ne!(a.encode(), b.encode());
    }

    #[test]
    fn a_token_sealed_for_one_number_does_not_open_for_another() {
        let sealed = key().seal(&pn("111"), &SecretString::from(TOKEN)).unwrap();
        assert_eq!(
            key().open(&pn("222"), &sealed).unwrap_err(),
            SealError::DoesNotOpen
        );
    }

    #[test]
    fn a_token_does_not_open_under_another_key_or_once_altered() {
        let sealed = key().seal(&pn("111"), &SecretString::from(TOKEN)).unwrap();
        let other = EncryptionKey::parse(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(
            other.open(&pn("111"), &sealed).unwrap_err(),
            SealError::DoesNotOpen
        );
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert_eq!(
            key().open(&pn("111"), &altered).unwrap_err(),
            SealError::DoesNotOpen
        );
    }

    #[test]
    fn a_missing_or_malformed_key_is_refused() {
        assert_eq!(
            EncryptionKey::from_secrets(&AppSecrets::default()).unwrap_err(),
            SealError::NoKey
        );
        for bad in ["", "not base64!", &STANDARD.encode([1u8; 16])] {
            assert_eq!(EncryptionKey::parse(bad).unwrap_err(), SealError::BadKey);
        }
    }

    #[test]
    fn debug_output_shows_neither_the_key_nor_the_token() {
        let sealed = key().seal(&pn("111"), &SecretString::from(TOKEN)).unwrap();
        let shown = format!("{:?} {:?}", key(), sealed);
        assert!(!shown.contains(KEY) && !shown.contains(&sealed.encode()[3..]));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn a_stored_form_that_is_not_a_sealed_token_is_refused() {
        for bad in ["", "v1:", "v2:AAAA", TOKEN, "v1:AAAAAAAAAAAAAAAA"] {
            assert!(SealedToken::decode(bad).is_none(), "{bad}");
        }
    }
}
