//! The web tests' harness: the application on a known loopback port (its base URL is where the
//! OpenID provider sends browsers back), a real OpenID provider (`tests/oidc/provider.js`, the
//! certified `oidc-provider` package run by Node.js, one per test binary), Debian's Chromium driven
//! over WebDriver (`chromedriver`, one per test binary, one browser session per test), axe-core
//! run in each page, and screenshots under `target/`. Anything missing fails loudly: these tests
//! never skip.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cellule::config::{IssuerConfig, WebClientConfig};
use serde_json::{Value, json};

use crate::helpers::{ADMIN, AUDITOR, Backend, Options, REF1, TestApp, spawn_app_with};

pub const PROVIDER_LABEL: &str = "Fournisseur de test";

/// The test provider's subject prefix: its users are `op:<login>`, never one of the
/// development issuer's subjects (which the harness's API calls use).
pub const OP: &str = "op:";

/// The subject of the provider's user `login`.
pub fn op(login: &str) -> String {
    format!("{OP}{login}")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

fn require(program: &str, what: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{program} is required by the web tests ({what}) and is not installed: .ci/run installs it"
    );
}

/// `tests/oidc/node_modules`, installed from the lock file when missing.
fn node_modules() -> PathBuf {
    require("node", "the OpenID provider and axe-core run on Node.js");
    let dir = oidc_dir();
    if !dir.join("node_modules/oidc-provider").is_dir()
        || !dir.join("node_modules/axe-core").is_dir()
    {
        require("npm", "installs the pinned test packages");
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm ci runs");
        assert!(status.success(), "npm ci in tests/oidc failed");
    }
    dir.join("node_modules")
}

/// A process that ends when the test binary does: its stdin is a pipe this process holds, and
/// the wrapper kills the whole process group when the pipe closes.
fn watched(command: &str, dir: &Path, stdout: Stdio) -> Child {
    Command::new("setsid")
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "{command} & child=$!; cat >/dev/null; kill -TERM -- -$$ 2>/dev/null; kill $child 2>/dev/null"
        ))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"))
}

struct Provider {
    issuer: String,
    _process: Child,
    /// Kept open: the provider may write to it.
    _stdout: BufReader<std::process::ChildStdout>,
}

static PROVIDER: OnceLock<Provider> = OnceLock::new();

/// The issuer URL of the test binary's OpenID provider (started on first use).
pub fn provider() -> &'static str {
    &PROVIDER
        .get_or_init(|| {
            node_modules();
            let mut process = watched("exec node provider.js", &oidc_dir(), Stdio::piped());
            let mut stdout = BufReader::new(process.stdout.take().expect("provider stdout"));
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("the OpenID provider prints its issuer");
            let ready: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("the OpenID provider did not start: {line}"));
            Provider {
                issuer: ready["issuer"].as_str().expect("issuer").to_owned(),
                _process: process,
                _stdout: stdout,
            }
        })
        .issuer
}

/// Registers a client for the application at `base` (Dynamic Client Registration).
pub async fn register_client(base: &str) -> (String, String) {
    let issuer = provider();
    let answer: Value = reqwest::Client::new()
        .post(format!("{issuer}/reg"))
        .json(&json!({
            "redirect_uris": [format!("{base}/connexion/retour")],
            "post_logout_redirect_uris": [format!("{base}/deconnecte")],
        }))
        .send()
        .await
        .expect("registration request")
        .json()
        .await
        .expect("registration answer");
    (
        answer["client_id"].as_str().expect("client_id").to_owned(),
        answer["client_secret"]
            .as_str()
            .expect("client_secret")
            .to_owned(),
    )
}

/// The application, with its base URL, signed-in with the test provider when `oidc`.
pub struct WebApp {
    pub app: TestApp,
    pub base: String,
}

/// Settings of [`web_app`].
pub struct Web {
    pub oidc: bool,
    pub customize: Box<dyn FnOnce(&mut cellule::config::Config) + Send>,
}

impl Default for Web {
    fn default() -> Self {
        Self {
            oidc: true,
            customize: Box::new(|_| {}),
        }
    }
}

impl WebApp {
    /// The API tests' cellule, and for the provider's users who sign in in these tests
    /// (`op:ref-1`, `op:auditor`) the same memberships as their development twins.
    pub async fn standard_cellule(&self) {
        self.app.standard_cellule().await;
        for (sub, body) in [
            (
                REF1,
                json!({"role": "referrer", "organisation": "Bailleur Roussillon"}),
            ),
            (AUDITOR, json!({"role": "auditor"})),
        ] {
            self.app.add_member("perpignan", &op(sub), body).await;
        }
    }
}

/// Starts the application on a fixed loopback port whose address is its `web.base_url`, with
/// the test provider as a sign-in issuer (subjects prefixed `op:`; `op:admin` is an
/// administrator) beside the development issuer, turned on explicitly for the harness.
pub async fn web_app(backend: Backend, web: Web) -> WebApp {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let issuer = if web.oidc {
        let (id, secret) = register_client(&base).await;
        Some(IssuerConfig {
            issuer: provider().to_owned(),
            audience: id.clone(),
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            jwks_url: Some(url::Url::parse(&format!("{}/jwks", provider())).expect("jwks url")),
            public_keys: vec![],
            subject_prefix: OP.to_owned(),
            max_token_lifetime: None,
            web: Some(WebClientConfig {
                client_id: id,
                client_secret: Some(cellule::config::SecretText::new(secret)),
                label: Some(PROVIDER_LABEL.to_owned()),
                scopes: vec!["email".into()],
            }),
        })
    } else {
        None
    };
    let base_url = url::Url::parse(&base).expect("base url");
    let customize = web.customize;
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |config| {
                config.bind = format!("127.0.0.1:{port}").parse().expect("bind");
                config.web.base_url = Some(base_url);
                if issuer.is_some() {
                    config.auth.dev_issuer.enabled = Some(true);
                    config.admins.push(op(ADMIN));
                }
                config.auth.issuers.extend(issuer);
                customize(config);
            }),
            ..Options::default()
        },
    )
    .await;
    WebApp { app, base }
}

