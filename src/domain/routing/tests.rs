//! Routing rules, directory validation and the TOML format, case by case.

use super::*;
use Need::*;

const EXAMPLE: &str = include_str!("../../../policies/examples/routing-perpignan.toml");

fn org(id: &str, name: &str, sphere: Sphere, kind: InterlocutorKind) -> Interlocutor {
    Interlocutor {
        id: id.into(),
        name: name.into(),
        sphere,
        kind,
        communes: vec![],
        sectors: vec![],
        needs: vec![],
        contact: String::new(),
        guest: false,
    }
}

fn rule(id: &str, needs: &[Need], communes: &[&str], sectors: &[&str], lead: &str) -> Rule {
    Rule {
        id: id.into(),
        needs: needs.to_vec(),
        communes: communes.iter().map(|s| s.to_string()).collect(),
        sectors: sectors.iter().map(|s| s.to_string()).collect(),
        lead: lead.into(),
        others: vec![],
        note: String::new(),
    }
}

fn orgs() -> Vec<Interlocutor> {
    vec![
        org("ccas", "CCAS de Test", Sphere::City, InterlocutorKind::Ccas),
        org(
            "bailleur",
            "Test Habitat",
            Sphere::City,
            InterlocutorKind::Housing,
        ),
        org(
            "cmp",
            "CMP secteur 66G03",
            Sphere::Psychiatry,
            InterlocutorKind::Cmp,
        ),
    ]
}

fn dir(rules: Vec<Rule>) -> Directory {
    Directory {
        interlocutors: orgs(),
        rules,
    }
}

fn facts<'a>(
    needs: &'a [Need],
    commune: Option<&'a str>,
    sector: Option<&'a str>,
) -> CaseFacts<'a> {
    CaseFacts {
        needs,
        commune,
        sector,
    }
}

/// (lead, rule id, position) of a routed proposal; panics when uncovered.
fn routed(p: &Proposal) -> (&str, &str, usize) {
    match p {
        Proposal::Routed {
            lead,
            rule,
            rule_position,
            ..
        } => (lead, rule, *rule_position),
        Proposal::Uncovered { explanation } => panic!("uncovered: {explanation}"),
    }
}

fn explanation(p: &Proposal) -> &str {
    match p {
        Proposal::Routed { explanation, .. } | Proposal::Uncovered { explanation } => explanation,
    }
}

fn pointers(d: &Directory) -> Vec<String> {
    d.validate()
        .expect_err("should be invalid")
        .into_iter()
        .map(|e| e.pointer)
        .collect()
}

#[test]
fn specific_rule_first_wins_then_general_takes_the_rest() {
    let d = dir(vec![
        rule("logement-66901", &[Housing], &["66901"], &[], "bailleur"),
        rule("logement", &[Housing], &[], &[], "ccas"),
    ]);
    d.validate().unwrap();
    let p = propose(&d, &facts(&[Housing], Some("66901"), None));
    assert_eq!(routed(&p), ("bailleur", "logement-66901", 1));
    assert_eq!(
        explanation(&p),
        "rule 1 `logement-66901`: need housing, commune 66901"
    );
    let p = propose(&d, &facts(&[Housing], Some("66903"), None));
    assert_eq!(routed(&p), ("ccas", "logement", 2));
    assert_eq!(explanation(&p), "rule 2 `logement`: need housing, anywhere");
}

#[test]
fn specific_rule_after_a_general_one_never_fires_and_is_refused() {
    let d = dir(vec![
        rule("logement", &[Housing], &[], &[], "ccas"),
        rule("logement-66901", &[Housing], &["66901"], &[], "bailleur"),
    ]);
    for (commune, sector) in [
        (Some("66901"), None),
        (Some("66901"), Some("66G03")),
        (None, None),
    ] {
        let p = propose(&d, &facts(&[Housing, Isolation], commune, sector));
        assert_eq!(routed(&p), ("ccas", "logement", 1));
    }
    let errors = d.validate().unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].pointer, "/rule/1");
    assert!(
        errors[0].detail.contains("rule 1 `logement`"),
        "{}",
        errors[0].detail
    );
}

