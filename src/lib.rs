//! cellule: confidential coordination service for the *cellules cas complexes* of French local
//! mental-health councils (CLSM).
//!
//! Layers point one way (`docs/architecture.md`; `tests/architecture.rs` checks it):
//! - adapters: [`http`] (the REST API) and [`web`] (the French pages), the only modules that
//!   know axum; [`cli`] (the command
//!   line and the demo), [`app`] (start-up and background tasks);
//! - [`services`]: the use cases, shared by every adapter: entering a cellule and access
//!   decisions, the audit log, cases, the charter, administration, the monthly review, auditors;
//! - below them: [`domain`] (pure rules: types, lifecycle, identifier guard, schedule, agenda,
//!   routing, access policies), [`storage`] (one trait per aggregate, one implementation for
//!   SQLite and PostgreSQL), [`audit`] (the hash chain, checkpoints, verification), [`crypto`]
//!   (keyring and envelope encryption), [`auth`] (token verification), [`config`], [`error`],
//!   [`telemetry`], [`clock`], [`fsutil`];
//! - [`render`]: the compte rendu as HTML and PDF, pure, above [`domain`] only.
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
pub mod render;
pub mod services;
pub mod storage;
pub mod telemetry;
pub mod web;
