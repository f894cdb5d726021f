//! The integration suite: every test runs against SQLite and against PostgreSQL.

mod abuse;
mod admin;
mod audit;
mod audit_stream;
mod cases;
mod cli;
mod durability;
mod forgery;
mod guard;
mod guard_fields;
mod helpers;
mod http;
mod keys;
mod limits;
mod matrix;
mod migrations;
mod policies;
mod resilience;
mod sessions;
mod tokens;
