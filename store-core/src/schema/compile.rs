//! Compiling a schema document into a flat list of nodes.
//!
//! Every subschema becomes a [`Node`] addressed by index; `$ref`s are resolved
//! by index after the tree walk (so cycles through `$ref` cost nothing at
//! compile time), and loops that would never descend into the instance are
//! rejected.

use std::collections::BTreeMap;

use regex_lite::Regex;
use serde_json::{Map, Value};

use super::SchemaError;
use super::num::{Decimal, Num, cmp_num};

mod refs;

/// Index of a node in the compiled node list.
pub(super) type NodeId = u32;

/// One compiled (sub)schema: the checks it applies, in evaluation order.
/// `true` has none; `false` is the single [`Check::False`].
pub(super) struct Node {
    pub(super) checks: Box<[Check]>,
}

impl Node {
    pub(super) fn is_false(&self) -> bool {
        matches!(*self.checks, [Check::False])
    }
}

/// Bits of [`Check::Type`].
pub(super) mod ty {
    pub(crate) const NULL: u8 = 1;
    pub(crate) const BOOLEAN: u8 = 2;
    pub(crate) const OBJECT: u8 = 4;
    pub(crate) const ARRAY: u8 = 8;
    pub(crate) const NUMBER: u8 = 16;
    pub(crate) const STRING: u8 = 32;
    pub(crate) const INTEGER: u8 = 64;
    pub(crate) const NAMES: [(u8, &str); 7] = [
        (NULL, "null"),
        (BOOLEAN, "boolean"),
        (OBJECT, "object"),
        (ARRAY, "array"),
        (NUMBER, "number"),
        (STRING, "string"),
        (INTEGER, "integer"),
    ];
}

/// Which numeric bound a [`Check::Bound`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BoundKind {
    Minimum,
    ExclusiveMinimum,
    Maximum,
    ExclusiveMaximum,
}

/// A single compiled assertion or applicator.
pub(super) enum Check {
    False,
    Type(u8),
    Const(Value),
    Enum(Vec<Value>),
    MultipleOf(Decimal, serde_json::Number),
    Bound(BoundKind, Num, serde_json::Number),
    MinLength(u64),
    MaxLength(u64),
    Pattern(Regex),
    Items {
        prefix: Vec<NodeId>,
        rest: Option<NodeId>,
    },
    MinItems(u64),
    MaxItems(u64),
    UniqueItems,
    Contains {
        schema: NodeId,
        min: u64,
        max: Option<u64>,
        min_explicit: bool,
    },
    MinProperties(u64),
    MaxProperties(u64),
    Required(Vec<String>),
    /// `properties` (sorted by name), `patternProperties` and `additionalProperties`.
    Properties {
        named: Vec<(String, NodeId)>,
        patterns: Vec<(Regex, NodeId)>,
        additional: Option<NodeId>,
    },
    PropertyNames(NodeId),
    DependentRequired(Vec<(String, Vec<String>)>),
    DependentSchemas(Vec<(String, NodeId)>),
    AllOf(Vec<NodeId>),
    AnyOf(Vec<NodeId>),
    OneOf(Vec<NodeId>),
    Not(NodeId),
    If {
        cond: NodeId,
        then: Option<NodeId>,
        otherwise: Option<NodeId>,
    },
    Ref(NodeId),
}

/// Keywords an author would expect to be enforced, which this module does not implement.
const UNSUPPORTED: &[&str] = &[
    "$dynamicRef",
    "$dynamicAnchor",
    "$anchor",
    "$recursiveRef",
    "$recursiveAnchor",
    "$vocabulary",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "additionalItems",
    "dependencies",
];

