//! Schedule tests. Expected dates are computed here independently of the module: plain date
//! arithmetic for the rules, hard-coded tables for Easter and the holidays.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use super::*;

mod ics;
mod validation;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("valid test date")
}

fn schedule(rrule: &str, on_holiday: HolidayRule) -> Schedule {
    Schedule {
        rrule: rrule.into(),
        start_time: "14:00".into(),
        time_zone: "Europe/Paris".into(),
        duration_minutes: 120,
        minutes_per_new_case: 20,
        minutes_per_follow_up: 10,
        location: "Mairie, salle du conseil".into(),
        on_holiday,
        starts_on: Some(d(2026, 1, 1)),
    }
}

// ---------------------------------------------------------------- Easter and holidays

/// Easter Sunday 2000–2040, from published tables (checked against two sources).
const EASTER: [(i32, u32, u32); 41] = [
    (2000, 4, 23),
    (2001, 4, 15),
    (2002, 3, 31),
    (2003, 4, 20),
    (2004, 4, 11),
    (2005, 3, 27),
    (2006, 4, 16),
    (2007, 4, 8),
    (2008, 3, 23),
    (2009, 4, 12),
    (2010, 4, 4),
    (2011, 4, 24),
    (2012, 4, 8),
    (2013, 3, 31),
    (2014, 4, 20),
    (2015, 4, 5),
    (2016, 3, 27),
    (2017, 4, 16),
    (2018, 4, 1),
    (2019, 4, 21),
    (2020, 4, 12),
    (2021, 4, 4),
    (2022, 4, 17),
    (2023, 4, 9),
    (2024, 3, 31),
    (2025, 4, 20),
    (2026, 4, 5),
    (2027, 3, 28),
    (2028, 4, 16),
    (2029, 4, 1),
    (2030, 4, 21),
    (2031, 4, 13),
    (2032, 3, 28),
    (2033, 4, 17),
    (2034, 4, 9),
    (2035, 3, 25),
    (2036, 4, 13),
    (2037, 4, 5),
    (2038, 4, 25),
    (2039, 4, 10),
    (2040, 4, 1),
];

#[test]
fn easter_sunday_matches_the_published_table() {
    for (y, m, day) in EASTER {
        assert_eq!(easter_sunday(y), d(y, m, day), "Easter {y}");
        assert_eq!(easter_sunday(y).weekday(), Weekday::Sun);
    }
    // Extremes of the Gregorian range: 22 March (1818, 2285) and 25 April (1943, 2038).
    assert_eq!(easter_sunday(1818), d(1818, 3, 22));
    assert_eq!(easter_sunday(2285), d(2285, 3, 22));
    assert_eq!(easter_sunday(1943), d(1943, 4, 25));
}

#[test]
fn french_holidays_2026_and_2027_exactly() {
    assert_eq!(
        french_holidays(2026),
        vec![
            (d(2026, 1, 1), "Jour de l'an"),
            (d(2026, 4, 6), "Lundi de Pâques"),
            (d(2026, 5, 1), "Fête du Travail"),
            (d(2026, 5, 8), "Victoire 1945"),
            (d(2026, 5, 14), "Ascension"),
            (d(2026, 5, 25), "Lundi de Pentecôte"),
            (d(2026, 7, 14), "Fête nationale"),
            (d(2026, 8, 15), "Assomption"),
            (d(2026, 11, 1), "Toussaint"),
            (d(2026, 11, 11), "Armistice 1918"),
            (d(2026, 12, 25), "Noël"),
        ]
    );
    assert_eq!(
        french_holidays(2027),
        vec![
            (d(2027, 1, 1), "Jour de l'an"),
            (d(2027, 3, 29), "Lundi de Pâques"),
            (d(2027, 5, 1), "Fête du Travail"),
            (d(2027, 5, 6), "Ascension"),
            (d(2027, 5, 8), "Victoire 1945"),
            (d(2027, 5, 17), "Lundi de Pentecôte"),
            (d(2027, 7, 14), "Fête nationale"),
            (d(2027, 8, 15), "Assomption"),
            (d(2027, 11, 1), "Toussaint"),
            (d(2027, 11, 11), "Armistice 1918"),
            (d(2027, 12, 25), "Noël"),
        ]
    );
    // 2008: Ascension on 1 May; both kept.
    let h2008 = french_holidays(2008);
    assert_eq!(h2008.len(), 11);
    assert_eq!(
        h2008
            .iter()
            .filter(|(day, _)| *day == d(2008, 5, 1))
            .count(),
        2
    );
}

