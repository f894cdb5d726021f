//! A schedule's validation errors and its JSON shape.

use super::*;

// ---------------------------------------------------------------- validation, serde

fn pointers(s: &Schedule) -> Vec<String> {
    s.validate()
        .expect_err("invalid")
        .into_iter()
        .map(|e| {
            assert!(!e.detail.is_empty() && !e.detail.contains('\n'));
            e.pointer
        })
        .collect()
}

/// Input whose sixth byte falls inside a character is refused like any other bad rule.
#[test]
fn multibyte_rules_are_refused_without_panicking() {
    for rrule in [
        "abcdeé",
        "RRULEé",
        "éééé",
        "RRULE:é",
        "abcde\u{1F600}",
        "ééé:",
    ] {
        let s = schedule(rrule, HolidayRule::NextWeek);
        assert_eq!(pointers(&s), vec!["/rrule".to_owned()], "{rrule}");
    }
}

#[test]
fn validation() {
    let ok = schedule("FREQ=MONTHLY;BYDAY=+2TH", HolidayRule::NextWeek);
    assert_eq!(ok.validate(), Ok(()));
    let mut prefixed = ok.clone();
    prefixed.rrule = "RRULE:FREQ=MONTHLY;BYDAY=+2TH".into();
    assert_eq!(prefixed.validate(), Ok(()));
    assert_eq!(
        prefixed.normalized_rrule().as_deref(),
        Ok("FREQ=MONTHLY;BYDAY=2TH")
    );
    let mut no_start = ok.clone();
    no_start.starts_on = None;
    assert_eq!(no_start.validate(), Ok(()));

    // (rule, also refused by occurrences(): the last ones only make an empty expansion)
    for (bad, unparsable) in [
        ("", true),
        ("abcdeé", true),
        ("0\u{80}\u{80}\u{80}", true),
        ("FREQ=FORTNIGHTLY", true),
        ("BYDAY=MO", true),
        ("FREQ=MONTHLY;BYDAY=+9TH", true),
        ("FREQ=MONTHLY;BYDAY=XX", true),
        ("FREQ=HOURLY", true),
        ("FREQ=MINUTELY;INTERVAL=30", true),
        ("FREQ=SECONDLY", true),
        ("FREQ=DAILY;BYHOUR=14", true),
        ("FREQ=MONTHLY;INTERVAL=0", true),
        ("DTSTART:20260101T140000\nRRULE:FREQ=MONTHLY", true),
        ("FREQ=MONTHLY;UNTIL=tomorrow", true),
        ("FREQ=MONTHLY;BYEASTER=0", true),
        ("FREQ=MONTHLY;BYDAY=+2TH;UNTIL=20251231", false),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", false),
    ] {
        let mut s = ok.clone();
        s.rrule = bad.into();
        assert_eq!(pointers(&s), ["/rrule"], "{bad:?}");
        let expanded = s.occurrences(d(2026, 1, 1), d(2026, 12, 31));
        if unparsable {
            assert!(matches!(expanded, Err(ScheduleError::Rule(_))), "{bad:?}");
        } else {
            assert_eq!(expanded, Ok(vec![]), "{bad:?}");
        }
    }
    let hourly = {
        let mut s = ok.clone();
        s.rrule = "FREQ=HOURLY".into();
        s.validate().expect_err("hourly")
    };
    assert!(hourly[0].detail.contains("HOURLY"), "{hourly:?}");

    for bad in ["25:00", "14:60", "14h00", "2:30", "14:00:00", " 14:00", ""] {
        let mut s = ok.clone();
        s.start_time = bad.into();
        assert_eq!(pointers(&s), ["/start_time"], "{bad:?}");
    }
    for good in ["00:00", "23:59", "09:05"] {
        let mut s = ok.clone();
        s.start_time = good.into();
        assert_eq!(s.validate(), Ok(()), "{good:?}");
    }
    for bad in ["Europe/Pariss", "europe/paris", "CET+1", ""] {
        let mut s = ok.clone();
        s.time_zone = bad.into();
        assert_eq!(pointers(&s), ["/time_zone"], "{bad:?}");
    }
    let mut s = ok.clone();
    s.time_zone = "America/Cayenne".into();
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(s.tz(), Ok(Tz::America__Cayenne));

    for (duration, valid) in [
        (14, false),
        (15, true),
        (600, true),
        (601, false),
        (0, false),
    ] {
        let mut s = ok.clone();
        s.duration_minutes = duration;
        s.minutes_per_new_case = 1;
        s.minutes_per_follow_up = 1;
        if valid {
            assert_eq!(s.validate(), Ok(()), "{duration}");
        } else {
            assert_eq!(pointers(&s), ["/duration_minutes"], "{duration}");
        }
    }
    let mut s = ok.clone();
    s.minutes_per_new_case = 0;
    s.minutes_per_follow_up = 121;
    assert_eq!(
        pointers(&s),
        ["/minutes_per_new_case", "/minutes_per_follow_up"]
    );
    s.minutes_per_new_case = 120;
    s.minutes_per_follow_up = 120;
    assert_eq!(s.validate(), Ok(()));

    let mut s = ok.clone();
    s.location = "é".repeat(200);
    assert_eq!(s.validate(), Ok(()));
    s.location = "é".repeat(201);
    assert_eq!(pointers(&s), ["/location"]);
    s.location = "Salle\n2".into();
    assert_eq!(pointers(&s), ["/location"]);

    // Everything wrong at once: every problem reported.
    let all = Schedule {
        rrule: "FREQ=HOURLY".into(),
        start_time: "noon".into(),
        time_zone: "Nowhere/Land".into(),
        duration_minutes: 5,
        minutes_per_new_case: 0,
        minutes_per_follow_up: 0,
        location: "x".repeat(201),
        on_holiday: HolidayRule::Skip,
        starts_on: None,
    };
    let mut got = pointers(&all);
    got.sort();
    assert_eq!(
        got,
        [
            "/duration_minutes",
            "/location",
            "/minutes_per_follow_up",
            "/minutes_per_new_case",
            "/rrule",
            "/start_time",
            "/time_zone"
        ]
    );
}

