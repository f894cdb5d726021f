//! The integration suite: every test runs against SQLite and against PostgreSQL.

mod abuse;
mod admin;
mod admin_audit;
mod agenda_amend;
mod audit;
mod audit_stream;
mod backup;
mod cases;
mod cli;
mod contract;
mod durability;
mod forgery;
mod guard;
mod guard_fields;
mod helpers;
mod http;
mod idempotency;
mod keys;
mod limits;
mod matrix;
mod meeting;
mod migrations;
mod policies;
mod resilience;
mod sessions;
mod tokens;
