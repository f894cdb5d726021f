//! `cellule demo`: a demo cellule to try the whole monthly cycle at once.
//!
//! It creates the cellule `demo` (or `--slug`), then plays about three months of its life through
//! the same service functions the HTTP handlers call — so every referral is guarded and
//! encrypted, every status change follows the lifecycle graph, and every step is in the audit
//! log under the name of the (fictional) person who did it:
//!
//! - members of every role: a coordinator, permanent members of both spheres, a guest
//!   organisation (the mobile team), two referrers and an auditor; each accepts the charter;
//! - the routing directory and rules of `policies/examples/routing-perpignan.toml` (a fictional
//!   town, Ville-sur-Têt) and a schedule (second Thursday of the month, 14:00, Paris time);
//! - 40 synthetic, pseudonymised referrals submitted over the months, screened (accepted or
//!   declined), reviewed at the last two past sessions (agendas built and published, meetings
//!   opened with their attendance, decisions routed / follow-up / closed / deferred with actions,
//!   one corrected, notes of every audience, minutes approved: `meeting`);
//! - the next session, an extra one later today (so that its meeting can be run at once, from
//!   the browser), its agenda built and published, and a few referrals left to screen.
//!
//! To have a history, the demo runs on a clock of its own that starts about two months back and
//! ends at the present: what it records (cases, events, audit entries) is dated as if it had
//! happened over those months. Sessions are planned twelve months ahead from that start.
//!
//! Data are fixed lists (no randomness besides ids and keys): fictional communes (`66901` to
//! `66904`), no names, situations written to be obviously fictional. The synthetic identity
//! given for two referrals (to show duplicate detection) is only hashed, like any identity.
//!
//! A second run on a database where the cellule already exists is **refused** (exit 1) and
//! changes nothing: the demo never touches an existing cellule. Use `--slug` for another one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::json;

use super::CliError;
use crate::app;
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::config::Config;
use crate::domain::case::{Audience, CaseStatus};
use crate::domain::routing::Directory;
use crate::domain::schedule::Schedule;
use crate::domain::session::Outcome;
use crate::domain::{
    Cellule, CelluleName, CelluleSlug, MembershipSpec, Organisation, Role, Sphere, Subject,
};
use crate::error::Error;
use crate::services::AppState;
use crate::services::access::{Caller, CelluleMember};
use crate::services::cases::{self, NoteRequest, ReferralRequest, TransitionRequest};
use crate::services::cellules;
use crate::services::charter::{self, AcceptCharter};
use crate::services::review::agenda::{self, AgendaView};
use crate::services::review::decisions::{self, DecisionRequest};
use crate::services::review::directory::{self, Interlocutors, RoutingRules};
use crate::services::review::schedule;
use crate::services::review::sessions::{self, PlanRequest};
use crate::storage::SessionRecord;

mod data;
mod meeting;
mod summary;

use data::*;
pub use data::{ADMIN, DEFAULT_SLUG, ROUTING_EXAMPLE};
use summary::print_summary;

fn failure(message: impl Into<String>) -> CliError {
    CliError {
        message: crate::config::one_line(&message.into()),
        code: 1,
    }
}

