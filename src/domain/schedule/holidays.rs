//! French public holidays (metropolitan France) and the Gregorian computus they hang on.
//!
//! The eleven days of the *Code du travail* (art. L3133-1) observed everywhere in metropolitan
//! France. Local additions (Alsace-Moselle's Good Friday and 26 December, the overseas
//! abolition-of-slavery days) are not included.

use chrono::{Datelike, Days, NaiveDate};

/// Easter Sunday of `year` in the Gregorian calendar (anonymous Gregorian algorithm, a.k.a.
/// Meeus/Jones/Butcher). Valid for every year chrono can represent after 1582.
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    // month is 3 or 4 and day 1..=31 by construction of the algorithm.
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
        .unwrap_or_else(|| unreachable!("computus gives a valid March/April date"))
}

/// The eleven public holidays of metropolitan France in `year`, in date order.
///
/// Ascension can fall on 1 or 8 May (as in 2008); both entries are then kept, so the list
/// always has eleven entries.
pub fn french_holidays(year: i32) -> Vec<(NaiveDate, &'static str)> {
    let fixed = |month: u32, day: u32| {
        NaiveDate::from_ymd_opt(year, month, day)
            .unwrap_or_else(|| unreachable!("fixed holidays are valid dates in every year"))
    };
    let easter = easter_sunday(year);
    let after_easter = |days: u64| easter + Days::new(days);
    let mut days = vec![
        (fixed(1, 1), "Jour de l'an"),
        (after_easter(1), "Lundi de Pâques"),
        (fixed(5, 1), "Fête du Travail"),
        (fixed(5, 8), "Victoire 1945"),
        (after_easter(39), "Ascension"),
        (after_easter(50), "Lundi de Pentecôte"),
        (fixed(7, 14), "Fête nationale"),
        (fixed(8, 15), "Assomption"),
        (fixed(11, 1), "Toussaint"),
        (fixed(11, 11), "Armistice 1918"),
        (fixed(12, 25), "Noël"),
    ];
    days.sort_by_key(|&(date, _)| date);
    days
}

/// The name of the French public holiday on `date`, if it is one.
pub fn french_holiday(date: NaiveDate) -> Option<&'static str> {
    // Cheap pre-filter: holidays only fall in January, March to August, November, December.
    if matches!(date.month(), 2 | 9 | 10) {
        return None;
    }
    french_holidays(date.year())
        .into_iter()
        .find_map(|(day, name)| (day == date).then_some(name))
}
