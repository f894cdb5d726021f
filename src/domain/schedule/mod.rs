//! A cellule's session schedule: recurrence, French public holidays, daylight-saving time and
//! iCalendar export (docs/design.md §10, body of `PUT /v1/cellules/{c}/schedule`, docs/design.md §12).
//!
//! Pure code: no database, no clock, no HTTP. Callers pass dates and "now" explicitly.
//!
//! # What a schedule is
//!
//! A [`Schedule`] says *on which days* a cellule meets (an RFC 5545 `RRULE` value such as
//! `FREQ=MONTHLY;BYDAY=+2TH`, expanded by the [`rrule`] crate), *at what local time*
//! (`start_time`, `HH:MM`, in the IANA `time_zone`, `Europe/Paris` by default), for how long,
//! how many minutes a new case and a follow-up take (the agenda's capacity), where, and what to
//! do when a session falls on a French public holiday. The rule runs from `starts_on` (its
//! `DTSTART` date; the API fills it in with the day the schedule is saved).
//!
//! The rule only chooses **dates**: it is expanded as a floating, date-only recurrence, and the
//! local start time is applied afterwards. Rule parts that choose times (`BYHOUR`, `BYMINUTE`,
//! `BYSECOND`) and frequencies finer than `DAILY` are therefore refused. `UNTIL` may be a date
//! (`UNTIL=20271231`: sessions on or before that day), a UTC date-time (`…T…Z`: sessions starting
//! at or before that instant) or a floating date-time (read in the schedule's zone). `COUNT` counts
//! dates produced by the rule from `starts_on`, before any holiday handling.
//!
//! # Public holidays
//!
//! [`french_holidays`] lists the eleven public holidays of metropolitan France (Easter-based ones
//! from [`easter_sunday`]). [`HolidayRule`] decides what happens to a session falling on one:
//!
//! - `next_week` (default): the session moves to the same weekday seven days later, again and
//!   again while that day is a holiday too (25 Dec 2029, a Tuesday, moves to 8 Jan 2030 because
//!   1 Jan 2030 is a holiday). If the day it lands on already has a session of the rule (a weekly
//!   rule moving onto next week's session), the two are merged: the moved one is dropped.
//! - `skip`: the session is dropped.
//! - `keep`: the session stays, flagged with the holiday's name.
//!
//! # Idempotency key
//!
//! Each [`Occurrence`] carries `key`, the date the rule produced *before* any holiday move. Keys
//! depend only on the rule and `starts_on`, never on the window asked for, so planning the same
//! months twice (or overlapping windows) yields the same keys: store sessions under
//! `(cellule, key)` and re-planning is idempotent. (With `starts_on` absent the rule runs from the
//! window's start, so keys of rules with `INTERVAL` > 1 or `COUNT` then depend on the window.)
//!
//! # Daylight-saving time
//!
//! The local time holds across DST changes: 14:00 in `Europe/Paris` is 13:00Z in winter and 12:00Z
//! in summer; [`Occurrence::starts_at`] carries the zone's offset of that day. A start time that
//! does not exist on a given day (in the spring-forward gap, e.g. 02:30 on the last Sunday of March
//! in Paris) is read with the offset in force *before* the gap, as RFC 5545 §3.3.5 prescribes, which
//! shifts it forward by the length of the gap (02:30 becomes 03:30+02:00). A start time that exists
//! twice (in the autumn overlap) is the *earlier* of the two instants (02:30+02:00), also per
//! RFC 5545.
//!
//! # iCalendar
//!
//! [`calendar`] writes an RFC 5545 `VCALENDAR` (`METHOD:PUBLISH`) with one `VTIMEZONE` for the
//! schedule's zone and one `VEVENT` per [`IcsEvent`] (`DTSTART;TZID=…` in local time, `DURATION`,
//! `STATUS`, `SEQUENCE`, …); its documentation gives the exact shape. Calendars carry references
//! only, never case content (docs/design.md §10).

