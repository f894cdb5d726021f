//! Steps in the browser the journeys share: find, click, type, wait for a heading or a text,
//! and sign in through the development sign-in page.

use fantoccini::{Client, Locator};
use serde_json::json;

use std::time::{Duration, Instant};

pub async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

pub async fn text_of(b: &Client, css: &str) -> String {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Replaces a field's text by typing it.
pub async fn type_in(b: &Client, css: &str, text: &str) {
    let field = b
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Sets a field's value (a date or time input is typed differently in each locale).
pub async fn set_value(b: &Client, id: &str, value: &str) {
    b.execute(
        "document.getElementById(arguments[0]).value = arguments[1];",
        vec![json!(id), json!(value)],
    )
    .await
    .expect("value set");
}

/// Waits until the page's heading starts with `expected`.
pub async fn wait_heading(b: &Client, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(h1) = b.find(Locator::Css("h1")).await
            && let Ok(text) = h1.text().await
        {
            if text.starts_with(expected) {
                return;
            }
            seen = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected the page « {expected} », still on « {seen} »");
}

/// Waits until `css` is on the page and its text contains `expected`.
pub async fn wait_text(b: &Client, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = b.find(Locator::Css(css)).await
            && let Ok(text) = e.text().await
        {
            if text.contains(expected) {
                return;
            }
            seen = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = b.source().await.unwrap_or_default();
    panic!("expected « {expected} » in {css}, saw « {seen} » in {source}");
}

/// Signs in as `subject` on the development sign-in page, cookies of an earlier person gone.
pub async fn sign_in_as(b: &Client, base: &str, subject: &str) {
    b.delete_all_cookies().await.expect("cookies");
    b.goto(&format!("{base}/connexion/dev"))
        .await
        .expect("dev sign-in");
    click(b, &format!("button[value='{subject}']")).await;
    wait_heading(b, "Mes cellules").await;
}
