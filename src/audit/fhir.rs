//! FHIR R4 `AuditEvent` mapping of audit entries (for `GET …/audit/export?format=fhir`).
//!
//! Each entry becomes one `AuditEvent` in a `Bundle` of type `collection`:
//! - `type`: DICOM/HL7 `rest` (a RESTful operation); `subtype`: our action code in the
//!   `https://cellule.fr/fhir/CodeSystem/audit-action` system. Administrative entries (who may
//!   see what, and how the service is configured) are security events instead: `type` DICOM
//!   `110113` "Security Alert", and `subtype` the DICOM code of the change before our action
//!   code: `110136` "Security Roles Changed" for memberships (grant, change, revoke),
//!   `110129` "Security Configuration" for a cellule created, its charter, retention or routing
//!   changed, the policies loaded at start and the keyring rotated or a KEK retired
//!   ([`security_subtype`]);
//! - `action`: C / R / U / D / E; `recorded`: the entry time (UTC, microseconds);
//! - `outcome`: `0` (success) when allowed, `4` (minor failure: refused) when denied, with the
//!   reason code in `outcomeDesc`;
//! - `agent`: the actor (`who.identifier` = subject, `role` text = cellule role, `altId` =
//!   organisation), `requestor = true`;
//! - `source`: the service (`observer.display = "cellule"`, site = cellule slug, type
//!   Application Server);
//! - `entity`: the case (identifier = reference, or case id when no reference), each case of a
//!   session-level action's set, the note, event or session targeted, and one entity carrying,
//!   as `detail` strings, every hashed field that has no other place (`cellule`, `seq`, `at_us`,
//!   `actor_org`, `case_id`, `case_ref`, `target_kind`, `target_id`, `reason`, `request_id`,
//!   `cases` as its stored text) and the chain values (`prev_hash`, `hash`), so the chain can be
//!   recomputed from the export.
//! - ids: the `AuditEvent.id` is a UUID derived from the entry hash (FHIR ids are at most 64
//!   characters).

use serde_json::{Value, json};

use super::{Action, Entry, hex};

const ACTION_SYSTEM: &str = "https://cellule.fr/fhir/CodeSystem/audit-action";
const SUBJECT_SYSTEM: &str = "https://cellule.fr/fhir/NamingSystem/subject";
const CASE_REF_SYSTEM: &str = "https://cellule.fr/fhir/NamingSystem/case-reference";
const CASE_ID_SYSTEM: &str = "https://cellule.fr/fhir/NamingSystem/case-id";
const TARGET_SYSTEM: &str = "https://cellule.fr/fhir/NamingSystem/";
const CHAIN_SYSTEM: &str = "https://cellule.fr/fhir/NamingSystem/audit-entry";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// The DICOM subtype (code, display) of an administrative action; `None` for the others, which
/// stay RESTful operations.
pub fn security_subtype(action: Action) -> Option<(&'static str, &'static str)> {
    match action {
        Action::GrantMembership | Action::ChangeMembership | Action::RevokeMembership => {
            Some(("110136", "Security Roles Changed"))
        }
        Action::CreateCellule
        | Action::ChangeCharter
        | Action::ChangeRetention
        | Action::ChangeRouting
        | Action::LoadPolicies
        | Action::RotateKeys
        | Action::RetireKey => Some(("110129", "Security Configuration")),
        _ => None,
    }
}

