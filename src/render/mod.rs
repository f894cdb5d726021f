//! The compte rendu of a session as documents: printable HTML and PDF (SPEC §10, design §10).
//!
//! Pure rendering: a [`Minutes`] that the minutes service has already filtered for one reader
//! goes in, a document comes out; no I/O, no clock, no knowledge of HTTP or storage. Both
//! documents are written from one French [`view::View`], so they say the same thing: the
//! confidentiality banner, the cellule and the session, « Projet » or « Approuvé le … par … »,
//! the reader, the attendance, then each item with its decision, actions and text.
//!
//! - [`minutes_html`]: a standalone page (askama), to be served with [`minutes_csp`].
//! - [`notice`]: notices by e-mail (text and HTML), from the lines the notify service writes.
//! - [`minutes_pdf`]: an A4 PDF (krilla), with an embedded font (Liberation Sans) and real text
//!   (`pdftotext` gives the words back); the same input gives the same bytes.

pub mod french;
mod html;
pub mod notice;
mod pdf;
mod view;

#[cfg(test)]
mod tests;

use crate::domain::minutes::Minutes;

/// Why a compte rendu could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    #[error("unknown agenda item kind {0:?}")]
    ItemKind(String),
    #[error("HTML template: {0}")]
    Html(#[from] askama::Error),
    #[error("the embedded font could not be read")]
    Font,
    #[error("PDF: {0}")]
    Pdf(String),
}

/// The compte rendu as a standalone French HTML page. Every value of the model is escaped.
pub fn minutes_html(m: &Minutes) -> Result<String, RenderError> {
    Ok(html::render(&view::View::new(m)?)?)
}

/// The Content-Security-Policy header value to serve [`minutes_html`]'s page with: nothing loads
/// or runs, and the page's one inline stylesheet is allowed by its hash (the web pages' policy,
/// `style-src 'self'`, would refuse it).
pub fn minutes_csp() -> String {
    html::content_security_policy()
}

/// The compte rendu as an A4 PDF document.
pub fn minutes_pdf(m: &Minutes) -> Result<Vec<u8>, RenderError> {
    pdf::render(&view::View::new(m)?, m.generated_at)
}
