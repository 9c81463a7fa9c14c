//! Per-kind JSON Schema validation: a small, self-contained validator for a
//! documented subset of JSON Schema draft 2020-12.
//!
//! This module owns compiling a schema document into an internal form
//! ([`Schema::compile`]), validating instances against it ([`Schema::validate`]),
//! and the two error types ([`SchemaError`], [`ValidationError`]).
//!
//! # Why the crate has its own validator
//!
//! store-core is a no-I/O engine that must build for `wasm32-unknown-unknown`
//! without `js-sys` and within a tight wasm size budget. The existing crates did
//! not fit: `jsonschema` adds about 841 KB gzipped to a wasm build, `boon` pulls
//! in `getrandom` (which needs `js-sys` on wasm), and `jsonschema-valid` is
//! 243 KB gzipped and supports draft 7 only. This module depends only on
//! `serde_json` and `regex-lite` (for `pattern`).
//!
//! # Supported keywords (draft 2020-12 semantics)
//!
//! - boolean schemas `true` / `false`;
//! - `type` (a name or an array of names; `integer` also matches `1.0`),
//!   `enum`, `const` (spec equality: `1 == 1.0`, objects are unordered);
//! - numbers: `multipleOf` (exact on the decimal values as written),
//!   `maximum`, `exclusiveMaximum`, `minimum`, `exclusiveMinimum`;
//! - strings: `maxLength` / `minLength` (counting Unicode code points),
//!   `pattern` (unanchored search);
//! - arrays: `items`, `prefixItems`, `maxItems`, `minItems`, `uniqueItems`,
//!   `contains` with `minContains` / `maxContains`;
//! - objects: `maxProperties`, `minProperties`, `required`, `properties`,
//!   `patternProperties`, `additionalProperties`, `propertyNames`,
//!   `dependentRequired`, `dependentSchemas`;
//! - applicators: `allOf`, `anyOf`, `oneOf`, `not`, `if` / `then` / `else`;
//! - `$ref` to a JSON pointer in the same document (`#`, `#/$defs/x`,
//!   `#/properties/a`, with `~0` / `~1` escapes and percent-decoding; a `$ref`
//!   that spells out the root `$id` followed by such a fragment works too),
//!   and `$defs` / `definitions`.
//!
//! Annotations are accepted and ignored: `title`, `description`, `default`,
//! `examples`, `$comment`, `$schema`, `$id` (at the root only), `deprecated`,
//! `readOnly`, `writeOnly` and `format` (annotation-only by default in
//! 2020-12). Keywords this module has never heard of are ignored, as the
//! specification requires.
//!
//! # Rejected at compile time
//!
//! - Keywords an author would expect to be enforced but that are not
//!   implemented: `$dynamicRef`, `$dynamicAnchor`, `$anchor`, `$recursiveRef`,
//!   `$recursiveAnchor`, `$vocabulary`, `unevaluatedProperties`,
//!   `unevaluatedItems`, `contentEncoding`, `contentMediaType`,
//!   `contentSchema`, the pre-2020 `additionalItems` and `dependencies`,
//!   `$id` below the root, and any `$ref` that is not a local JSON pointer
//!   (remote, relative or anchor refs). The error message starts with
//!   ``unsupported keyword `NAME` ``.
//! - Malformed keyword values (`minLength: -1`, `type: "strnig"`, a regex
//!   that does not compile, `required` that is not an array of unique
//!   strings, an array-form `items`, ...), with a JSON pointer to the value.
//! - `$ref` targets that do not exist, and `$ref` loops that never descend
//!   into the instance (such as `{"$ref": "#"}`), which could only recurse
//!   forever.
//!
//! # Notes
//!
//! - `pattern` and `patternProperties` use `regex-lite` syntax, which is close
//!   to but not the same as ECMA-262: no look-around, no backreferences and no
//!   Unicode classes such as `\p{L}`; `\d` and `\w` are ASCII-only, as in
//!   ECMA-262.
//! - Validation stops at the first failure. Evaluation nested more than
//!   512 schemas deep (only reachable with very deeply nested instances) is
//!   reported as a failure with the pseudo-keyword `depth`.

mod compile;
mod num;

pub(crate) use num::num_eq;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// A compiled per-kind JSON Schema.
///
/// Cheap to clone (the compiled form is shared behind an `Arc`). Two schemas
/// are equal when their source documents are equal.
#[derive(Clone)]
pub struct Schema {
    inner: Arc<Compiled>,
}

/// The compiled form shared by clones of a [`Schema`].
struct Compiled {
    source: Value,
    nodes: Vec<compile::Node>,
    root: compile::NodeId,
}

impl Schema {
    /// Compiles a schema document.
    ///
    /// Errors on malformed schemas and on unsupported keywords (see the
    /// module documentation for the supported subset).
    pub fn compile(source: Value) -> Result<Schema, SchemaError> {
        let (nodes, root) = compile::compile(&source)?;
        Ok(Schema {
            inner: Arc::new(Compiled { source, nodes, root }),
        })
    }

    /// The source document as given (servers ship it to clients).
    pub fn source(&self) -> &Value {
        &self.inner.source
    }

    /// Validates an instance; returns the first failure found.
    pub fn validate(&self, instance: &Value) -> Result<(), ValidationError> {
        validate::validate(&self.inner.nodes, self.inner.root, instance)
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.source == other.inner.source
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

/// Error compiling a schema: it is malformed or uses an unsupported keyword.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema at {pointer:?}: {message}")]
pub struct SchemaError {
    /// JSON pointer to the offending value in the schema document (`""` is the root).
    pub pointer: String,
    /// What is wrong, lowercase. Unsupported keywords read
    /// ``unsupported keyword `NAME` ...``.
    pub message: String,
}

impl SchemaError {
    fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        SchemaError {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// An instance that does not satisfy a schema.
///
/// Displays as `/title: must be at least 1 character long`, with the root of
/// the instance shown as `(root)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", path_label(.instance_path), .message)]
pub struct ValidationError {
    /// JSON pointer to the failing value in the instance (`""` is the root).
    pub instance_path: String,
    /// The schema keyword that failed, such as `"minLength"`; `"false"` for a
    /// `false` schema and `"depth"` when the instance is nested too deeply.
    pub keyword: &'static str,
    /// What is wrong, lowercase, such as `must be at most 80 characters long`.
    pub message: String,
}

fn path_label(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}
