//! Exact number handling and JSON Schema equality, without allocating and
//! without panicking on any input.

// `u128::is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// A JSON number as one of the three representations `serde_json` keeps.
#[derive(Clone, Copy, Debug)]
pub(super) enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl Num {
    /// `None` only when `serde_json` cannot give any numeric value.
    pub(super) fn of(n: &Number) -> Option<Num> {
        if let Some(u) = n.as_u64() {
            Some(Num::U(u))
        } else if let Some(i) = n.as_i64() {
            Some(Num::I(i))
        } else {
            n.as_f64().filter(|f| !f.is_nan()).map(Num::F)
        }
    }

    /// Whether the value is mathematically an integer (`1.0` is).
    pub(super) fn is_integer(self) -> bool {
        match self {
            Num::U(_) | Num::I(_) => true,
            Num::F(f) => f.is_finite() && f.fract() == 0.0,
        }
    }

    /// The value as a non-negative integer count, saturating at `u64::MAX`;
    /// `None` when negative or fractional.
    pub(super) fn as_count(self) -> Option<u64> {
        match self {
            Num::U(u) => Some(u),
            Num::I(_) => None,
            Num::F(f) if f >= 0.0 && f.fract() == 0.0 => Some(if f >= 18_446_744_073_709_551_615.0 {
                u64::MAX
            } else {
                f as u64
            }),
            Num::F(f) if f == f64::INFINITY => Some(u64::MAX),
            Num::F(_) => None,
        }
    }

    fn int(self) -> Option<i128> {
        match self {
            Num::U(u) => Some(i128::from(u)),
            Num::I(i) => Some(i128::from(i)),
            Num::F(_) => None,
        }
    }
}

/// Exact numeric comparison across integer and float representations.
pub(super) fn cmp_num(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::F(x), _) => cmp_int_float(b.int().unwrap_or(0), x).reverse(),
        (_, Num::F(y)) => cmp_int_float(a.int().unwrap_or(0), y),
        _ => a.int().cmp(&b.int()),
    }
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // Every integer here fits in 65 bits, far inside these bounds.
    if f >= 1e30 {
        return Ordering::Less;
    }
    if f <= -1e30 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    match i.cmp(&(t as i128)) {
        Ordering::Equal => 0.0.partial_cmp(&(f - t)).unwrap_or(Ordering::Equal),
        o => o,
    }
}

/// The absolute value of a number as `mant * 10^exp`, taken from its shortest
/// decimal representation (what the author wrote, for floats).
#[derive(Clone, Copy, Debug)]
pub(super) struct Decimal {
    mant: u64,
    exp: i32,
}

impl Decimal {
    pub(super) fn of(n: &Number) -> Option<Decimal> {
        match Num::of(n)? {
            Num::U(u) => Some(Decimal { mant: u, exp: 0 }),
            Num::I(i) => Some(Decimal {
                mant: i.unsigned_abs(),
                exp: 0,
            }),
            Num::F(f) if f.is_finite() => {
                // serde_json prints floats in their shortest round-trip form
                // (and, unlike `core`'s float formatting, adds no code size).
                let mut buf = StackBuf { buf: [0; 48], len: 0 };
                serde_json::to_writer(&mut buf, n).ok()?;
                parse_decimal(&buf.buf[..buf.len])
            }
            Num::F(_) => None,
        }
    }

    pub(super) fn is_zero(self) -> bool {
        self.mant == 0
    }

    /// Whether `self` is an integer multiple of `d` (`d` must be non-zero).
    pub(super) fn is_multiple_of(self, d: Decimal) -> bool {
        if self.mant == 0 {
            return true;
        }
        if d.mant == 0 {
            return false;
        }
        let b = u128::from(d.mant);
        if self.exp >= d.exp {
            // self / d = (a / b) * 10^k: need b | a * 10^k.
            let k = (i64::from(self.exp) - i64::from(d.exp)) as u64;
            (u128::from(self.mant) % b) * pow10_mod(k, b) % b == 0
        } else {
            // Need b * 10^k | a.
            let k = (i64::from(d.exp) - i64::from(self.exp)) as u64;
            let mut div = b;
            for _ in 0..k {
                match div.checked_mul(10) {
                    Some(v) if v <= u128::from(self.mant) => div = v,
                    _ => return false,
                }
            }
            u128::from(self.mant) % div == 0
        }
    }
}

/// `10^k mod m` for `m < 2^64`, so every product fits in `u128`.
fn pow10_mod(mut k: u64, m: u128) -> u128 {
    let mut result = 1 % m;
    let mut base = 10 % m;
    while k > 0 {
        if k & 1 == 1 {
            result = result * base % m;
        }
        base = base * base % m;
        k >>= 1;
    }
    result
}

/// Parses a JSON number (`-12.5e-3`) into its absolute value.
fn parse_decimal(s: &[u8]) -> Option<Decimal> {
    let s = s.strip_prefix(b"-").unwrap_or(s);
    let e = s.iter().position(|&c| c == b'e' || c == b'E').unwrap_or(s.len());
    let (digits, exp) = (&s[..e], s.get(e + 1..).unwrap_or_default());
    let mut mant: u64 = 0;
    let mut frac_digits: i32 = 0;
    let mut after_dot = false;
    for &c in digits {
        match c {
            b'.' if !after_dot => after_dot = true,
            b'0'..=b'9' => {
                mant = mant.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                if after_dot {
                    frac_digits = frac_digits.checked_add(1)?;
                }
            }
            _ => return None,
        }
    }
    let (neg, exp) = match exp.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, exp),
    };
    let mut x: i32 = 0;
    for &c in exp {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x.checked_mul(10)?.checked_add(i32::from(c - b'0'))?;
    }
    let x = if neg { -x } else { x };
    Some(Decimal {
        mant,
        exp: x.checked_sub(frac_digits)?,
    })
}

/// A fixed-size `io::Write` target, so printing a number never allocates.
struct StackBuf {
    buf: [u8; 48],
    len: usize,
}

impl std::io::Write for StackBuf {
    fn write(&mut self, s: &[u8]) -> std::io::Result<usize> {
        let end = self.len.checked_add(s.len()).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::WriteZero))?;
        self.buf[self.len..end].copy_from_slice(s);
        self.len = end;
        Ok(s.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Numeric equality by value, exact across integers and floats.
pub(crate) fn num_eq(a: &Number, b: &Number) -> bool {
    match (Num::of(a), Num::of(b)) {
        (Some(x), Some(y)) => cmp_num(x, y) == Ordering::Equal,
        _ => a == b,
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A total order consistent with [`crate::json::json_eq`] (used to find duplicates in
/// large arrays by sorting).
pub(super) fn cmp_json(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (Num::of(x), Num::of(y)) {
            (Some(p), Some(q)) => cmp_num(p, q),
            _ => x.to_string().cmp(&y.to_string()),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = cmp_json(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let o = x.len().cmp(&y.len());
            if o != Ordering::Equal {
                return o;
            }
            let mut kx: Vec<&String> = x.keys().collect();
            let mut ky: Vec<&String> = y.keys().collect();
            kx.sort_unstable();
            ky.sort_unstable();
            let o = kx.cmp(&ky);
            if o != Ordering::Equal {
                return o;
            }
            for k in kx {
                if let (Some(p), Some(q)) = (x.get(k), y.get(k)) {
                    let o = cmp_json(p, q);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
            }
            Ordering::Equal
        }
        _ => rank(a).cmp(&rank(b)),
    }
}