/// Compiles `source`, returning the node list and the root node.
pub(super) fn compile(source: &Value) -> Result<(Vec<Node>, NodeId), SchemaError> {
    let root_id = match source {
        Value::Object(m) => match m.get("$id") {
            Some(Value::String(s)) => Some(s.strip_suffix('#').unwrap_or(s)).filter(|s| !s.is_empty()),
            Some(_) => return Err(SchemaError::new("/$id", "`$id` must be a string")),
            None => None,
        },
        _ => None,
    };
    let mut c = Compiler {
        root: source,
        root_id,
        nodes: Vec::new(),
        ptrs: Vec::new(),
        by_ptr: BTreeMap::new(),
        work: Vec::new(),
        pending: Vec::new(),
    };
    let root = c.alloc(source, String::new())?;
    // Work lists instead of recursion: no schema nesting can overflow the stack.
    loop {
        while let Some((id, v)) = c.work.pop() {
            let checks = c.build(id, v)?;
            c.nodes[id as usize].checks = checks.into_boxed_slice();
        }
        let Some(p) = c.pending.pop() else { break };
        let target = c.resolve(&p)?;
        c.nodes[p.node as usize].checks[p.slot] = Check::Ref(target);
    }
    c.check_loops()?;
    Ok((c.nodes, root))
}

/// A `$ref` waiting for its target: `nodes[node].checks[slot]`.
struct PendingRef {
    node: NodeId,
    slot: usize,
    reference: String,
    tokens: Vec<String>,
}

struct Compiler<'a> {
    root: &'a Value,
    root_id: Option<&'a str>,
    nodes: Vec<Node>,
    /// Schema pointer of each node, for error messages.
    ptrs: Vec<String>,
    by_ptr: BTreeMap<String, NodeId>,
    /// Allocated nodes whose keywords are still to be compiled.
    work: Vec<(NodeId, &'a Value)>,
    pending: Vec<PendingRef>,
}

fn err<T>(pointer: &str, keyword: &str, message: impl Into<String>) -> Result<T, SchemaError> {
    Err(SchemaError::new(child_ptr(pointer, keyword), message))
}

