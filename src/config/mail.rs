//! The `[mail]` section: how notifications leave the outbox (docs/notifications.md, "Delivery").

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, SecretText};

/// Where messages go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Nothing is sent: messages stay `pending` in the outbox (`cellule outbox list`).
    #[default]
    None,
    /// One `<id>.eml` file per message in `mail.dir` (to try it out).
    File,
    /// An SMTP relay (`mail.smtp`).
    Smtp,
}

impl MailTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            MailTransport::None => "none",
            MailTransport::File => "file",
            MailTransport::Smtp => "smtp",
        }
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with `STARTTLS`, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: refused unless the host is a loopback address.
    None,
}

/// Notifications by e-mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `none` (default), `file` or `smtp`.
    pub transport: MailTransport,
    /// The `From` address (`Cellule <cellule@example.fr>`); required by `file` and `smtp`.
    pub from: Option<String>,
    /// The folder of the `file` transport (created 0700).
    pub dir: Option<PathBuf>,
    pub smtp: SmtpConfig,
    /// Attempts before a message is left `failed` (retries wait 30 s, doubling up to 1 h).
    pub max_attempts: u32,
    /// How often the worker looks for messages due.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The web application's public address, for the links in messages
    /// ([`super::Config::mail_base_url`]): `web.base_url`, else `http://<bind>`, when unset.
    pub base_url: Option<url::Url>,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransport::None,
            from: None,
            dir: None,
            smtp: SmtpConfig::default(),
            max_attempts: 12,
            poll_interval: Duration::from_secs(5),
            base_url: None,
        }
    }
}

/// The SMTP relay. Username and password come from the configuration file or the environment
/// (`CELLULE_MAIL__SMTP__USERNAME`, `CELLULE_MAIL__SMTP__PASSWORD`) only.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: Option<String>,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<SecretText>,
    /// Bounds connecting, and each command of a send.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The name given in `EHLO` (default: the domain of `mail.from`).
    pub hello_name: Option<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            timeout: Duration::from_secs(30),
            hello_name: None,
        }
    }
}

/// The environment keys of the SMTP credentials, kept out of figment (which would read `123`
/// as a number) and read as written by [`SmtpConfig::read_env_credentials`].
pub(super) const CREDENTIAL_KEYS: &[&str] = &["MAIL.SMTP.USERNAME", "MAIL.SMTP.PASSWORD"];

impl SmtpConfig {
    /// `CELLULE_MAIL__SMTP__USERNAME` and `CELLULE_MAIL__SMTP__PASSWORD`, when set, over the
    /// file's values.
    pub(super) fn read_env_credentials(&mut self) {
        if let Ok(user) = std::env::var("CELLULE_MAIL__SMTP__USERNAME") {
            self.username = Some(user);
        }
        if let Ok(password) = std::env::var("CELLULE_MAIL__SMTP__PASSWORD") {
            self.password = Some(SecretText::new(password));
        }
    }

    /// The port in force.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        })
    }
}

impl super::Config {
    /// The web application's address for links in messages: `mail.base_url`, else
    /// [`super::Config::base_url`] (`web.base_url`, else `http://<bind>`).
    pub fn mail_base_url(&self) -> url::Url {
        self.mail
            .base_url
            .clone()
            .unwrap_or_else(|| self.base_url())
    }
}

/// Whether `host` names this machine: `localhost` or a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl MailConfig {
    /// Checks what types alone cannot express; each error is one line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("mail.{m}")));
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1");
        }
        if self.poll_interval.is_zero() {
            return invalid("poll_interval must be positive");
        }
        if let Some(url) = &self.base_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return invalid("base_url must be an http or https URL");
        }
        if self.transport == MailTransport::None {
            return Ok(());
        }
        match self.from.as_deref().map(str::trim) {
            None | Some("") => {
                return invalid(&format!(
                    "from is required with transport = \"{}\"",
                    self.transport.as_str()
                ));
            }
            Some(from) => {
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    return invalid(
                        "from is not an e-mail address (\"Name <address>\" or address)",
                    );
                }
            }
        }
        match self.transport {
            MailTransport::None => Ok(()),
            MailTransport::File => match &self.dir {
                Some(d) if !d.as_os_str().is_empty() => Ok(()),
                _ => invalid("dir is required with transport = \"file\""),
            },
            MailTransport::Smtp => {
                let smtp = &self.smtp;
                let host = match smtp.host.as_deref().map(str::trim) {
                    Some(h) if !h.is_empty() => h,
                    _ => return invalid("smtp.host is required with transport = \"smtp\""),
                };
                if smtp.security == SmtpSecurity::None && !is_loopback_host(host) {
                    return invalid(&format!(
                        "smtp.security = \"none\" is allowed only towards a loopback address, not {host}: use \"starttls\" or \"tls\""
                    ));
                }
                if smtp.timeout.is_zero() {
                    return invalid("smtp.timeout must be positive");
                }
                if smtp.username.is_some() != smtp.password.is_some() {
                    return invalid("smtp.username and smtp.password go together");
                }
                Ok(())
            }
        }
    }
}
