//! Webhook signature verification: HMAC-SHA256 over the raw request bytes, compared in constant time.
//!
//! Meta signs with `X-Hub-Signature-256: sha256=<hex>` keyed by the app secret; Kapso signs with
//! `X-Webhook-Signature: <hex>` (legacy: `x-kapso-signature`) keyed by the webhook secret, or, for
//! project webhooks, by the project's webhook secret: a scheme may have more than one key.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::envelope::Source;

pub const META_SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const KAPSO_SIGNATURE_HEADER: &str = "x-webhook-signature";
pub const KAPSO_LEGACY_SIGNATURE_HEADER: &str = "x-kapso-signature";

/// Why a delivery's signature was not accepted. Every variant means "reject".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature header was presented")]
    Missing,
    #[error("the signature header is not a well-formed {0} signature")]
    Malformed(&'static str),
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("no {0} secret is configured, so its signatures cannot be verified")]
    SecretNotConfigured(&'static str),
}

/// The signature a delivery presented, read from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedSignature {
    pub scheme: Source,
    pub digest: Vec<u8>,
}

impl PresentedSignature {
    /// Reads the signature from headers. `header` looks a header up by its lower-case name;
    /// callers pass a case-insensitive lookup (HTTP header maps already are).
    /// Meta's header wins when both are present, since Meta's is the stronger binding to the app.
    pub fn from_headers<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, SignatureError> {
        if let Some(value) = header(META_SIGNATURE_HEADER) {
            let hex_part = value
                .trim()
                .strip_prefix("sha256=")
                .ok_or(SignatureError::Malformed("Meta"))?;
            return Ok(Self {
                scheme: Source::Meta,
                digest: decode_digest(hex_part, "Meta")?,
            });
        }
        let kapso =
            header(KAPSO_SIGNATURE_HEADER).or_else(|| header(KAPSO_LEGACY_SIGNATURE_HEADER));
        if let Some(value) = kapso {
            let value = value.trim();
            // Tolerate a `sha256=` prefix: some senders add it to every HMAC header.
            let hex_part = value.strip_prefix("sha256=").unwrap_or(value);
            return Ok(Self {
                scheme: Source::Kapso,
                digest: decode_digest(hex_part, "Kapso")?,
            });
        }
        Err(SignatureError::Missing)
    }

    /// Checks the digest against `body` with the scheme's secret, in constant time.
    /// A missing secret rejects: an unverifiable delivery is never accepted.
    pub fn verify(&self, body: &[u8], secret: Option<&SecretString>) -> Result<(), SignatureError> {
        self.verify_any(body, &[secret])
    }

