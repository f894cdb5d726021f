//! The use cases of the service, one module each, shared by every adapter (HTTP API, command
//! line, demo). A use case takes the [`AppState`] and an entered membership
//! ([`access::CelluleMember`]), asks [`access`] (the Cedar policies) before anything is read or
//! written, records what it did in the audit log ([`audit_log`]) and answers plain data or an
//! [`crate::error::Error`]. Nothing here knows HTTP.

pub mod access;
pub mod audit_log;
pub mod audit_stream;
pub mod auditor;
pub mod backup;
pub mod cases;
pub mod cellules;
pub mod charter;
pub mod guard;
pub mod idempotency;
pub mod keys;
pub mod mail;
pub mod notify;
pub mod outbox;
pub mod reminders;
pub mod review;
pub mod throttle;
pub mod web_sessions;
pub mod witness;

use std::collections::HashSet;
use std::sync::Arc;

use crate::auth::TokenVerifier;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::policy::Policies;
use crate::storage::Database;
use crate::telemetry::Metrics;

/// What every use case works with. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Arc<dyn Database>,
    pub verifier: Arc<TokenVerifier>,
    pub admins: Arc<HashSet<String>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub keys: Arc<keys::KeyService>,
    pub policies: Arc<Policies>,
    /// The audit log: group commit of the entries of reads, denials and submissions.
    pub audit: Arc<audit_log::AuditLog>,
    /// Rate limits per caller, per client address and for access denials.
    pub limits: Arc<throttle::RateLimits>,
}

impl AppState {
    /// Whether `subject` is a deployment administrator.
    pub fn is_admin(&self, subject: &str) -> bool {
        self.admins.contains(subject)
    }
}
