//! The A/B router: which provider answers a contact, decided by a stable hash so a contact keeps
//! talking to the same model across messages and cold starts.

use sha2::{Digest, Sha256};

use super::ProviderName;

/// Deterministic A/B routing: a stable hash (SHA-256 of the contact key, first 8 bytes as u64,
/// mod 100) below `grok_weight_percent` picks Grok.
///
/// A weight of 0 always picks SEA-LION; 100 or more always picks Grok. SHA-256 rather than
/// `std`'s hasher because the latter is seeded per process, which would reshuffle contacts on
/// every cold start.
pub fn route(contact_key: &str, grok_weight_percent: u8) -> ProviderName {
    if bucket(contact_key) < u64::from(grok_weight_percent) {
        ProviderName::Grok
    } else {
        ProviderName::Sealion
    }
}

/// The contact's bucket in `0..100`.
fn bucket(contact_key: &str) -> u64 {
    let digest = Sha256::digest(contact_key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % 100
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CONTACTS: usize = 10_000;

    fn grok_share_percent(weight: u8) -> f64 {
        let grok = (0..CONTACTS)
            .filter(|i| route(&format!("6591234{i:04}"), weight) == ProviderName::Grok)
            .count();
        grok as f64 * 100.0 / CONTACTS as f64
    }

    #[test]
    fn the_same_contact_is_always_routed_to_the_same_provider() {
        for contact in ["6591234567", "6598765432", "wa:6281234567890", ""] {
            let first = route(contact, 50);
            for _ in 0..1_000 {
                assert_eq!(route(contact, 50), first, "contact {contact:?} moved");
            }
        }
    }

    #[test]
    fn a_fifty_percent_weight_sends_about_half_the_contacts_to_grok() {
        let share = grok_share_percent(50);
        assert!((share - 50.0).abs() <= 3.0, "grok share {share}%");
    }

    #[test]
    fn a_thirty_percent_weight_sends_about_thirty_percent_of_contacts_to_grok() {
        let share = grok_share_percent(30);
        assert!((share - 30.0).abs() <= 3.0, "grok share {share}%");
    }

    #[test]
    fn an_eighty_percent_weight_sends_about_eighty_percent_of_contacts_to_grok() {
        let share = grok_share_percent(80);
        assert!((share - 80.0).abs() <= 3.0, "grok share {share}%");
    }

    #[test]
    fn a_zero_weight_always_routes_to_sealion() {
        assert_eq!(grok_share_percent(0), 0.0);
    }

    #[test]
    fn a_hundred_percent_weight_always_routes_to_grok() {
        assert_eq!(grok_share_percent(100), 100.0);
        assert_eq!(grok_share_percent(u8::MAX), 100.0);
    }

    #[test]
    fn raising_the_weight_only_moves_contacts_from_sealion_to_grok() {
        // Turning Grok up must not reshuffle contacts who were already on Grok.
        for i in 0..1_000 {
            let contact = format!("contact-{i}");
            if route(&contact, 30) == ProviderName::Grok {
                assert_eq!(
                    route(&contact, 80),
                    ProviderName::Grok,
                    "{contact} left grok"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn route_is_a_pure_function_of_contact_and_weight(contact in ".*", weight in any::<u8>()) {
            let first = route(&contact, weight);
            prop_assert_eq!(route(&contact, weight), first);
            prop_assert_eq!(route(&contact.clone(), weight), first);
            prop_assert!(matches!(first, ProviderName::Grok | ProviderName::Sealion));
        }
    }
}