fn child_ptr(base: &str, token: &str) -> String {
    let mut s = String::with_capacity(base.len() + token.len() + 1);
    s.push_str(base);
    s.push('/');
    for c in token.chars() {
        match c {
            '~' => s.push_str("~0"),
            '/' => s.push_str("~1"),
            c => s.push(c),
        }
    }
    s
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn unsupported(pointer: &str, keyword: &str, detail: &str) -> SchemaError {
    SchemaError::new(
        child_ptr(pointer, keyword),
        format!("unsupported keyword `{keyword}`{detail}"),
    )
}

fn regex(pattern: &str, at: String) -> Result<Regex, SchemaError> {
    Regex::new(pattern).map_err(|e| {
        let detail = e.to_string();
        let detail = detail.lines().last().unwrap_or("").trim().to_ascii_lowercase();
        SchemaError::new(at, format!("invalid regular expression `{pattern}`: {detail}"))
    })
}

impl<'a> Compiler<'a> {
    /// Allocates the node for the schema `v` found at `ptr` (memoised by
    /// pointer); its keywords are compiled later, from the work list.
    fn alloc(&mut self, v: &'a Value, ptr: String) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.by_ptr.get(&ptr) {
            return Ok(id);
        }
        let id = NodeId::try_from(self.nodes.len())
            .map_err(|_| SchemaError::new(ptr.clone(), "schema is too large"))?;
        self.nodes.push(Node { checks: Box::new([]) });
        self.ptrs.push(ptr.clone());
        self.by_ptr.insert(ptr, id);
        self.work.push((id, v));
        Ok(id)
    }

    fn build(&mut self, id: NodeId, v: &'a Value) -> Result<Vec<Check>, SchemaError> {
        let ptr = self.ptrs[id as usize].clone();
        match v {
            Value::Bool(true) => Ok(Vec::new()),
            Value::Bool(false) => Ok(vec![Check::False]),
            Value::Object(m) => self.object(m, &ptr, id),
            other => Err(SchemaError::new(
                ptr,
                format!("schema must be an object or a boolean, got {}", kind_name(other)),
            )),
        }
    }

    fn sub(&mut self, v: &'a Value, ptr: &str, keyword: &str) -> Result<NodeId, SchemaError> {
        self.alloc(v, child_ptr(ptr, keyword))
    }

    /// Compiles each element of an array of schemas (`allOf`, `prefixItems`, ...).
    fn sub_list(&mut self, v: &'a Value, ptr: &str, keyword: &str) -> Result<Vec<NodeId>, SchemaError> {
        let at = child_ptr(ptr, keyword);
        match v {
            Value::Array(a) if !a.is_empty() => a
                .iter()
                .enumerate()
                .map(|(i, s)| self.alloc(s, child_ptr(&at, &i.to_string())))
                .collect(),
            _ => Err(SchemaError::new(
                at,
                format!("`{keyword}` must be a non-empty array of schemas"),
            )),
        }
    }

    /// Compiles each value of an object of schemas (`properties`, `$defs`, ...).
    fn sub_map(
        &mut self,
        v: &'a Value,
        ptr: &str,
        keyword: &str,
    ) -> Result<Vec<(String, NodeId)>, SchemaError> {
        let at = child_ptr(ptr, keyword);
        match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, s)| Ok((k.clone(), self.alloc(s, child_ptr(&at, k))?)))
                .collect(),
            _ => Err(SchemaError::new(
                at,
                format!("`{keyword}` must be an object of schemas"),
            )),
        }
    }

    fn object(
        &mut self,
        m: &'a Map<String, Value>,
        ptr: &str,
        id: NodeId,
    ) -> Result<Vec<Check>, SchemaError> {
        for (k, v) in m {
            let k = k.as_str();
            if UNSUPPORTED.contains(&k) {
                return Err(unsupported(ptr, k, ""));
            }
            if k == "$id" && (!ptr.is_empty() || !v.is_string()) {
                if !ptr.is_empty() {
                    return Err(unsupported(ptr, k, " below the document root"));
                }
                return err(ptr, k, "`$id` must be a string");
            }
        }
        let mut checks = Vec::new();
        let get = |k: &str| m.get(k);

        // Definitions are compiled (and so checked) even when nothing refers to them.
        for k in ["$defs", "definitions"] {
            if let Some(v) = get(k) {
                self.sub_map(v, ptr, k)?;
            }
        }

        if let Some(v) = get("type") {
            checks.push(Check::Type(type_set(v, ptr)?));
        }
        if let Some(v) = get("const") {
            checks.push(Check::Const(v.clone()));
        }
        if let Some(v) = get("enum") {
            match v {
                Value::Array(a) => checks.push(Check::Enum(a.clone())),
                _ => return err(ptr, "enum", "`enum` must be an array"),
            }
        }

        // Numbers.
        if let Some(v) = get("multipleOf") {
            let n = number(v, ptr, "multipleOf")?;
            let positive = cmp_num(n.0, Num::U(0)) == std::cmp::Ordering::Greater;
            let Some(d) = Decimal::of(&n.1).filter(|d| positive && !d.is_zero()) else {
                return err(ptr, "multipleOf", "`multipleOf` must be a number greater than 0");
            };
            checks.push(Check::MultipleOf(d, n.1));
        }
        for (k, kind) in [
            ("minimum", BoundKind::Minimum),
            ("exclusiveMinimum", BoundKind::ExclusiveMinimum),
            ("maximum", BoundKind::Maximum),
            ("exclusiveMaximum", BoundKind::ExclusiveMaximum),
        ] {
            if let Some(v) = get(k) {
                let (n, raw) = number(v, ptr, k)?;
                checks.push(Check::Bound(kind, n, raw));
            }
        }

        // Strings.
        if let Some(v) = get("minLength") {
            checks.push(Check::MinLength(count(v, ptr, "minLength")?));
        }
        if let Some(v) = get("maxLength") {
            checks.push(Check::MaxLength(count(v, ptr, "maxLength")?));
        }
        if let Some(v) = get("pattern") {
            let Value::String(p) = v else {
                return err(ptr, "pattern", "`pattern` must be a string");
            };
            checks.push(Check::Pattern(regex(p, child_ptr(ptr, "pattern"))?));
        }

        // Arrays.
        let prefix = match get("prefixItems") {
            Some(v) => self.sub_list(v, ptr, "prefixItems")?,
            None => Vec::new(),
        };
        let rest = match get("items") {
            Some(Value::Array(_)) => {
                return err(
                    ptr,
                    "items",
                    "`items` must be a schema (use `prefixItems` for tuples in draft 2020-12)",
                );
            }
            Some(v) => Some(self.sub(v, ptr, "items")?),
            None => None,
        };
        if !prefix.is_empty() || rest.is_some() {
            checks.push(Check::Items { prefix, rest });
        }
        if let Some(v) = get("minItems") {
            checks.push(Check::MinItems(count(v, ptr, "minItems")?));
        }
        if let Some(v) = get("maxItems") {
            checks.push(Check::MaxItems(count(v, ptr, "maxItems")?));
        }
        match get("uniqueItems") {
            Some(Value::Bool(true)) => checks.push(Check::UniqueItems),
            Some(Value::Bool(false)) | None => {}
            Some(_) => return err(ptr, "uniqueItems", "`uniqueItems` must be a boolean"),
        }
        let min_contains = get("minContains")
            .map(|v| count(v, ptr, "minContains"))
            .transpose()?;
        let max_contains = get("maxContains")
            .map(|v| count(v, ptr, "maxContains"))
            .transpose()?;
        if let Some(v) = get("contains") {
            let schema = self.sub(v, ptr, "contains")?;
            let min = min_contains.unwrap_or(1);
            if min > 0 || max_contains.is_some() {
                checks.push(Check::Contains {
                    schema,
                    min,
                    max: max_contains,
                    min_explicit: min_contains.is_some(),
                });
            }
        }

        // Objects.
        if let Some(v) = get("minProperties") {
            checks.push(Check::MinProperties(count(v, ptr, "minProperties")?));
        }
        if let Some(v) = get("maxProperties") {
            checks.push(Check::MaxProperties(count(v, ptr, "maxProperties")?));
        }
        if let Some(v) = get("required") {
            checks.push(Check::Required(string_set(
                v,
                &child_ptr(ptr, "required"),
                "required",
            )?));
        }
        if let Some(v) = get("dependentRequired") {
            let at = child_ptr(ptr, "dependentRequired");
            let Value::Object(deps) = v else {
                return Err(SchemaError::new(
                    at,
                    "`dependentRequired` must be an object of string arrays",
                ));
            };
            let deps = deps
                .iter()
                .map(|(k, v)| Ok((k.clone(), string_set(v, &child_ptr(&at, k), "dependentRequired")?)))
                .collect::<Result<Vec<_>, SchemaError>>()?;
            checks.push(Check::DependentRequired(deps));
        }
        let mut named = match get("properties") {
            Some(v) => self.sub_map(v, ptr, "properties")?,
            None => Vec::new(),
        };
        named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut patterns = Vec::new();
        if let Some(v) = get("patternProperties") {
            let at = child_ptr(ptr, "patternProperties");
            let Value::Object(pp) = v else {
                return Err(SchemaError::new(
                    at,
                    "`patternProperties` must be an object of schemas",
                ));
            };
            for (k, s) in pp {
                let re = regex(k, child_ptr(&at, k))?;
                patterns.push((re, self.alloc(s, child_ptr(&at, k))?));
            }
        }
        let additional = get("additionalProperties")
            .map(|v| self.sub(v, ptr, "additionalProperties"))
            .transpose()?;
        if !named.is_empty() || !patterns.is_empty() || additional.is_some() {
            checks.push(Check::Properties {
                named,
                patterns,
                additional,
            });
        }
        if let Some(v) = get("propertyNames") {
            checks.push(Check::PropertyNames(self.sub(v, ptr, "propertyNames")?));
        }
        if let Some(v) = get("dependentSchemas") {
            checks.push(Check::DependentSchemas(self.sub_map(
                v,
                ptr,
                "dependentSchemas",
            )?));
        }

        // Applicators.
        if let Some(v) = get("allOf") {
            checks.push(Check::AllOf(self.sub_list(v, ptr, "allOf")?));
        }
        if let Some(v) = get("anyOf") {
            checks.push(Check::AnyOf(self.sub_list(v, ptr, "anyOf")?));
        }
        if let Some(v) = get("oneOf") {
            checks.push(Check::OneOf(self.sub_list(v, ptr, "oneOf")?));
        }
        if let Some(v) = get("not") {
            checks.push(Check::Not(self.sub(v, ptr, "not")?));
        }
        // `then` / `else` are compiled (and so checked) even without `if`, which makes them inert.
        let cond = get("if").map(|v| self.sub(v, ptr, "if")).transpose()?;
        let then = get("then").map(|v| self.sub(v, ptr, "then")).transpose()?;
        let otherwise = get("else").map(|v| self.sub(v, ptr, "else")).transpose()?;
        match cond {
            Some(cond) if then.is_some() || otherwise.is_some() => checks.push(Check::If {
                cond,
                then,
                otherwise,
            }),
            _ => {}
        }

        if let Some(v) = get("$ref") {
            let Value::String(r) = v else {
                return err(ptr, "$ref", "`$ref` must be a string");
            };
            let tokens = self.ref_tokens(r, ptr)?;
            self.pending.push(PendingRef {
                node: id,
                slot: checks.len(),
                reference: r.clone(),
                tokens,
            });
            checks.push(Check::Ref(id)); // placeholder, patched once the target is compiled
        }
        // Annotations (`title`, `format`, ...) and unknown keywords need no code: they are ignored.
        Ok(checks)
    }
}

