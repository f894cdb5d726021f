//! Sign-in against the real OpenID provider: the whole code flow, then each thing that must be
//! refused (a wrong `state`, a replayed code, a wrong `nonce`), the session's expiry, CSRF tokens
//! missing or from another session, and a foreign `Origin`.

use reqwest::header::ORIGIN;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{Backend, REF1, referral};
use crate::support::{
    Web, WebApp, browser_like, csrf_of, dev_sign_in, dev_web_app, location, provider,
    provider_sign_in, set_cookie, web_app,
};

async fn app(backend: Backend) -> WebApp {
    let web = web_app(backend, Web::default()).await;
    web.standard_cellule().await;
    web
}

/// Starts a sign-in at the application; answers the provider's authorization URL.
async fn start(client: &reqwest::Client, base: &str) -> String {
    let r = client
        .get(format!("{base}/connexion/oidc/0"))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 303);
    assert!(
        set_cookie(&r, "cellule-connexion")
            .is_some_and(|c| c.contains("HttpOnly") && c.contains("SameSite=Lax")),
        "the sign-in cookie"
    );
    let to = location(&r);
    assert!(to.starts_with(provider()), "{to}");
    for param in [
        "state=",
        "nonce=",
        "code_challenge=",
        "code_challenge_method=S256",
    ] {
        assert!(to.contains(param), "{param} missing from {to}");
    }
    to
}

async fn code_flow(backend: Backend) {
    let web = app(backend).await;
    let client = browser_like();
    let authorize = start(&client, &web.base).await;
    let back = provider_sign_in(&client, &authorize, REF1).await;
    assert!(
        back.starts_with(&format!("{}/connexion/retour?", web.base)),
        "{back}"
    );
    let r = client.get(&back).send().await.expect("callback");
    assert_eq!(r.status(), 303, "the callback signs in");
    let session = set_cookie(&r, "cellule-session")
        .expect("a session cookie")
        .to_owned();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/")
    );
    assert!(
        !session.contains("Secure"),
        "plain http on loopback: not Secure"
    );
    let home = client
        .get(format!("{}/", web.base))
        .send()
        .await
        .expect("home");
    assert_eq!(home.status(), 200);
    let page = home.text().await.expect("page");
    assert!(
        page.contains("Connecté en tant que <strong>op:ref-1</strong>"),
        "{page}"
    );
    assert!(
        page.contains("/c/perpignan"),
        "the same memberships: {page}"
    );

    // The verified `email` claim became the member's address for notices.
    let addresses = web
        .app
        .state
        .db
        .member_addresses("perpignan")
        .await
        .expect("addresses");
    assert!(
        addresses
            .iter()
            .any(|(s, e)| s == "op:ref-1" && e == "ref-1@pro.example.fr"),
        "{addresses:?}"
    );

    // The same callback again (a replayed code): the sign-in was used up.
    let replay = client.get(&back).send().await.expect("replay");
    assert_eq!(replay.status(), 400);
    assert!(set_cookie(&replay, "cellule-session").is_none());

    // Sign-out ends the session here and sends the browser to the provider's end_session.
    let csrf = csrf_of(&page);
    let out = client
        .post(format!("{}/deconnexion", web.base))
        .header(ORIGIN, &web.base)
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .expect("sign-out");
    assert_eq!(out.status(), 200);
    let text = out.text().await.expect("page");
    assert!(
        text.contains(&format!("{}/session/end", provider())),
        "{text}"
    );
    assert!(text.contains("post_logout_redirect_uri"), "{text}");
    let after = client
        .get(format!("{}/c/perpignan", web.base))
        .send()
        .await
        .expect("after");
    assert_eq!(after.status(), 303);
    assert!(location(&after).starts_with("/connexion"));
}

