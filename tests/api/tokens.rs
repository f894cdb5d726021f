//! Token verification through the real router: every attack answers 401 problem+json.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cellule::clock::ManualClock;
use cellule::config::{IssuerConfig, StaticKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::backend_tests;
use crate::helpers::{Backend, Options, TestApp, spawn_app, spawn_app_with};

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// Builds a compact token from raw parts (for tokens no library would sign).
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

async fn expect_rejected(app: &TestApp, token: &str, case: &str) {
    let a = app.get("/v1/me", Some(token)).await;
    assert_eq!(a.status.as_u16(), 401, "{case}: {}", a.text);
    a.assert_problem(401);
    assert_eq!(a.problem_type(), "/problems/invalid-token", "{case}");
    assert!(
        a.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer")),
        "{case}: WWW-Authenticate"
    );
    assert!(!a.text.contains(token), "{case}: the token is echoed");
}

async fn valid_token_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.get("/v1/me", Some(&app.token("alice"))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["subject"], "alice");
    assert_eq!(a.body["issuer"], "cellule-dev");
    assert_eq!(a.body["admin"], false);
}

async fn token_attacks_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = chrono::Utc::now().timestamp();
    let claims = app.claims("mallory");
    let with = |key: &str, value: Value| {
        let mut c = claims.clone();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = claims.clone();
        c.as_object_mut().map(|o| o.remove(key));
        c
    };

    // Missing or garbled Authorization headers.
    for (case, header) in [
        ("basic scheme", "Basic YWxpY2U6cHc="),
        ("empty bearer", "Bearer "),
        ("bearer only", "Bearer"),
        ("garbage", "Bearer not-a-token"),
        ("three garbage parts", "Bearer a.b.c"),
        ("two parts", "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0"),
    ] {
        let a = crate::helpers::answer(
            app.client
                .get(format!("{}/v1/me", app.base))
                .header("authorization", header)
                .send()
                .await
                .expect("send"),
        )
        .await;
        a.assert_problem(401);
        assert_eq!(a.problem_type(), "/problems/invalid-token", "{case}");
    }
    let a = app.get("/v1/me", None).await;
    a.assert_problem(401);

    // alg: none, with and without a signature.
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": app.dev_kid()}),
    ] {
        expect_rejected(&app, &raw_token(&header, &claims, b""), "alg none").await;
        expect_rejected(
            &app,
            &raw_token(&header, &claims, b"sig"),
            "alg none with sig",
        )
        .await;
    }

    // HS256 signed with the issuer's public key as HMAC secret (raw bytes and PEM text).
    let public = app.dev_public_key();
    let mut pem_der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    pem_der.extend_from_slice(&public);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&pem_der)
    );
    for secret in [public.clone(), pem.into_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(app.dev_kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))
            .expect("hs256");
        expect_rejected(&app, &token, "HS256 with public key").await;
    }

    // Unknown kid, no kid, and a key the service never trusted presenting the real kid.
    let rng = ring::rand::SystemRandom::new();
    let other = Ed25519KeyPair::generate_pkcs8(&rng).expect("keygen");
    let other_key = EncodingKey::from_ed_der(other.as_ref());
    for kid in [
        Some("unknown-kid".to_owned()),
        None,
        Some(app.dev_kid().to_owned()),
    ] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.clone();
        let token = jsonwebtoken::encode(&header, &claims, &other_key).expect("sign");
        expect_rejected(&app, &token, &format!("foreign key, kid {kid:?}")).await;
    }
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("unknown-kid".to_owned());
    let dev_pkcs8 = std::fs::read(
        app.data_dir
            .path()
            .join(cellule::auth::dev_issuer::KEY_FILE),
    )
    .expect("key");
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&dev_pkcs8))
        .expect("sign");
    expect_rejected(&app, &token, "real key, unknown kid").await;

    // Claims: issuer, audience, times, types.
    let cases: Vec<(&str, Value)> = vec![
        (
            "unconfigured issuer",
            with("iss", json!("https://idp.evil.example/realms/x")),
        ),
        ("missing iss", without("iss")),
        ("iss as number", with("iss", json!(42))),
        ("wrong aud", with("aud", json!("another-service"))),
        ("missing aud", without("aud")),
        ("expired", with("exp", json!(now - 3600))),
        ("expired beyond leeway", with("exp", json!(now - 90))),
        ("missing exp", without("exp")),
        ("nbf in the future", with("nbf", json!(now + 3600))),
        ("exp as string", with("exp", json!((now + 900).to_string()))),
        ("nbf as string", with("nbf", json!(now.to_string()))),
        ("exp as float string", with("exp", json!("9999999999.0"))),
        ("missing sub", without("sub")),
        ("sub as number", with("sub", json!(12))),
        ("sub with spaces", with("sub", json!("a b"))),
    ];
    for (case, claims) in &cases {
        expect_rejected(&app, &app.sign_claims(claims), case).await;
    }

    // A flipped bit anywhere in the signature.
    let good = app.token("mallory");
    let (signed, sig) = good.rsplit_once('.').expect("jws");
    let mut sig_bytes = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    for i in [0, sig_bytes.len() / 2, sig_bytes.len() - 1] {
        sig_bytes[i] ^= 0x01;
        expect_rejected(
            &app,
            &format!("{signed}.{}", b64(&sig_bytes)),
            "flipped bit",
        )
        .await;
        sig_bytes[i] ^= 0x01;
    }
    // A flipped bit in the payload (the subject changes, the signature does not).
    let forged_claims = b64(with("sub", json!("admin-ops")).to_string().as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    expect_rejected(
        &app,
        &format!("{}.{}.{}", parts[0], forged_claims, parts[2]),
        "payload swapped",
    )
    .await;

    // The untouched token still works: the refusals above were about the attacks.
    assert_eq!(app.get("/v1/me", Some(&good)).await.status, 200);
}

