//! Which notices an event sends, to whom, saying what (docs/notifications.md). A notice says
//! that something happened and links to the page where a signed-in person sees it: never a
//! situation, a note, a decision text, an age band, a commune or a need; a case reference only to
//! someone who may see that case. The messages are attached to the event's audit entry
//! ([`crate::audit::Draft::notify`]) so that they are written to the outbox in its transaction.
//!
//! Recipients are the members of the cellule with a professional address (set by an
//! administrator, or the verified `email` of their last sign-in), minus the optional notices they
//! turned off; nothing goes to an address outside the cellule's memberships.

use chrono::{DateTime, Utc};

use super::AppState;
use crate::domain::Role;
use crate::domain::notice::{Message, NoticeKind};
use crate::domain::schedule::{IcsEvent, Parties, scheduling_message};
use crate::error::Error;
use crate::render::french;
use crate::render::notice::{self, Notice};
use crate::storage::{AgendaItemRecord, CaseRecord, SessionRecord, invited_names};

/// A member who receives notices.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub subject: String,
    pub role: Role,
    pub organisation: String,
    pub guest: bool,
    pub email: String,
    /// The optional notices they turned off.
    pub off: Vec<String>,
}

impl Recipient {
    fn wants(&self, kind: NoticeKind) -> bool {
        !kind.optional() || !self.off.iter().any(|k| k == kind.as_str())
    }
}

/// The members of `cellule` who have an address.
pub async fn recipients(state: &AppState, cellule: &str) -> Result<Vec<Recipient>, Error> {
    // One small query when nobody has an address (no notice to write): the common case on the
    // hot paths that may notify (a transition, a decision).
    let addresses = state.db.member_addresses(cellule).await?;
    if addresses.is_empty() {
        return Ok(Vec::new());
    }
    let slug = crate::domain::CelluleSlug::parse(cellule)
        .map_err(|e| Error::Internal(format!("cellule slug: {e}")))?;
    let members = state.db.list_members(&slug).await?;
    let off = state.db.opt_outs(cellule).await?;
    Ok(members
        .into_iter()
        .filter_map(|m| {
            let subject = m.subject.as_str().to_owned();
            let email = addresses
                .iter()
                .find(|(s, _)| *s == subject)
                .map(|(_, e)| e.clone())?;
            Some(Recipient {
                off: off
                    .iter()
                    .filter(|(s, _)| *s == subject)
                    .map(|(_, k)| k.clone())
                    .collect(),
                role: m.spec.role,
                organisation: m
                    .spec
                    .organisation
                    .map(|o| o.as_str().to_owned())
                    .unwrap_or_default(),
                guest: m.spec.guest,
                email,
                subject,
            })
        })
        .collect())
}

/// What a session's notices need to know of its cellule.
pub struct SessionContext<'a> {
    pub cellule: &'a str,
    pub cellule_name: &'a str,
    pub session: &'a SessionRecord,
    pub now: DateTime<Utc>,
}

/// The link base: the web application's public address (`mail.base_url`, else `web.base_url`).
pub(super) fn base_url(state: &AppState) -> String {
    state
        .config
        .mail_base_url()
        .as_str()
        .trim_end_matches('/')
        .to_owned()
}