async fn wrong_state(backend: Backend) {
    let web = app(backend).await;
    let client = browser_like();
    let authorize = start(&client, &web.base).await;
    let back = provider_sign_in(&client, &authorize, REF1).await;
    let state = back
        .split("state=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("state")
        .to_owned();
    let forged = back.replace(&format!("state={state}"), "state=forged-state-value");
    let r = client.get(&forged).send().await.expect("callback");
    assert_eq!(r.status(), 400, "a wrong state is refused");
    assert!(set_cookie(&r, "cellule-session").is_none());
    // The sign-in is used up by the refusal: the genuine answer does not work after it either.
    let r = client.get(&back).send().await.expect("callback");
    assert_eq!(r.status(), 400);

    // The answer to another browser's sign-in (its cookie missing here) is refused too.
    let other = browser_like();
    let authorize = start(&client, &web.base).await;
    let back = provider_sign_in(&client, &authorize, REF1).await;
    let r = other.get(&back).send().await.expect("callback");
    assert_eq!(r.status(), 400);
}

async fn wrong_nonce(backend: Backend) {
    let web = app(backend).await;
    let client = browser_like();
    let authorize = start(&client, &web.base).await;
    // Same state and PKCE challenge, another nonce: the ID token names the other nonce.
    let nonce = authorize
        .split("nonce=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("nonce")
        .to_owned();
    let tampered = authorize.replace(&format!("nonce={nonce}"), "nonce=another-nonce-value");
    let back = provider_sign_in(&client, &tampered, REF1).await;
    let r = client.get(&back).send().await.expect("callback");
    assert_eq!(r.status(), 400, "a wrong nonce is refused");
    assert!(set_cookie(&r, "cellule-session").is_none());
}

async fn expired_session(backend: Backend) {
    let web = web_app(
        backend,
        Web {
            oidc: false,
            customize: Box::new(|c| {
                c.web.session_idle = std::time::Duration::from_secs(2);
                c.web.session_absolute = std::time::Duration::from_secs(4);
            }),
        },
    )
    .await;
    web.app.standard_cellule().await;
    let client = browser_like();
    dev_sign_in(&client, &web.base, REF1).await;
    let r = client
        .get(format!("{}/c/perpignan", web.base))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = client
        .get(format!("{}/c/perpignan", web.base))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 303, "idle too long: signed out");
    assert!(location(&r).starts_with("/connexion?suite=%2Fc%2Fperpignan"));
}

async fn csrf_and_origin(backend: Backend) {
    let web = dev_web_app(backend).await;
    web.app.standard_cellule().await;
    let alice = browser_like();
    let other = browser_like();
    dev_sign_in(&alice, &web.base, REF1).await;
    dev_sign_in(&other, &web.base, REF1).await;
    let form_page = |c: reqwest::Client| {
        let url = format!("{}/c/perpignan/saisines/nouvelle", web.base);
        async move {
            c.get(url)
                .send()
                .await
                .expect("form")
                .text()
                .await
                .expect("page")
        }
    };
    let mine = csrf_of(&form_page(alice.clone()).await);
    let theirs = csrf_of(&form_page(other.clone()).await);
    assert_ne!(mine, theirs, "one token per session");
    let body = referral("Situation de test sans identifiant.");
    let fields = |csrf: Option<&str>| {
        let mut f = vec![
            ("tranche", "35-44".to_owned()),
            ("genre", "m".to_owned()),
            ("commune", "66136".to_owned()),
            ("besoins", "housing".to_owned()),
            ("urgence", "priority".to_owned()),
            ("consentement", "informed".to_owned()),
            (
                "situation",
                body["situation"].as_str().unwrap_or_default().to_owned(),
            ),
        ];
        if let Some(c) = csrf {
            f.push(("_csrf", c.to_owned()));
        }
        f
    };
    let url = format!("{}/c/perpignan/saisines", web.base);
    let post = |csrf: Option<&str>, origin: Option<&str>| {
        let mut r = alice.post(&url).form(&fields(csrf));
        if let Some(o) = origin {
            r = r.header(ORIGIN, o);
        }
        r.send()
    };
    let none = post(None, Some(&web.base)).await.expect("post");
    assert_eq!(none.status(), 403, "no CSRF token");
    let foreign = post(Some(&theirs), Some(&web.base)).await.expect("post");
    assert_eq!(foreign.status(), 403, "another session's token");
    let evil = post(Some(&mine), Some("http://evil.example"))
        .await
        .expect("post");
    assert_eq!(evil.status(), 403, "a foreign Origin");
    let missing = post(Some(&mine), None).await.expect("post");
    assert_eq!(missing.status(), 403, "no Origin");
    assert_eq!(
        web.app
            .count_rows("SELECT count(*) FROM cases WHERE cellule = $1", "perpignan")
            .await,
        0,
        "nothing was recorded"
    );
    let ok = post(Some(&mine), Some(&web.base)).await.expect("post");
    assert_eq!(ok.status(), 303, "the genuine form is accepted");
    assert!(location(&ok).starts_with("/c/perpignan/saisines?envoyee=PER-"));
    let _ = json!({});
}

backend_tests!(
    code_flow,
    wrong_state,
    wrong_nonce,
    expired_session,
    csrf_and_origin
);