async fn leeway_tolerates_small_skew_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = chrono::Utc::now().timestamp();
    let mut claims = app.claims("alice");
    claims["exp"] = json!(now - 10);
    assert_eq!(
        app.get("/v1/me", Some(&app.sign_claims(&claims)))
            .await
            .status,
        200
    );
    claims["exp"] = json!(now + 900);
    claims["nbf"] = json!(now + 10);
    assert_eq!(
        app.get("/v1/me", Some(&app.sign_claims(&claims)))
            .await
            .status,
        200
    );
    claims["nbf"] = json!(now + 120);
    assert_eq!(
        app.get("/v1/me", Some(&app.sign_claims(&claims)))
            .await
            .status,
        401
    );
}

/// A JWKS endpoint on loopback whose key set the test can change, counting fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(keys: Value) -> JwksServer {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (keys.clone(), fetches.clone());
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(k.lock().await.clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    JwksServer {
        url: format!("http://{addr}/jwks"),
        keys,
        fetches,
    }
}

struct EdKey {
    kid: String,
    encoding: EncodingKey,
    public: Vec<u8>,
}

fn ed_key(kid: &str) -> EdKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("keygen");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("pair");
    EdKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        public: pair.public_key().as_ref().to_vec(),
    }
}

impl EdKey {
    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid, "x": b64(&self.public)})
    }

    fn pem(&self) -> String {
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(&self.public);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(&der)
        )
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

const OIDC_ISSUER: &str = "https://idp.test.example/realms/clsm";

fn oidc_claims(sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": OIDC_ISSUER, "aud": "cellule-api", "sub": sub, "iat": now, "exp": now + 600})
}

