//! Evaluating compiled nodes against an instance.
//!
//! The success path does not allocate: the instance path is a linked list on
//! the stack, turned into a JSON pointer only when an error is reported, and
//! subschemas whose errors would be discarded (`anyOf`, `not`, `if`, ...) are
//! evaluated in a quiet mode that builds no messages.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use super::ValidationError;
use super::compile::{BoundKind, Check, Node, NodeId};
use super::num::{Decimal, Num, cmp_json, cmp_num};
use crate::json::json_eq;

mod instance;

use instance::{Inst, Path, Short, TypeNames, plural};

/// How many schemas may be nested in one evaluation before giving up.
const MAX_DEPTH: u32 = 512;

/// Arrays up to this length are checked for `uniqueItems` pairwise (no
/// allocation); longer ones are sorted.
const UNIQUE_PAIRWISE_MAX: usize = 64;

pub(super) fn validate(nodes: &[Node], root: NodeId, instance: &Value) -> Result<(), ValidationError> {
    let v = Validator { nodes };
    match v.eval(root, Inst::Value(instance), &Path::ROOT, true, 0) {
        Ok(()) => Ok(()),
        Err(Invalid::Fail(Some(e)) | Invalid::Abort(e)) => Err(*e),
        Err(Invalid::Fail(None)) => Err(ValidationError {
            instance_path: String::new(),
            keyword: "false",
            message: "is not valid".to_owned(),
        }),
    }
}

/// Why an evaluation failed.
enum Invalid {
    /// An ordinary failure; details only in detailed mode.
    Fail(Option<Box<ValidationError>>),
    /// Evaluation gave up (too deep): never turned into a success by `not` & co.
    Abort(Box<ValidationError>),
}

type Res = Result<(), Invalid>;

struct Validator<'s> {
    nodes: &'s [Node],
}