fn number(v: &Value, ptr: &str, keyword: &str) -> Result<(Num, serde_json::Number), SchemaError> {
    match v {
        Value::Number(n) => match Num::of(n) {
            Some(x) => Ok((x, n.clone())),
            None => err(ptr, keyword, format!("`{keyword}` is out of range")),
        },
        _ => err(ptr, keyword, format!("`{keyword}` must be a number")),
    }
}

fn count(v: &Value, ptr: &str, keyword: &str) -> Result<u64, SchemaError> {
    match v {
        Value::Number(n) => Num::of(n).and_then(Num::as_count),
        _ => None,
    }
    .map_or_else(
        || {
            err(
                ptr,
                keyword,
                format!("`{keyword}` must be a non-negative integer"),
            )
        },
        Ok,
    )
}

fn type_set(v: &Value, ptr: &str) -> Result<u8, SchemaError> {
    let one = |v: &Value, at: String| -> Result<u8, SchemaError> {
        let Value::String(s) = v else {
            return Err(SchemaError::new(at, "type names must be strings"));
        };
        ty::NAMES
            .iter()
            .find(|(_, name)| name == s)
            .map(|&(bit, _)| bit)
            .ok_or_else(|| SchemaError::new(at, format!("unknown type `{s}` (expected one of null, boolean, object, array, number, string, integer)")))
    };
    let at = child_ptr(ptr, "type");
    match v {
        Value::Array(a) => {
            let mut set = 0;
            for (i, t) in a.iter().enumerate() {
                let bit = one(t, child_ptr(&at, &i.to_string()))?;
                if set & bit != 0 {
                    return Err(SchemaError::new(
                        child_ptr(&at, &i.to_string()),
                        "`type` names must be unique",
                    ));
                }
                set |= bit;
            }
            if set == 0 {
                return Err(SchemaError::new(at, "`type` must not be an empty array"));
            }
            Ok(set)
        }
        _ => one(v, at),
    }
}

fn string_set(v: &Value, at: &str, keyword: &str) -> Result<Vec<String>, SchemaError> {
    let Value::Array(a) = v else {
        return Err(SchemaError::new(
            at,
            format!("`{keyword}` must be an array of strings"),
        ));
    };
    let mut out: Vec<String> = Vec::with_capacity(a.len());
    for (i, s) in a.iter().enumerate() {
        let Value::String(s) = s else {
            return Err(SchemaError::new(
                child_ptr(at, &i.to_string()),
                format!("`{keyword}` must be an array of strings"),
            ));
        };
        if out.contains(s) {
            return Err(SchemaError::new(
                child_ptr(at, &i.to_string()),
                format!("duplicate `{keyword}` entry `{s}`"),
            ));
        }
        out.push(s.clone());
    }
    Ok(out)
}
