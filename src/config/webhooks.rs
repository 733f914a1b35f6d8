//! Settings of webhook delivery.

use super::units::parse_duration;
use clap::{ArgAction, Args};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct WebhookConfig {
    /// Deliver webhooks from this process. Turn it off for replicas that should only serve
    /// requests; the deliveries are made by the others (they share the queue in the database).
    #[arg(
        long = "webhook-dispatcher",
        env = "MODELREG_WEBHOOK_DISPATCHER",
        default_value_t = true,
        action = ArgAction::Set
    )]
    pub dispatcher: bool,

    /// Allow webhook URLs on loopback, private and link-local addresses (a receiver on the
    /// same host or network). Off by default: the registry will not be made to call into its
    /// own network on an admin's behalf.
    #[arg(long = "webhook-allow-private", env = "MODELREG_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = ArgAction::Set)]
    pub allow_private: bool,

    /// How long one attempt may take, the answer included.
    #[arg(long = "webhook-timeout", env = "MODELREG_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// How long an attempt may take to connect (at most the timeout): a receiver that drops
    /// connection attempts costs this, not the whole timeout.
    #[arg(long = "webhook-connect-timeout", env = "MODELREG_WEBHOOK_CONNECT_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Attempts in flight at once in this process for prompt receivers; as many again for
    /// slow ones (see `--webhook-slow-after`), so a slow receiver never takes a prompt one's
    /// slot.
    #[arg(
        long = "webhook-concurrency",
        env = "MODELREG_WEBHOOK_CONCURRENCY",
        default_value_t = 32
    )]
    pub concurrency: u32,

    /// Attempts in flight at once for one webhook, in every process together.
    #[arg(
        long = "webhook-per-webhook",
        env = "MODELREG_WEBHOOK_PER_WEBHOOK",
        default_value_t = 4
    )]
    pub per_webhook: u32,

    /// A receiver is slow when its attempts take this long on average, or an attempt has been
    /// waiting this long: it then waits in the slow lane, leaving the prompt lane's slots to
    /// the receivers that answer.
    #[arg(long = "webhook-slow-after", env = "MODELREG_WEBHOOK_SLOW_AFTER", default_value = "1s", value_parser = parse_duration)]
    pub slow_after: Duration,

    /// Webhooks one token may own at once (a glob-limited admin cannot flood the dispatcher
    /// with webhooks).
    #[arg(
        long = "webhook-max-per-token",
        env = "MODELREG_WEBHOOK_MAX_PER_TOKEN",
        default_value_t = 50
    )]
    pub max_per_token: u32,

    /// The wait after the first failed attempt; it doubles after each (up to 2 h), with ±20%
    /// jitter.
    #[arg(long = "webhook-retry-base", env = "MODELREG_WEBHOOK_RETRY_BASE", default_value = "5s", value_parser = parse_duration)]
    pub retry_base: Duration,

    /// How long a delivery is retried before it is marked failed.
    #[arg(long = "webhook-retry-for", env = "MODELREG_WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = parse_duration)]
    pub retry_for: Duration,

    /// How long succeeded deliveries stay in the delivery log.
    #[arg(long = "webhook-retention", env = "MODELREG_WEBHOOK_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub retention: Duration,

    /// How long failed deliveries stay in the delivery log (to look at, or redeliver).
    #[arg(long = "webhook-failed-retention", env = "MODELREG_WEBHOOK_FAILED_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub failed_retention: Duration,

    /// How often the dispatcher looks for due deliveries when nothing wakes it (it is woken
    /// at once when deliveries are queued).
    #[arg(long = "webhook-poll", env = "MODELREG_WEBHOOK_POLL", default_value = "1s", value_parser = parse_duration)]
    pub poll: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            dispatcher: true,
            allow_private: false,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            concurrency: 32,
            per_webhook: 4,
            slow_after: Duration::from_secs(1),
            max_per_token: 50,
            retry_base: Duration::from_secs(5),
            retry_for: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(7 * 86_400),
            failed_retention: Duration::from_secs(30 * 86_400),
            poll: Duration::from_secs(1),
        }
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() || self.poll.is_zero() || self.retry_base.is_zero() {
            return Err("webhook timeout, poll and retry base must be longer than 0".to_owned());
        }
        if self.connect_timeout.is_zero() || self.slow_after.is_zero() {
            return Err("webhook connect timeout and slow-after must be longer than 0".to_owned());
        }
        if self.concurrency == 0 || self.per_webhook == 0 || self.max_per_token == 0 {
            return Err(
                "webhook concurrency, per-webhook and per-token limits must be at least 1"
                    .to_owned(),
            );
        }
        Ok(())
    }
}
