//! Test harness: a real server on a loopback port, a real database (SQLite file or a fresh
//! PostgreSQL database), real keys, real tokens.
//!
//! PostgreSQL tests use `CELLULE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) to create one database per test. When PostgreSQL
//! is not reachable they fail: they never skip.

use std::sync::Arc;

use cellule::app::Application;
use cellule::clock::{Clock, truncate_micros};
use cellule::config::{Config, DatabaseUrl};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

pub const ADMIN: &str = "admin-ops";

pub fn postgres_base_url() -> String {
    std::env::var("CELLULE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh PostgreSQL database, dropped when this value is dropped.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let base = postgres_base_url();
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is required for the postgres tests and is not reachable at {base}: {e}")
        });
        let name = format!("cellule_t_{}", uuid::Uuid::new_v4().simple());
        // Identifiers cannot be bound as parameters; `name` is generated above, never input.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let mut url = url::Url::parse(&base).expect("CELLULE_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Self {
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let base = postgres_base_url();
        let name = self.name.clone();
        // A dedicated thread and runtime: Drop cannot await, and may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The system clock moved forward by an offset a test sets (to hold a meeting on its day), so
/// that time still passes for everything else.
#[derive(Debug, Default)]
pub struct TravelClock(std::sync::Mutex<chrono::Duration>);

impl TravelClock {
    /// Moves "now" to `at` (never back).
    pub fn travel_to(&self, at: chrono::DateTime<chrono::Utc>) {
        let mut offset = self.0.lock().expect("clock");
        let now = chrono::Utc::now() + *offset;
        if at > now {
            *offset += at - now;
        }
    }
}

impl Clock for TravelClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let offset = *self.0.lock().expect("clock");
        truncate_micros(chrono::Utc::now() + offset)
    }
}

pub struct TestApp {
    /// The app's clock when the test did not bring its own.
    pub travel: Option<Arc<TravelClock>>,
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub data_dir: tempfile::TempDir,
    pub database_url: String,
    pub state: cellule::services::AppState,
    dev_key: EncodingKey,
    dev_kid: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _pg: Option<PgDatabase>,
}

/// Rewrites the fresh database's URL (e.g. to go through a relay).
pub type UrlRewrite = Box<dyn FnOnce(&str) -> String + Send>;

/// Options for [`spawn_app_with`].
pub struct Options {
    pub customize: Box<dyn FnOnce(&mut Config) + Send>,
    /// Default: a [`TravelClock`] at the system's time.
    pub clock: Arc<dyn Clock>,
    /// The default clock, to move it.
    pub travel: Option<Arc<TravelClock>>,
    /// Database URL to use instead of a fresh database (the fresh one still gets created, so
    /// that `TestApp::database_url` names it).
    pub database_override: Option<UrlRewrite>,
}

impl Default for Options {
    fn default() -> Self {
        let travel = Arc::new(TravelClock::default());
        Self {
            customize: Box::new(|_| {}),
            clock: travel.clone(),
            travel: Some(travel),
            database_override: None,
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

/// A fresh temporary folder that only its owner can read (0700), as the service wants its data
/// directory.
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("tempdir")
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    let data_dir = private_tempdir();
    let pg = match backend {
        Backend::Postgres => Some(PgDatabase::create().await),
        Backend::Sqlite => None,
    };
    let database_url = match &pg {
        Some(pg) => pg.url.clone(),
        None => format!("sqlite://{}", data_dir.path().join("cellule.db").display()),
    };
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        bind: "127.0.0.1:0".parse().expect("addr"),
        admins: vec![ADMIN.to_owned()],
        ..Config::default()
    };
    // Tests that are not about rate limits are not throttled (those that are set their own).
    let unlimited = cellule::config::Budget {
        per_minute: 1_000_000,
        burst: 1_000_000,
    };
    config.rate_limit.subject = unlimited;
    config.rate_limit.address = unlimited;
    config.rate_limit.denials = unlimited;
    config.database = Some(DatabaseUrl::new(match options.database_override {
        Some(f) => f(&database_url),
        None => database_url.clone(),
    }));
    (options.customize)(&mut config);
    // The default travel clock, unless the test brought its own clock.
    let travel = options
        .travel
        .filter(|t| std::ptr::addr_eq(Arc::as_ptr(t), Arc::as_ptr(&options.clock)));
    let app = Application::build_with_clock(config.clone(), options.clock)
        .await
        .unwrap_or_else(|e| panic!("application failed to start: {e}"));
    let addr = app.local_addr().expect("local addr");
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));

    // The development issuer's key (created here when the server does not use it, so that
    // its tokens can be shown refused).
    let dev = cellule::auth::DevIssuer::load_or_create(data_dir.path(), &config.auth.dev_issuer)
        .expect("dev");
    let pkcs8 =
        std::fs::read(data_dir.path().join(cellule::auth::dev_issuer::KEY_FILE)).expect("dev key");
    TestApp {
        travel,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().build().expect("client"),
        config,
        data_dir,
        database_url,
        state,
        dev_key: EncodingKey::from_ed_der(&pkcs8),
        dev_kid: dev.kid().to_owned(),
        shutdown: Some(tx),
        server: Some(server),
        _pg: pg,
    }
}