/// The `instant` form FHIR wants: UTC with fraction and `Z`.
fn instant(e: &Entry) -> String {
    e.at().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn entity(identifier: Value, code: &str, display: &str) -> Value {
    json!({
        "what": { "identifier": identifier },
        "type": { "system": ENTITY_TYPE, "code": code, "display": display }
    })
}

/// One entry as a FHIR R4 `AuditEvent`.
pub fn audit_event(e: &Entry) -> Value {
    let action = Action::parse(&e.action);
    let fhir_action = action.map(Action::fhir_code).unwrap_or("E");
    let allowed = e.outcome == "allowed";
    let mut entities = Vec::new();
    match (&e.case_ref, &e.case_id) {
        (Some(reference), _) => entities.push(entity(
            json!({ "system": CASE_REF_SYSTEM, "value": reference }),
            "2",
            "System Object",
        )),
        (None, Some(id)) => entities.push(entity(
            json!({ "system": CASE_ID_SYSTEM, "value": id }),
            "2",
            "System Object",
        )),
        (None, None) => {}
    }
    if let Some(cases) = &e.cases {
        // A tampered set that is no longer an array still travels whole in the details.
        for c in serde_json::from_str::<Vec<super::CaseTarget>>(cases).unwrap_or_default() {
            entities.push(entity(
                json!({ "system": CASE_REF_SYSTEM, "value": c.case_ref }),
                "2",
                "System Object",
            ));
        }
    }
    if let (Some(kind), Some(id)) = (&e.target_kind, &e.target_id) {
        entities.push(entity(
            json!({ "system": format!("{TARGET_SYSTEM}{kind}"), "value": id }),
            "2",
            "System Object",
        ));
    }
    let mut detail = vec![
        json!({ "type": "cellule", "valueString": e.cellule }),
        json!({ "type": "seq", "valueString": e.seq.to_string() }),
        json!({ "type": "at_us", "valueString": e.at_us.to_string() }),
        json!({ "type": "prev_hash", "valueString": hex(&e.prev_hash) }),
        json!({ "type": "hash", "valueString": hex(&e.hash) }),
    ];
    // Every hashed field is carried, so the chain can be recomputed from the export.
    let optional = [
        ("actor_org", &e.actor_org),
        ("case_id", &e.case_id),
        ("case_ref", &e.case_ref),
        ("target_kind", &e.target_kind),
        ("target_id", &e.target_id),
        ("reason", &e.reason),
        ("request_id", &e.request_id),
        ("cases", &e.cases),
        ("detail", &e.detail),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            detail.push(json!({ "type": name, "valueString": v }));
        }
    }
    entities.push(json!({
        "what": { "identifier": { "system": CHAIN_SYSTEM, "value": format!("{}/{}", e.cellule, e.seq) } },
        "type": { "system": ENTITY_TYPE, "code": "4", "display": "Other" },
        "detail": detail
    }));
    let mut agent = json!({
        "who": { "identifier": { "system": SUBJECT_SYSTEM, "value": e.actor } },
        "requestor": true,
        "role": [{ "text": e.actor_role }]
    });
    if let Some(org) = &e.actor_org {
        agent["altId"] = json!(org);
    }
    let own = json!({ "system": ACTION_SYSTEM, "code": e.action });
    let (event_type, subtype) = match action.and_then(security_subtype) {
        Some((code, display)) => (
            json!({ "system": DICOM, "code": "110113", "display": "Security Alert" }),
            json!([{ "system": DICOM, "code": code, "display": display }, own]),
        ),
        None => (
            json!({
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": "rest",
                "display": "RESTful Operation"
            }),
            json!([own]),
        ),
    };
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": entry_uuid(e),
        "type": event_type,
        "subtype": subtype,
        "action": fhir_action,
        "recorded": instant(e),
        "outcome": if allowed { "0" } else { "4" },
        "agent": [agent],
        "source": {
            "site": e.cellule,
            "observer": { "display": "cellule" },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server"
            }]
        },
        "entity": entities
    });
    if let Some(reason) = &e.reason {
        event["outcomeDesc"] = json!(reason);
    }
    event
}

/// The opening of the export `Bundle` (entries follow, comma-separated, then [`BUNDLE_END`]).
pub fn bundle_start(cellule: &str, timestamp: chrono::DateTime<chrono::Utc>) -> String {
    let head = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "identifier": { "system": "https://cellule.fr/fhir/NamingSystem/cellule", "value": cellule },
        "type": "collection",
        "timestamp": timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
    .to_string();
    // Reopen the object to append the entry array.
    format!("{},\"entry\":[", head.trim_end_matches('}'))
}

pub const BUNDLE_END: &str = "]}";

/// One `Bundle.entry`.
pub fn bundle_entry(e: &Entry) -> Value {
    json!({
        "fullUrl": format!("urn:uuid:{}", entry_uuid(e)),
        "resource": audit_event(e)
    })
}

/// A stable UUID for an entry (derived from its hash).
fn entry_uuid(e: &Entry) -> String {
    let mut bytes = [0u8; 16];
    for (i, b) in e.hash.iter().take(16).enumerate() {
        bytes[i] = *b;
    }
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}