#[test]
fn french_holiday_lookup() {
    assert_eq!(french_holiday(d(2026, 5, 14)), Some("Ascension"));
    assert_eq!(french_holiday(d(2027, 3, 29)), Some("Lundi de Pâques"));
    assert_eq!(french_holiday(d(2030, 6, 10)), Some("Lundi de Pentecôte"));
    assert_eq!(
        french_holiday(d(2026, 4, 5)),
        None,
        "Easter Sunday itself is not listed"
    );
    assert_eq!(french_holiday(d(2026, 12, 26)), None);
    assert_eq!(french_holiday(d(2026, 5, 15)), None);
}

/// Holidays of 2025–2036, hard-coded: fixed days plus the Easter-based ones written out by hand
/// (Easter Monday, Ascension = Easter + 39, Whit Monday = Easter + 50).
fn holiday_table() -> BTreeSet<NaiveDate> {
    const MOVABLE: [(i32, [(u32, u32); 3]); 12] = [
        (2025, [(4, 21), (5, 29), (6, 9)]),
        (2026, [(4, 6), (5, 14), (5, 25)]),
        (2027, [(3, 29), (5, 6), (5, 17)]),
        (2028, [(4, 17), (5, 25), (6, 5)]),
        (2029, [(4, 2), (5, 10), (5, 21)]),
        (2030, [(4, 22), (5, 30), (6, 10)]),
        (2031, [(4, 14), (5, 22), (6, 2)]),
        (2032, [(3, 29), (5, 6), (5, 17)]),
        (2033, [(4, 18), (5, 26), (6, 6)]),
        (2034, [(4, 10), (5, 18), (5, 29)]),
        (2035, [(3, 26), (5, 3), (5, 14)]),
        (2036, [(4, 14), (5, 22), (6, 2)]),
    ];
    const FIXED: [(u32, u32); 8] = [
        (1, 1),
        (5, 1),
        (5, 8),
        (7, 14),
        (8, 15),
        (11, 1),
        (11, 11),
        (12, 25),
    ];
    let mut set = BTreeSet::new();
    for (year, movable) in MOVABLE {
        for (m, day) in FIXED.into_iter().chain(movable) {
            set.insert(d(year, m, day));
        }
    }
    set
}

#[test]
fn hard_coded_holiday_table_agrees_with_the_module() {
    let table = holiday_table();
    let module: BTreeSet<NaiveDate> = (2025..=2036)
        .flat_map(french_holidays)
        .map(|(day, _)| day)
        .collect();
    assert_eq!(table, module);
}

// ---------------------------------------------------------------- ten years of sessions

fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u8) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n).expect("nth weekday exists")
}

fn last_weekday(year: i32, month: u32, weekday: Weekday) -> NaiveDate {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let mut day = d(ny, nm, 1).pred_opt().expect("previous day");
    while day.weekday() != weekday {
        day = day.pred_opt().expect("previous day");
    }
    day
}

fn months_2026_2035() -> impl Iterator<Item = (i32, u32)> {
    (2026..=2035).flat_map(|y| (1..=12).map(move |m| (y, m)))
}

/// Europe/Paris is on summer time (+02:00) from 01:00Z on the last Sunday of March to 01:00Z on
/// the last Sunday of October; a 14:00 local session is then 12:00Z, else 13:00Z.
fn expected_utc_hour_for_14h(date: NaiveDate) -> u32 {
    let spring = last_weekday(date.year(), 3, Weekday::Sun);
    let autumn = last_weekday(date.year(), 10, Weekday::Sun);
    if date >= spring && date < autumn {
        12
    } else {
        13
    }
}

