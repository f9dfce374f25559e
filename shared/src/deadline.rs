//! The invocation deadline Lambda hands every function, as an `Instant` use cases plan by.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Epoch milliseconds of 2001-01-01: no real deadline is earlier.
pub const EPOCH_FLOOR_MS: u64 = 978_307_200_000;

/// The invocation's deadline as an `Instant`. Lambda sends epoch milliseconds; cargo-lambda's
/// emulator sends the time remaining instead, which is told apart by its size.
pub fn deadline_of(deadline_ms: u64) -> Instant {
    let remaining = if deadline_ms < EPOCH_FLOOR_MS {
        deadline_ms
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        deadline_ms.saturating_sub(now)
    };
    Instant::now() + Duration::from_millis(remaining)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_deadline_becomes_the_time_left() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = deadline_of(now + 30_000).saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(29) && left <= Duration::from_secs(30),
            "{left:?}"
        );
    }

    #[test]
    fn a_small_deadline_is_the_emulators_time_remaining() {
        let left = deadline_of(600_000).saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(599), "{left:?}");
    }

    #[test]
    fn a_deadline_in_the_past_leaves_no_time() {
        assert!(deadline_of(EPOCH_FLOOR_MS + 1) <= Instant::now());
    }
}
