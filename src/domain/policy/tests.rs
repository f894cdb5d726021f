//! The policy memo against the policies themselves, decision by decision.

use super::*;

fn member(role: &str, sphere: &str, guest: bool, charter_accepted: bool) -> Principal {
    Principal {
        subject: "field-worker-1".into(),
        cellule: "perpignan".into(),
        role: role.into(),
        sphere: sphere.into(),
        organisation: "ccas".into(),
        guest,
        charter_accepted,
    }
}

/// Asks `decide` twice (the second answer comes from the memo) and checks both answers
/// against a fresh evaluation; returns whether the request is allowed.
fn remembered_is_fresh(
    policies: &Policies,
    p: &Principal,
    action: &str,
    resource: &Resource<'_>,
    audience: Option<&str>,
    what: &str,
) -> bool {
    let fresh = policies
        .evaluate(p, action, resource, audience)
        .expect("evaluation");
    for _ in 0..2 {
        let v = policies
            .decide(p, action, resource, audience)
            .expect("decision");
        assert_eq!(v, fresh, "{what}");
    }
    fresh.is_allowed()
}

/// A remembered decision is the one the policies take: for every role, sphere, guest and
/// charter state and every cellule-level action, asked twice (the second answer comes from
/// the memo), the verdict equals a fresh evaluation.
#[test]
fn remembered_cellule_decisions_are_the_policies_decisions() {
    let policies = Policies::embedded().expect("embedded policies");
    let actions = [
        "submit_referral",
        "list_own_referrals",
        "list_cases",
        "read_charter",
        "accept_charter",
        "manage_schedule",
        "read_agenda",
        "read_audit",
        "verify_audit",
    ];
    let mut allowed = 0;
    let mut denied = 0;
    for role in ["referrer", "member", "coordinator", "auditor"] {
        for sphere in ["city", "psychiatry", ""] {
            for guest in [false, true] {
                for charter in [false, true] {
                    let p = member(role, sphere, guest, charter);
                    for action in actions {
                        let resource = Resource::Cellule("perpignan");
                        let what = format!("{role}/{sphere}/{guest}/{charter} {action}");
                        if remembered_is_fresh(&policies, &p, action, &resource, None, &what) {
                            allowed += 1;
                        } else {
                            denied += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(
        allowed > 0 && denied > 0,
        "{allowed} allowed, {denied} denied"
    );
}

/// The charter state is part of what is remembered: a member refused for want of the
/// charter is allowed once it is accepted, and refused again when asked as before.
#[test]
fn the_charter_state_is_part_of_a_remembered_decision() {
    let policies = Policies::embedded().expect("embedded policies");
    let resource = Resource::Cellule("perpignan");
    let before = member("member", "city", false, false);
    let after = member("member", "city", false, true);
    let refused = policies
        .decide(&before, "list_cases", &resource, None)
        .expect("decision");
    assert!(refused.only_charter(), "{refused:?}");
    let allowed = policies
        .decide(&after, "list_cases", &resource, None)
        .expect("decision");
    assert!(allowed.is_allowed(), "{allowed:?}");
    let again = policies
        .decide(&before, "list_cases", &resource, None)
        .expect("decision");
    assert_eq!(again, refused);
}

/// Keys are length-prefixed: fields that concatenate to the same text do not collide.
#[test]
fn memo_keys_tell_shifted_fields_apart() {
    let mut a = member("member", "city", false, true);
    let mut b = a.clone();
    a.subject = "ab".into();
    a.cellule = "c".into();
    b.subject = "a".into();
    b.cellule = "bc".into();
    let c = Resource::Cellule("c");
    assert_ne!(
        memo_key(&a, "list_cases", &c, None, false),
        memo_key(&b, "list_cases", &c, None, false)
    );
    assert_ne!(
        memo_key(&a, "read_note", &c, Some(""), false),
        memo_key(&a, "read_note", &c, None, false)
    );
    let one = case("c1", "scheduled", "ccas", true, vec!["ab", "c"]);
    let other = case("c1", "scheduled", "ccas", true, vec!["a", "bc"]);
    assert_ne!(
        memo_key(&a, "read_case", &one, None, false),
        memo_key(&a, "read_case", &other, None, false)
    );
    // The invited organisations are a set: order and repetition do not make another key.
    let reordered = case("c1", "scheduled", "ccas", true, vec!["c", "ab", "c"]);
    assert_eq!(
        memo_key(&a, "read_case", &one, None, false),
        memo_key(&a, "read_case", &reordered, None, false)
    );
    // Without a policy naming a case, two cases with the same attributes share a key.
    let same = case("c2", "scheduled", "ccas", true, vec!["ab", "c"]);
    assert_eq!(
        memo_key(&a, "read_case", &one, None, false),
        memo_key(&a, "read_case", &same, None, false)
    );
    assert_ne!(
        memo_key(&a, "read_case", &one, None, true),
        memo_key(&a, "read_case", &same, None, true)
    );
}

fn case<'a>(
    id: &'a str,
    status: &'a str,
    routed_org: &'a str,
    on_published_agenda: bool,
    invited_orgs: Vec<&'a str>,
) -> Resource<'a> {
    Resource::Case {
        id,
        cellule: "perpignan",
        status,
        referrer: "field-worker-1",
        routed_org,
        on_published_agenda,
        invited_orgs,
    }
}

/// Remembered case decisions are the policies' decisions: every role, sphere, guest and
/// charter state, organisation (routed to the case or not), case status, agenda state and
/// invitation, for every case action and note audience, asked twice after a fresh
/// evaluation, on a case of the member's cellule and of another one.
#[test]
fn remembered_case_decisions_are_the_policies_decisions() {
    let policies = Policies::embedded().expect("embedded policies");
    assert!(!policies.case_ids, "the default policies name no case");
    let actions: [(&str, Option<&str>); 7] = [
        ("view_case", None),
        ("read_case", None),
        ("transition_case", None),
        ("erase_case", None),
        ("read_note", Some("city")),
        ("read_note", Some("psychiatry")),
        ("write_note", Some("all")),
    ];
    let mut principals = Vec::new();
    for role in ["referrer", "member", "coordinator", "auditor"] {
        for sphere in ["city", "psychiatry"] {
            for guest in [false, true] {
                for charter in [false, true] {
                    for org in ["ccas", "cmp"] {
                        let mut p = member(role, sphere, guest, charter);
                        p.organisation = org.into();
                        principals.push((p, format!("{role}/{sphere}/{guest}/{charter}/{org}")));
                    }
                }
            }
        }
    }
    let mut cases = Vec::new();
    for status in ["submitted", "scheduled", "in_follow_up", "closed"] {
        for agenda in [false, true] {
            for invited in [vec![], vec!["cmp"]] {
                for cellule in ["perpignan", "elsewhere"] {
                    let label = format!("{status}/{agenda}/{invited:?}/{cellule}");
                    let mut r = case("c1", status, "ccas", agenda, invited.clone());
                    if let Resource::Case { cellule: c, .. } = &mut r {
                        *c = cellule;
                    }
                    cases.push((r, label));
                }
            }
        }
    }
    let (mut allowed, mut denied) = (0, 0);
    for (p, who) in &principals {
        for (r, which) in &cases {
            for (action, audience) in actions {
                let what = format!("{who} {which} {action} {audience:?}");
                if remembered_is_fresh(&policies, p, action, r, audience, &what) {
                    allowed += 1;
                } else {
                    denied += 1;
                }
            }
        }
    }
    assert!(
        allowed > 100 && denied > 100,
        "{allowed} allowed, {denied} denied"
    );
}

/// A policy that names one case makes the case's id part of what is remembered: that
/// case is refused while another with the same attributes is allowed, whichever is asked
/// first.
#[test]
fn a_policy_naming_a_case_keeps_cases_apart() {
    let policies = Policies::build(
        "schema.cedarschema",
        EMBEDDED_SCHEMA,
        vec![
            ("default.cedar".to_owned(), EMBEDDED_POLICIES.to_owned()),
            (
                "one-case.cedar".to_owned(),
                "@id(\"hold-c1\")\nforbid (principal, action == Cellule::Action::\"read_case\", \
                 resource == Cellule::Case::\"c1\");"
                    .to_owned(),
            ),
        ],
    )
    .expect("policies");
    assert!(policies.case_ids);
    let p = member("coordinator", "city", false, true);
    for order in [["c2", "c1"], ["c1", "c2"]] {
        for id in order {
            let r = case(id, "scheduled", "ccas", false, vec![]);
            let v = policies
                .decide(&p, "read_case", &r, None)
                .expect("decision");
            assert_eq!(v.is_allowed(), id == "c2", "{id}: {v:?}");
        }
    }
    let in_condition = Policies::build(
        "schema.cedarschema",
        EMBEDDED_SCHEMA,
        vec![(
            "default.cedar".to_owned(),
            format!(
                "{EMBEDDED_POLICIES}\n@id(\"hold-c1-when\")\nforbid (principal, action, resource) \
                 when {{ resource == Cellule::Case::\"c1\" }};"
            ),
        )],
    )
    .expect("policies");
    assert!(in_condition.case_ids, "a case literal in a condition");
}