/// The holiday rules, written out again for the test: (key, date, flagged).
fn apply_rule(
    keys: &[NaiveDate],
    rule: HolidayRule,
    holidays: &BTreeSet<NaiveDate>,
    until: NaiveDate,
) -> Vec<(NaiveDate, NaiveDate, bool)> {
    let mut out = Vec::new();
    for &key in keys {
        if !holidays.contains(&key) {
            out.push((key, key, false));
            continue;
        }
        match rule {
            HolidayRule::Skip => {}
            HolidayRule::Keep => out.push((key, key, true)),
            HolidayRule::NextWeek => {
                let mut date = key.checked_add_days(Days::new(7)).expect("date");
                while holidays.contains(&date) {
                    date = date.checked_add_days(Days::new(7)).expect("date");
                }
                if !keys.contains(&date) && date <= until {
                    out.push((key, date, true));
                }
            }
        }
    }
    out.sort_by_key(|&(key, date, _)| (date, key));
    out
}

fn check_ten_years(rrule: &str, keys: &[NaiveDate], collisions: &[NaiveDate]) {
    let holidays = holiday_table();
    let (from, until) = (d(2026, 1, 1), d(2035, 12, 31));
    // The collisions the test expects are really there (guards the test itself).
    let found: Vec<NaiveDate> = keys
        .iter()
        .copied()
        .filter(|k| holidays.contains(k))
        .collect();
    assert_eq!(found, collisions, "{rrule}: holiday collisions");
    for rule in [HolidayRule::NextWeek, HolidayRule::Skip, HolidayRule::Keep] {
        let got = schedule(rrule, rule)
            .occurrences(from, until)
            .expect("expands");
        let got_triples: Vec<_> = got
            .iter()
            .map(|o| (o.key, o.date, o.moved_from_holiday.is_some()))
            .collect();
        assert_eq!(
            got_triples,
            apply_rule(keys, rule, &holidays, until),
            "{rrule} {rule:?}"
        );
        for o in &got {
            assert_eq!(o.starts_at.date_naive(), o.date);
            assert_eq!((o.starts_at.hour(), o.starts_at.minute()), (14, 0));
            let utc = o.starts_at.with_timezone(&Utc);
            assert_eq!(
                utc.hour(),
                expected_utc_hour_for_14h(o.date),
                "{rrule} {o:?}"
            );
            assert_eq!(utc.minute(), 0);
            let offset = if utc.hour() == 12 { 7200 } else { 3600 };
            assert_eq!(o.starts_at.offset().local_minus_utc(), offset);
            if let Some(name) = o.moved_from_holiday {
                assert_eq!(french_holiday(o.key), Some(name));
            }
        }
        match rule {
            HolidayRule::Skip => assert_eq!(got.len(), keys.len() - collisions.len()),
            HolidayRule::Keep => assert_eq!(got.len(), keys.len()),
            HolidayRule::NextWeek => {}
        }
    }
}

