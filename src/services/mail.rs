//! How a message of the outbox leaves (docs/notifications.md, "Delivery"): the MIME message
//! (text and HTML alternatives, the `.ics` as a `text/calendar` part) and the transports
//! `none`, `file` and `smtp` (lettre, over rustls).
//!
//! Nothing here logs or returns what a message says or where it goes: a failure is a short
//! class (`connection refused`, `timeout`, `rejected (550)`…), never the server's reply text,
//! which may echo the message.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, MailTransport, SmtpSecurity};
use crate::storage::outbox::ClaimedMessage;

/// Why a message did not leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}")]
pub struct SendError {
    /// A short class of the failure, kept as the message's `last_error`.
    pub class: String,
    /// Retrying cannot help (a refused address, a 5xx reply): the message is left `failed`.
    pub permanent: bool,
}

impl SendError {
    fn transient(class: impl Into<String>) -> Self {
        Self {
            class: class.into(),
            permanent: false,
        }
    }

    fn permanent(class: impl Into<String>) -> Self {
        Self {
            class: class.into(),
            permanent: true,
        }
    }
}

/// The configured way out.
pub enum Mailer {
    /// Nothing is sent (messages stay `pending`).
    None,
    /// One `<id>.eml` per message in a folder.
    File { dir: PathBuf, from: Mailbox },
    /// An SMTP relay.
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
        /// The longest a whole send may take (connection, TLS, commands, data).
        deadline: Duration,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mailer::None => "Mailer::None",
            Mailer::File { .. } => "Mailer::File",
            Mailer::Smtp { .. } => "Mailer::Smtp",
        })
    }
}

/// Why the mail settings cannot be used (one line).
#[derive(Debug, thiserror::Error)]
#[error("mail: {0}")]
pub struct MailSetupError(String);

impl Mailer {
    /// The transport `config` describes (already validated by `Config::validate`).
    pub fn from_config(config: &MailConfig) -> Result<Self, MailSetupError> {
        let setup = |m: String| MailSetupError(m);
        let from = || -> Result<Mailbox, MailSetupError> {
            config
                .from
                .as_deref()
                .unwrap_or_default()
                .trim()
                .parse::<Mailbox>()
                .map_err(|_| setup("mail.from is not an e-mail address".into()))
        };
        match config.transport {
            MailTransport::None => Ok(Mailer::None),
            MailTransport::File => {
                let dir = config.dir.clone().ok_or_else(|| {
                    setup("mail.dir is required with transport = \"file\"".into())
                })?;
                crate::fsutil::create_private_dir(&dir)
                    .map_err(|e| setup(format!("mail.dir {}: {e}", dir.display())))?;
                Ok(Mailer::File { dir, from: from()? })
            }
            MailTransport::Smtp => {
                let smtp = &config.smtp;
                let host = smtp.host.as_deref().unwrap_or_default().trim();
                let from = from()?;
                let builder = match smtp.security {
                    SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
                    SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
                    SmtpSecurity::None => {
                        if !crate::config::is_loopback_host(host) {
                            return Err(setup(format!(
                                "mail.smtp.security = \"none\" is allowed only towards a loopback address, not {host}"
                            )));
                        }
                        Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host))
                    }
                }
                .map_err(|_| setup(format!("mail.smtp.host {host} cannot be used for TLS")))?;
                let hello = smtp
                    .hello_name
                    .clone()
                    .unwrap_or_else(|| from.email.domain().to_owned());
                let mut builder = builder
                    .port(smtp.port())
                    .timeout(Some(smtp.timeout))
                    .hello_name(ClientId::Domain(hello));
                if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
                    builder = builder
                        .credentials(Credentials::new(user.clone(), password.expose().to_owned()));
                }
                Ok(Mailer::Smtp {
                    transport: Box::new(builder.build()),
                    from,
                    // Connection, greeting, EHLO, STARTTLS, authentication, envelope, data:
                    // each bounded by the timeout, the whole by a few of them.
                    deadline: smtp.timeout * 4,
                })
            }
        }
    }

    /// Whether this transport sends anything (`none` does not: no worker runs).
    pub fn sends(&self) -> bool {
        !matches!(self, Mailer::None)
    }

    /// The longest one send may take.
    pub fn deadline(&self) -> Duration {
        match self {
            Mailer::None | Mailer::File { .. } => Duration::from_secs(30),
            Mailer::Smtp { deadline, .. } => *deadline,
        }
    }

    /// Sends one message. `Ok` once the server accepted it (or its file is written).
    pub async fn send(&self, m: &ClaimedMessage, date: SystemTime) -> Result<(), SendError> {
        match self {
            Mailer::None => Err(SendError::transient("no transport configured")),
            Mailer::File { dir, from } => {
                let message = build(m, from, date)?;
                write_eml(dir, &m.id, &message.formatted())
                    .await
                    .map_err(|e| SendError::transient(format!("file not written ({})", e.kind())))
            }
            Mailer::Smtp {
                transport, from, ..
            } => {
                let message = build(m, from, date)?;
                transport.send(message).await.map(|_| ()).map_err(classify)
            }
        }
    }
}

