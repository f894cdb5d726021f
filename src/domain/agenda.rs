//! Agenda building (docs/design.md §10): which eligible cases a session reviews, in which order, and which
//! wait for the next one. Pure: the caller loads the candidates and stores the result.
//!
//! - **Order**: urgency (`urgent`, `priority`, `routine`), then how many times the case was
//!   already deferred (more first), then how long it has waited (longer first: since acceptance
//!   for a new case, since its follow-up date for a follow-up), then the reference (stable).
//! - **Capacity**: items are taken in that order while their minutes fit the session's duration
//!   (`minutes_per_new_case` / `minutes_per_follow_up`). The first case that does not fit, and
//!   every case after it, is deferred: a shorter, less urgent case never jumps ahead of a longer,
//!   more urgent one. Each deferral is counted once per session when the agenda is
//!   published (the caller), so a case deferred once sorts ahead of newer cases of the same
//!   urgency next time.
//! - **Time slots**: each item gets its start offset in minutes from the session start.

use chrono::{DateTime, Utc};

use crate::domain::case::Urgency;

/// New case or follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    New,
    FollowUp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::New => "new",
            Kind::FollowUp => "follow_up",
        }
    }

    pub fn parse(s: &str) -> Result<Self, super::Invalid> {
        match s {
            "new" => Ok(Kind::New),
            "follow_up" => Ok(Kind::FollowUp),
            _ => super::invalid("kind must be new or follow_up"),
        }
    }
}

/// An eligible case, as far as ordering is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub case_id: String,
    pub reference: String,
    pub urgency: Urgency,
    pub times_deferred: i64,
    /// Since when it waits: acceptance (new) or follow-up date (follow-up).
    pub waiting_since: DateTime<Utc>,
    pub kind: Kind,
}

/// Minutes of a session and per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub duration_minutes: i64,
    pub minutes_per_new_case: i64,
    pub minutes_per_follow_up: i64,
}

impl Capacity {
    pub fn minutes(&self, kind: Kind) -> i64 {
        match kind {
            Kind::New => self.minutes_per_new_case,
            Kind::FollowUp => self.minutes_per_follow_up,
        }
    }
}

/// A case on the agenda, with its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub candidate: Candidate,
    /// 1-based.
    pub position: i64,
    pub minutes: i64,
    /// Minutes from the session start.
    pub offset_minutes: i64,
}

/// The built agenda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub items: Vec<Item>,
    pub deferred: Vec<Candidate>,
    pub minutes_used: i64,
}

fn urgency_rank(u: Urgency) -> u8 {
    match u {
        Urgency::Urgent => 0,
        Urgency::Priority => 1,
        Urgency::Routine => 2,
    }
}

/// Sorts candidates in review order (see the module documentation). The order is total: a
/// cellule's references are unique, so no order among equals needs keeping.
pub fn order(candidates: &mut [Candidate]) {
    candidates.sort_unstable_by(|a, b| {
        urgency_rank(a.urgency)
            .cmp(&urgency_rank(b.urgency))
            .then(b.times_deferred.cmp(&a.times_deferred))
            .then(a.waiting_since.cmp(&b.waiting_since))
            .then(a.reference.cmp(&b.reference))
    });
}

/// Orders the candidates and fills the capacity; the rest is deferred.
pub fn build(mut candidates: Vec<Candidate>, capacity: Capacity) -> Built {
    order(&mut candidates);
    let mut items = Vec::new();
    let mut deferred = Vec::new();
    let mut used = 0i64;
    let mut full = false;
    for c in candidates {
        let minutes = capacity.minutes(c.kind);
        if !full && used + minutes <= capacity.duration_minutes {
            items.push(Item {
                position: items.len() as i64 + 1,
                minutes,
                offset_minutes: used,
                candidate: c,
            });
            used += minutes;
        } else {
            full = true;
            deferred.push(c);
        }
    }
    Built {
        items,
        deferred,
        minutes_used: used,
    }
}