async fn jwks_issuer_keys_by_kid_with_paced_refresh(backend: Backend) {
    let k1 = ed_key("k1");
    let k2 = ed_key("k2");
    // An ES256 key in the same set: its algorithm is not allowed for this issuer.
    let rng = ring::rand::SystemRandom::new();
    let ec_pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("ec keygen");
    let ec_pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref(), &rng)
            .expect("ec");
    let point = ec_pair.public_key().as_ref();
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "ec1",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});

    let server = jwks_server(json!({"keys": [k1.jwk(), ec_jwk]})).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let url = server.url.clone();
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |c| {
                c.auth.issuers.push(IssuerConfig {
                    issuer: OIDC_ISSUER.to_owned(),
                    audience: "cellule-api".to_owned(),
                    algorithms: vec![Algorithm::EdDSA],
                    jwks_url: Some(url.parse().expect("url")),
                    public_keys: vec![],
                    subject_prefix: "kc:".to_owned(),
                    max_token_lifetime: None,
                    web: None,
                });
            }),
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;

    let a = app.get("/v1/me", Some(&k1.sign(&oidc_claims("u-1")))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.body["subject"], "kc:u-1",
        "the issuer's subject prefix applies"
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // Cached: no new fetch for a known kid.
    assert_eq!(
        app.get("/v1/me", Some(&k1.sign(&oidc_claims("u-1"))))
            .await
            .status,
        200
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // A validly signed ES256 token: the key is published but ES256 is not pinned for this issuer.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec1".to_owned());
    let es = jsonwebtoken::encode(
        &header,
        &oidc_claims("u-2"),
        &EncodingKey::from_ec_der(ec_pkcs8.as_ref()),
    )
    .expect("es256");
    expect_rejected(&app, &es, "algorithm not pinned").await;

    // The issuer rotates to k2. Within the minute, an unknown kid does not trigger a refetch.
    *server.keys.lock().await = json!({"keys": [k1.jwk(), k2.jwk()]});
    expect_rejected(
        &app,
        &k2.sign(&oidc_claims("u-3")),
        "unknown kid within the minute",
    )
    .await;
    expect_rejected(
        &app,
        &k2.sign(&oidc_claims("u-3")),
        "unknown kid within the minute",
    )
    .await;
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "no refetch within a minute"
    );

    // A minute later, the unknown kid refreshes the set once and is accepted.
    clock.set(chrono::Utc::now() + chrono::Duration::seconds(61));
    assert_eq!(
        app.get("/v1/me", Some(&k2.sign(&oidc_claims("u-3"))))
            .await
            .status,
        200
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    expect_rejected(
        &app,
        &ed_key("k9").sign(&oidc_claims("u-4")),
        "still unknown kid",
    )
    .await;
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);

    // A token of the dev issuer's audience or another audience is refused for this issuer.
    let mut wrong_aud = oidc_claims("u-1");
    wrong_aud["aud"] = json!("cellule");
    expect_rejected(
        &app,
        &k1.sign(&wrong_aud),
        "wrong audience for the OIDC issuer",
    )
    .await;
    // The dev issuer's key cannot sign for the OIDC issuer.
    expect_rejected(
        &app,
        &app.sign_claims(&oidc_claims("u-1")),
        "dev key for OIDC issuer",
    )
    .await;
}

async fn static_key_issuer(backend: Backend) {
    let key = ed_key("s1");
    let pem = key.pem();
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |c| {
                c.auth.issuers.push(IssuerConfig {
                    issuer: OIDC_ISSUER.to_owned(),
                    audience: "cellule-api".to_owned(),
                    algorithms: vec![Algorithm::EdDSA],
                    jwks_url: None,
                    public_keys: vec![StaticKey {
                        kid: Some("s1".to_owned()),
                        pem,
                    }],
                    subject_prefix: String::new(),
                    max_token_lifetime: None,
                    web: None,
                });
            }),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(
        app.get("/v1/me", Some(&key.sign(&oidc_claims("u-1"))))
            .await
            .status,
        200
    );
    let mut no_kid = Header::new(Algorithm::EdDSA);
    no_kid.kid = None;
    let token = jsonwebtoken::encode(&no_kid, &oidc_claims("u-1"), &key.encoding).expect("sign");
    expect_rejected(&app, &token, "no kid for a keyed static issuer").await;
    expect_rejected(
        &app,
        &ed_key("s1").sign(&oidc_claims("u-1")),
        "another key, same kid",
    )
    .await;
}

