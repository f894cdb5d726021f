//! Yearly statistics for the CLSM's report, with small counts suppressed.

use super::*;
use crate::domain::session::Outcome;

/// Query of `GET …/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    #[param(minimum = 2000, maximum = 2100)]
    pub year: i32,
}

/// A count, suppressed when from 1 to 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Count {
    pub key: String,
    /// `null` when suppressed.
    pub count: Option<i64>,
    pub suppressed: bool,
}

/// Counts of a partition of a shown total (months, organisation kinds, outcomes): small counts
/// are suppressed, then the smallest shown non-zero cells are suppressed too until the hidden
/// cells are at least two and their sum (the total minus the shown cells) can be split among
/// them in more than one way (not all ones), so that no hidden count can be recovered by
/// subtracting the others from the total.
fn partition(cells: Vec<(String, i64)>) -> Vec<Count> {
    let mut out: Vec<Count> = cells.iter().map(|(k, n)| count(k.clone(), *n)).collect();
    loop {
        let hidden: Vec<i64> = cells
            .iter()
            .zip(&out)
            .filter(|(_, c)| c.suppressed)
            .map(|((_, n), _)| *n)
            .collect();
        let safe = hidden.len() >= 2 && hidden.iter().sum::<i64>() > hidden.len() as i64;
        if hidden.is_empty() || safe {
            break;
        }
        let Some((i, _)) = cells
            .iter()
            .enumerate()
            .filter(|(i, (_, n))| *n > 0 && !out[*i].suppressed)
            .min_by_key(|(_, (_, n))| *n)
        else {
            break;
        };
        out[i].count = None;
        out[i].suppressed = true;
    }
    out
}

fn count(key: impl Into<String>, n: i64) -> Count {
    let suppressed = n > 0 && n < SUPPRESS_BELOW;
    Count {
        key: key.into(),
        count: if suppressed { None } else { Some(n) },
        suppressed,
    }
}

/// A median delay in days, suppressed when computed over fewer than 5 cases. The number of cases
/// behind it is not shown: differences between the delays' case counts would reveal small groups
/// (closed without review, say).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delay {
    pub median_days: Option<f64>,
    pub suppressed: bool,
}

/// Yearly statistics for the CLSM's report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub year: i32,
    pub referrals: Count,
    pub by_month: Vec<Count>,
    pub by_need: Vec<Count>,
    pub by_referring_org_kind: Vec<Count>,
    pub decisions_by_outcome: Vec<Count>,
    pub referral_to_first_review: Delay,
    pub first_review_to_closure: Delay,
    pub referral_to_closure: Delay,
}

fn median(mut days: Vec<f64>) -> Delay {
    let n = days.len() as i64;
    if n == 0 {
        return Delay {
            median_days: None,
            suppressed: false,
        };
    }
    if n < SUPPRESS_BELOW {
        return Delay {
            median_days: None,
            suppressed: true,
        };
    }
    days.sort_by(|a, b| a.total_cmp(b));
    let mid = days.len() / 2;
    let m = if days.len().is_multiple_of(2) {
        (days[mid - 1] + days[mid]) / 2.0
    } else {
        days[mid]
    };
    Delay {
        median_days: Some((m * 10.0).round() / 10.0),
        suppressed: false,
    }
}

fn days_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_seconds() as f64 / 86_400.0
}

