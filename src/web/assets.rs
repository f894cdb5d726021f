//! The stylesheet and the small script, compiled into the binary and served under a name that
//! carries a hash of their content, so that they can be cached for a year and a new release is
//! fetched at once. Nothing is fetched from anywhere else (no CDN, no external font).

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

fn versioned(stem: &str, ext: &str, content: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, content.as_bytes());
    format!(
        "/ressources/{stem}-{}.{ext}",
        &crate::audit::hex(digest.as_ref())[..16]
    )
}

static CSS_URL: LazyLock<String> = LazyLock::new(|| versioned("app", "css", CSS));
static JS_URL: LazyLock<String> = LazyLock::new(|| versioned("app", "js", JS));

pub fn css_url() -> &'static str {
    CSS_URL.as_str()
}

pub fn js_url() -> &'static str {
    JS_URL.as_str()
}

/// `GET /ressources/{name}`: an asset by its versioned name, cached for a year.
pub async fn serve(Path(name): Path<String>) -> Response {
    let path = format!("/ressources/{name}");
    let (body, mime) = if path == css_url() {
        (CSS, "text/css; charset=utf-8")
    } else if path == js_url() {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return super::page::not_found();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
