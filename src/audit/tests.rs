//! The chain's encoding against independently computed hashes, and its sensitivity to every
//! field.

use super::*;

fn draft() -> Draft {
    AuditCtx {
        cellule: "perpignan".into(),
        actor: Actor {
            subject: "alice".into(),
            role: "coordinator".into(),
            organisation: Some("CMP".into()),
        },
        request_id: Some("r1".into()),
    }
    .entry(Action::ReadCase, Utc::now())
    .case("c1", Some("PER-2026-0001"))
}

/// The documented encoding, computed independently (Python's `hashlib` over the bytes the
/// module documentation describes): exports stay verifiable by third parties.
#[test]
fn the_chain_hash_is_the_documented_one() {
    let e = Entry {
        cellule: "perpignan".into(),
        seq: 42,
        at_us: 1_790_000_000_123_456,
        actor: "alice".into(),
        actor_role: "coordinator".into(),
        actor_org: None,
        action: "read_case".into(),
        case_id: Some("c1".into()),
        case_ref: Some("PER-2026-0001".into()),
        target_kind: None,
        target_id: Some(String::new()),
        outcome: "allowed".into(),
        reason: None,
        request_id: Some("r-é".into()),
        cases: None,
        detail: None,
        prev_hash: (0u8..32).collect(),
        hash: Vec::new(),
        mac: None,
        mac_key: None,
    };
    assert_eq!(
        hex(&e.compute_hash()),
        "6be4462cf1910f2d5720e55986f97ae2ed761464b9f75d5572510c67383332c6"
    );
    assert_eq!(Link::from(&e).computed, e.compute_hash());
    // An entry about a set of cases (same Python computation, `cases` appended).
    let set = Entry {
        action: "build_agenda".into(),
        case_id: None,
        case_ref: None,
        target_kind: Some("session".into()),
        target_id: Some("s1".into()),
        cases: Some(cases_text(&[
            ("c1", "PER-2026-0001"),
            ("c2", "PER-2026-0002"),
        ])),
        ..e.clone()
    };
    assert_eq!(
        set.cases.as_deref(),
        Some(
            r#"[{"case_id":"c1","case_ref":"PER-2026-0001"},{"case_id":"c2","case_ref":"PER-2026-0002"}]"#
        )
    );
    assert_eq!(
        hex(&set.compute_hash()),
        "eff57a1a0b31bf20be212602b3930c5966dae3d5868818e185146683060bc35e"
    );
    assert_eq!(Link::from(&set).computed, set.compute_hash());
    // An administrative entry with a detail, without and with a set of cases (the same
    // computation by tests/audit/verify_export.py, the third party's script).
    let admin = Entry {
        action: "grant_membership".into(),
        case_id: None,
        case_ref: None,
        target_kind: Some("membership".into()),
        target_id: Some("op:bob".into()),
        detail: Some(detail_text(&serde_json::json!({
            "before": null,
            "after": {"role": "coordinator", "organisation": "CMP Perpignan"},
        }))),
        ..e.clone()
    };
    assert_eq!(
        admin.detail.as_deref(),
        Some(r#"{"after":{"organisation":"CMP Perpignan","role":"coordinator"},"before":null}"#)
    );
    assert_eq!(
        hex(&admin.compute_hash()),
        "e8b1829fa1d72234772f2e948092832aafef7b1206bc98d8eac812d29456d5ab"
    );
    let both = Entry {
        cases: set.cases.clone(),
        ..admin.clone()
    };
    assert_eq!(
        hex(&both.compute_hash()),
        "42377cd33b7958000757b3b725bf5b80b40fbe0b10d9d4d89bbc7c02e659084c"
    );
    assert_eq!(Link::from(&both).computed, both.compute_hash());
    // Stored hashes are kept as digests: a stored value of another length matches nothing,
    // and the recomputed hash still covers the stored previous hash as it is.
    let link = Link::from(&set);
    assert_eq!(link.hash, None);
    assert_eq!(link.prev_hash, set.prev_hash.as_slice().try_into().ok());
    let short = Entry {
        prev_hash: vec![7; 31],
        hash: set.compute_hash().to_vec(),
        ..set.clone()
    };
    let link = Link::from(&short);
    assert_eq!(link.prev_hash, None);
    assert_eq!(link.hash, Some(set.compute_hash()));
    assert_eq!(link.computed, short.compute_hash());
    assert_ne!(link.computed, set.compute_hash());
}

#[test]
fn a_set_of_cases_is_found_by_its_patterns_only() {
    let text = cases_text(&[("c1", "PER-2026-0001"), ("c12", "PER-2026-0012")]);
    assert!(text.contains(&case_id_pattern("c1")));
    assert!(text.contains(&case_ref_pattern("PER-2026-0012")));
    assert!(!text.contains(&case_id_pattern("c")));
    assert!(!text.contains(&case_ref_pattern("PER-2026-001")));
    assert!(!text.contains(&case_id_pattern("PER-2026-0001")));
    assert_eq!(
        cases_view(&text),
        serde_json::json!([
            {"case_id": "c1", "case_ref": "PER-2026-0001"},
            {"case_id": "c12", "case_ref": "PER-2026-0012"}
        ])
    );
    assert_eq!(cases_view("not json"), serde_json::json!("not json"));
    let d = AuditCtx {
        cellule: "perpignan".into(),
        actor: Actor::system("t"),
        request_id: None,
    }
    .entry(Action::BuildAgenda, Utc::now());
    assert_eq!(d.clone().cases(&[]).cases, None);
    assert!(d.cases(&[("c1", "R")]).cases.is_some());
}

#[test]
fn every_field_changes_the_hash() {
    let e = draft().into_entry("perpignan", 1, &GENESIS);
    assert_eq!(e.hash, e.compute_hash().to_vec());
    let mut variants = Vec::new();
    let mut v = e.clone();
    v.seq = 2;
    variants.push(v);
    let mut v = e.clone();
    v.at_us += 1;
    variants.push(v);
    let mut v = e.clone();
    v.actor = "mallory".into();
    variants.push(v);
    let mut v = e.clone();
    v.actor_org = None;
    variants.push(v);
    let mut v = e.clone();
    v.case_ref = Some("PER-2026-0002".into());
    variants.push(v);
    let mut v = e.clone();
    v.outcome = "denied".into();
    variants.push(v);
    let mut v = e.clone();
    v.cases = Some(cases_text(&[("c1", "PER-2026-0001")]));
    variants.push(v);
    let mut v = e.clone();
    v.cases = Some("[]".into());
    variants.push(v);
    let mut v = e.clone();
    v.prev_hash = vec![1; 32];
    variants.push(v);
    for v in variants {
        assert_ne!(v.compute_hash().to_vec(), e.hash);
    }
}

#[test]
fn absent_and_empty_fields_differ() {
    let mut a = draft().into_entry("perpignan", 1, &GENESIS);
    a.actor_org = None;
    let mut b = a.clone();
    b.actor_org = Some(String::new());
    assert_ne!(a.compute_hash(), b.compute_hash());
    // Moving bytes between adjacent fields changes the encoding.
    let mut c = a.clone();
    c.case_id = Some("c1P".into());
    c.case_ref = Some("ER-2026-0001".into());
    assert_ne!(a.compute_hash(), c.compute_hash());
}

#[test]
fn actions_round_trip() {
    for a in Action::ALL {
        assert_eq!(Action::parse(a.as_str()), Some(*a));
        let json = serde_json::to_string(a).unwrap();
        assert_eq!(json, format!("\"{}\"", a.as_str()));
    }
}