#[test]
fn partially_overlapping_rules_are_both_reachable() {
    // housing|isolation in 66901, then housing in 66901|66902: neither covers the other.
    let d = dir(vec![
        rule("aa", &[Housing, Isolation], &["66901"], &[], "ccas"),
        rule("bb", &[Housing], &["66901", "66902"], &[], "bailleur"),
        rule("cc", &[], &[], &["66G03"], "cmp"),
    ]);
    d.validate().unwrap();
    assert_eq!(
        routed(&propose(&d, &facts(&[Housing], Some("66902"), None))).1,
        "bb"
    );
    assert_eq!(
        routed(&propose(&d, &facts(&[Housing], Some("66901"), None))).1,
        "aa"
    );
    // A rule with needs never covers a later rule without needs, even on a broader place.
    let d = dir(vec![
        rule("needs", &[Housing], &[], &[], "bailleur"),
        rule("no-needs", &[], &["66901"], &[], "ccas"),
    ]);
    d.validate().unwrap();
}

#[test]
fn commune_or_sector_either_matches() {
    let d = dir(vec![rule(
        "soins",
        &[CareAccess],
        &["66901"],
        &["66G04"],
        "cmp",
    )]);
    d.validate().unwrap();
    let by_commune = propose(&d, &facts(&[CareAccess], Some("66901"), Some("66G03")));
    assert_eq!(routed(&by_commune).0, "cmp");
    assert_eq!(
        explanation(&by_commune),
        "rule 1 `soins`: need care_access, commune 66901"
    );
    let by_sector = propose(&d, &facts(&[CareAccess], Some("66903"), Some("66G04")));
    assert_eq!(
        explanation(&by_sector),
        "rule 1 `soins`: need care_access, sector 66G04"
    );
    let sector_only = propose(&d, &facts(&[CareAccess], None, Some("66G04")));
    assert_eq!(routed(&sector_only).0, "cmp");
    let both = propose(&d, &facts(&[CareAccess], Some("66901"), Some("66G04")));
    assert_eq!(
        explanation(&both),
        "rule 1 `soins`: need care_access, commune 66901, sector 66G04"
    );
    for (commune, sector) in [
        (Some("66903"), Some("66G03")),
        (None, None),
        (Some("66G04"), None),
    ] {
        let p = propose(&d, &facts(&[CareAccess], commune, sector));
        assert!(
            matches!(p, Proposal::Uncovered { .. }),
            "{commune:?} {sector:?}"
        );
    }
}

#[test]
fn needs_match_when_the_case_has_any_of_them() {
    let d = dir(vec![rule(
        "rr",
        &[Housing, Addiction, Isolation],
        &[],
        &[],
        "ccas",
    )]);
    let p = propose(&d, &facts(&[Isolation, CareAccess, Addiction], None, None));
    // Matched needs are listed in the rule's order.
    assert_eq!(
        explanation(&p),
        "rule 1 `rr`: needs addiction, isolation, anywhere"
    );
    assert!(matches!(
        propose(&d, &facts(&[CareAccess], None, None)),
        Proposal::Uncovered { .. }
    ));
    assert!(matches!(
        propose(&d, &facts(&[], None, None)),
        Proposal::Uncovered { .. }
    ));
}

#[test]
fn empty_needs_and_place_is_a_catch_all() {
    let d = dir(vec![
        rule("soins", &[CareAccess], &[], &["66G03"], "cmp"),
        rule("defaut", &[], &[], &[], "ccas"),
    ]);
    d.validate().unwrap();
    for case in [
        facts(&[], None, None),
        facts(&[CareAccess], None, Some("66G04")),
        facts(&[Other], Some("2A004"), None),
    ] {
        let p = propose(&d, &case);
        assert_eq!(routed(&p), ("ccas", "defaut", 2));
        assert_eq!(explanation(&p), "rule 2 `defaut`: any need, anywhere");
    }
    assert_eq!(
        routed(&propose(&d, &facts(&[CareAccess], None, Some("66G03")))).0,
        "cmp"
    );
    // A rule placed after the catch-all would never apply.
    let mut late = d.clone();
    late.rules
        .push(rule("trop-tard", &[Housing], &["66901"], &[], "bailleur"));
    assert_eq!(pointers(&late), ["/rule/2"]);
}

#[test]
fn uncovered_case_is_flagged_with_an_explanation() {
    let d = dir(vec![rule(
        "logement-66901",
        &[Housing],
        &["66901"],
        &[],
        "bailleur",
    )]);
    let p = propose(&d, &facts(&[Housing, Addiction], Some("66903"), None));
    assert_eq!(
        p,
        Proposal::Uncovered {
            explanation: "no rule matches needs housing, addiction, commune 66903, no sector \
                          (1 rule checked): to be routed by the session (a catch-all rule, \
                          with no needs and no place, placed last, would cover it)"
                .into()
        }
    );
    assert!(p.organisations().is_empty());
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["status"], "uncovered");
    assert!(
        json["explanation"]
            .as_str()
            .unwrap()
            .starts_with("no rule matches")
    );

    let empty = Directory::default();
    assert_eq!(
        explanation(&propose(&empty, &facts(&[Housing], None, None))),
        "no routing rule is defined: to be routed by the session"
    );
}

