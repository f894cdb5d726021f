//! The HTTP server's limits and the rate limits.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// HTTP hardening knobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes (64 KiB by default).
    pub body_limit_bytes: usize,
    /// A request still running after this long is answered 503 and abandoned.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A request's headers must arrive within this long (a connection that trickles them is
    /// closed).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open connections at most (keep well below the process's file limit, `LimitNOFILE`).
    pub max_connections: usize,
    /// Requests served on one connection before it is closed.
    pub max_requests_per_connection: u64,
    /// Header fields in one request at most.
    pub max_headers: usize,
    /// Bytes of one request's head (request line and headers) at most.
    pub max_header_bytes: usize,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed: addresses
    /// or networks (`10.0.0.5`, `10.0.0.0/24`, `::1`). Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_requests_per_connection: 1000,
            max_headers: 64,
            max_header_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The trusted proxies as networks (a bare address is a network of one).
    pub fn trusted_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::Invalid(format!(
                            "http.trusted_proxies: {p:?} is not an address or a network"
                        ))
                    })
            })
            .collect()
    }
}

/// Rate limits (token buckets): a budget is `burst` requests at once, refilled at
/// `per_minute`. A request beyond it is answered 429 with `Retry-After`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Per authenticated caller (issuer and subject).
    pub subject: Budget,
    /// Per client address, for requests without a valid token (unauthenticated routes,
    /// missing or invalid tokens). IPv6 addresses count per /64.
    pub address: Budget,
    /// Per authenticated caller, for refusals of access (not a member of the cellule, a case
    /// not visible, a forbidden action): each is recorded in the audit log, so this budget is
    /// tight.
    pub denials: Budget,
    /// While a caller's denials are throttled, one entry per cellule is recorded this often.
    #[serde(with = "humantime_serde")]
    pub throttled_denial_entry_every: Duration,
}

/// One token bucket.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            subject: Budget {
                per_minute: 600,
                burst: 200,
            },
            address: Budget {
                per_minute: 300,
                burst: 100,
            },
            denials: Budget {
                per_minute: 6,
                burst: 20,
            },
            throttled_denial_entry_every: Duration::from_secs(60),
        }
    }
}