/// The web application with only the development sign-in (no OpenID provider).
pub async fn dev_web_app(backend: Backend) -> WebApp {
    web_app(
        backend,
        Web {
            oidc: false,
            ..Web::default()
        },
    )
    .await
}

/// An HTTP client with a cookie jar, that does not follow redirects (a "browser" whose every
/// step the test sees).
pub fn browser_like() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `Location` of a redirect.
pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Signs in at the provider as `login` from its authorization URL; answers the redirect back
/// to the application (`…/connexion/retour?code=…&state=…`), not followed.
pub async fn provider_sign_in(client: &reqwest::Client, authorize: &str, login: &str) -> String {
    let mut url = authorize.to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the provider never sent back");
        if !url.starts_with(provider()) {
            return url;
        }
        let r = client.get(&url).send().await.expect("provider step");
        if r.status().is_redirection() {
            url = absolute(provider(), &location(&r));
            continue;
        }
        let page = r.text().await.expect("provider page");
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no login form at the provider: {page}"))
            .to_owned();
        let r = client
            .post(absolute(provider(), &action))
            .form(&[("login", login)])
            .send()
            .await
            .expect("provider login");
        assert!(r.status().is_redirection(), "login refused: {}", r.status());
        url = absolute(provider(), &location(&r));
    }
}

fn absolute(origin: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{origin}{location}")
    }
}

/// The value of `name` in a `Set-Cookie` of `r`.
pub fn set_cookie<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// The hidden CSRF token of a page.
pub fn csrf_of(page: &str) -> String {
    page.split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in the page"))
        .to_owned()
}

/// Signs in as `subject` through the development sign-in page; answers the session cookie's
/// value.
pub async fn dev_sign_in(client: &reqwest::Client, base: &str, subject: &str) -> String {
    let r = client
        .post(format!("{base}/connexion/dev"))
        .header(reqwest::header::ORIGIN, base)
        .form(&[("sujet", subject), ("suite", "/")])
        .send()
        .await
        .expect("dev sign-in");
    assert_eq!(r.status(), 303, "dev sign-in refused");
    set_cookie(&r, "cellule-session")
        .and_then(|c| c.split(';').next())
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("a session cookie")
}

/// Chromedriver, one per test binary, on a free port.
struct Driver {
    url: String,
    _process: Child,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

fn driver() -> &'static str {
    &DRIVER
        .get_or_init(|| {
            require(
                "chromium",
                "the browser of the journeys (Debian's chromium)",
            );
            require("chromedriver", "drives Chromium (Debian's chromium-driver)");
            require("setsid", "keeps the browser's processes together");
            let port = free_port();
            let process = watched(
                &format!("chromedriver --port={port} --allowed-ips=127.0.0.1 --log-level=SEVERE"),
                Path::new(env!("CARGO_MANIFEST_DIR")),
                Stdio::null(),
            );
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "chromedriver did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
            Driver {
                url,
                _process: process,
            }
        })
        .url
}

/// A headless Chromium session and its profile directory (removed when this is dropped).
pub struct Browser {
    pub client: fantoccini::Client,
    _profile: tempfile::TempDir,
}

impl std::ops::Deref for Browser {
    type Target = fantoccini::Client;

    fn deref(&self) -> &fantoccini::Client {
        &self.client
    }
}

/// A new headless Chromium session, with a fresh profile.
pub async fn browser() -> Browser {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1024",
                "--lang=fr-FR", format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = fantoccini::ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver())
        .await
        .unwrap_or_else(|e| panic!("no browser session from chromedriver: {e}"));
    Browser {
        client,
        _profile: profile,
    }
}

/// axe-core's source (`tests/oidc/node_modules/axe-core/axe.min.js`).
fn axe_source() -> &'static str {
    static AXE: OnceLock<String> = OnceLock::new();
    AXE.get_or_init(|| {
        std::fs::read_to_string(node_modules().join("axe-core/axe.min.js"))
            .expect("axe-core is installed")
    })
}

/// Runs axe-core (WCAG 2.0/2.1 A and AA rules) in the current page and fails on any serious
/// or critical violation; saves a screenshot as `target/tmp/web-screenshots/{name}.png`.
pub async fn check_page(b: &fantoccini::Client, name: &str) {
    let png = b.screenshot().await.expect("screenshot");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    b.execute(axe_source(), vec![]).await.expect("axe injected");
    let result = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
               .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))
               .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));",
            vec![],
        )
        .await
        .expect("axe ran");
    let serious: Vec<&Value> = result
        .as_array()
        .expect("violations")
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious") | Some("critical")))
        .collect();
    assert!(
        serious.is_empty(),
        "accessibility violations on {name}: {}",
        serde_json::to_string_pretty(&serious).unwrap_or_default()
    );
}