mod holidays;
mod ics;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{
    DateTime, Days, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::FieldError;

pub use holidays::{easter_sunday, french_holiday, french_holidays};
pub use ics::{IcsEvent, Parties, calendar, scheduling_message};

/// Default time zone of a schedule.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Paris";
/// Allowed session lengths, in minutes.
pub const DURATION_RANGE: std::ops::RangeInclusive<u32> = 15..=600;
/// Longest location, in characters.
pub const MAX_LOCATION_CHARS: usize = 200;
/// Most rule dates one expansion may walk through (from `starts_on` to the window's end).
pub const MAX_RULE_DATES: usize = 50_000;
/// How far ahead [`Schedule::validate`] looks for a first session (28 years: every Gregorian
/// weekday/date configuration of 1901–2099 occurs in any 28 consecutive years).
const LOOKAHEAD_YEARS: u64 = 28;

fn paris() -> String {
    DEFAULT_TIME_ZONE.to_owned()
}

/// What happens to a session that falls on a French public holiday.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HolidayRule {
    /// Move it to the same weekday of the next week (again if that is a holiday too).
    #[default]
    NextWeek,
    /// Drop it.
    Skip,
    /// Hold it anyway (the occurrence is flagged with the holiday's name).
    Keep,
}

/// A cellule's session schedule: the JSON body of `PUT /v1/cellules/{c}/schedule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00", "time_zone": "Europe/Paris",
    "duration_minutes": 120, "minutes_per_new_case": 20, "minutes_per_follow_up": 10,
    "location": "Mairie, salle du conseil", "on_holiday": "next_week", "starts_on": "2026-01-01"
}))]
pub struct Schedule {
    /// RFC 5545 recurrence rule value (an `RRULE:` prefix is accepted and ignored). Frequencies
    /// `YEARLY`, `MONTHLY`, `WEEKLY`, `DAILY`; no `BYHOUR`/`BYMINUTE`/`BYSECOND`.
    #[schema(example = "FREQ=MONTHLY;BYDAY=+2TH")]
    pub rrule: String,
    /// Local start time, `HH:MM` (24 h).
    #[schema(example = "14:00")]
    pub start_time: String,
    /// IANA time zone of `start_time`.
    #[serde(default = "paris")]
    #[schema(example = "Europe/Paris", default = "Europe/Paris")]
    pub time_zone: String,
    /// Session length, 15 to 600 minutes.
    #[schema(minimum = 15, maximum = 600, example = 120)]
    pub duration_minutes: u32,
    /// Agenda time for a case reviewed for the first time (1 to `duration_minutes`).
    #[schema(minimum = 1, example = 20)]
    pub minutes_per_new_case: u32,
    /// Agenda time for a follow-up (1 to `duration_minutes`).
    #[schema(minimum = 1, example = 10)]
    pub minutes_per_follow_up: u32,
    /// Where sessions take place (at most 200 characters, no control characters).
    #[serde(default)]
    #[schema(max_length = 200)]
    pub location: String,
    /// What to do with a session on a French public holiday.
    #[serde(default)]
    pub on_holiday: HolidayRule,
    /// First day the rule runs from (its `DTSTART` date); the API fills in today when absent.
    #[serde(default)]
    pub starts_on: Option<NaiveDate>,
}

/// One planned session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// The date the rule produced, before any holiday move: a stable idempotency key.
    pub key: NaiveDate,
    /// The local date actually used.
    pub date: NaiveDate,
    /// Local start, with the zone's offset of that day.
    pub starts_at: DateTime<FixedOffset>,
    /// The holiday the session was moved away from (`next_week`) or is held on (`keep`).
    pub moved_from_holiday: Option<&'static str>,
}

/// Why a schedule cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid recurrence rule: {0}")]
    Rule(String),
    #[error("invalid start time {0:?}: expected HH:MM")]
    StartTime(String),
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    #[error("empty window: {from} is after {until}")]
    Window { from: NaiveDate, until: NaiveDate },
    #[error("the rule produces more than {MAX_RULE_DATES} dates before the window ends")]
    TooManyDates,
}

