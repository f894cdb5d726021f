//! iCalendar (RFC 5545) output for sessions: see [`calendar`].

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc,
};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

/// One session as a calendar event (references only: no case content belongs here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcsEvent {
    /// Globally unique and stable across re-exports (e.g. `session-<uuid>@<host>`).
    pub uid: String,
    pub starts_at: DateTime<FixedOffset>,
    pub duration_minutes: u32,
    pub summary: String,
    pub location: String,
    pub description: String,
    /// Written as `STATUS:CANCELLED` (else `STATUS:CONFIRMED`).
    pub cancelled: bool,
    /// Bump on every change of the event so that clients replace their copy.
    pub sequence: u32,
}

/// A complete `VCALENDAR` named `name`, in `time_zone` (IANA), with one `VEVENT` per event;
/// `now` is every event's `DTSTAMP`.
///
/// Shape of the document:
///
/// ```text
/// BEGIN:VCALENDAR
/// VERSION:2.0 / PRODID / CALSCALE:GREGORIAN / METHOD:PUBLISH / NAME / X-WR-CALNAME / X-WR-TIMEZONE
/// BEGIN:VTIMEZONE          (one, for the schedule's zone; absent for UTC or an unknown zone)
///   TZID:Europe/Paris
///   BEGIN:DAYLIGHT … RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU … END:DAYLIGHT
///   BEGIN:STANDARD … RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU … END:STANDARD
/// END:VTIMEZONE
/// BEGIN:VEVENT             (one per event)
///   UID / DTSTAMP / DTSTART;TZID=Europe/Paris:20260514T140000 / DURATION:PT2H
///   SUMMARY / LOCATION / DESCRIPTION (the last two only when not empty)
///   STATUS:CONFIRMED|CANCELLED / SEQUENCE
/// END:VEVENT
/// END:VCALENDAR
/// ```
///
/// The `VTIMEZONE` is derived from the tz database (chrono-tz) over the years the events span, plus
/// one year either side. Zones following the EU rule there (change at 01:00 UTC on the last Sundays
/// of March and October: Paris, Brussels, London, …) get the usual `DAYLIGHT`/`STANDARD` pair with
/// yearly `RRULE`s; zones without any change get one `STANDARD`; other zones get one
/// sub-component per actual change (plus one for the offset in force at the start of the span).
/// An unknown zone name, or UTC, gives UTC times (`…Z`) and no `VTIMEZONE`.
///
/// Text is escaped (`\\`, `\;`, `\,`, `\n`; other control characters are dropped), lines are
/// folded at 75 octets (never inside a UTF-8 character) and end with CRLF.
pub fn calendar(name: &str, time_zone: &str, events: &[IcsEvent], now: DateTime<Utc>) -> String {
    render(name, time_zone, events, now, None)
}

/// The two parties of a scheduling message: the cellule's sending address and the recipient's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parties<'a> {
    pub organizer: &'a str,
    pub attendee: &'a str,
}

/// An iTIP (RFC 5546) message about one session for one recipient, as [`calendar`] writes it but
/// with `METHOD:REQUEST` (an invitation or its update: same `UID`, higher `SEQUENCE`) or
/// `METHOD:CANCEL` (when `event.cancelled`), and the `ORGANIZER` and `ATTENDEE` lines the method
/// requires.
pub fn scheduling_message(
    name: &str,
    time_zone: &str,
    event: &IcsEvent,
    now: DateTime<Utc>,
    parties: &Parties<'_>,
) -> String {
    render(
        name,
        time_zone,
        std::slice::from_ref(event),
        now,
        Some(parties),
    )
}

