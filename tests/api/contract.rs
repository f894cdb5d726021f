//! The OpenAPI document is the API: every `$ref` resolves, and the enumerations carry the
//! values serde reads and writes (`18-24`, `housing`, `submitted`), not the Rust variant names.
//! `tests/contract/run.sh` (schemathesis, in CI) checks the rest against a running server.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use cellule::audit::{Action, Outcome};
use cellule::domain::case::{AgeBand, Audience, CaseStatus, ConsentStatus, Gender, Need, Urgency};
use cellule::domain::session::Outcome as DecisionOutcome;
use cellule::services::auditor::ExportFormat;

fn document() -> Value {
    serde_json::to_value(cellule::http::openapi()).expect("the document serialises")
}

/// Every `$ref` in `value`, with the JSON pointer where it was found.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                if key == "$ref"
                    && let Some(target) = v.as_str()
                {
                    out.push((here.clone(), target.to_owned()));
                }
                refs(v, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The value at a local reference (`#/components/schemas/Need`), if any.
fn resolve<'a>(doc: &'a Value, target: &str) -> Option<&'a Value> {
    let pointer = target.strip_prefix('#')?;
    doc.pointer(pointer)
}

#[test]
fn every_reference_in_the_openapi_document_resolves() {
    let doc = document();
    let mut found = Vec::new();
    refs(&doc, "", &mut found);
    assert!(found.len() > 50, "only {} references found", found.len());
    let dangling: Vec<String> = found
        .iter()
        .filter(|(_, target)| resolve(&doc, target).is_none())
        .map(|(at, target)| format!("{at} -> {target}"))
        .collect();
    assert!(dangling.is_empty(), "dangling references: {dangling:#?}");
}

/// The `enum` of the component schema `name`.
fn schema_enum(doc: &Value, name: &str) -> BTreeSet<String> {
    let schema = &doc["components"]["schemas"][name];
    let values = schema["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("components/schemas/{name} has no enum: {schema}"));
    values
        .iter()
        .map(|v| v.as_str().expect("string enum value").to_owned())
        .collect()
}

/// What serde writes for each of `all`.
fn serde_names<T: Serialize>(all: &[T]) -> BTreeSet<String> {
    all.iter()
        .map(|v| match serde_json::to_value(v).expect("serialises") {
            Value::String(s) => s,
            other => panic!("not a string: {other}"),
        })
        .collect()
}

#[test]
fn enumerations_in_the_openapi_document_are_the_serde_names() {
    let doc = document();
    let checks: Vec<(&str, BTreeSet<String>)> = vec![
        ("AgeBand", serde_names(AgeBand::ALL)),
        ("Gender", serde_names(Gender::ALL)),
        ("Urgency", serde_names(Urgency::ALL)),
        ("Need", serde_names(Need::ALL)),
        ("ConsentStatus", serde_names(ConsentStatus::ALL)),
        ("CaseStatus", serde_names(CaseStatus::ALL)),
        ("Audience", serde_names(Audience::ALL)),
        ("DecisionOutcome", serde_names(DecisionOutcome::ALL)),
        ("Action", serde_names(Action::ALL)),
        (
            "AuditOutcome",
            serde_names(&[Outcome::Allowed, Outcome::Denied]),
        ),
    ];
    for (name, expected) in checks {
        assert_eq!(
            schema_enum(&doc, name),
            expected,
            "components/schemas/{name}"
        );
    }
    // `ExportFormat` is only read: every value of the document is one serde reads.
    let formats = schema_enum(&doc, "ExportFormat");
    assert_eq!(formats.len(), 2, "{formats:?}");
    for f in &formats {
        serde_json::from_value::<ExportFormat>(Value::String(f.clone()))
            .unwrap_or_else(|e| panic!("ExportFormat {f}: {e}"));
    }
    // Spot checks in the words of the issue.
    assert!(schema_enum(&doc, "AgeBand").contains("18-24"));
    assert!(schema_enum(&doc, "Need").contains("housing"));
    assert!(schema_enum(&doc, "CaseStatus").contains("submitted"));
}

/// No enumeration anywhere in the document carries a Rust-looking variant name: the API's
/// values are lower case, digits and `-_+`.
#[test]
fn no_enumeration_in_the_openapi_document_carries_a_rust_variant_name() {
    fn walk(value: &Value, at: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(values)) = map.get("enum") {
                    for v in values.iter().filter_map(Value::as_str) {
                        if v.chars().any(|c| c.is_ascii_uppercase()) {
                            out.push(format!("{at}: {v}"));
                        }
                    }
                }
                for (k, v) in map {
                    walk(v, &format!("{at}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&document(), "", &mut found);
    assert!(found.is_empty(), "enum values in Rust case: {found:#?}");
}

/// JSON has one number type: `2.0` is the integer 2, as JSON Schema's `integer` says, and a
/// body the schema accepts must be read; trailing characters are still refused.
#[test]
fn an_integral_float_is_read_as_an_integer() {
    use cellule::http::extract::parse_json;
    use cellule::services::review::sessions::PlanRequest;
    let plan: PlanRequest = parse_json(br#"{"months": 2.0}"#).expect("2.0 is an integer");
    assert_eq!(plan.months, 2);
    assert!(parse_json::<PlanRequest>(br#"{"months": 2.5}"#).is_err());
    assert!(parse_json::<PlanRequest>(br#"{"months": 2.0} x"#).is_err());
    assert!(parse_json::<PlanRequest>(br#"{"months": 2}"#).is_ok());
}