#[test]
fn second_thursday_2026_2035() {
    let keys: Vec<_> = months_2026_2035()
        .map(|(y, m)| nth_weekday(y, m, Weekday::Thu, 2))
        .collect();
    assert_eq!(keys.len(), 120);
    let collisions = [
        d(2026, 5, 14),
        d(2027, 11, 11),
        d(2029, 5, 10),
        d(2031, 5, 8),
        d(2032, 11, 11),
        d(2033, 7, 14),
    ];
    check_ten_years("FREQ=MONTHLY;BYDAY=+2TH", &keys, &collisions);

    // Spot checks written out by hand.
    let s = schedule("FREQ=MONTHLY;BYDAY=+2TH", HolidayRule::NextWeek);
    let got = s
        .occurrences(d(2026, 1, 1), d(2035, 12, 31))
        .expect("expands");
    let by_key: BTreeMap<_, _> = got.iter().map(|o| (o.key, o)).collect();
    let ascension = by_key[&d(2026, 5, 14)];
    assert_eq!(ascension.date, d(2026, 5, 21));
    assert_eq!(ascension.moved_from_holiday, Some("Ascension"));
    assert_eq!(
        ascension.starts_at,
        DateTime::parse_from_rfc3339("2026-05-21T14:00:00+02:00").expect("rfc3339")
    );
    let armistice = by_key[&d(2027, 11, 11)];
    assert_eq!(armistice.date, d(2027, 11, 18));
    assert_eq!(armistice.moved_from_holiday, Some("Armistice 1918"));
    assert_eq!(
        armistice.starts_at,
        DateTime::parse_from_rfc3339("2027-11-18T14:00:00+01:00").expect("rfc3339")
    );
    assert_eq!(by_key[&d(2033, 7, 14)].date, d(2033, 7, 21));
    // Either side of the March 2026 change: 12 March is winter time, 9 April summer time.
    assert_eq!(
        by_key[&d(2026, 3, 12)].starts_at.with_timezone(&Utc),
        Utc.with_ymd_and_hms(2026, 3, 12, 13, 0, 0).unwrap()
    );
    assert_eq!(
        by_key[&d(2026, 4, 9)].starts_at.with_timezone(&Utc),
        Utc.with_ymd_and_hms(2026, 4, 9, 12, 0, 0).unwrap()
    );
    assert_eq!(
        by_key[&d(2026, 11, 12)].starts_at.with_timezone(&Utc),
        Utc.with_ymd_and_hms(2026, 11, 12, 13, 0, 0).unwrap()
    );
}

#[test]
fn last_tuesday_2026_2035() {
    let keys: Vec<_> = months_2026_2035()
        .map(|(y, m)| last_weekday(y, m, Weekday::Tue))
        .collect();
    assert_eq!(keys.len(), 120);
    check_ten_years(
        "FREQ=MONTHLY;BYDAY=-1TU",
        &keys,
        &[d(2029, 12, 25), d(2035, 12, 25)],
    );

    let s = schedule("FREQ=MONTHLY;BYDAY=-1TU", HolidayRule::NextWeek);
    let got = s
        .occurrences(d(2026, 1, 1), d(2035, 12, 31))
        .expect("expands");
    // 25 Dec 2029 → 1 Jan 2030 is a holiday too → 8 Jan 2030.
    let christmas = got
        .iter()
        .find(|o| o.key == d(2029, 12, 25))
        .expect("moved");
    assert_eq!(christmas.date, d(2030, 1, 8));
    assert_eq!(christmas.moved_from_holiday, Some("Noël"));
    // 25 Dec 2035 would move to 8 Jan 2036: outside the window.
    assert!(got.iter().all(|o| o.key != d(2035, 12, 25)));
    // Last Tuesday of March 2030 (26th) is before the change (31st): winter time.
    let march_2030 = got
        .iter()
        .find(|o| o.key == d(2030, 3, 26))
        .expect("present");
    assert_eq!(march_2030.starts_at.with_timezone(&Utc).hour(), 13);
    // Last Tuesday of October 2026 (27th) is after the change (25th): winter time again.
    let oct_2026 = got
        .iter()
        .find(|o| o.key == d(2026, 10, 27))
        .expect("present");
    assert_eq!(oct_2026.starts_at.with_timezone(&Utc).hour(), 13);
    let mar_2026 = got
        .iter()
        .find(|o| o.key == d(2026, 3, 31))
        .expect("present");
    assert_eq!(mar_2026.starts_at.with_timezone(&Utc).hour(), 12);
}