    /// Checks the digest against `body` with each configured key of the scheme, each in constant
    /// time. Every key is tried, so the time taken does not tell which one matched. Absent and
    /// empty keys are skipped; with none left the delivery is rejected (fail closed).
    pub fn verify_any(
        &self,
        body: &[u8],
        secrets: &[Option<&SecretString>],
    ) -> Result<(), SignatureError> {
        let name = self.scheme.as_str();
        let mut keys = secrets
            .iter()
            .flatten()
            .filter(|s| !s.expose_secret().is_empty())
            .peekable();
        if keys.peek().is_none() {
            return Err(SignatureError::SecretNotConfigured(name));
        }
        let mut matched = false;
        for key in keys {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                .map_err(|_| SignatureError::SecretNotConfigured(name))?;
            mac.update(body);
            matched |= mac.verify_slice(&self.digest).is_ok();
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn decode_digest(hex_part: &str, scheme: &'static str) -> Result<Vec<u8>, SignatureError> {
    let digest = hex::decode(hex_part).map_err(|_| SignatureError::Malformed(scheme))?;
    if digest.len() != 32 {
        return Err(SignatureError::Malformed(scheme));
    }
    Ok(digest)
}

/// Computes the hex HMAC-SHA256 of `body`: what a sender puts in its signature header.
pub fn sign_hex(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn headers<'a>(pairs: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    #[test]
    fn a_meta_signature_made_with_the_app_secret_verifies() {
        let h = [(
            META_SIGNATURE_HEADER,
            format!("sha256={}", sign_hex("app", BODY)),
        )];
        let sig = PresentedSignature::from_headers(headers(&h)).unwrap();
        assert_eq!(sig.scheme, Source::Meta);
        assert_eq!(sig.verify(BODY, Some(&secret("app"))), Ok(()));
    }

    #[test]
    fn a_meta_signature_without_its_prefix_is_malformed() {
        let h = [(META_SIGNATURE_HEADER, sign_hex("app", BODY))];
        assert_eq!(
            PresentedSignature::from_headers(headers(&h)),
            Err(SignatureError::Malformed("Meta"))
        );
    }

    #[test]
    fn a_kapso_signature_verifies_under_the_current_and_the_legacy_header() {
        for name in [KAPSO_SIGNATURE_HEADER, KAPSO_LEGACY_SIGNATURE_HEADER] {
            let h = [(name, sign_hex("kapso", BODY))];
            let sig = PresentedSignature::from_headers(headers(&h)).unwrap();
            assert_eq!(sig.scheme, Source::Kapso);
            assert_eq!(sig.verify(BODY, Some(&secret("kapso"))), Ok(()));
        }
    }

    #[test]
    fn a_signature_made_with_another_key_is_a_mismatch() {
        let h = [(KAPSO_SIGNATURE_HEADER, sign_hex("other", BODY))];
        let sig = PresentedSignature::from_headers(headers(&h)).unwrap();
        assert_eq!(
            sig.verify(BODY, Some(&secret("kapso"))),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let h = [(KAPSO_SIGNATURE_HEADER, sign_hex("kapso", BODY))];
        let sig = PresentedSignature::from_headers(headers(&h)).unwrap();
        let mut tampered = BODY.to_vec();
        tampered[3] ^= 1;
        assert_eq!(
            sig.verify(&tampered, Some(&secret("kapso"))),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_or_empty_secret_rejects_instead_of_accepting() {
        let h = [(KAPSO_SIGNATURE_HEADER, sign_hex("", BODY))];
        let sig = PresentedSignature::from_headers(headers(&h)).unwrap();
        assert_eq!(
            sig.verify(BODY, None),
            Err(SignatureError::SecretNotConfigured("kapso"))
        );
        assert_eq!(
            sig.verify(BODY, Some(&secret(""))),
            Err(SignatureError::SecretNotConfigured("kapso"))
        );
    }

    #[test]
    fn a_signature_made_with_either_configured_key_verifies() {
        let (number, project) = (secret("number"), secret("project"));
        for key in ["number", "project"] {
            let h = [(KAPSO_SIGNATURE_HEADER, sign_hex(key, BODY))];
            let sig = PresentedSignature::from_headers(headers(&h)).unwrap();
            assert_eq!(
                sig.verify_any(BODY, &[Some(&number), Some(&project)]),
                Ok(())
            );
        }
    }

    #[test]
    fn a_signature_made_with_an_unconfigured_key_is_a_mismatch_even_with_two_keys() {
        let h = [(KAPSO_SIGNATURE_HEADER, sign_hex("number", BODY))];
        let sig = PresentedSignature::from_headers(headers(&h)).unwrap();
        assert_eq!(
            sig.verify_any(BODY, &[None, Some(&secret("project"))]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            sig.verify_any(BODY, &[Some(&secret("")), None]),
            Err(SignatureError::SecretNotConfigured("kapso"))
        );
        assert_eq!(
            sig.verify_any(BODY, &[]),
            Err(SignatureError::SecretNotConfigured("kapso"))
        );
    }

    proptest::proptest! {
        #[test]
        fn any_body_signed_with_a_key_verifies_and_any_flipped_byte_does_not(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..2048),
            key in "[ -~]{1,64}",
            flip in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let h = [(META_SIGNATURE_HEADER, format!("sha256={}", sign_hex(&key, &body)))];
            let sig = PresentedSignature::from_headers(headers(&h)).unwrap();
            proptest::prop_assert_eq!(sig.verify(&body, Some(&secret(&key))), Ok(()));
            let mut tampered = body.clone();
            tampered[flip.index(body.len())] ^= 0x01;
            proptest::prop_assert_eq!(sig.verify(&tampered, Some(&secret(&key))), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn no_header_means_missing() {
        assert_eq!(
            PresentedSignature::from_headers(headers(&[])),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn digests_of_the_wrong_length_or_alphabet_are_malformed() {
        for bad in ["abcd", "zz", &"0".repeat(66)] {
            let h = [(KAPSO_SIGNATURE_HEADER, bad.to_string())];
            assert_eq!(
                PresentedSignature::from_headers(headers(&h)),
                Err(SignatureError::Malformed("Kapso"))
            );
        }
    }
}