/// An error of a step of the demo, with what it was doing.
fn at(step: &'static str) -> impl Fn(Error) -> CliError {
    move |e| {
        let e = CliError::from(e);
        failure(format!("demo: {step}: {}", e.message))
    }
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// Sets up the demo cellule `slug` and prints what it holds, tokens and curl commands.
pub async fn run(config: &Config, slug: &CelluleSlug, ttl: Duration) -> Result<(), CliError> {
    let dev = app::dev_issuer(config)?.ok_or_else(|| CliError {
        message: "the demo prints development tokens: enable auth.dev_issuer".into(),
        code: 2,
    })?;
    // Mint first: a refused --ttl stops before anything is written.
    let real_now = SystemClock.now();
    let mut tokens = Vec::new();
    for p in PEOPLE {
        let subject = Subject::parse(p.sub).map_err(|e| failure(e.to_string()))?;
        let token = dev.mint(&subject, ttl, real_now).map_err(|e| CliError {
            message: e.to_string(),
            code: 2,
        })?;
        tokens.push(token);
    }
    let admin = Subject::parse(ADMIN).map_err(|e| failure(e.to_string()))?;
    let admin_token = dev.mint(&admin, ttl, real_now).map_err(|e| CliError {
        message: e.to_string(),
        code: 2,
    })?;
    tokens.push(admin_token);
    let summary = set_up(config, slug, real_now).await?;
    print_summary(config, &summary, &tokens, ttl);
    Ok(())
}

/// Sets up the demo cellule as if `now` were the present (the history before it, the next
/// session after it); refused, changing nothing, when the cellule exists.
pub async fn set_up(
    config: &Config,
    slug: &CelluleSlug,
    now: DateTime<Utc>,
) -> Result<Summary, CliError> {
    let db = app::open_database(config, true).await?;
    let result = async {
        if db
            .get_cellule(slug)
            .await
            .map_err(|e| failure(e.to_string()))?
            .is_some()
        {
            return Err(failure(format!(
                "cellule {slug} already exists: the demo only sets up a new cellule and changed \
                 nothing (choose another with --slug, or mint tokens with `cellule token <sub>`)"
            )));
        }
        let keys = app::open_keys(config, db.as_ref(), &SystemClock).await?;
        let clock = Arc::new(ManualClock::new(now));
        let state = app::state(config.clone(), db.clone(), keys, clock.clone())?;
        Demo::new(state, clock, slug.clone()).play(now).await
    }
    .await;
    db.close().await;
    result
}

/// What the demo created.
#[derive(Debug)]
pub struct Summary {
    pub slug: String,
    /// Cases by status, every status listed.
    pub counts: Vec<(CaseStatus, usize)>,
    pub notes: usize,
    pub interlocutors: usize,
    pub rules: usize,
    /// Sessions planned (past ones included).
    pub planned: usize,
    /// The reviewed sessions: local day, items, how many of them were deferred.
    pub past: Vec<(String, usize, usize)>,
    /// The next session, its agenda published.
    pub next: SessionRecord,
    /// Its items (case id, reference), a follow-up first.
    pub next_items: Vec<(String, String)>,
    pub next_deferred: usize,
    follow_up_example: NaiveDate,
    /// The last past session, its minutes approved.
    pub minutes_session: String,
    /// (earlier reference, new reference) of the referral flagged as a possible duplicate.
    pub duplicate: Option<(String, String)>,
}

struct Demo {
    state: AppState,
    clock: Arc<ManualClock>,
    slug: CelluleSlug,
    members: Vec<Option<CelluleMember>>,
    /// Case id and reference, by spec index.
    cases: Vec<Option<(String, String)>>,
    deferred_once: HashSet<String>,
    notes: usize,
    /// A referral flagged as a possible duplicate: (earlier reference, new reference).
    duplicate: Option<(String, String)>,
}

impl Demo {
    fn new(state: AppState, clock: Arc<ManualClock>, slug: CelluleSlug) -> Self {
        Self {
            state,
            clock,
            slug,
            members: Vec::new(),
            cases: Vec::new(),
            deferred_once: HashSet::new(),
            notes: 0,
            duplicate: None,
        }
    }

    fn who(&self, person: usize) -> Result<&CelluleMember, CliError> {
        self.members
            .get(person)
            .and_then(Option::as_ref)
            .ok_or_else(|| failure("demo: a person has no membership"))
    }

    fn set(&self, at: DateTime<Utc>) {
        self.clock.set(at);
    }

    async fn play(mut self, real_now: DateTime<Utc>) -> Result<Summary, CliError> {
        // The sessions the story needs: the last two well in the past, and the next one.
        let schedule: Schedule =
            serde_json::from_str(SCHEDULE).map_err(|e| failure(format!("demo schedule: {e}")))?;
        let from = (real_now - days(130)).date_naive();
        let until = (real_now + days(80)).date_naive();
        let mut probe = schedule.clone();
        probe.starts_on = Some(from);
        let occurrences = probe
            .occurrences(from, until)
            .map_err(|e| failure(format!("demo schedule: {e}")))?;
        let past: Vec<_> = occurrences
            .iter()
            .filter(|o| o.starts_at.with_timezone(&Utc) < real_now - days(2))
            .collect();
        let [.., first, _] = past.as_slice() else {
            return Err(failure(
                "demo: the schedule gave fewer than two past sessions",
            ));
        };
        let start = first.starts_at.with_timezone(&Utc) - days(20);
        self.set(start);

        // The cellule, its people, their charter.
        let cellule = cellules::create(
            self.state.db.as_ref(),
            self.clock.as_ref(),
            &cellules::Admin::cli(),
            self.slug.clone(),
            CelluleName::parse(NAME).map_err(|e| failure(e.to_string()))?,
            None,
        )
        .await
        .map_err(at("creating the cellule"))?;
        self.people(&cellule).await?;

        // Routing directory and rules, as the coordinator would PUT them.
        let dir = Directory::from_toml(ROUTING_EXAMPLE)
            .map_err(|e| failure(format!("demo: routing example: {e}")))?;
        let (interlocutors, rules) = (dir.interlocutors.len(), dir.rules.len());
        let coordinator = self.who(COORDINATOR)?.clone();
        directory::put_interlocutors(
            &self.state,
            &coordinator,
            Interlocutors {
                interlocutors: dir.interlocutors,
            },
        )
        .await
        .map_err(at("routing directory"))?;
        directory::put_rules(&self.state, &coordinator, RoutingRules { rules: dir.rules })
            .await
            .map_err(at("routing rules"))?;

        // Schedule, and a year of sessions.
        schedule::put_schedule(&self.state, &coordinator, schedule.clone())
            .await
            .map_err(at("schedule"))?;
        let plan = sessions::plan(&self.state, &coordinator, PlanRequest { months: 12 })
            .await
            .map_err(at("planning sessions"))?;
        let planned = plan.created.len();
        let all = self
            .state
            .db
            .list_sessions(self.slug.as_str(), None, None)
            .await
            .map_err(|e| failure(e.to_string()))?;
        let earlier: Vec<&SessionRecord> = all
            .iter()
            .filter(|s| s.starts_at < real_now - days(2))
            .collect();
        let [.., p1, p2] = earlier.as_slice() else {
            return Err(failure("demo: fewer than two past sessions were planned"));
        };
        let (p1, p2) = ((*p1).clone(), (*p2).clone());
        let next = self
            .session_today(&coordinator, &schedule.time_zone, real_now)
            .await?;

        // Period 0, first session; period 1, second session.
        self.referrals(0, start, p1.starts_at - days(8)).await?;
        let mut past_sessions = Vec::new();
        past_sessions.push(self.session(&p1, &p2, &next, false).await?);
        self.referrals(1, p1.starts_at + days(1), p2.starts_at - days(8))
            .await?;
        past_sessions.push(self.session(&p2, &next, &next, true).await?);

        // Period 2, up to now; the next session's agenda; late screening.
        self.referrals(
            2,
            p2.starts_at + chrono::Duration::hours(5),
            real_now - days(1),
        )
        .await?;
        self.set(real_now);
        agenda::build(&self.state, &coordinator, &next.id)
            .await
            .map_err(at("building the next agenda"))?;
        let agenda = agenda::publish(&self.state, &coordinator, &next.id)
            .await
            .map_err(at("publishing the next agenda"))?;
        for (i, spec) in SPECS.iter().enumerate() {
            if spec.fate == Fate::LateAccept {
                self.screen(i, CaseStatus::Accepted).await?;
            }
        }

        // What each case became.
        let mut by_status: HashMap<CaseStatus, usize> = HashMap::new();
        let since = crate::services::access::agenda_since(self.clock.now());
        for (id, _) in self.cases.iter().flatten() {
            let c = self
                .state
                .db
                .get_case(self.slug.as_str(), id, since)
                .await
                .map_err(|e| failure(e.to_string()))?
                .ok_or_else(|| failure("demo: a case vanished"))?;
            let status = c.status;
            *by_status.entry(status).or_default() += 1;
        }
        Ok(Summary {
            slug: self.slug.as_str().to_owned(),
            counts: CaseStatus::ALL
                .iter()
                .map(|s| (*s, by_status.get(s).copied().unwrap_or(0)))
                .collect(),
            notes: self.notes,
            interlocutors,
            rules,
            planned,
            past: past_sessions,
            // A follow-up first: it has a history and notes to show.
            next_items: agenda
                .items
                .iter()
                .filter(|i| i.kind == "follow_up")
                .chain(agenda.items.iter().filter(|i| i.kind != "follow_up"))
                .map(|i| (i.case_id.clone(), i.reference.clone()))
                .collect(),
            next_deferred: agenda.deferred.len(),
            follow_up_example: meeting::local_date(&next) + Days::new(28),
            minutes_session: p2.id.clone(),
            next,
            duplicate: self.duplicate,
        })
    }

    /// The next session: an extra one later today (in the schedule's zone), so that whoever
    /// tries the demo can run its meeting now, a meeting opening on its day and not before.
    /// An hour from now, or a minute when the day ends sooner.
    async fn session_today(
        &self,
        coordinator: &CelluleMember,
        zone: &str,
        real_now: DateTime<Utc>,
    ) -> Result<SessionRecord, CliError> {
        use chrono::Timelike;
        let tz = crate::domain::schedule::parse_tz(zone)
            .map_err(|e| failure(format!("demo schedule: {e}")))?;
        let local = real_now.with_timezone(&tz);
        let in_an_hour = local + chrono::Duration::hours(1);
        let starts = if in_an_hour.date_naive() == local.date_naive() {
            in_an_hour
        } else {
            local + chrono::Duration::minutes(2)
        };
        let starts = starts
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(starts);
        let view = sessions::add_session(
            &self.state,
            coordinator,
            sessions::AdHocRequest {
                starts_at: starts.fixed_offset(),
                duration_minutes: None,
                location: None,
            },
        )
        .await
        .map_err(at("adding today's session"))?;
        self.state
            .db
            .get_session(self.slug.as_str(), &view.id)
            .await
            .map_err(|e| failure(e.to_string()))?
            .ok_or_else(|| failure("demo: today's session vanished"))
    }

    async fn people(&mut self, cellule: &Cellule) -> Result<(), CliError> {
        let admins = self.state.admins.as_ref().clone();
        for p in PEOPLE {
            let subject = Subject::parse(p.sub).map_err(|e| failure(e.to_string()))?;
            let org = p
                .org
                .map(Organisation::parse)
                .transpose()
                .map_err(|e| failure(e.to_string()))?;
            let spec = MembershipSpec::new(p.role, p.sphere, org, p.guest)
                .map_err(|(field, e)| failure(format!("demo: {}: {field}: {e}", p.sub)))?;
            let (membership, _, _) = cellules::put_member(
                self.state.db.as_ref(),
                self.clock.as_ref(),
                &admins,
                &cellules::Admin::cli(),
                &self.slug,
                &subject,
                &spec,
            )
            .await
            .map_err(at("memberships"))?;
            let mut member = CelluleMember {
                caller: Caller {
                    subject,
                    issuer: self.state.config.auth.dev_issuer.issuer.clone(),
                    request_id: None,
                    route: None,
                    lang: Default::default(),
                },
                cellule: cellule.clone(),
                membership,
                charter_accepted: false,
            };
            if matches!(p.role, Role::Member | Role::Coordinator) {
                let version = self
                    .state
                    .db
                    .current_charter(self.slug.as_str())
                    .await
                    .map_err(|e| failure(e.to_string()))?
                    .map_or(1, |c| c.version);
                charter::accept(&self.state, &member, AcceptCharter { version })
                    .await
                    .map_err(at("charter"))?;
                member.charter_accepted = true;
            }
            self.members.push(Some(member));
        }
        Ok(())
    }

    /// Submits the referrals of `period` evenly between `from` and `to`, each screened soon
    /// after (accepted or declined) unless it is left to screen.
    async fn referrals(
        &mut self,
        period: u8,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(), CliError> {
        let batch: Vec<usize> = (0..SPECS.len())
            .filter(|i| SPECS[*i].period == period)
            .collect();
        let step = (to - from) / i32::try_from(batch.len() + 1).unwrap_or(1);
        for (k, &i) in batch.iter().enumerate() {
            let t = from + step * i32::try_from(k + 1).unwrap_or(1);
            self.set(t);
            self.submit(i).await?;
            self.set(t + step / 2);
            match SPECS[i].fate {
                Fate::Pending | Fate::LateAccept => {}
                Fate::Decline => self.screen(i, CaseStatus::Declined).await?,
                _ => self.screen(i, CaseStatus::Accepted).await?,
            }
        }
        Ok(())
    }

    async fn submit(&mut self, i: usize) -> Result<(), CliError> {
        let spec = &SPECS[i];
        let (situation, expectations) = THEMES[spec.theme % THEMES.len()];
        let mut body = json!({
            "age_band": spec.age, "gender": spec.gender, "needs": spec.needs,
            "urgency": spec.urgency, "situation": situation, "expectations": expectations,
            "consent": match i % 5 {
                4 => json!({"status": "not_informed",
                            "justification": "Personne injoignable malgré plusieurs tentatives (fictif)."}),
                1 | 3 => json!({"status": "agreed"}),
                _ => json!({"status": "informed"}),
            },
        });
        if let Some(c) = spec.commune {
            body["commune"] = json!(c);
        }
        if let Some(s) = spec.sector {
            body["sector"] = json!(s);
        }
        if i == DUPLICATE_PAIR.0 || i == DUPLICATE_PAIR.1 {
            // Only its linkage key (an HMAC) is stored: it shows duplicate detection.
            body["identity"] = json!({"last_name": "Exemple-Fictif", "first_name": "Alix",
                                      "birth_date": "1978-01-01"});
        }
        let req: ReferralRequest = serde_json::from_value(body)
            .map_err(|e| failure(format!("demo: referral {i}: {e}")))?;
        let who = self.who(spec.by)?.clone();
        let created = cases::submit(&self.state, &who, req, None)
            .await
            .map_err(at("submitting a referral"))?;
        while self.cases.len() <= i {
            self.cases.push(None);
        }
        if i == DUPLICATE_PAIR.1 {
            // Only the coordinator is told of a possible duplicate: the case as they see it.
            let coordinator = self.who(COORDINATOR)?.clone();
            let seen = cases::read(&self.state, &coordinator, &created.id)
                .await
                .map_err(at("reading the duplicate as the coordinator"))?;
            if let Some(earlier) = seen.possible_duplicates.first() {
                self.duplicate = Some((earlier.clone(), created.reference.clone()));
            }
        }
        self.cases[i] = Some((created.id, created.reference));
        Ok(())
    }

    fn case_id(&self, i: usize) -> Result<String, CliError> {
        self.cases
            .get(i)
            .and_then(Option::as_ref)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| failure("demo: case not submitted"))
    }

    async fn screen(&mut self, i: usize, to: CaseStatus) -> Result<(), CliError> {
        let id = self.case_id(i)?;
        let reason = (to == CaseStatus::Declined).then(|| {
            "Hors du champ de la cellule : situation déjà suivie par un service compétent (fictif)."
                .to_owned()
        });
        let referrer_message = (to == CaseStatus::Declined).then(|| {
            "La situation est déjà accompagnée par le service compétent : adressez-vous à lui (fictif)."
                .to_owned()
        });
        let coordinator = self.who(COORDINATOR)?.clone();
        cases::transition(
            &self.state,
            &coordinator,
            &id,
            TransitionRequest {
                to,
                reason,
                referrer_message,
                follow_up_date: None,
                routed_org: None,
            },
            None,
        )
        .await
        .map_err(at("screening"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_lists_hold_together() {
        assert_eq!(SPECS.len(), 40);
        for fate in [
            Fate::Pending,
            Fate::Decline,
            Fate::Close,
            Fate::Long,
            Fate::Short,
            Fate::CloseLater,
            Fate::DeferOnce,
            Fate::Review,
            Fate::LateAccept,
        ] {
            assert!(SPECS.iter().any(|s| s.fate == fate), "{fate:?}");
        }
        for s in SPECS {
            assert!(s.theme < THEMES.len());
            assert!(s.commune.is_some() || s.sector.is_some());
            assert!(PEOPLE[s.by].role != Role::Auditor);
        }
        assert!(PEOPLE.iter().all(|p| p.sub != ADMIN && p.var != "ADMIN"));
        assert_eq!(SPECS[DUPLICATE_PAIR.0].fate, Fate::Long, "still open");
        assert_eq!(SPECS[DUPLICATE_PAIR.0].needs, SPECS[DUPLICATE_PAIR.1].needs);
        assert!(Directory::from_toml(ROUTING_EXAMPLE).is_ok());
        let guard = crate::domain::guard::Guard::new(Utc::now().date_naive());
        for (situation, expectations) in THEMES {
            assert!(guard.scan("situation", situation).is_empty(), "{situation}");
            assert!(guard.scan("expectations", expectations).is_empty());
        }
    }
}