impl Validator<'_> {
    /// Builds a failure; the message is only formatted in detailed mode.
    fn fail(detailed: bool, path: &Path<'_>, keyword: &'static str, message: fmt::Arguments<'_>) -> Res {
        Err(Invalid::Fail(detailed.then(|| {
            Box::new(ValidationError {
                instance_path: path.pointer(),
                keyword,
                message: message.to_string(),
            })
        })))
    }

    /// Quiet evaluation: whether `inst` matches node `id` (aborts propagate).
    fn matches(&self, id: NodeId, inst: Inst<'_>, path: &Path<'_>, depth: u32) -> Result<bool, Invalid> {
        match self.eval(id, inst, path, false, depth) {
            Ok(()) => Ok(true),
            Err(Invalid::Fail(_)) => Ok(false),
            Err(abort) => Err(abort),
        }
    }

    fn eval(&self, id: NodeId, inst: Inst<'_>, path: &Path<'_>, detailed: bool, depth: u32) -> Res {
        if depth >= MAX_DEPTH {
            return Err(Invalid::Abort(Box::new(ValidationError {
                instance_path: path.pointer(),
                keyword: "depth",
                message: format!(
                    "value is nested too deeply to validate (more than {MAX_DEPTH} schemas deep)"
                ),
            })));
        }
        let depth = depth + 1;
        let Some(node) = self.nodes.get(id as usize) else {
            return Ok(());
        };
        for check in node.checks.iter() {
            self.check(check, inst, path, detailed, depth)?;
        }
        Ok(())
    }

    /// Dispatches one check. Checks that recurse get small functions of their
    /// own, so each level of recursion uses little stack (even in debug builds).
    fn check(&self, check: &Check, inst: Inst<'_>, path: &Path<'_>, d: bool, depth: u32) -> Res {
        match check {
            Check::Items { prefix, rest } => self.items(prefix, *rest, inst, path, d, depth),
            Check::Contains { .. } => self.contains(check, inst, path, d, depth),
            Check::Properties {
                named,
                patterns,
                additional,
            } => self.properties(named, patterns, *additional, inst, path, d, depth),
            Check::PropertyNames(node) => self.property_names(*node, inst, path, d, depth),
            Check::DependentSchemas(deps) => {
                let Some(m) = inst.as_object() else { return Ok(()) };
                for (name, node) in deps {
                    if m.contains_key(name.as_str()) {
                        self.eval(*node, inst, path, d, depth)?;
                    }
                }
                Ok(())
            }
            Check::AllOf(list) => {
                for &node in list {
                    self.eval(node, inst, path, d, depth)?;
                }
                Ok(())
            }
            Check::AnyOf(list) => self.any_of(list, inst, path, d, depth),
            Check::OneOf(list) => self.one_of(list, inst, path, d, depth),
            Check::Not(node) => self.not(*node, inst, path, d, depth),
            Check::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = if self.matches(*cond, inst, path, depth)? {
                    then
                } else {
                    otherwise
                };
                match branch {
                    Some(node) => self.eval(*node, inst, path, d, depth),
                    None => Ok(()),
                }
            }
            Check::Ref(node) => self.eval(*node, inst, path, d, depth),
            leaf => Self::leaf(leaf, inst, path, d),
        }
    }

    /// Checks that do not evaluate subschemas.
    #[inline(never)]
    fn leaf(check: &Check, inst: Inst<'_>, path: &Path<'_>, d: bool) -> Res {
        match check {
            Check::False => Self::fail(d, path, "false", format_args!("no value is allowed here")),
            Check::Type(set) => {
                if inst.type_bits() & set != 0 {
                    Ok(())
                } else {
                    Self::fail(
                        d,
                        path,
                        "type",
                        format_args!("expected {}, got {}", TypeNames(*set), inst.type_name()),
                    )
                }
            }
            Check::Const(c) => {
                if inst.equals(c) {
                    Ok(())
                } else {
                    Self::fail(d, path, "const", format_args!("must be equal to {}", Short(c)))
                }
            }
            Check::Enum(values) => {
                if values.iter().any(|v| inst.equals(v)) {
                    Ok(())
                } else if !d {
                    Err(Invalid::Fail(None))
                } else if values.len() <= 8 {
                    let list = Short(&Value::Array(values.clone())).to_string();
                    Self::fail(d, path, "enum", format_args!("must be one of {list}"))
                } else {
                    Self::fail(
                        d,
                        path,
                        "enum",
                        format_args!("must be one of the {} allowed values", values.len()),
                    )
                }
            }
            Check::MultipleOf(dec, raw) => {
                let Some(n) = inst.as_number() else { return Ok(()) };
                let ok = Decimal::of(n).is_some_and(|x| x.is_multiple_of(*dec));
                if ok {
                    Ok(())
                } else {
                    Self::fail(d, path, "multipleOf", format_args!("must be a multiple of {raw}"))
                }
            }
            Check::Bound(kind, limit, raw) => {
                let Some(n) = inst.as_number().and_then(Num::of) else {
                    return Ok(());
                };
                let o = cmp_num(n, *limit);
                let (ok, keyword, text) = match kind {
                    BoundKind::Minimum => (o != Ordering::Less, "minimum", "at least"),
                    BoundKind::ExclusiveMinimum => {
                        (o == Ordering::Greater, "exclusiveMinimum", "greater than")
                    }
                    BoundKind::Maximum => (o != Ordering::Greater, "maximum", "at most"),
                    BoundKind::ExclusiveMaximum => (o == Ordering::Less, "exclusiveMaximum", "less than"),
                };
                if ok {
                    Ok(())
                } else {
                    Self::fail(d, path, keyword, format_args!("must be {text} {raw}"))
                }
            }
            Check::MinLength(min) => {
                let Some(s) = inst.as_str() else { return Ok(()) };
                // A string has at most as many characters as bytes.
                if (s.len() as u64) < *min || (s.chars().count() as u64) < *min {
                    Self::fail(
                        d,
                        path,
                        "minLength",
                        format_args!("must be at least {min} character{} long", plural(*min)),
                    )
                } else {
                    Ok(())
                }
            }
            Check::MaxLength(max) => {
                let Some(s) = inst.as_str() else { return Ok(()) };
                if (s.len() as u64) > *max && (s.chars().count() as u64) > *max {
                    Self::fail(
                        d,
                        path,
                        "maxLength",
                        format_args!("must be at most {max} character{} long", plural(*max)),
                    )
                } else {
                    Ok(())
                }
            }
            Check::Pattern(re) => {
                let Some(s) = inst.as_str() else { return Ok(()) };
                if re.is_match(s) {
                    Ok(())
                } else {
                    Self::fail(
                        d,
                        path,
                        "pattern",
                        format_args!("must match pattern `{}`", re.as_str()),
                    )
                }
            }
            Check::MinItems(min) => match inst.as_array() {
                Some(a) if (a.len() as u64) < *min => Self::fail(
                    d,
                    path,
                    "minItems",
                    format_args!("must have at least {min} item{}", plural(*min)),
                ),
                _ => Ok(()),
            },
            Check::MaxItems(max) => match inst.as_array() {
                Some(a) if (a.len() as u64) > *max => Self::fail(
                    d,
                    path,
                    "maxItems",
                    format_args!("must have at most {max} item{}", plural(*max)),
                ),
                _ => Ok(()),
            },
            Check::UniqueItems => {
                let Some(items) = inst.as_array() else {
                    return Ok(());
                };
                match duplicate(items) {
                    None => Ok(()),
                    Some((i, j)) => Self::fail(
                        d,
                        path,
                        "uniqueItems",
                        format_args!("must not contain duplicate items (items {i} and {j} are equal)"),
                    ),
                }
            }
            Check::MinProperties(min) => match inst.as_object() {
                Some(m) if (m.len() as u64) < *min => Self::fail(
                    d,
                    path,
                    "minProperties",
                    format_args!(
                        "must have at least {min} propert{}",
                        if *min == 1 { "y" } else { "ies" }
                    ),
                ),
                _ => Ok(()),
            },
            Check::MaxProperties(max) => match inst.as_object() {
                Some(m) if (m.len() as u64) > *max => Self::fail(
                    d,
                    path,
                    "maxProperties",
                    format_args!(
                        "must have at most {max} propert{}",
                        if *max == 1 { "y" } else { "ies" }
                    ),
                ),
                _ => Ok(()),
            },
            Check::Required(names) => {
                let Some(m) = inst.as_object() else { return Ok(()) };
                match names.iter().find(|n| !m.contains_key(n.as_str())) {
                    None => Ok(()),
                    Some(n) => Self::fail(
                        d,
                        path,
                        "required",
                        format_args!("missing required property `{n}`"),
                    ),
                }
            }
            Check::DependentRequired(deps) => {
                let Some(m) = inst.as_object() else { return Ok(()) };
                for (name, required) in deps {
                    if !m.contains_key(name.as_str()) {
                        continue;
                    }
                    if let Some(missing) = required.iter().find(|r| !m.contains_key(r.as_str())) {
                        return Self::fail(
                            d,
                            path,
                            "dependentRequired",
                            format_args!("missing property `{missing}`, required when `{name}` is present"),
                        );
                    }
                }
                Ok(())
            }
            // Applicators are handled by `check`.
            _ => Ok(()),
        }
    }

    fn items(
        &self,
        prefix: &[NodeId],
        rest: Option<NodeId>,
        inst: Inst<'_>,
        path: &Path<'_>,
        d: bool,
        depth: u32,
    ) -> Res {
        let Some(items) = inst.as_array() else {
            return Ok(());
        };
        for (i, (item, &node)) in items.iter().zip(prefix).enumerate() {
            self.eval(node, Inst::Value(item), &path.index(i), d, depth)?;
        }
        let Some(rest) = rest else { return Ok(()) };
        if items.len() <= prefix.len() {
            return Ok(());
        }
        if self.nodes.get(rest as usize).is_some_and(Node::is_false) {
            return Self::too_many_items(d, path, prefix.len());
        }
        for (i, item) in items.iter().enumerate().skip(prefix.len()) {
            self.eval(rest, Inst::Value(item), &path.index(i), d, depth)?;
        }
        Ok(())
    }

    #[inline(never)]
    fn too_many_items(d: bool, path: &Path<'_>, n: usize) -> Res {
        Self::fail(
            d,
            path,
            "items",
            format_args!("must have at most {n} item{}", plural(n as u64)),
        )
    }

    fn contains(&self, check: &Check, inst: Inst<'_>, path: &Path<'_>, d: bool, depth: u32) -> Res {
        let Check::Contains {
            schema,
            min,
            max,
            min_explicit,
        } = *check
        else {
            return Ok(());
        };
        let Some(items) = inst.as_array() else {
            return Ok(());
        };
        let mut found: u64 = 0;
        for (i, item) in items.iter().enumerate() {
            if self.matches(schema, Inst::Value(item), &path.index(i), depth)? {
                found += 1;
                if max.is_none() && found >= min {
                    return Ok(());
                }
            }
        }
        Self::contains_result(d, path, found, min, max, min_explicit)
    }

    #[inline(never)]
    fn contains_result(
        d: bool,
        path: &Path<'_>,
        found: u64,
        min: u64,
        max: Option<u64>,
        min_explicit: bool,
    ) -> Res {
        if found < min {
            if !min_explicit {
                return Self::fail(
                    d,
                    path,
                    "contains",
                    format_args!("must contain an item matching `contains`"),
                );
            }
            return Self::fail(
                d,
                path,
                "minContains",
                format_args!(
                    "must contain at least {min} item{} matching `contains` (found {found})",
                    plural(min)
                ),
            );
        }
        match max {
            Some(max) if found > max => Self::fail(
                d,
                path,
                "maxContains",
                format_args!(
                    "must contain at most {max} item{} matching `contains` (found {found})",
                    plural(max)
                ),
            ),
            _ => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn properties(
        &self,
        named: &[(String, NodeId)],
        patterns: &[(regex_lite::Regex, NodeId)],
        additional: Option<NodeId>,
        inst: Inst<'_>,
        path: &Path<'_>,
        d: bool,
        depth: u32,
    ) -> Res {
        let Some(m) = inst.as_object() else { return Ok(()) };
        for (name, node) in named {
            if let Some(v) = m.get(name) {
                self.eval(*node, Inst::Value(v), &path.key(name), d, depth)?;
            }
        }
        if patterns.is_empty() && additional.is_none() {
            return Ok(());
        }
        for (k, v) in m {
            let mut known = named.binary_search_by(|(n, _)| n.as_str().cmp(k)).is_ok();
            for (re, node) in patterns {
                if re.is_match(k) {
                    known = true;
                    self.eval(*node, Inst::Value(v), &path.key(k), d, depth)?;
                }
            }
            if known {
                continue;
            }
            if let Some(a) = additional {
                if self.nodes.get(a as usize).is_some_and(Node::is_false) {
                    return Self::additional_not_allowed(d, path, k);
                }
                self.eval(a, Inst::Value(v), &path.key(k), d, depth)?;
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn additional_not_allowed(d: bool, path: &Path<'_>, k: &str) -> Res {
        Self::fail(
            d,
            path,
            "additionalProperties",
            format_args!("additional property `{k}` is not allowed"),
        )
    }

    fn property_names(&self, node: NodeId, inst: Inst<'_>, path: &Path<'_>, d: bool, depth: u32) -> Res {
        let Some(m) = inst.as_object() else { return Ok(()) };
        for k in m.keys() {
            match self.eval(node, Inst::Key(k), path, d, depth) {
                Ok(()) => {}
                Err(Invalid::Fail(Some(e))) => {
                    return Self::fail(
                        d,
                        path,
                        "propertyNames",
                        format_args!("property name `{k}` is invalid: {}", e.message),
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn any_of(&self, list: &[NodeId], inst: Inst<'_>, path: &Path<'_>, d: bool, depth: u32) -> Res {
        for &node in list {
            if self.matches(node, inst, path, depth)? {
                return Ok(());
            }
        }
        Self::fail(
            d,
            path,
            "anyOf",
            format_args!("must match at least one schema in `anyOf`"),
        )
    }

    fn one_of(&self, list: &[NodeId], inst: Inst<'_>, path: &Path<'_>, d: bool, depth: u32) -> Res {
        let mut first = None;
        for (i, &node) in list.iter().enumerate() {
            if self.matches(node, inst, path, depth)? {
                if let Some(f) = first {
                    return Self::one_of_failed(d, path, Some((f, i)));
                }
                first = Some(i);
            }
        }
        if first.is_some() {
            Ok(())
        } else {
            Self::one_of_failed(d, path, None)
        }
    }

    #[inline(never)]
    fn one_of_failed(d: bool, path: &Path<'_>, both: Option<(usize, usize)>) -> Res {
        match both {
            Some((f, i)) => Self::fail(
                d,
                path,
                "oneOf",
                format_args!("must match exactly one schema in `oneOf`, but matches #{f} and #{i}"),
            ),
            None => Self::fail(
                d,
                path,
                "oneOf",
                format_args!("must match exactly one schema in `oneOf`, but matches none"),
            ),
        }
    }

    fn not(&self, node: NodeId, inst: Inst<'_>, path: &Path<'_>, d: bool, depth: u32) -> Res {
        if self.matches(node, inst, path, depth)? {
            Self::fail(d, path, "not", format_args!("must not match the schema in `not`"))
        } else {
            Ok(())
        }
    }
}

/// The indices of a pair of equal items, if any.
fn duplicate(items: &[Value]) -> Option<(usize, usize)> {
    if items.len() <= UNIQUE_PAIRWISE_MAX {
        for (i, a) in items.iter().enumerate() {
            for (j, b) in items.iter().enumerate().skip(i + 1) {
                if json_eq(a, b) {
                    return Some((i, j));
                }
            }
        }
        return None;
    }
    let mut sorted: Vec<(usize, &Value)> = items.iter().enumerate().collect();
    sorted.sort_unstable_by(|a, b| cmp_json(a.1, b.1).then(a.0.cmp(&b.0)));
    sorted
        .windows(2)
        .find(|w| cmp_json(w[0].1, w[1].1) == Ordering::Equal)
        .map(|w| (w[0].0.min(w[1].0), w[0].0.max(w[1].0)))
}