impl Schedule {
    /// Every problem with this schedule, each pointing at its member (`/rrule`, `/start_time`,
    /// `/time_zone`, `/duration_minutes`, `/minutes_per_new_case`, `/minutes_per_follow_up`,
    /// `/location`).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let tz = self.tz();
        if let Err(e) = &tz {
            errors.push(FieldError::new(
                "/time_zone",
                format!("{e} (expected an IANA name such as Europe/Paris)"),
            ));
        }
        let time = self.local_time();
        if let Err(e) = &time {
            errors.push(FieldError::new("/start_time", e.to_string()));
        }
        match Rule::parse(&self.rrule) {
            Err(e) => errors.push(FieldError::new("/rrule", e)),
            Ok(rule) => {
                if let (Some(start), Some(until)) = (self.starts_on, rule.until_date())
                    && until < start
                {
                    errors.push(FieldError::new(
                        "/rrule",
                        format!("UNTIL ({until}) is before starts_on ({start})"),
                    ));
                } else if let (Ok(tz), Ok(time)) = (tz, time) {
                    // Reference day for the "ever produces a session" check.
                    let start = self
                        .starts_on
                        .unwrap_or_else(|| NaiveDate::from_ymd_opt(2001, 1, 1).unwrap_or_default());
                    let horizon = start + Days::new(LOOKAHEAD_YEARS * 366);
                    match rule.dates(start, horizon, tz, time).map(|mut d| d.next()) {
                        Ok(Some(_)) => {}
                        Ok(None) => errors.push(FieldError::new(
                            "/rrule",
                            format!("the rule produces no date within {LOOKAHEAD_YEARS} years"),
                        )),
                        Err(e) => errors.push(FieldError::new("/rrule", e)),
                    }
                }
            }
        }
        if !DURATION_RANGE.contains(&self.duration_minutes) {
            errors.push(FieldError::new(
                "/duration_minutes",
                format!(
                    "must be between {} and {} minutes",
                    DURATION_RANGE.start(),
                    DURATION_RANGE.end()
                ),
            ));
        }
        let max_case = self.duration_minutes.max(1);
        for (pointer, value) in [
            ("/minutes_per_new_case", self.minutes_per_new_case),
            ("/minutes_per_follow_up", self.minutes_per_follow_up),
        ] {
            if !(1..=max_case).contains(&value) {
                errors.push(FieldError::new(
                    pointer,
                    format!("must be between 1 and duration_minutes ({max_case})"),
                ));
            }
        }
        if self.location.chars().count() > MAX_LOCATION_CHARS {
            errors.push(FieldError::new(
                "/location",
                format!("at most {MAX_LOCATION_CHARS} characters"),
            ));
        }
        if self.location.chars().any(char::is_control) {
            errors.push(FieldError::new("/location", "no control characters"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The schedule's time zone.
    pub fn tz(&self) -> Result<Tz, ScheduleError> {
        parse_tz(&self.time_zone)
    }

    /// The local start time (`start_time` parsed; strictly `HH:MM`).
    pub fn local_time(&self) -> Result<NaiveTime, ScheduleError> {
        parse_hhmm(&self.start_time)
            .ok_or_else(|| ScheduleError::StartTime(self.start_time.clone()))
    }

    /// The rule in canonical form (parsed and re-printed, no `RRULE:` prefix): what to store.
    pub fn normalized_rrule(&self) -> Result<String, ScheduleError> {
        Rule::parse(&self.rrule)
            .map(|rule| rule.canonical)
            .map_err(ScheduleError::Rule)
    }

    /// Sessions whose (possibly holiday-moved) date falls in `[from, until]` (local dates), in
    /// date order. The rule runs from `starts_on` (or `from` when `None`) at `start_time` local.
    pub fn occurrences(
        &self,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<Occurrence>, ScheduleError> {
        if from > until {
            return Err(ScheduleError::Window { from, until });
        }
        let tz = self.tz()?;
        let time = self.local_time()?;
        let rule = Rule::parse(&self.rrule).map_err(ScheduleError::Rule)?;
        let start = self.starts_on.unwrap_or(from);
        if start > until {
            return Ok(Vec::new());
        }
        let mut keys = Vec::new();
        for key in rule
            .dates(start, until, tz, time)
            .map_err(ScheduleError::Rule)?
        {
            if keys.len() == MAX_RULE_DATES {
                return Err(ScheduleError::TooManyDates);
            }
            keys.push(key);
        }
        let key_set: BTreeSet<NaiveDate> = keys.iter().copied().collect();
        let mut out = Vec::new();
        for key in keys {
            let (date, holiday) = match (self.on_holiday, french_holiday(key)) {
                (_, None) => (key, None),
                (HolidayRule::Keep, Some(name)) => (key, Some(name)),
                (HolidayRule::Skip, Some(_)) => continue,
                (HolidayRule::NextWeek, Some(name)) => {
                    let mut date = key + Days::new(7);
                    while french_holiday(date).is_some() {
                        date = date + Days::new(7);
                    }
                    if key_set.contains(&date) {
                        // Lands on a session of the rule itself: merged into it.
                        continue;
                    }
                    (date, Some(name))
                }
            };
            if date < from || date > until {
                continue;
            }
            out.push(Occurrence {
                key,
                date,
                starts_at: local_start(tz, date.and_time(time)).fixed_offset(),
                moved_from_holiday: holiday,
            });
        }
        out.sort_by_key(|o| (o.date, o.key));
        Ok(out)
    }
}

/// Parses an IANA zone name (case-sensitive, as in the tz database).
pub fn parse_tz(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))
}

/// `HH:MM`, 24-hour, exactly five characters.
fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let digits = |x: u8, y: u8| {
        (x.is_ascii_digit() && y.is_ascii_digit())
            .then(|| u32::from(x - b'0') * 10 + u32::from(y - b'0'))
    };
    NaiveTime::from_hms_opt(digits(b[0], b[1])?, digits(b[3], b[4])?, 0)
}

/// The instant of a local wall-clock time in `tz`, RFC 5545 §3.3.5 style: an ambiguous time (DST
/// overlap) is the earlier instant; a non-existent one (DST gap) is read with the offset in force
/// before the gap, i.e. shifted forward by the gap's length.
pub fn local_start(tz: Tz, local: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(dt) => dt,
        LocalResult::Ambiguous(a, b) => a.min(b),
        LocalResult::None => {
            let before = tz
                .offset_from_utc_datetime(&(local - TimeDelta::days(1)))
                .fix()
                .local_minus_utc();
            tz.from_utc_datetime(&(local - TimeDelta::seconds(i64::from(before))))
        }
    }
}

