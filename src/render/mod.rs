//! Placeholder until the minutes renderer lands (helper branch `minutes-render`).
use crate::domain::minutes::Minutes;

#[derive(Debug, thiserror::Error)]
#[error("render: {0}")]
pub struct RenderError(String);

pub fn minutes_html(_m: &Minutes) -> Result<String, RenderError> {
    Err(RenderError("not built".into()))
}

pub fn minutes_pdf(_m: &Minutes) -> Result<Vec<u8>, RenderError> {
    Err(RenderError("not built".into()))
}
