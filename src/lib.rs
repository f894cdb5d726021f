//! cellule: confidential coordination service for the *cellules cas complexes* of French local
//! mental-health councils (CLSM).
//!
//! Module map (mirrors the domain):
//! - [`config`]: typed configuration (defaults, `cellule.toml`, `CELLULE_*`, flags);
//! - [`domain`]: validated newtypes (cellules, memberships, roles, spheres, subjects);
//! - [`cellules`]: rules for creating cellules and memberships (shared by API and CLI);
//! - [`auth`]: token verification (development issuer, OIDC issuers) and caller extractors;
//! - [`storage`]: the [`storage::Database`] interface with SQLite and PostgreSQL backends;
//! - [`http`]: the axum router, per-resource routers, middleware, OpenAPI;
//! - [`error`]: the one API error type, rendered as RFC 9457 problem+json;
//! - [`app`], [`cli`]: wiring and the command line.
#![forbid(unsafe_code)]
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;

pub mod domain;
pub mod error;
pub mod fsutil;
pub mod http;
pub mod services;
pub mod storage;
pub mod telemetry;