/// The `UNTIL` part, kept out of the [`rrule`] crate (which would read a floating value in the
/// machine's zone) and applied here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Date(NaiveDate),
    Floating(NaiveDateTime),
    Utc(DateTime<Utc>),
}

impl Until {
    fn parse(value: &str) -> Option<Until> {
        if let Some(v) = value.strip_suffix('Z').or_else(|| value.strip_suffix('z')) {
            return NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S")
                .ok()
                .map(|dt| Until::Utc(dt.and_utc()));
        }
        if value.len() == 8 {
            return NaiveDate::parse_from_str(value, "%Y%m%d")
                .ok()
                .map(Until::Date);
        }
        NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S")
            .ok()
            .map(Until::Floating)
    }

    fn allows(self, date: NaiveDate, time: NaiveTime, tz: Tz) -> bool {
        match self {
            Until::Date(d) => date <= d,
            Until::Floating(dt) => date.and_time(time) <= dt,
            Until::Utc(instant) => local_start(tz, date.and_time(time)) <= instant,
        }
    }

    fn date(self) -> NaiveDate {
        match self {
            Until::Date(d) => d,
            Until::Floating(dt) => dt.date(),
            Until::Utc(dt) => dt.date_naive(),
        }
    }

    fn to_ical(self) -> String {
        match self {
            Until::Date(d) => d.format("%Y%m%d").to_string(),
            Until::Floating(dt) => dt.format("%Y%m%dT%H%M%S").to_string(),
            Until::Utc(dt) => dt.format("%Y%m%dT%H%M%SZ").to_string(),
        }
    }
}