/// `GET …/stats?year=`.
pub async fn stats(state: &AppState, who: &CelluleMember, year: i32) -> Result<Stats, Error> {
    allowed(state, who, "read_stats").await?;
    if !(2000..=2100).contains(&year) {
        return Err(Error::invalid("/year", "must be between 2000 and 2100"));
    }
    let cellule = slug(who);
    let start = |y: i32| {
        NaiveDate::from_ymd_opt(y, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or_else(|| Error::invalid("/year", "not a year"))
    };
    let (from, to) = (start(year)?, start(year + 1)?);
    let cases = state.db.stats_cases(cellule, from, to).await?;
    let outcomes = state.db.stats_outcomes(cellule, from, to).await?;
    let dir = load_directory(state, cellule).await?;

    let mut by_month = [0i64; 12];
    let mut by_need = std::collections::BTreeMap::new();
    let mut by_kind = std::collections::BTreeMap::new();
    let (mut to_review, mut to_close_from_review, mut to_close) =
        (Vec::new(), Vec::new(), Vec::new());
    for c in &cases {
        by_month[c.submitted_at.month0() as usize] += 1;
        for &n in c.needs.as_slice() {
            *by_need.entry(n.as_str()).or_insert(0i64) += 1;
        }
        let kind = dir
            .kind_of_organisation(&c.referring_org)
            .map_or("unknown", |k| k.as_str());
        *by_kind.entry(kind).or_insert(0i64) += 1;
        if let Some(r) = c.first_review_at {
            to_review.push(days_between(c.submitted_at, r));
            if let Some(closed) = c.closed_at {
                to_close_from_review.push(days_between(r, closed));
            }
        }
        if let Some(closed) = c.closed_at {
            to_close.push(days_between(c.submitted_at, closed));
        }
    }
    let mut by_outcome = std::collections::BTreeMap::new();
    for o in [
        Outcome::Routed,
        Outcome::FollowUp,
        Outcome::Closed,
        Outcome::Deferred,
    ] {
        by_outcome.insert(o.as_str(), 0i64);
    }
    for o in &outcomes {
        *by_outcome.entry(o.as_str()).or_insert(0) += 1;
    }
    for n in Need::ALL {
        by_need.entry(n.as_str()).or_insert(0);
    }
    Ok(Stats {
        year,
        referrals: count("total", cases.len() as i64),
        by_month: partition(
            by_month
                .iter()
                .enumerate()
                .map(|(m, n)| (format!("{year}-{:02}", m + 1), *n))
                .collect(),
        ),
        // Needs overlap (a case has several): not a partition of the total.
        by_need: by_need.into_iter().map(|(k, n)| count(k, n)).collect(),
        by_referring_org_kind: partition(
            by_kind
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
        ),
        decisions_by_outcome: partition(
            by_outcome
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
        ),
        referral_to_first_review: median(to_review),
        first_review_to_closure: median(to_close_from_review),
        referral_to_closure: median(to_close),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_are_suppressed() {
        assert_eq!(count("a", 0).count, Some(0));
        assert!(!count("a", 0).suppressed);
        for n in 1..5 {
            let c = count("a", n);
            assert_eq!(c.count, None);
            assert!(c.suppressed);
        }
        assert_eq!(count("a", 5).count, Some(5));
    }

    #[test]
    fn a_lone_suppressed_cell_takes_another_with_it() {
        let cells = |v: &[i64]| {
            v.iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), *n))
                .collect()
        };
        let out = partition(cells(&[3, 7, 12, 0]));
        let shown: Vec<Option<i64>> = out.iter().map(|c| c.count).collect();
        assert_eq!(shown, [None, None, Some(12), Some(0)]);
        // Two suppressed cells already hide each other.
        let out = partition(cells(&[3, 2, 12]));
        let shown: Vec<Option<i64>> = out.iter().map(|c| c.count).collect();
        assert_eq!(shown, [None, None, Some(12)]);
        // ... unless they are all ones: their sum would give each away.
        let out = partition(cells(&[1, 1, 12, 30]));
        let shown: Vec<Option<i64>> = out.iter().map(|c| c.count).collect();
        assert_eq!(shown, [None, None, None, Some(30)]);
        // One small cell and nothing else to hide it with: it is the total, itself suppressed.
        let out = partition(cells(&[2, 0]));
        assert_eq!(out[0].count, None);
        assert_eq!(out[1].count, Some(0));
        // Nothing small: nothing hidden.
        assert!(partition(cells(&[5, 9])).iter().all(|c| !c.suppressed));
    }

    #[test]
    fn medians_are_suppressed_below_five_cases() {
        assert!(median(vec![1.0, 2.0, 3.0, 4.0]).suppressed);
        let m = median(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(m.median_days, Some(3.0));
        let m = median(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.median_days, Some(3.5));
    }
}
