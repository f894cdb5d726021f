//! Configuration checks.

use super::*;

#[test]
fn database_url_debug_hides_password() {
    let url = DatabaseUrl::new("postgres://app:s3cr3t-pw@db.example:5432/cellule?sslmode=require");
    let shown = format!("{url:?}");
    assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    assert!(shown.contains("db.example"), "{shown}");
    let config = Config {
        database: Some(url),
        ..Config::default()
    };
    assert!(!format!("{config:?}").contains("s3cr3t-pw"));
}

#[test]
fn leeway_above_sixty_seconds_is_refused() {
    let mut config = Config::default();
    config.auth.leeway_seconds = 61;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("leeway"), "{err}");
}

#[test]
fn the_deployment_example_is_valid() {
    let config: Config = Figment::new()
        .merge(Toml::string(include_str!(
            "../../deploy/cellule.example.toml"
        )))
        .extract()
        .expect("deploy/cellule.example.toml parses");
    config
        .validate()
        .expect("deploy/cellule.example.toml is valid");
    assert!(!config.auth.dev_issuer_enabled());
    assert_eq!(config.auth.issuers.len(), 2);
}

#[test]
fn the_dev_issuer_is_off_beside_an_oidc_issuer_unless_turned_on() {
    let mut config = Config::default();
    assert!(config.auth.dev_issuer_enabled());
    config.auth.issuers.push(IssuerConfig {
        issuer: "https://idp".into(),
        audience: "cellule".into(),
        algorithms: vec![Algorithm::EdDSA],
        jwks_url: Some("https://idp/jwks".parse().unwrap()),
        public_keys: vec![],
        subject_prefix: String::new(),
        max_token_lifetime: None,
        web: None,
    });
    assert!(!config.auth.dev_issuer_enabled());
    config
        .validate()
        .expect("valid without the development issuer");
    config.auth.dev_issuer.enabled = Some(true);
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("subject_prefix"), "{err}");
    config.auth.issuers[0].subject_prefix = "kc:".into();
    config.validate().expect("valid with a prefix");
    config.auth.dev_issuer.max_ttl = Duration::from_secs(13 * 3600);
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("max_ttl"), "{err}");
}

#[test]
fn two_issuers_never_share_a_subject_space() {
    let issuer = |name: &str, prefix: &str| IssuerConfig {
        issuer: format!("https://{name}"),
        audience: "cellule".into(),
        algorithms: vec![Algorithm::EdDSA],
        jwks_url: Some(format!("https://{name}/jwks").parse().unwrap()),
        public_keys: vec![],
        subject_prefix: prefix.into(),
        max_token_lifetime: None,
        web: None,
    };
    let mut config = Config::default();
    config.auth.issuers = vec![issuer("kc", "kc:"), issuer("psc", "psc:")];
    config.validate().expect("distinct prefixes");
    for (first, second) in [("", "psc:"), ("kc:", ""), ("kc:", "kc:"), ("kc:", "kc:x")] {
        config.auth.issuers = vec![issuer("kc", first), issuer("psc", second)];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("overlaps"), "{first:?}/{second:?}: {err}");
    }
}

#[test]
fn sqlite_files_of_urls() {
    let file = |u: &str| DatabaseUrl::new(u).sqlite_file();
    assert_eq!(
        file("sqlite://d/cellule.db?mode=rwc"),
        Some(PathBuf::from("d/cellule.db"))
    );
    assert_eq!(file("sqlite:/abs/x.db"), Some(PathBuf::from("/abs/x.db")));
    assert_eq!(file("sqlite::memory:"), None);
    assert_eq!(file("postgres://h/db"), None);
}

#[test]
fn unknown_database_scheme_is_refused() {
    let config = Config {
        database: Some(DatabaseUrl::new("mysql://x")),
        ..Config::default()
    };
    assert!(config.validate().is_err());
}

#[test]
fn mail_settings_are_checked() {
    let mut config = Config::default();
    assert_eq!(config.mail.transport, MailTransport::None);
    assert_eq!(config.mail_base_url().as_str(), "http://127.0.0.1:8080/");
    config.mail.transport = MailTransport::File;
    let err = |c: &Config| c.validate().expect_err("refused").to_string();
    assert!(err(&config).contains("mail.from is required"));
    config.mail.from = Some("not an address".into());
    assert!(err(&config).contains("mail.from is not an e-mail address"));
    config.mail.from = Some("Cellule <cellule@example.fr>".into());
    assert!(err(&config).contains("mail.dir is required"));
    config.mail.dir = Some("mail".into());
    config.validate().expect("file transport");
    config.mail.transport = MailTransport::Smtp;
    assert!(err(&config).contains("mail.smtp.host is required"));
    config.mail.smtp.host = Some("smtp.example.fr".into());
    config.validate().expect("STARTTLS by default");
    assert_eq!(config.mail.smtp.port(), 587);
    config.mail.smtp.security = SmtpSecurity::None;
    let e = err(&config);
    assert!(e.contains("loopback") && e.lines().count() == 1, "{e}");
    for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
        config.mail.smtp.host = Some(host.into());
        config.validate().expect("loopback without TLS");
    }
    config.mail.smtp.username = Some("cellule".into());
    assert!(err(&config).contains("go together"));
    config.mail.smtp.password = Some(SecretText::new("s3cret"));
    config.validate().expect("credentials");
    assert!(!format!("{config:?}").contains("s3cret"));
    config.mail.max_attempts = 0;
    assert!(err(&config).contains("mail.max_attempts"));
}