#[test]
fn a_matching_rule_naming_an_unknown_interlocutor_is_not_half_routed() {
    let mut r = rule("rr", &[], &[], &[], "ccas");
    r.others = vec!["fantome".into()];
    let d = dir(vec![r]);
    let p = propose(&d, &facts(&[], None, None));
    let Proposal::Uncovered { explanation } = p else {
        panic!("should be uncovered")
    };
    assert!(explanation.starts_with("rule 1 `rr`: any need, anywhere, but it names `fantome`"));
}

#[test]
fn validation_errors_have_exact_pointers() {
    let mut d = dir(vec![]);
    d.interlocutors[0].communes = vec!["66901".into(), "6690".into(), "66901".into()];
    d.interlocutors[1].id = "ccas".into(); // duplicate
    d.interlocutors[2].id = "CMP_66".into(); // bad slug
    d.interlocutors[2].sectors = vec!["66X03".into()];
    d.interlocutors[2].name = " CMP ".into();
    d.interlocutors.push(org(
        "x",
        &"n".repeat(121),
        Sphere::City,
        InterlocutorKind::Other,
    ));
    d.interlocutors[3].contact = "c".repeat(201);
    d.interlocutors[3].needs = vec![Housing, Housing];
    let mut unknown_lead = rule("aa", &[Housing], &[], &[], "nobody");
    unknown_lead.note = "n".repeat(301);
    let mut lead_in_others = rule("aa", &[CareAccess], &["66901"], &[], "ccas"); // duplicate id
    lead_in_others.others = vec!["ccas".into(), "nobody".into(), "nobody".into()];
    let bad_slug = rule("-b c", &[Isolation], &["2C001"], &["66G3"], "ccas");
    d.rules = vec![unknown_lead, lead_in_others, bad_slug];
    assert_eq!(
        pointers(&d),
        [
            "/interlocutor/0/communes/1",
            "/interlocutor/0/communes/2",
            "/interlocutor/1/id",
            "/interlocutor/2/id",
            "/interlocutor/2/name",
            "/interlocutor/2/sectors/0",
            "/interlocutor/3/id",
            "/interlocutor/3/name",
            "/interlocutor/3/needs/1",
            "/interlocutor/3/contact",
            "/rule/0/lead",
            "/rule/0/note",
            "/rule/1/id",
            "/rule/1/others/0",
            "/rule/1/others/1",
            "/rule/1/others/2",
            "/rule/2/id",
            "/rule/2/communes/0",
            "/rule/2/sectors/0",
        ]
    );
    let errors = d.validate().unwrap_err();
    let detail = |p: &str| {
        errors
            .iter()
            .find(|e| e.pointer == p)
            .unwrap()
            .detail
            .clone()
    };
    assert_eq!(
        detail("/interlocutor/1/id"),
        "id `ccas` is already used by /interlocutor/0"
    );
    assert_eq!(
        detail("/rule/0/lead"),
        "no interlocutor has the id `nobody`"
    );
    assert_eq!(detail("/rule/1/id"), "id `aa` is already used by /rule/0");
    assert_eq!(
        detail("/rule/1/others/0"),
        "the lead must not be repeated among the others"
    );
    assert_eq!(detail("/rule/1/others/2"), "`nobody` is repeated");
    assert!(detail("/rule/2/communes/0").contains("INSEE"));
    // The rejected commune is not echoed.
    assert!(!detail("/interlocutor/0/communes/1").contains("6690"));
}

#[test]
fn duplicate_names_and_control_characters_are_refused() {
    let mut d = dir(vec![rule("rr", &[], &[], &[], "ccas")]);
    d.interlocutors[1].name = d.interlocutors[0].name.clone();
    d.interlocutors[2].contact = "ligne 1\nligne 2".into();
    d.rules[0].note = "a\tb".into();
    d.interlocutors[2].name = "EMPP\u{202e}evil".into();
    assert_eq!(
        pointers(&d),
        [
            "/interlocutor/1/name",
            "/interlocutor/2/name",
            "/interlocutor/2/contact",
            "/rule/0/note"
        ]
    );
}