fn render(
    name: &str,
    time_zone: &str,
    events: &[IcsEvent],
    now: DateTime<Utc>,
    parties: Option<&Parties<'_>>,
) -> String {
    let tz = time_zone.parse::<Tz>().ok().filter(|tz| {
        !matches!(
            tz.name(),
            "UTC"
                | "UCT"
                | "Zulu"
                | "Universal"
                | "Etc/UTC"
                | "Etc/UCT"
                | "Etc/Zulu"
                | "Etc/Universal"
        )
    });
    let mut out = Writer::default();
    out.line("BEGIN:VCALENDAR");
    out.line("VERSION:2.0");
    out.line(&format!(
        "PRODID:-//cellule//cellule {}//FR",
        env!("CARGO_PKG_VERSION")
    ));
    out.line("CALSCALE:GREGORIAN");
    out.line(match parties {
        None => "METHOD:PUBLISH",
        Some(_) if events.iter().any(|e| e.cancelled) => "METHOD:CANCEL",
        Some(_) => "METHOD:REQUEST",
    });
    if !name.is_empty() {
        out.line(&format!("NAME:{}", escape_text(name)));
        out.line(&format!("X-WR-CALNAME:{}", escape_text(name)));
    }
    if let Some(tz) = tz {
        out.line(&format!("X-WR-TIMEZONE:{}", tz.name()));
        let years = event_years(events, now);
        for line in vtimezone(tz, years.0, years.1) {
            out.line(&line);
        }
    }
    let stamp = now.format("%Y%m%dT%H%M%SZ");
    for ev in events {
        out.line("BEGIN:VEVENT");
        out.line(&format!("UID:{}", escape_text(&ev.uid)));
        out.line(&format!("DTSTAMP:{stamp}"));
        match tz {
            Some(tz) => out.line(&format!(
                "DTSTART;TZID={}:{}",
                tz.name(),
                ev.starts_at.with_timezone(&tz).format("%Y%m%dT%H%M%S")
            )),
            None => out.line(&format!(
                "DTSTART:{}",
                ev.starts_at.with_timezone(&Utc).format("%Y%m%dT%H%M%SZ")
            )),
        }
        out.line(&format!("DURATION:{}", duration(ev.duration_minutes)));
        out.line(&format!("SUMMARY:{}", escape_text(&ev.summary)));
        if !ev.location.is_empty() {
            out.line(&format!("LOCATION:{}", escape_text(&ev.location)));
        }
        if !ev.description.is_empty() {
            out.line(&format!("DESCRIPTION:{}", escape_text(&ev.description)));
        }
        let status = if ev.cancelled {
            "CANCELLED"
        } else {
            "CONFIRMED"
        };
        out.line(&format!("STATUS:{status}"));
        out.line(&format!("SEQUENCE:{}", ev.sequence));
        if let Some(p) = parties {
            out.line(&format!(
                "ORGANIZER;CN={}:mailto:{}",
                param_text(name),
                p.organizer
            ));
            out.line(&format!(
                "ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:{}",
                p.attendee
            ));
        }
        out.line("END:VEVENT");
    }
    out.line("END:VCALENDAR");
    out.0
}

/// A parameter value (RFC 5545 §3.2): quoted, without the characters a quoted value cannot hold.
fn param_text(text: &str) -> String {
    let kept: String = text
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    format!("\"{kept}\"")
}

/// Content lines, folded at 75 octets, CRLF-terminated.
#[derive(Default)]
struct Writer(String);

impl Writer {
    const MAX_OCTETS: usize = 75;

    fn line(&mut self, line: &str) {
        let mut used = 0;
        for c in line.chars() {
            let len = c.len_utf8();
            if used + len > Self::MAX_OCTETS {
                self.0.push_str("\r\n ");
                used = 1;
            }
            self.0.push(c);
            used += len;
        }
        self.0.push_str("\r\n");
    }
}

/// RFC 5545 §3.3.11 TEXT escaping; control characters other than newlines and tabs are dropped.
fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `PT2H`, `PT1H30M`, `PT45M` (`PT0S` for zero).
fn duration(minutes: u32) -> String {
    let (h, m) = (minutes / 60, minutes % 60);
    match (h, m) {
        (0, 0) => "PT0S".to_owned(),
        (h, 0) => format!("PT{h}H"),
        (0, m) => format!("PT{m}M"),
        (h, m) => format!("PT{h}H{m}M"),
    }
}

/// First and last year of the events (the year of `now` when there are none).
fn event_years(events: &[IcsEvent], now: DateTime<Utc>) -> (i32, i32) {
    let years = events
        .iter()
        .map(|e| e.starts_at.with_timezone(&Utc).year());
    match (years.clone().min(), years.max()) {
        (Some(a), Some(b)) => (a, b),
        _ => (now.year(), now.year()),
    }
}

/// `+0100`, `-0330`, `+053328` (seconds only when not zero).
fn utc_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if sec == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{sec:02}")
    }
}

/// One change of offset: when (UTC) and the offsets in force before and after.
#[derive(Debug, Clone, Copy)]
struct Transition {
    at: NaiveDateTime,
    before: chrono_tz::TzOffset,
    after: chrono_tz::TzOffset,
}

fn total(offset: &chrono_tz::TzOffset) -> i32 {
    offset.fix().local_minus_utc()
}

