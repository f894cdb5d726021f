//! The compte rendu as one standalone HTML page (askama, `templates/minutes_document.html`):
//! French, printable (A4 print stylesheet), no script, no external resource.

use askama::Template;
use base64::Engine;

use super::view::{self, View};

/// The document's stylesheet, inlined in its `<style>` element.
pub const STYLE: &str = include_str!("minutes.css");

#[derive(Template)]
#[template(path = "minutes_document.html")]
struct MinutesDocument<'a> {
    v: &'a View,
    /// A constant of this crate, not data: the only value the template writes unescaped (`|safe`),
    /// byte for byte, so that the hash in [`content_security_policy`] matches it.
    style: &'static str,
    banner: &'static str,
    attendance_headers: [&'static str; 3],
    action_headers: [&'static str; 3],
    no_decision: &'static str,
    no_action: &'static str,
}

pub fn render(v: &View) -> Result<String, askama::Error> {
    MinutesDocument {
        v,
        style: STYLE,
        banner: view::BANNER,
        attendance_headers: view::ATTENDANCE_HEADERS,
        action_headers: view::ACTION_HEADERS,
        no_decision: view::NO_DECISION,
        no_action: view::NO_ACTION,
    }
    .render()
}

/// The Content-Security-Policy to serve the document with: nothing may load or run, except the
/// one inline stylesheet, allowed by its SHA-256 hash (CSP level 2 `'sha256-…'`).
pub fn content_security_policy() -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}