/// The MIME message of `m`: `multipart/alternative` of the text, the HTML and, when the
/// message has one, the iCalendar invitation or cancellation (`text/calendar; method=…`).
pub fn build(m: &ClaimedMessage, from: &Mailbox, date: SystemTime) -> Result<Message, SendError> {
    let to: Mailbox = m
        .recipient
        .trim()
        .parse()
        .map_err(|_| SendError::permanent("invalid recipient address"))?;
    let mut parts = MultiPart::alternative()
        .singlepart(SinglePart::plain(m.body_text.clone()))
        .singlepart(SinglePart::html(m.body_html.clone()));
    if let Some(ics) = &m.ics {
        let method = calendar_method(ics);
        let content_type =
            ContentType::parse(&format!("text/calendar; charset=utf-8; method={method}"))
                .map_err(|_| SendError::permanent("invalid calendar part"))?;
        parts = parts.singlepart(SinglePart::builder().header(content_type).body(ics.clone()));
    }
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(m.subject.clone())
        .date(date)
        .message_id(Some(format!("<{}@{}>", m.id, from.email.domain())))
        .multipart(parts)
        .map_err(|_| SendError::permanent("message not built"))
}

/// The `METHOD` of an iCalendar text (`REQUEST` unless it says `CANCEL`).
fn calendar_method(ics: &str) -> &'static str {
    let cancel = ics.lines().any(|l| {
        l.trim_end()
            .strip_prefix("METHOD:")
            .is_some_and(|m| m.eq_ignore_ascii_case("CANCEL"))
    });
    if cancel { "CANCEL" } else { "REQUEST" }
}

/// A short class of an SMTP failure, without the server's text.
fn classify(e: lettre::transport::smtp::Error) -> SendError {
    if let Some(code) = e.status() {
        let code = code.to_string();
        return if e.is_permanent() {
            SendError::permanent(format!("rejected ({code})"))
        } else {
            SendError::transient(format!("deferred ({code})"))
        };
    }
    if e.is_timeout() {
        return SendError::transient("timeout");
    }
    if e.is_tls() {
        return SendError::transient("TLS failure");
    }
    let mut source = std::error::Error::source(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return SendError::transient(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    "connection reset".to_owned()
                }
                std::io::ErrorKind::TimedOut => "timeout".to_owned(),
                kind => format!("network error ({kind})"),
            });
        }
        source = err.source();
    }
    SendError::transient(if e.is_response() {
        "unreadable server reply"
    } else {
        "connection failed"
    })
}

/// Writes `<dir>/<id>.eml` whole or not at all: a private temporary file, synced, renamed.
async fn write_eml(dir: &Path, id: &str, bytes: &[u8]) -> std::io::Result<()> {
    let (dir, id, bytes) = (dir.to_path_buf(), id.to_owned(), bytes.to_vec());
    tokio::task::spawn_blocking(move || {
        let tmp = dir.join(format!(".{id}.eml.tmp"));
        let _ = std::fs::remove_file(&tmp);
        crate::fsutil::create_private_file(&tmp, &bytes)?;
        std::fs::rename(&tmp, dir.join(format!("{id}.eml")))?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ics: Option<&str>) -> ClaimedMessage {
        ClaimedMessage {
            id: "0190-abc".into(),
            cellule: "perpignan".into(),
            kind: "invitation".into(),
            recipient_org: "CMP".into(),
            recipient: "ana@cmp.example".into(),
            subject: "Séance du 12 mars".into(),
            body_text: "Bonjour,\nla séance a lieu.".into(),
            body_html: "<p>Bonjour, la séance a lieu.</p>".into(),
            ics: ics.map(str::to_owned),
            case_refs: ",PER-2025-001,".into(),
            created_at: chrono::Utc::now(),
            attempts: 0,
        }
    }

    #[test]
    fn the_message_has_its_parts_and_id() {
        let from: Mailbox = "Cellule <cellule@example.fr>".parse().expect("from");
        let ics = "BEGIN:VCALENDAR\r\nMETHOD:CANCEL\r\nEND:VCALENDAR\r\n";
        let m = build(&message(Some(ics)), &from, SystemTime::now()).expect("message");
        let text = String::from_utf8(m.formatted()).expect("utf-8");
        assert!(text.contains("Message-ID: <0190-abc@example.fr>"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("method=CANCEL"), "{text}");
        assert!(build(&message(None), &from, SystemTime::now()).is_ok());
        let mut bad = message(None);
        bad.recipient = "not an address".into();
        let e = build(&bad, &from, SystemTime::now()).expect_err("refused");
        assert!(e.permanent);
    }

    #[test]
    fn the_calendar_method_is_read() {
        assert_eq!(calendar_method("METHOD:REQUEST\r\n"), "REQUEST");
        assert_eq!(
            calendar_method("BEGIN:VCALENDAR\nMETHOD:CANCEL\n"),
            "CANCEL"
        );
        assert_eq!(calendar_method("BEGIN:VCALENDAR\n"), "REQUEST");
    }
}
