//! Settings of stage policies.

use super::units::parse_duration;
use clap::Args;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct PolicyConfig {
    /// How long a promotion request waits for its approvals before it expires.
    #[arg(
        long = "promotion-request-ttl",
        env = "MODELREG_PROMOTION_REQUEST_TTL",
        default_value = "7d",
        value_parser = parse_duration
    )]
    pub request_ttl: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            request_ttl: Duration::from_secs(7 * 86_400),
        }
    }
}