/// The sending address (`mail.from`, its address part), the organizer of calendar invitations;
/// `no-reply@` the web application's host when none is configured.
fn sender(state: &AppState) -> String {
    if let Some(from) = &state.config.mail.from {
        let address = match (from.rfind('<'), from.rfind('>')) {
            (Some(open), Some(close)) if open < close => &from[open + 1..close],
            _ => from.as_str(),
        };
        return address.trim().to_owned();
    }
    let url = state.config.mail_base_url();
    format!("no-reply@{}", url.host_str().unwrap_or("localhost"))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn message(
    cellule: &str,
    r: &Recipient,
    kind: NoticeKind,
    n: &Notice,
    refs: Vec<String>,
    ics: Option<String>,
    now: DateTime<Utc>,
) -> Result<Message, Error> {
    let render = |e: askama::Error| Error::Internal(format!("notice template: {e}"));
    Ok(Message {
        id: uuid::Uuid::now_v7().to_string(),
        cellule: cellule.to_owned(),
        kind: kind.as_str().to_owned(),
        recipient_org: if r.organisation.is_empty() {
            r.role.as_str().to_owned()
        } else {
            r.organisation.clone()
        },
        recipient: r.email.clone(),
        subject: format!("[{}] {}", n.cellule_name, n.title),
        body_text: notice::text(n).map_err(render)?,
        body_html: notice::html(n).map_err(render)?,
        ics,
        case_refs: refs,
        created_at: now,
    })
}

fn notice(state: &AppState, cellule: &str, cellule_name: &str, title: String) -> Notice {
    let base = base_url(state);
    Notice {
        cellule_name: cellule_name.to_owned(),
        title,
        lines: Vec::new(),
        link: format!("{base}/c/{cellule}"),
        link_label: "Ouvrir la cellule".into(),
        preferences_link: format!("{base}/c/{cellule}"),
    }
}

/// The references of `rows` that `r` may see on a published agenda: every item for the
/// coordinator and the permanent members, a guest's invited (or routed) items only.
fn visible_refs(r: &Recipient, rows: &[AgendaItemRecord]) -> Vec<String> {
    rows.iter()
        .filter(|row| {
            !r.guest
                || row.routed_org.as_deref() == Some(r.organisation.as_str())
                || invited_names(&crate::services::review::agenda::invited_of(&row.proposal))
                    .contains(&r.organisation.as_str())
        })
        .map(|row| row.reference.clone())
        .collect()
}

/// The session's local start, in French (« jeudi 12 décembre 2030 à 14 h 00 »).
fn when(s: &SessionRecord) -> String {
    chrono::DateTime::parse_from_rfc3339(&s.local_start)
        .map(|t| french::date_time(t.naive_local()))
        .unwrap_or_else(|_| s.local_start.clone())
}

/// Invitations (at publication), updates (after an amendment) or cancellations, each with the
/// session's iCalendar request for its recipient, holding only the references they may see. A
/// guest with nothing to see is not invited.
pub async fn session_notices(
    state: &AppState,
    ctx: &SessionContext<'_>,
    rows: &[AgendaItemRecord],
    kind: NoticeKind,
) -> Result<Vec<Message>, Error> {
    let s = ctx.session;
    let cancelled = kind == NoticeKind::Cancellation;
    let title = match kind {
        NoticeKind::Invitation => format!("Invitation : séance du {}", when(s)),
        NoticeKind::AgendaUpdate => format!("Ordre du jour modifié : séance du {}", when(s)),
        NoticeKind::Reminder => format!("Rappel : séance demain, {}", when(s)),
        _ => format!("Séance annulée : {}", when(s)),
    };
    let starts_at = DateTime::parse_from_rfc3339(&s.local_start)
        .map_err(|e| Error::Internal(format!("stored session start: {e}")))?;
    // Every change of the event carries a higher sequence (RFC 5546): seconds since publication.
    let since = s
        .published_at
        .map_or(0, |p| (ctx.now - p).num_seconds().max(0));
    let sequence = u32::try_from(since).unwrap_or(u32::MAX - 1) + 1 + u32::from(cancelled);
    let from = sender(state);
    let mut out = Vec::new();
    for r in recipients(state, ctx.cellule).await? {
        if !matches!(r.role, Role::Member | Role::Coordinator) || !r.wants(kind) {
            continue;
        }
        let refs = visible_refs(&r, rows);
        if r.guest && refs.is_empty() {
            continue;
        }
        let mut n = notice(state, ctx.cellule, ctx.cellule_name, title.clone());
        n.lines.push(match kind {
            NoticeKind::Invitation => format!(
                "La cellule se réunit le {} ({}). L'invitation pour votre agenda est jointe.",
                when(s),
                s.location
            ),
            NoticeKind::AgendaUpdate => format!(
                "L'ordre du jour de la séance du {} a changé. L'invitation jointe remplace la précédente.",
                when(s)
            ),
            NoticeKind::Reminder => format!(
                "La cellule se réunit demain, le {} ({}).",
                when(s),
                s.location
            ),
            _ => format!(
                "La séance du {} est annulée. Les situations seront examinées à une prochaine séance.",
                when(s)
            ),
        });
        if !cancelled {
            n.lines.push(if refs.is_empty() {
                "Aucune situation que vous pouvez consulter n'est à l'ordre du jour.".into()
            } else {
                format!(
                    "Situations à l'ordre du jour que vous pouvez consulter : {}.",
                    refs.join(", ")
                )
            });
        }
        n.lines
            .push("Le détail est accessible après connexion.".into());
        n.link_label = "Voir la séance".into();
        let description = if refs.is_empty() || cancelled {
            String::new()
        } else {
            format!("Ordre du jour : {}", refs.join(", "))
        };
        let event = IcsEvent {
            uid: format!("{}@cellule", s.id),
            starts_at,
            duration_minutes: u32::try_from(s.duration_minutes).unwrap_or(120),
            summary: format!("Cellule cas complexes — {}", ctx.cellule_name),
            location: s.location.clone(),
            description,
            cancelled,
            sequence,
        };
        // A reminder adds nothing to the calendar the invitation already holds.
        let ics = (kind != NoticeKind::Reminder).then(|| {
            scheduling_message(
                ctx.cellule_name,
                &s.time_zone,
                &event,
                ctx.now,
                &Parties {
                    organizer: &from,
                    attendee: &r.email,
                },
            )
        });
        let refs = if cancelled { Vec::new() } else { refs };
        out.push(message(ctx.cellule, &r, kind, &n, refs, ics, ctx.now)?);
    }
    Ok(out)
}

/// « The minutes are available » to the members who may read them (a guest only if one of its
/// items was on the agenda); no reference.
pub async fn minutes_notices(
    state: &AppState,
    ctx: &SessionContext<'_>,
    rows: &[AgendaItemRecord],
) -> Result<Vec<Message>, Error> {
    let kind = NoticeKind::MinutesAvailable;
    let mut out = Vec::new();
    for r in recipients(state, ctx.cellule).await? {
        if !matches!(r.role, Role::Member | Role::Coordinator) || !r.wants(kind) {
            continue;
        }
        if r.guest && visible_refs(&r, rows).is_empty() {
            continue;
        }
        let mut n = notice(
            state,
            ctx.cellule,
            ctx.cellule_name,
            format!("Compte rendu disponible : séance du {}", when(ctx.session)),
        );
        n.lines.push(format!(
            "Le compte rendu de la séance du {} est approuvé. Il est accessible après connexion, \
             limité aux situations que vous pouvez consulter.",
            when(ctx.session)
        ));
        n.link_label = "Lire le compte rendu".into();
        out.push(message(
            ctx.cellule,
            &r,
            kind,
            &n,
            Vec::new(),
            None,
            ctx.now,
        )?);
    }
    Ok(out)
}

/// What happened to a referral, for its referrer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralNews {
    Accepted,
    Declined,
    Reviewed,
}