/// A decoded answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the status and that the body is a problem document with that status.
    pub fn assert_problem(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        assert!(
            self.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("/problems/"))
        );
        assert!(self.body["title"].is_string());
        self
    }

    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// Moves the app's clock forward to `at` (the default clock only).
    pub fn travel_to(&self, at: chrono::DateTime<chrono::Utc>) {
        self.travel
            .as_ref()
            .expect("this test brought its own clock: set it instead")
            .travel_to(at);
    }
}

impl TestApp {
    /// A token from the development issuer for `sub`, valid 15 minutes.
    pub fn token(&self, sub: &str) -> String {
        self.sign_claims(&self.claims(sub))
    }

    /// Standard claims for `sub` from the development issuer.
    pub fn claims(&self, sub: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.config.auth.dev_issuer.issuer,
            "aud": self.config.auth.dev_issuer.audience,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + 900,
        })
    }

    /// Signs arbitrary claims with the development issuer's key and kid.
    pub fn sign_claims(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.dev_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.dev_key).expect("sign")
    }

    pub fn dev_kid(&self) -> &str {
        &self.dev_kid
    }

    pub fn dev_public_key(&self) -> Vec<u8> {
        cellule::auth::DevIssuer::load_or_create(self.data_dir.path(), &self.config.auth.dev_issuer)
            .expect("dev issuer")
            .public_key()
            .to_vec()
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req.send().await.expect("request sent")).await
    }

    /// Counts the rows of a `SELECT count(*) …` whose one parameter (`$1`) is `value`, straight
    /// from the app's database (what the API cannot show, such as rows left behind).
    pub async fn count_rows(&self, query: &str, value: &str) -> i64 {
        if self.database_url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(&self.database_url)
                .await
                .expect("sqlite connection");
            sqlx::query_scalar(&query.replace("$1", "?1"))
                .bind(value)
                .fetch_one(&mut c)
                .await
                .expect("count")
        } else {
            let mut c = sqlx::PgConnection::connect(&self.database_url)
                .await
                .expect("postgres connection");
            sqlx::query_scalar(query)
                .bind(value)
                .fetch_one(&mut c)
                .await
                .expect("count")
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn as_admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let token = self.token(ADMIN);
        self.request(method, path, Some(&token), body).await
    }

    /// Creates a cellule through the admin API and checks it worked.
    pub async fn create_cellule(&self, slug: &str) {
        let a = self
            .as_admin(
                Method::POST,
                "/v1/cellules",
                Some(json!({"slug": slug, "name": format!("Cellule {slug}")})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    }

    /// Puts a membership through the admin API and checks it worked.
    pub async fn add_member(&self, cellule: &str, sub: &str, body: Value) {
        let a = self
            .as_admin(
                Method::PUT,
                &format!("/v1/cellules/{cellule}/members/{sub}"),
                Some(body),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text);
    }
}

impl TestApp {
    /// Stops the server as SIGTERM does (draining, signing heads, ending the audit stream) and
    /// waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let done = server.await.expect("the server task");
            done.expect("the server stops cleanly");
        }
    }
}