#[test]
fn every_other_monday_2026_2035() {
    // DTSTART 2026-01-01 is a Thursday: its week's Monday (29 Dec) is before the start, and
    // INTERVAL=2 counts weeks from that week, so the first session is Monday 12 January.
    let mut keys = Vec::new();
    let mut day = d(2026, 1, 12);
    while day <= d(2035, 12, 31) {
        keys.push(day);
        day = day.checked_add_days(Days::new(14)).expect("date");
    }
    let collisions = [
        d(2026, 4, 6),
        d(2027, 5, 17),
        d(2027, 11, 1),
        d(2028, 4, 17),
        d(2028, 5, 1),
        d(2028, 12, 25),
        d(2029, 4, 2),
        d(2030, 6, 10),
        d(2030, 11, 11),
        d(2031, 4, 14),
        d(2032, 3, 29),
        d(2033, 6, 6),
        d(2033, 8, 15),
        d(2034, 4, 10),
        d(2034, 5, 8),
        d(2035, 1, 1),
        d(2035, 3, 26),
    ];
    check_ten_years("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO", &keys, &collisions);
    let s = schedule("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO", HolidayRule::NextWeek);
    let got = s
        .occurrences(d(2026, 4, 1), d(2026, 4, 30))
        .expect("expands");
    let dates: Vec<_> = got.iter().map(|o| (o.key, o.date)).collect();
    assert_eq!(
        dates,
        vec![
            (d(2026, 4, 6), d(2026, 4, 13)),
            (d(2026, 4, 20), d(2026, 4, 20))
        ]
    );
}

#[test]
fn next_week_skips_three_holidays_in_a_row() {
    // 2042: 1 May, 8 May and Ascension (15 May) are all Thursdays.
    let mut s = schedule("FREQ=MONTHLY;BYDAY=+1TH", HolidayRule::NextWeek);
    s.starts_on = Some(d(2042, 1, 1));
    let got = s
        .occurrences(d(2042, 5, 1), d(2042, 5, 31))
        .expect("expands");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].key, got[0].date), (d(2042, 5, 1), d(2042, 5, 22)));
    assert_eq!(got[0].moved_from_holiday, Some("Fête du Travail"));
}

#[test]
fn weekly_rule_merges_a_moved_session_into_next_weeks() {
    let mut s = schedule("FREQ=WEEKLY;BYDAY=MO", HolidayRule::NextWeek);
    s.starts_on = Some(d(2026, 3, 30));
    let got = s
        .occurrences(d(2026, 3, 30), d(2026, 4, 20))
        .expect("expands");
    let dates: Vec<_> = got
        .iter()
        .map(|o| (o.key, o.date, o.moved_from_holiday))
        .collect();
    assert_eq!(
        dates,
        vec![
            (d(2026, 3, 30), d(2026, 3, 30), None),
            (d(2026, 4, 13), d(2026, 4, 13), None),
            (d(2026, 4, 20), d(2026, 4, 20), None),
        ]
    );
}

// ---------------------------------------------------------------- DST edge cases, windows

