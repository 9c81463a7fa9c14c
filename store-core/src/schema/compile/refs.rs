//! `$ref` handling: parsing local refs, resolving them to nodes after the
//! tree walk, and rejecting loops that never descend into the instance.

use serde_json::Value;

use super::{Check, Compiler, NodeId, PendingRef, child_ptr, kind_name, unsupported};
use crate::schema::SchemaError;

impl Compiler<'_> {
    /// Splits a local `$ref` into JSON pointer tokens.
    pub(super) fn ref_tokens(&self, r: &str, ptr: &str) -> Result<Vec<String>, SchemaError> {
        let fragment = r.strip_prefix('#').or_else(|| {
            let rest = r.strip_prefix(self.root_id?)?;
            if rest.is_empty() {
                Some("")
            } else {
                rest.strip_prefix('#')
            }
        });
        let Some(fragment) = fragment else {
            return Err(unsupported(
                ptr,
                "$ref",
                &format!(" with non-local target `{r}` (only `#/json/pointer` refs are supported)"),
            ));
        };
        let decoded = percent_decode(fragment).ok_or_else(|| {
            SchemaError::new(
                child_ptr(ptr, "$ref"),
                format!("invalid percent-encoding in `$ref` `{r}`"),
            )
        })?;
        if decoded.is_empty() {
            return Ok(Vec::new());
        }
        let Some(pointer) = decoded.strip_prefix('/') else {
            return Err(unsupported(
                ptr,
                "$ref",
                &format!(" with anchor target `{r}` (only `#/json/pointer` refs are supported)"),
            ));
        };
        Ok(pointer
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect())
    }

    /// Finds (allocating if needed) the node a pending `$ref` points to.
    pub(super) fn resolve(&mut self, p: &PendingRef) -> Result<NodeId, SchemaError> {
        let at = child_ptr(&self.ptrs[p.node as usize], "$ref");
        let mut target = self.root;
        let mut canonical = String::new();
        for t in &p.tokens {
            let next = match target {
                Value::Object(m) => m.get(t),
                Value::Array(a) => array_index(t).and_then(|i| a.get(i)),
                _ => None,
            };
            let Some(next) = next else {
                return Err(SchemaError::new(
                    at,
                    format!("`$ref` target `{}` does not exist", p.reference),
                ));
            };
            target = next;
            canonical = child_ptr(&canonical, t);
        }
        if !matches!(target, Value::Object(_) | Value::Bool(_)) {
            return Err(SchemaError::new(
                at,
                format!(
                    "`$ref` target `{}` is not a schema (got {})",
                    p.reference,
                    kind_name(target)
                ),
            ));
        }
        self.alloc(target, canonical)
    }

    /// Rejects cycles of schemas applied to the same instance location (through
    /// `$ref`, `allOf`, `not`, ...): they could only recurse forever.
    pub(super) fn check_loops(&self) -> Result<(), SchemaError> {
        let n = self.nodes.len();
        // Edges to schemas evaluated on the same instance; `true` marks a `$ref`.
        let edges = |id: usize| -> Vec<(NodeId, bool)> {
            let mut out = Vec::new();
            for c in self.nodes[id].checks.iter() {
                match c {
                    Check::AllOf(l) | Check::AnyOf(l) | Check::OneOf(l) => {
                        out.extend(l.iter().map(|&x| (x, false)))
                    }
                    Check::DependentSchemas(l) => out.extend(l.iter().map(|&(_, x)| (x, false))),
                    Check::Not(x) => out.push((*x, false)),
                    Check::If {
                        cond,
                        then,
                        otherwise,
                    } => {
                        out.push((*cond, false));
                        out.extend(then.iter().chain(otherwise).map(|&x| (x, false)));
                    }
                    Check::Ref(x) => out.push((*x, true)),
                    _ => {}
                }
            }
            out
        };
        let adjacency: Vec<Vec<(NodeId, bool)>> = (0..n).map(edges).collect();
        let mut state = vec![0u8; n]; // 0 = unvisited, 1 = on the stack, 2 = done
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for start in 0..n {
            if state[start] != 0 {
                continue;
            }
            state[start] = 1;
            stack.push((start, 0));
            while let Some(top) = stack.last_mut() {
                let (node, next_edge) = *top;
                let Some(&(next, _)) = adjacency[node].get(next_edge) else {
                    state[node] = 2;
                    stack.pop();
                    continue;
                };
                top.1 += 1;
                let next = next as usize;
                match state[next] {
                    0 => {
                        state[next] = 1;
                        stack.push((next, 0));
                    }
                    1 => {
                        // The cycle is the stack from `next` up; name a `$ref` on it.
                        let from = stack.iter().position(|&(s, _)| s == next).unwrap_or(0);
                        let at = stack[from..]
                            .iter()
                            .find(|&&(s, e)| {
                                e > 0 && adjacency[s].get(e - 1).is_some_and(|&(_, is_ref)| is_ref)
                            })
                            .map_or(node, |&(s, _)| s);
                        let target = &self.ptrs[next];
                        return Err(SchemaError::new(
                            child_ptr(&self.ptrs[at], "$ref"),
                            format!(
                                "`$ref` loop: `#{target}` refers back to itself without descending into the instance"
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn array_index(t: &str) -> Option<usize> {
    if t.is_empty() || (t.len() > 1 && t.starts_with('0')) || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