/// The referral's news to the person who referred it (their own reference only).
pub async fn referral_notice(
    state: &AppState,
    cellule_name: &str,
    case: &CaseRecord,
    news: ReferralNews,
    now: DateTime<Utc>,
) -> Result<Vec<Message>, Error> {
    let kind = NoticeKind::ReferralStatus;
    let Some(r) = recipients(state, &case.cellule)
        .await?
        .into_iter()
        .find(|r| r.subject == case.referrer && r.wants(kind))
    else {
        return Ok(Vec::new());
    };
    let (title, line) = match news {
        ReferralNews::Accepted => (
            format!("Saisine {} acceptée", case.reference),
            "La cellule a accepté votre saisine : elle sera examinée à une prochaine séance.",
        ),
        ReferralNews::Declined => (
            format!("Saisine {} non retenue", case.reference),
            "La cellule n'a pas retenu votre saisine. Le motif et la suite proposée sont \
             visibles après connexion.",
        ),
        ReferralNews::Reviewed => (
            format!("Saisine {} examinée", case.reference),
            "La cellule a examiné votre saisine. La suite donnée et l'interlocuteur à contacter \
             sont visibles après connexion.",
        ),
    };
    let mut n = notice(state, &case.cellule, cellule_name, title);
    n.lines.push(line.into());
    n.link = format!("{}/c/{}/saisines", base_url(state), case.cellule);
    n.link_label = "Voir mes saisines".into();
    Ok(vec![message(
        &case.cellule,
        &r,
        kind,
        &n,
        vec![case.reference.clone()],
        None,
        now,
    )?])
}