/// Slots of an agenda given in the coordinator's order (an edited agenda): may exceed the
/// capacity, which the caller reports.
pub fn slots(ordered: Vec<Candidate>, capacity: Capacity) -> (Vec<Item>, i64) {
    let mut used = 0i64;
    let items = ordered
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let minutes = capacity.minutes(c.kind);
            let item = Item {
                position: i as i64 + 1,
                minutes,
                offset_minutes: used,
                candidate: c,
            };
            used += minutes;
            item
        })
        .collect();
    (items, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 1, day)
            .and_then(|d| d.and_hms_opt(9, 0, 0))
            .map(|t| t.and_utc())
            .expect("date")
    }

    fn case(n: u32, urgency: Urgency, deferred: i64, day: u32, kind: Kind) -> Candidate {
        Candidate {
            case_id: format!("c{n}"),
            reference: format!("PER-2026-{n:04}"),
            urgency,
            times_deferred: deferred,
            waiting_since: at(day),
            kind,
        }
    }

    const CAP: Capacity = Capacity {
        duration_minutes: 120,
        minutes_per_new_case: 20,
        minutes_per_follow_up: 10,
    };

    /// A small deterministic generator (no dependency): many varied candidate sets.
    fn sets() -> Vec<Vec<Candidate>> {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        (0..300)
            .map(|_| {
                let n = next(25) as u32;
                (0..n)
                    .map(|i| {
                        let urgency = [Urgency::Routine, Urgency::Priority, Urgency::Urgent]
                            [next(3) as usize];
                        let kind = if next(3) == 0 {
                            Kind::FollowUp
                        } else {
                            Kind::New
                        };
                        case(i, urgency, next(3) as i64, 1 + next(28) as u32, kind)
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn never_over_capacity_and_nothing_lost() {
        for set in sets() {
            let n = set.len();
            let built = build(set, CAP);
            assert!(built.minutes_used <= CAP.duration_minutes);
            let sum: i64 = built.items.iter().map(|i| i.minutes).sum();
            assert_eq!(sum, built.minutes_used);
            assert_eq!(built.items.len() + built.deferred.len(), n);
            for (i, item) in built.items.iter().enumerate() {
                assert_eq!(item.position, i as i64 + 1);
                let before: i64 = built.items[..i].iter().map(|x| x.minutes).sum();
                assert_eq!(item.offset_minutes, before);
            }
        }
    }

    #[test]
    fn urgent_before_routine_and_no_jumping_the_queue() {
        for set in sets() {
            let built = build(set, CAP);
            let ranks: Vec<u8> = built
                .items
                .iter()
                .map(|i| urgency_rank(i.candidate.urgency))
                .collect();
            assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
            // Nothing deferred is more urgent than something on the agenda.
            if let (Some(last), Some(min_deferred)) = (
                built.items.last(),
                built.deferred.iter().map(|c| urgency_rank(c.urgency)).min(),
            ) {
                assert!(urgency_rank(last.candidate.urgency) <= min_deferred);
            }
        }
    }

    #[test]
    fn a_deferred_case_goes_before_newer_ones_of_the_same_urgency() {
        // Six 20-minute slots; seven routine cases: the newest waits.
        let first: Vec<Candidate> = (1..=7)
            .map(|n| case(n, Urgency::Routine, 0, n, Kind::New))
            .collect();
        let built = build(first.clone(), CAP);
        assert_eq!(built.items.len(), 6);
        assert_eq!(built.deferred.len(), 1);
        let mut waiting = built.deferred[0].clone();
        assert_eq!(waiting.case_id, "c7");
        // Next session: it was deferred once; six newer routine cases arrived, older in time
        // than nothing: it still goes first among routine cases.
        waiting.times_deferred = 1;
        let mut next: Vec<Candidate> = (8..=13)
            .map(|n| case(n, Urgency::Routine, 0, 1, Kind::New))
            .collect();
        next.push(waiting);
        let built = build(next, CAP);
        assert_eq!(built.items[0].candidate.case_id, "c7");
        assert!(built.deferred.iter().all(|c| c.case_id != "c7"));
        // An urgent newcomer still goes before it.
        let mut with_urgent = vec![case(20, Urgency::Urgent, 0, 27, Kind::New)];
        with_urgent.push(case(7, Urgency::Routine, 1, 7, Kind::New));
        let built = build(with_urgent, CAP);
        assert_eq!(built.items[0].candidate.case_id, "c20");
    }

    #[test]
    fn follow_ups_take_their_own_minutes_and_waiting_time_breaks_ties() {
        let built = build(
            vec![
                case(1, Urgency::Priority, 0, 10, Kind::New),
                case(2, Urgency::Priority, 0, 3, Kind::FollowUp),
                case(3, Urgency::Priority, 0, 5, Kind::New),
            ],
            CAP,
        );
        let ids: Vec<&str> = built
            .items
            .iter()
            .map(|i| i.candidate.case_id.as_str())
            .collect();
        assert_eq!(ids, ["c2", "c3", "c1"]);
        assert_eq!(built.minutes_used, 50);
        assert_eq!(
            built
                .items
                .iter()
                .map(|i| i.offset_minutes)
                .collect::<Vec<_>>(),
            [0, 10, 30]
        );
    }

    #[test]
    fn the_first_case_that_does_not_fit_stops_the_filling() {
        let cap = Capacity {
            duration_minutes: 30,
            minutes_per_new_case: 20,
            minutes_per_follow_up: 10,
        };
        let built = build(
            vec![
                case(1, Urgency::Urgent, 0, 1, Kind::New),
                case(2, Urgency::Urgent, 0, 2, Kind::New),
                case(3, Urgency::Routine, 0, 3, Kind::FollowUp),
            ],
            cap,
        );
        assert_eq!(built.items.len(), 1);
        let deferred: Vec<&str> = built.deferred.iter().map(|c| c.case_id.as_str()).collect();
        assert_eq!(deferred, ["c2", "c3"]);
    }

    #[test]
    fn edited_agendas_keep_the_given_order_and_report_the_minutes() {
        let (items, used) = slots(
            vec![
                case(3, Urgency::Routine, 0, 1, Kind::New),
                case(1, Urgency::Urgent, 0, 1, Kind::FollowUp),
            ],
            CAP,
        );
        assert_eq!(items[0].candidate.case_id, "c3");
        assert_eq!(items[1].offset_minutes, 20);
        assert_eq!(used, 30);
    }
}
