//! Form bodies (`application/x-www-form-urlencoded`, repeated names kept) and the field errors a
//! page shows in its error summary, each linked to its field.

use axum::body::Bytes;

/// The fields of a submitted form, in order.
#[derive(Debug, Clone, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &Bytes) -> Self {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, trimmed, or `""`.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").trim().to_owned()
    }

    /// The value of `name` exactly as typed (free text keeps its spaces and line breaks).
    pub fn raw(&self, name: &str) -> String {
        self.get(name).unwrap_or("").to_owned()
    }

    /// Every value of `name` (checkboxes).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// One error of a form: the id of the field it is about and the French message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// The message of `field` among `errors`, if any (shown next to the field).
pub fn message_for<'a>(errors: &'a [FieldProblem], field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
}