/// A parsed and checked rule.
struct Rule {
    rule: rrule::RRule<rrule::Unvalidated>,
    until: Option<Until>,
    canonical: String,
}

impl Rule {
    /// Parses the rule; the error is a one-line, user-facing message.
    fn parse(raw: &str) -> Result<Rule, String> {
        let mut value = raw.trim();
        // `get`, not an index: the sixth byte of the input may fall inside a character.
        if let Some(rest) = value
            .get(..6)
            .filter(|prefix| prefix.eq_ignore_ascii_case("RRULE:"))
            .and_then(|_| value.get(6..))
        {
            value = rest.trim_start();
        }
        if value.is_empty() {
            return Err("empty rule (expected e.g. FREQ=MONTHLY;BYDAY=+2TH)".into());
        }
        if value.contains(['\r', '\n', ':']) {
            return Err(
                "only an RRULE value is accepted (no DTSTART, EXDATE or other property)".into(),
            );
        }
        let mut until = None;
        let mut rest = Vec::new();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, val) = part
                .split_once('=')
                .ok_or_else(|| format!("malformed rule part {part:?} (expected NAME=VALUE)"))?;
            match name.trim().to_ascii_uppercase().as_str() {
                "UNTIL" => {
                    if until.is_some() {
                        return Err("UNTIL given twice".into());
                    }
                    until = Some(Until::parse(val.trim()).ok_or_else(|| {
                        format!("invalid UNTIL {val:?} (expected YYYYMMDD or YYYYMMDDTHHMMSSZ)")
                    })?);
                }
                "BYHOUR" | "BYMINUTE" | "BYSECOND" => {
                    return Err(format!(
                        "{} is not supported: the session time is start_time",
                        name.trim().to_ascii_uppercase()
                    ));
                }
                _ => rest.push(part),
            }
        }
        let rule = rrule::RRule::<rrule::Unvalidated>::from_str(&rest.join(";"))
            .map_err(|e| e.to_string())?;
        // Validate once against a fixed start to get the crate's range checks and read FREQ back.
        let probe = rrule::Tz::UTC
            .with_ymd_and_hms(2001, 1, 1, 0, 0, 0)
            .single()
            .ok_or("internal: probe date")?;
        let validated = rule.clone().validate(probe).map_err(|e| e.to_string())?;
        if matches!(
            validated.get_freq(),
            rrule::Frequency::Hourly | rrule::Frequency::Minutely | rrule::Frequency::Secondly
        ) {
            return Err(format!(
                "FREQ={} is too frequent: at most one session a day (DAILY, WEEKLY, MONTHLY, YEARLY)",
                validated.get_freq()
            ));
        }
        if validated.get_interval() == 0 {
            return Err("INTERVAL must be at least 1".into());
        }
        let mut canonical = rule.to_string();
        if let Some(until) = until {
            canonical.push_str(";UNTIL=");
            canonical.push_str(&until.to_ical());
        }
        Ok(Rule {
            rule,
            until,
            canonical,
        })
    }

    fn until_date(&self) -> Option<NaiveDate> {
        self.until.map(Until::date)
    }

    /// The dates the rule produces from `start` (its DTSTART date) up to `last`, in order.
    ///
    /// The rule is expanded as a date-only (UTC midnight, i.e. floating) recurrence so that DST
    /// never drops or shifts a date; the crate's iteration limit guards against rules that never
    /// match.
    fn dates(
        &self,
        start: NaiveDate,
        last: NaiveDate,
        tz: Tz,
        time: NaiveTime,
    ) -> Result<impl Iterator<Item = NaiveDate> + use<>, String> {
        let dt_start = rrule::Tz::UTC.from_utc_datetime(&start.and_time(NaiveTime::MIN));
        let set = self
            .rule
            .clone()
            .build(dt_start)
            .map_err(|e| e.to_string())?
            .limit();
        let until = self.until;
        Ok(set
            .into_iter()
            .map(|dt| dt.date_naive())
            .take_while(move |&d| d <= last && until.is_none_or(|u| u.allows(d, time, tz))))
    }
}