/// Every change of `tz`'s offset (or of its DST part or abbreviation) in `[start, end)` (UTC),
/// found by a daily scan refined by bisection to the second.
fn transitions(tz: Tz, start: NaiveDateTime, end: NaiveDateTime) -> Vec<Transition> {
    const DAY: i64 = 86_400;
    let naive = |t: i64| DateTime::from_timestamp(t, 0).map(|dt| dt.naive_utc());
    let at = |t: i64| naive(t).map(|n| tz.offset_from_utc_datetime(&n));
    let (start, end) = (start.and_utc().timestamp(), end.and_utc().timestamp());
    let mut found = Vec::new();
    let mut t = start;
    let Some(mut current) = at(t) else {
        return found;
    };
    while t < end {
        let next = (t + DAY).min(end);
        let Some(offset) = at(next) else { break };
        if offset == current {
            t = next;
            continue;
        }
        // Bisect: `lo` has `current`, `hi` something else.
        let (mut lo, mut hi) = (t, next);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if at(mid) == Some(current) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (Some(after), Some(when)) = (at(hi), naive(hi)) else {
            break;
        };
        found.push(Transition {
            at: when,
            before: current,
            after,
        });
        current = after;
        // Scan on from the change (two changes in one day are possible, if rare).
        t = hi;
    }
    found
}

fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let first_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    let last = first_next.pred_opt()?;
    let back = last.weekday().num_days_from_sunday();
    Some(last - Duration::days(i64::from(back)))
}

/// True when the changes are exactly the EU rule (01:00 UTC, last Sundays of March and October),
/// every year of `first..=last`, with the same two offsets throughout.
fn follows_eu_rule(list: &[Transition], first: i32, last: i32) -> bool {
    let Some(head) = list.first() else {
        return false;
    };
    let (standard, summer) = (total(&head.before), total(&head.after));
    let years = usize::try_from(last - first + 1).unwrap_or(0);
    if list.len() != 2 * years || summer <= standard {
        return false;
    }
    list.chunks(2).zip(first..=last).all(|(pair, year)| {
        let expect = |month| last_sunday(year, month).and_then(|d| d.and_hms_opt(1, 0, 0));
        let [spring, autumn] = pair else { return false };
        Some(spring.at) == expect(3)
            && Some(autumn.at) == expect(10)
            && total(&spring.before) == standard
            && total(&spring.after) == summer
            && total(&autumn.before) == summer
            && total(&autumn.after) == standard
            && spring.after == head.after
            && autumn.after == head.before
    })
}

/// The `VTIMEZONE` lines for `tz`, valid for the years `first..=last` (with one year of margin).
fn vtimezone(tz: Tz, first: i32, last: i32) -> Vec<String> {
    let (from_year, to_year) = (first.saturating_sub(1), last.saturating_add(1));
    let start = NaiveDate::from_ymd_opt(from_year, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
    let end = NaiveDate::from_ymd_opt(to_year.saturating_add(1), 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0));
    let (Some(start), Some(end)) = (start, end) else {
        return Vec::new();
    };
    let list = transitions(tz, start, end);
    let mut lines = vec!["BEGIN:VTIMEZONE".to_owned(), format!("TZID:{}", tz.name())];
    let component = |lines: &mut Vec<String>,
                     kind: &str,
                     onset_utc: NaiveDateTime,
                     from: &chrono_tz::TzOffset,
                     to: &chrono_tz::TzOffset,
                     rrule: Option<&str>| {
        let local = onset_utc + Duration::seconds(i64::from(total(from)));
        lines.push(format!("BEGIN:{kind}"));
        lines.push(format!("DTSTART:{}", local.format("%Y%m%dT%H%M%S")));
        lines.push(format!("TZOFFSETFROM:{}", utc_offset(total(from))));
        lines.push(format!("TZOFFSETTO:{}", utc_offset(total(to))));
        if let Some(name) = to.abbreviation() {
            lines.push(format!("TZNAME:{}", escape_text(name)));
        }
        if let Some(rrule) = rrule {
            lines.push(format!("RRULE:{rrule}"));
        }
        lines.push(format!("END:{kind}"));
    };
    let kind = |o: &chrono_tz::TzOffset| {
        if o.dst_offset() > Duration::zero() {
            "DAYLIGHT"
        } else {
            "STANDARD"
        }
    };
    if follows_eu_rule(&list, from_year, to_year) {
        // The higher offset is the DAYLIGHT one (even where the law calls winter time the
        // exception, as in Ireland).
        let (spring, autumn) = (list[0], list[1]);
        let yearly = |month: u32| format!("FREQ=YEARLY;BYMONTH={month};BYDAY=-1SU");
        component(
            &mut lines,
            "DAYLIGHT",
            spring.at,
            &spring.before,
            &spring.after,
            Some(&yearly(3)),
        );
        component(
            &mut lines,
            "STANDARD",
            autumn.at,
            &autumn.before,
            &autumn.after,
            Some(&yearly(10)),
        );
    } else {
        let initial = tz.offset_from_utc_datetime(&start);
        component(&mut lines, kind(&initial), start, &initial, &initial, None);
        for t in &list {
            component(&mut lines, kind(&t.after), t.at, &t.before, &t.after, None);
        }
    }
    lines.push("END:VTIMEZONE".to_owned());
    lines
}