#[test]
fn toml_round_trips() {
    let example = Directory::from_toml(EXAMPLE).unwrap();
    let text = example.to_toml();
    assert_eq!(Directory::from_toml(&text).unwrap(), example);
    assert!(!text.contains("guest = false"));
    assert!(text.contains("[[interlocutor]]") && text.contains("[[rule]]"));

    let mut d = dir(vec![rule(
        "rr",
        &[Housing, Other],
        &["2A004"],
        &["974G12"],
        "ccas",
    )]);
    d.interlocutors[0].name = r#"Association "L'Abri" \ Têt — accueil"#.into();
    d.interlocutors[0].contact = "accueil@abri.example, 04 00 00 00 00".into();
    d.interlocutors[0].guest = true;
    d.interlocutors[1].needs = vec![Housing, NeighbourhoodNuisance];
    d.rules[0].others = vec!["cmp".into(), "bailleur".into()];
    d.rules[0].note = "d'abord l'\"Abri\"".into();
    let back = Directory::from_toml(&d.to_toml()).unwrap();
    assert_eq!(back, d);
    assert_eq!(
        Directory::from_toml(&Directory::default().to_toml()).unwrap(),
        Directory::default()
    );
}

#[test]
fn json_uses_the_same_field_names() {
    let example = Directory::from_toml(EXAMPLE).unwrap();
    let json = serde_json::to_value(&example).unwrap();
    assert_eq!(json["interlocutor"][0]["id"], "ccas");
    assert_eq!(json["interlocutor"][0]["kind"], "ccas");
    assert_eq!(json["rule"][0]["needs"][0], "violence_danger");
    let back: Directory = serde_json::from_value(json).unwrap();
    assert_eq!(back, example);
    let bad = serde_json::json!({"interlocutor": [], "rule": [], "extra": 1});
    assert!(serde_json::from_value::<Directory>(bad).is_err());
}

