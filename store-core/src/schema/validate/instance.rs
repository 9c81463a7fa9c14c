//! The instance side of validation: the value being checked, its path, and
//! message formatting helpers.

use std::fmt::{self, Write as _};

use serde_json::{Map, Number, Value};

use crate::json::json_eq;
use crate::schema::compile::ty;
use crate::schema::num::Num;

/// The location in the instance, as a linked list on the stack.
#[derive(Clone, Copy)]
pub(super) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
pub(super) enum Seg<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    pub(super) const ROOT: Path<'static> = Path {
        parent: None,
        seg: Seg::Root,
    };

    pub(super) fn key(&'a self, k: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Key(k),
        }
    }

    pub(super) fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    pub(super) fn pointer(&self) -> String {
        let mut segs = Vec::new();
        let mut p = Some(self);
        while let Some(q) = p {
            segs.push(q.seg);
            p = q.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Key(k) => {
                    out.push('/');
                    for c in k.chars() {
                        match c {
                            '~' => out.push_str("~0"),
                            '/' => out.push_str("~1"),
                            c => out.push(c),
                        }
                    }
                }
                Seg::Index(i) => {
                    let _ = write!(out, "/{i}");
                }
            }
        }
        out
    }
}

/// The value being validated: a JSON value, or an object key (for
/// `propertyNames`, so keys need not be copied into a `Value`).
#[derive(Clone, Copy)]
pub(super) enum Inst<'a> {
    Value(&'a Value),
    Key(&'a str),
}

impl<'a> Inst<'a> {
    pub(super) fn as_str(self) -> Option<&'a str> {
        match self {
            Inst::Value(Value::String(s)) => Some(s),
            Inst::Key(s) => Some(s),
            Inst::Value(_) => None,
        }
    }

    pub(super) fn as_array(self) -> Option<&'a [Value]> {
        match self {
            Inst::Value(Value::Array(a)) => Some(a),
            _ => None,
        }
    }

    pub(super) fn as_object(self) -> Option<&'a Map<String, Value>> {
        match self {
            Inst::Value(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    pub(super) fn as_number(self) -> Option<&'a Number> {
        match self {
            Inst::Value(Value::Number(n)) => Some(n),
            _ => None,
        }
    }

    pub(super) fn equals(self, other: &Value) -> bool {
        match self {
            Inst::Value(v) => json_eq(v, other),
            Inst::Key(k) => matches!(other, Value::String(s) if s == k),
        }
    }

    /// The [`ty`] bit of this value; numbers that are integers also get [`ty::INTEGER`].
    pub(super) fn type_bits(self) -> u8 {
        match self {
            Inst::Key(_) | Inst::Value(Value::String(_)) => ty::STRING,
            Inst::Value(Value::Null) => ty::NULL,
            Inst::Value(Value::Bool(_)) => ty::BOOLEAN,
            Inst::Value(Value::Object(_)) => ty::OBJECT,
            Inst::Value(Value::Array(_)) => ty::ARRAY,
            Inst::Value(Value::Number(n)) => {
                if Num::of(n).is_some_and(Num::is_integer) {
                    ty::NUMBER | ty::INTEGER
                } else {
                    ty::NUMBER
                }
            }
        }
    }

    pub(super) fn type_name(self) -> &'static str {
        match self.type_bits() & !ty::INTEGER {
            ty::NULL => "null",
            ty::BOOLEAN => "boolean",
            ty::OBJECT => "object",
            ty::ARRAY => "array",
            ty::STRING => "string",
            _ => "number",
        }
    }
}

/// Renders a set of type bits as `string or null`.
pub(super) struct TypeNames(pub(super) u8);

impl fmt::Display for TypeNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for &(bit, name) in &ty::NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(" or ")?;
                }
                first = false;
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

/// A JSON value shown in a message, shortened when long.
pub(super) struct Short<'a>(pub(super) &'a Value);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 60;
        let s = self.0.to_string();
        if s.chars().count() <= MAX {
            f.write_str(&s)
        } else {
            let cut: String = s.chars().take(MAX).collect();
            write!(f, "{cut}…")
        }
    }
}

pub(super) fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