impl TestApp {
    /// Stops the server as [`TestApp::stop`] does and hands back its data folder, whose files
    /// the caller may then look at.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        let data = std::mem::replace(&mut self.data_dir, private_tempdir());
        self.stop().await;
        data
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

/// Members of the standard test cellule `perpignan`.
pub const COORD: &str = "coord-1";
pub const PSY: &str = "psy-1";
pub const CITY: &str = "city-1";
pub const GUEST: &str = "guest-1";
pub const REF1: &str = "ref-1";
pub const REF2: &str = "ref-2";
pub const AUDITOR: &str = "dpo-1";

impl TestApp {
    /// Creates `perpignan` with a coordinator (city), a psychiatry member (CMP 66G03), a city
    /// member (CCAS Perpignan), a guest (EMPP), two referrers and an auditor. Members and the
    /// coordinator accept the charter.
    pub async fn standard_cellule(&self) {
        self.create_cellule("perpignan").await;
        for (sub, body) in [
            (
                COORD,
                json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM Perpignan"}),
            ),
            (
                PSY,
                json!({"role": "member", "sphere": "psychiatry", "organisation": "CMP 66G03"}),
            ),
            (
                CITY,
                json!({"role": "member", "sphere": "city", "organisation": "CCAS Perpignan"}),
            ),
            (
                GUEST,
                json!({"role": "member", "sphere": "psychiatry", "organisation": "EMPP", "guest": true}),
            ),
            (
                REF1,
                json!({"role": "referrer", "organisation": "Bailleur Roussillon"}),
            ),
            (
                REF2,
                json!({"role": "referrer", "sphere": "city", "organisation": "Médiation Perpignan"}),
            ),
            (AUDITOR, json!({"role": "auditor"})),
        ] {
            self.add_member("perpignan", sub, body).await;
        }
        for sub in [COORD, PSY, CITY, GUEST] {
            self.accept_charter(sub).await;
        }
    }

    pub async fn accept_charter(&self, sub: &str) {
        let token = self.token(sub);
        let charter = self
            .get("/v1/cellules/perpignan/charter", Some(&token))
            .await;
        let a = self
            .request(
                Method::POST,
                "/v1/cellules/perpignan/charter/accept",
                Some(&token),
                Some(json!({"version": charter.body["version"]})),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }

    /// Submits `body` as `sub` and returns the answer.
    pub async fn refer(&self, sub: &str, body: &Value) -> Answer {
        self.request(
            Method::POST,
            "/v1/cellules/perpignan/referrals",
            Some(&self.token(sub)),
            Some(body.clone()),
        )
        .await
    }

    /// Submits a valid referral as `sub`; returns (id, reference).
    pub async fn refer_ok(&self, sub: &str, situation: &str) -> (String, String) {
        let a = self.refer(sub, &referral(situation)).await;
        assert_eq!(a.status, 201, "{}", a.text);
        (
            a.body["id"].as_str().unwrap_or_default().to_owned(),
            a.body["reference"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Asks for a transition as `sub`.
    pub async fn transition(&self, sub: &str, id: &str, body: Value) -> Answer {
        let path = format!("/v1/cellules/perpignan/cases/{id}/transitions");
        self.request(Method::POST, &path, Some(&self.token(sub)), Some(body))
            .await
    }

    /// Moves a case as the coordinator and checks it worked.
    pub async fn move_case(&self, id: &str, body: Value) {
        let a = self
            .request(
                Method::POST,
                &format!("/v1/cellules/perpignan/cases/{id}/transitions"),
                Some(&self.token(COORD)),
                Some(body),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
}

/// A valid referral body with the given situation text.
pub fn referral(situation: &str) -> Value {
    json!({
        "age_band": "35-44", "gender": "m", "commune": "66136", "sector": "66G03",
        "needs": ["housing", "care_access"], "urgency": "priority",
        "consent": {"status": "not_informed", "justification": "personne injoignable depuis juin"},
        "referring_org": "CCAS Perpignan",
        "situation": situation,
        "expectations": "orientation vers le CMP et maintien dans le logement"
    })
}