/// A token may live at most `auth.max_token_lifetime` (`exp - iat`, 12 hours by default), an
/// issuer's own maximum when it has one; `iat` is required and not in the future.
async fn token_lifetimes_are_bounded(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = chrono::Utc::now().timestamp();
    let with = |changes: &[(&str, Value)]| {
        let mut claims = app.claims("alice");
        for (name, value) in changes {
            claims[*name] = value.clone();
        }
        app.sign_claims(&claims)
    };
    let century = now + 100 * 365 * 24 * 3600;
    expect_rejected(&app, &with(&[("exp", json!(century))]), "a 100-year token").await;
    expect_rejected(
        &app,
        &with(&[("iat", json!(now - 60)), ("exp", json!(now + 12 * 3600))]),
        "12 hours and a minute",
    )
    .await;
    expect_rejected(
        &app,
        &with(&[("iat", json!(now + 3600))]),
        "iat an hour ahead",
    )
    .await;
    let mut no_iat = app.claims("alice");
    no_iat.as_object_mut().map(|c| c.remove("iat"));
    expect_rejected(&app, &app.sign_claims(&no_iat), "no iat").await;
    // Within bounds: exactly 12 hours, and an iat a few seconds ahead (within the leeway).
    let ok = app
        .get("/v1/me", Some(&with(&[("exp", json!(now + 12 * 3600))])))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let ok = app
        .get("/v1/me", Some(&with(&[("iat", json!(now + 5))])))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // An issuer's own maximum.
    let key = ed_key("s1");
    let pem = key.pem();
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |c| {
                c.auth.issuers.push(IssuerConfig {
                    issuer: OIDC_ISSUER.to_owned(),
                    audience: "cellule-api".to_owned(),
                    algorithms: vec![Algorithm::EdDSA],
                    jwks_url: None,
                    public_keys: vec![StaticKey {
                        kid: Some("s1".to_owned()),
                        pem,
                    }],
                    subject_prefix: "kc:".to_owned(),
                    max_token_lifetime: Some(std::time::Duration::from_secs(3600)),
                    web: None,
                });
            }),
            ..Options::default()
        },
    )
    .await;
    let mut long = oidc_claims("u-1");
    long["exp"] = json!(now + 2 * 3600);
    expect_rejected(&app, &key.sign(&long), "two hours from a one-hour issuer").await;
    assert_eq!(
        app.get("/v1/me", Some(&key.sign(&oidc_claims("u-1"))))
            .await
            .status,
        200
    );
}

/// Beside an OpenID Connect issuer, the development issuer is off unless turned on; turned
/// on, it never signs for a subject of the OpenID Connect issuer's namespace.
async fn the_dev_issuer_never_acts_as_an_oidc_user(backend: Backend) {
    let key = ed_key("s1");
    let oidc = |pem: String| IssuerConfig {
        issuer: OIDC_ISSUER.to_owned(),
        audience: "cellule-api".to_owned(),
        algorithms: vec![Algorithm::EdDSA],
        jwks_url: None,
        public_keys: vec![StaticKey {
            kid: Some("s1".to_owned()),
            pem,
        }],
        subject_prefix: "kc:".to_owned(),
        max_token_lifetime: None,
        web: None,
    };
    let pem = key.pem();
    let off = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |c| c.auth.issuers.push(oidc(pem))),
            ..Options::default()
        },
    )
    .await;
    expect_rejected(&off, &off.token("alice"), "dev issuer off by default").await;
    assert_eq!(
        off.get("/v1/me", Some(&key.sign(&oidc_claims("alice"))))
            .await
            .body["subject"],
        "kc:alice"
    );

    let pem = key.pem();
    let on = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |c| {
                c.auth.issuers.push(oidc(pem));
                c.auth.dev_issuer.enabled = Some(true);
            }),
            ..Options::default()
        },
    )
    .await;
    on.create_cellule("perpignan").await;
    on.add_member(
        "perpignan",
        "kc:alice",
        json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM"}),
    )
    .await;
    expect_rejected(
        &on,
        &on.token("kc:alice"),
        "a dev token for an OIDC subject",
    )
    .await;
    let me = on
        .get("/v1/me", Some(&key.sign(&oidc_claims("alice"))))
        .await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["subject"], "kc:alice");
    let dev = on.get("/v1/me", Some(&on.token("alice"))).await;
    assert_eq!(
        dev.status, 200,
        "other dev subjects still work: {}",
        dev.text
    );
}

backend_tests!(
    token_lifetimes_are_bounded,
    the_dev_issuer_never_acts_as_an_oidc_user,
    valid_token_is_accepted,
    token_attacks_are_refused,
    leeway_tolerates_small_skew_only,
    jwks_issuer_keys_by_kid_with_paced_refresh,
    static_key_issuer,
);