#[test]
fn toml_errors_name_the_line_or_the_pointer() {
    let text =
        "[[interlocutor]]\nid = \"ccas\"\nname = \"CCAS\"\nsphere = \"town\"\nkind = \"ccas\"\n";
    let err = Directory::from_toml(text).unwrap_err();
    assert!(
        matches!(err, RoutingError::Syntax { line: Some(4), .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.starts_with("line 4: ") && !shown.contains('\n'),
        "{shown}"
    );

    let text = "[[rule]]\nid = \"r\"\nlead = \"x\"\ncolour = \"red\"\n";
    let err = Directory::from_toml(text).unwrap_err();
    assert!(
        matches!(err, RoutingError::Syntax { line: Some(4), .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("colour"));

    let text = "[[interlocutor]]\nid = \"ccas\"\nname = \"CCAS\"\nsphere = \"city\"\nkind = \"ccas\"\n\n\
                [[rule]]\nid = \"rr\"\nlead = \"cas\"\nothers = [\"ccas\", \"ccas\"]\n";
    let err = Directory::from_toml(text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/rule/0/lead: no interlocutor has the id `cas`\n/rule/0/others/1: `ccas` is repeated"
    );
    let RoutingError::Invalid(errors) = err else {
        panic!("should be a validation error")
    };
    assert_eq!(errors.len(), 2);

    assert!(matches!(
        Directory::from_toml("[[rule]\n"),
        Err(RoutingError::Syntax { line: Some(1), .. })
    ));
}

#[test]
fn the_example_file_parses_validates_and_routes_typical_cases() {
    let d = Directory::from_toml(EXAMPLE).unwrap();
    assert_eq!(d.interlocutors.len(), 9);
    assert_eq!(d.rules.len(), 9);
    assert!(d.interlocutors.iter().any(|i| i.sphere == Sphere::City));
    assert!(
        d.interlocutors
            .iter()
            .any(|i| i.sphere == Sphere::Psychiatry)
    );
    assert!(d.interlocutor("empp").unwrap().guest);

    // (needs, commune, sector, expected lead, expected rule)
    type Expected<'a> = (
        &'a [Need],
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        &'a str,
    );
    let cases: &[Expected<'_>] = &[
        // Housing on the estates → the landlord; elsewhere → catch-all CCAS.
        (
            &[Housing],
            Some("66901"),
            Some("66G03"),
            "tet-habitat",
            "logement-parc-social",
        ),
        (
            &[Housing],
            Some("66903"),
            Some("66G04"),
            "ccas",
            "defaut-ccas",
        ),
        // Care by sector, whatever the commune; unknown sector → mobile team.
        (
            &[CareAccess],
            Some("66901"),
            Some("66G03"),
            "cmp-66g03",
            "soins-secteur-66g03",
        ),
        (
            &[CareContinuity],
            Some("66901"),
            Some("66G04"),
            "cmp-66g04",
            "soins-secteur-66g04",
        ),
        (&[CareAccess], None, None, "empp", "soins-hors-secteur"),
        (
            &[CareAccess],
            None,
            Some("66G01"),
            "empp",
            "soins-hors-secteur",
        ),
        // Addiction before care; danger before everything.
        (
            &[CareAccess, Addiction],
            Some("66901"),
            Some("66G03"),
            "csapa",
            "addiction",
        ),
        (
            &[Housing, Addiction, ViolenceDanger],
            Some("66901"),
            None,
            "mds",
            "danger-ou-mineurs",
        ),
        (
            &[NeighbourhoodNuisance],
            Some("66902"),
            None,
            "tet-habitat",
            "logement-parc-social",
        ),
        (
            &[NeighbourhoodNuisance],
            Some("66904"),
            None,
            "mediation",
            "troubles-voisinage",
        ),
        (&[Isolation], Some("66903"), None, "ccas", "isolement"),
        (&[], None, None, "ccas", "defaut-ccas"),
    ];
    for (needs, commune, sector, lead, rule_id) in cases {
        let p = propose(&d, &facts(needs, *commune, *sector));
        let (got_lead, got_rule, position) = routed(&p);
        assert_eq!(
            (got_lead, got_rule),
            (*lead, *rule_id),
            "{needs:?} {commune:?} {sector:?}"
        );
        assert_eq!(d.rules[position - 1].id, *rule_id);
    }
    // Every rule fires for some case above: none is dead.
    for r in &d.rules {
        assert!(
            cases.iter().any(|c| c.4 == r.id),
            "rule {} never exercised",
            r.id
        );
    }
    // With the catch-all last, nothing is uncovered.
    for need in Need::ALL {
        assert!(matches!(
            propose(&d, &facts(&[*need], Some("2A004"), None)),
            Proposal::Routed { .. }
        ));
    }

    let p = propose(&d, &facts(&[CareAccess], None, Some("66G02")));
    assert_eq!(
        p.organisations(),
        [
            "EMPP Têt-Aspres, équipe mobile psychiatrie précarité",
            "CCAS de Ville-sur-Têt"
        ]
    );
    assert!(
        explanation(&p).starts_with("rule 5 `soins-hors-secteur`: need care_access, anywhere — ")
    );
}

#[test]
fn organisations_lists_lead_then_others_by_name() {
    let mut r = rule("rr", &[Housing], &[], &[], "bailleur");
    r.others = vec!["cmp".into(), "ccas".into()];
    r.note = "le bailleur d'abord".into();
    let d = dir(vec![r]);
    let p = propose(&d, &facts(&[Housing], None, None));
    assert_eq!(
        p.organisations(),
        ["Test Habitat", "CMP secteur 66G03", "CCAS de Test"]
    );
    let Proposal::Routed {
        lead_name,
        others,
        other_names,
        explanation,
        ..
    } = &p
    else {
        panic!("should be routed")
    };
    assert_eq!(lead_name, "Test Habitat");
    assert_eq!(others, &["cmp", "ccas"]);
    assert_eq!(other_names, &["CMP secteur 66G03", "CCAS de Test"]);
    assert_eq!(
        explanation,
        "rule 1 `rr`: need housing, anywhere — le bailleur d'abord"
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["status"], "routed");
    assert_eq!(json["rule_position"], 1);
}

#[test]
fn lookups_by_id_and_by_exact_name() {
    let d = Directory::from_toml(EXAMPLE).unwrap();
    assert_eq!(
        d.interlocutor("csapa").unwrap().kind,
        InterlocutorKind::AddictionCare
    );
    assert!(d.interlocutor("nobody").is_none());
    assert_eq!(
        d.kind_of_organisation("CMP adultes secteur 66G03"),
        Some(InterlocutorKind::Cmp)
    );
    assert_eq!(d.kind_of_organisation("cmp adultes secteur 66g03"), None);
    for kind in InterlocutorKind::ALL {
        assert_eq!(InterlocutorKind::parse(kind.as_str()), Some(*kind));
        let json = serde_json::to_value(kind).unwrap();
        assert_eq!(json, kind.as_str());
    }
}
