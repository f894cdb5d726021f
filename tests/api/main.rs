//! The integration suite: every test runs against SQLite and against PostgreSQL.

mod admin;
mod helpers;
mod tokens;