/// A failed verification of the audit chain, to the cellule's auditors and coordinators (a
/// security notice: nobody can turn it off).
pub async fn chain_failure_notices(
    state: &AppState,
    cellule: &str,
    cellule_name: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Message>, Error> {
    let kind = NoticeKind::ChainFailure;
    let mut out = Vec::new();
    for r in recipients(state, cellule).await? {
        if !matches!(r.role, Role::Auditor | Role::Coordinator) {
            continue;
        }
        let mut n = notice(
            state,
            cellule,
            cellule_name,
            "Alerte : la vérification du journal d'audit a échoué".into(),
        );
        n.lines.push(
            "Une vérification de la chaîne du journal d'audit de la cellule a échoué : une \
             entrée manque, a été modifiée ou n'est pas authentifiée. Le rapport est accessible \
             aux auditeurs après connexion. Prévenez le délégué à la protection des données et \
             l'équipe d'exploitation."
                .into(),
        );
        n.link = format!("{}/c/{cellule}/journal/verification", base_url(state));
        n.link_label = "Voir la vérification".into();
        out.push(message(cellule, &r, kind, &n, Vec::new(), None, now)?);
    }
    Ok(out)
}

/// A professional e-mail address: one `@`, a dotted domain, no spaces or control characters,
/// at most 254 characters (RFC 5321); stored as given, lower-cased domain.
pub fn parse_address(raw: &str) -> Result<String, Error> {
    let raw = raw.trim();
    let bad = || Error::invalid("/email", "not an e-mail address (name@domaine.fr)");
    if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let Some((local, domain)) = raw.split_once('@') else {
        return Err(bad());
    };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains(['<', '>', '(', ')', ',', ';', ':', '"', '[', ']', '\\', '@']);
    if !domain_ok || !local_ok {
        return Err(bad());
    }
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// Body of `PUT …/members/{sub}/address`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    pub email: String,
}

/// `PUT` (with an address) or `DELETE …/members/{sub}/address` (administrator): the address
/// notices go to; the change is an administrative entry (`change_membership`, the address itself
/// never in the log).
pub async fn set_address(
    state: &AppState,
    by: &super::cellules::Admin,
    cellule: &str,
    subject: &str,
    email: Option<&str>,
) -> Result<(), Error> {
    let slug = super::cellules::existing(state, cellule).await?;
    let email = email.map(parse_address).transpose()?;
    let now = state.clock.now();
    if !state
        .db
        .set_member_address(slug.as_str(), subject, email.as_deref(), "admin", now)
        .await?
    {
        return Err(Error::NotFound("membership"));
    }
    let draft = by
        .ctx(slug.as_str())
        .entry(crate::audit::Action::ChangeMembership, now)
        .target("membership", subject)
        .detail(&serde_json::json!({
            "address": if email.is_some() { "set" } else { "removed" },
        }));
    super::audit_log::record(state, slug.as_str(), vec![draft]).await
}

/// The caller's notices in a cellule.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NoticePreferences {
    /// Where notices go; none: no notice is sent.
    pub email: Option<String>,
    /// The notices one may turn off.
    pub optional: Vec<NoticeKind>,
    /// Those turned off.
    pub off: Vec<NoticeKind>,
}

/// Body of `PUT /v1/cellules/{c}/me/notices`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeChoice {
    /// The optional notices to turn off (every other one is on).
    pub off: Vec<NoticeKind>,
}

/// `GET /v1/cellules/{c}/me/notices`.
pub async fn preferences(
    state: &AppState,
    who: &super::access::CelluleMember,
) -> Result<NoticePreferences, Error> {
    let me = who.membership.subject.as_str();
    let email = state
        .db
        .member_addresses(who.slug())
        .await?
        .into_iter()
        .find(|(s, _)| s == me)
        .map(|(_, e)| e);
    let off = state
        .db
        .opt_outs(who.slug())
        .await?
        .into_iter()
        .filter(|(s, _)| s == me)
        .filter_map(|(_, k)| NoticeKind::parse(&k).ok())
        .collect();
    Ok(NoticePreferences {
        email,
        optional: NoticeKind::ALL
            .iter()
            .copied()
            .filter(|k| k.optional())
            .collect(),
        off,
    })
}

/// `PUT /v1/cellules/{c}/me/notices`: security notices cannot be turned off (422).
pub async fn choose(
    state: &AppState,
    who: &super::access::CelluleMember,
    choice: NoticeChoice,
) -> Result<NoticePreferences, Error> {
    if let Some(i) = choice.off.iter().position(|k| !k.optional()) {
        return Err(Error::invalid(
            format!("/off/{i}"),
            "a security notice cannot be turned off",
        ));
    }
    let mut kinds: Vec<String> = choice.off.iter().map(|k| k.as_str().to_owned()).collect();
    kinds.sort();
    kinds.dedup();
    state
        .db
        .set_opt_outs(who.slug(), who.membership.subject.as_str(), &kinds)
        .await?;
    preferences(state, who).await
}

/// The verified `email` claim of a sign-in, as the address of each of the person's memberships
/// that has none an administrator set. An address that does not parse is ignored.
pub async fn record_verified_email(
    state: &AppState,
    subject: &crate::domain::Subject,
    email: &str,
) -> Result<(), Error> {
    let Ok(email) = parse_address(email) else {
        return Ok(());
    };
    let now = state.clock.now();
    for (cellule, _) in state.db.memberships_of(subject).await? {
        state
            .db
            .set_member_address(
                cellule.slug.as_str(),
                subject.as_str(),
                Some(&email),
                "oidc",
                now,
            )
            .await?;
    }
    Ok(())
}
