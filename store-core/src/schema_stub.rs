//! temporary
#![allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub struct Schema(serde_json::Value);
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema at {pointer:?}: {message}")]
pub struct SchemaError { pub pointer: String, pub message: String }
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{instance_path}: {message}")]
pub struct ValidationError { pub instance_path: String, pub keyword: &'static str, pub message: String }
impl Schema {
    pub fn compile(source: serde_json::Value) -> Result<Schema, SchemaError> { Ok(Schema(source)) }
    pub fn source(&self) -> &serde_json::Value { &self.0 }
    pub fn validate(&self, instance: &serde_json::Value) -> Result<(), ValidationError> {
        if let Some(req) = self.0.get("required").and_then(|r| r.as_array()) {
            for r in req { let r = r.as_str().unwrap(); if instance.get(r).is_none() { return Err(ValidationError{instance_path: String::new(), keyword: "required", message: format!("missing required property `{r}`")}); } }
        }
        Ok(())
    }
}
