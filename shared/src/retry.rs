//! Retry timing, shared by everything that retries (queue entries, WhatsApp sends).

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

/// The one retry policy: jittered, exponentially spaced delays, a bounded number of them.
/// Queue sends and WhatsApp sends both retry by it.
#[derive(Debug, Clone)]
pub struct RetryPolicy(ExponentialBuilder);

impl RetryPolicy {
    pub fn new(retries: usize, first: Duration, max: Duration) -> Self {
        Self(
            ExponentialBuilder::default()
                .with_min_delay(first)
                .with_max_delay(max)
                .with_max_times(retries)
                .with_jitter(),
        )
    }

    /// The delays before each retry.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        self.0.build()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(3, Duration::from_millis(50), Duration::from_millis(500))
    }
}

/// Whether there is time for one more attempt: waiting `delay` and then allowing `attempt_time`
/// must still end before `deadline`. A delay too long to add up (an API's `Retry-After` can be
/// any number) never fits.
pub fn fits_before(deadline: Instant, delay: Duration, attempt_time: Duration) -> bool {
    delay
        .checked_add(attempt_time)
        .and_then(|wait| Instant::now().checked_add(wait))
        .is_some_and(|end| end < deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded_in_number_and_size() {
        let policy = RetryPolicy::new(4, Duration::from_millis(10), Duration::from_millis(50));
        let delays: Vec<_> = policy.delays().collect();
        assert_eq!(delays.len(), 4);
        // Jitter adds up to one more delay's worth on top of the capped exponential.
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(100)),
            "{delays:?}"
        );
    }

    #[test]
    fn an_attempt_that_would_end_after_the_deadline_does_not_fit() {
        let deadline = Instant::now() + Duration::from_millis(100);
        assert!(fits_before(
            deadline,
            Duration::from_millis(10),
            Duration::from_millis(10)
        ));
        assert!(!fits_before(
            deadline,
            Duration::from_millis(60),
            Duration::from_millis(60)
        ));
    }

    #[test]
    fn a_delay_too_long_to_add_up_does_not_fit_and_does_not_panic() {
        let deadline = Instant::now() + Duration::from_secs(60);
        assert!(!fits_before(
            deadline,
            Duration::MAX,
            Duration::from_millis(250)
        ));
    }
}
