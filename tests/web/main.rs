//! The web application's tests: journeys in a real browser (Chromium over WebDriver) with
//! axe-core on every page, the OpenID Connect flow against a real provider with each way it must
//! refuse, sessions and CSRF, security headers, and the pages' access rules. Journeys run on
//! SQLite and on PostgreSQL.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod annuaire;
mod audit_parity;
mod browse;
mod demo;
mod desk;
mod journeys;
mod oidc;
mod pages;
mod seances;
mod situations;
mod support;