#[test]
fn serde_shape() {
    let body = r#"{"rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00",
        "time_zone": "Europe/Paris", "duration_minutes": 120, "minutes_per_new_case": 20,
        "minutes_per_follow_up": 10, "location": "…", "on_holiday": "next_week"}"#;
    let s: Schedule = serde_json::from_str(body).expect("spec example");
    assert_eq!(s.on_holiday, HolidayRule::NextWeek);
    assert_eq!(s.starts_on, None);
    assert_eq!(s.validate(), Ok(()));

    let minimal = r#"{"rrule": "FREQ=WEEKLY;BYDAY=MO", "start_time": "09:30",
        "duration_minutes": 60, "minutes_per_new_case": 15, "minutes_per_follow_up": 5,
        "starts_on": "2026-09-01"}"#;
    let s: Schedule = serde_json::from_str(minimal).expect("defaults");
    assert_eq!(s.time_zone, "Europe/Paris");
    assert_eq!(s.location, "");
    assert_eq!(s.on_holiday, HolidayRule::NextWeek);
    assert_eq!(s.starts_on, Some(d(2026, 9, 1)));

    for (text, rule) in [
        ("\"next_week\"", HolidayRule::NextWeek),
        ("\"skip\"", HolidayRule::Skip),
        ("\"keep\"", HolidayRule::Keep),
    ] {
        assert_eq!(
            serde_json::from_str::<HolidayRule>(text).expect("rule"),
            rule
        );
        assert_eq!(serde_json::to_string(&rule).expect("json"), text);
    }
    assert!(serde_json::from_str::<HolidayRule>("\"NextWeek\"").is_err());
    let unknown = minimal.replace("\"starts_on\"", "\"colour\": 1, \"starts_on\"");
    assert!(serde_json::from_str::<Schedule>(&unknown).is_err());
    let json = serde_json::to_value(&s).expect("json");
    assert_eq!(json["on_holiday"], "next_week");
    assert_eq!(json["starts_on"], "2026-09-01");
}