#[test]
fn start_time_in_the_dst_gap_moves_forward_and_in_the_overlap_takes_the_earlier() {
    let mut s = schedule("FREQ=DAILY", HolidayRule::Keep);
    s.start_time = "02:30".into();
    s.starts_on = Some(d(2026, 3, 27));
    let got = s
        .occurrences(d(2026, 3, 28), d(2026, 3, 30))
        .expect("expands");
    let starts: Vec<String> = got.iter().map(|o| o.starts_at.to_rfc3339()).collect();
    assert_eq!(
        starts,
        [
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:30:00+02:00", // 02:30 does not exist that night
            "2026-03-30T02:30:00+02:00",
        ]
    );
    assert_eq!(got[1].date, d(2026, 3, 29));
    let got = s
        .occurrences(d(2026, 10, 24), d(2026, 10, 26))
        .expect("expands");
    let utc: Vec<DateTime<Utc>> = got
        .iter()
        .map(|o| o.starts_at.with_timezone(&Utc))
        .collect();
    assert_eq!(
        utc,
        [
            Utc.with_ymd_and_hms(2026, 10, 24, 0, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap(), // first 02:30 (+02:00)
            Utc.with_ymd_and_hms(2026, 10, 26, 1, 30, 0).unwrap(),
        ]
    );
    // Another zone: New York springs forward at 02:00 on 8 March 2026.
    s.time_zone = "America/New_York".into();
    s.starts_on = Some(d(2026, 3, 1));
    let got = s
        .occurrences(d(2026, 3, 8), d(2026, 3, 8))
        .expect("expands");
    assert_eq!(got[0].starts_at.to_rfc3339(), "2026-03-08T03:30:00-04:00");
}

#[test]
fn overlapping_windows_give_the_same_keys() {
    for rrule in [
        "FREQ=MONTHLY;BYDAY=+2TH",
        "FREQ=MONTHLY;BYDAY=-1TU",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO",
    ] {
        for rule in [HolidayRule::NextWeek, HolidayRule::Skip, HolidayRule::Keep] {
            let s = schedule(rrule, rule);
            let a = s.occurrences(d(2026, 1, 1), d(2026, 12, 31)).expect("a");
            let b = s.occurrences(d(2026, 5, 15), d(2027, 6, 30)).expect("b");
            let c = s.occurrences(d(2026, 1, 1), d(2027, 6, 30)).expect("c");
            let in_ab = |o: &&Occurrence| o.date >= d(2026, 5, 15) && o.date <= d(2026, 12, 31);
            let a_part: Vec<_> = a.iter().filter(in_ab).collect();
            let b_part: Vec<_> = b.iter().filter(in_ab).collect();
            assert!(!a_part.is_empty());
            assert_eq!(a_part, b_part, "{rrule} {rule:?}");
            let union: BTreeSet<_> = a.iter().chain(&b).map(|o| o.key).collect();
            let whole: BTreeSet<_> = c.iter().map(|o| o.key).collect();
            assert_eq!(union, whole, "{rrule} {rule:?}");
            // Re-running is identical.
            assert_eq!(s.occurrences(d(2026, 5, 15), d(2027, 6, 30)).expect("b"), b);
        }
    }
    // A session moved from before the window's start into it keeps its key.
    let s = schedule("FREQ=MONTHLY;BYDAY=+2TH", HolidayRule::NextWeek);
    let got = s
        .occurrences(d(2026, 5, 15), d(2026, 5, 31))
        .expect("expands");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].key, got[0].date), (d(2026, 5, 14), d(2026, 5, 21)));
}

#[test]
fn until_count_and_windows() {
    let mut s = schedule(
        "FREQ=MONTHLY;BYDAY=+2TH;UNTIL=20260611",
        HolidayRule::NextWeek,
    );
    let dates: Vec<_> = s
        .occurrences(d(2026, 1, 1), d(2026, 12, 31))
        .expect("expands")
        .iter()
        .map(|o| o.date)
        .collect();
    assert_eq!(dates.last(), Some(&d(2026, 6, 11)));
    assert_eq!(dates.len(), 6);
    // 11 June 14:00 Paris is 12:00Z: an UNTIL one second earlier excludes it.
    s.rrule = "RRULE:FREQ=MONTHLY;BYDAY=+2TH;UNTIL=20260611T115959Z".into();
    let got = s
        .occurrences(d(2026, 1, 1), d(2026, 12, 31))
        .expect("expands");
    assert_eq!(got.last().map(|o| o.key), Some(d(2026, 5, 14)));
    s.rrule = "FREQ=MONTHLY;BYDAY=+2TH;COUNT=3".into();
    let got = s
        .occurrences(d(2026, 2, 1), d(2026, 12, 31))
        .expect("expands");
    let keys: Vec<_> = got.iter().map(|o| o.key).collect();
    assert_eq!(
        keys,
        [d(2026, 2, 12), d(2026, 3, 12)],
        "COUNT counts from starts_on"
    );
    // No starts_on: the rule runs from the window's start.
    s.starts_on = None;
    let got = s
        .occurrences(d(2026, 2, 1), d(2026, 12, 31))
        .expect("expands");
    assert_eq!(got.len(), 3);
    assert!(matches!(
        s.occurrences(d(2026, 2, 2), d(2026, 2, 1)),
        Err(ScheduleError::Window { .. })
    ));
    s.starts_on = Some(d(2030, 1, 1));
    assert_eq!(s.occurrences(d(2026, 1, 1), d(2026, 12, 31)), Ok(vec![]));
    s.time_zone = "Mars/Olympus".into();
    assert!(matches!(
        s.occurrences(d(2026, 1, 1), d(2026, 12, 31)),
        Err(ScheduleError::TimeZone(_))
    ));
}
