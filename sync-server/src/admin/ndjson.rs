//! The export file: one namespace as NDJSON (one JSON object per line).
//!
//! ```text
//! {"format":"zestor-export","version":1,"namespace":"team-7","rev":42,"entries":2}
//! {"kind":"task","key":"t1","value":{"title":"ship"},"version":3,"rev":41}
//! {"kind":"task","key":"t2","value":null,"version":1,"rev":12}
//! ```
//!
//! The first line is the header: `format` (always `"zestor-export"`),
//! `version` (of this format: 1), the `namespace`, its revision `rev` and
//! how many `entries` follow. Each following line is one entry, sorted by
//! kind then key: `kind`, `key`, `value` (any JSON, `null` included),
//! `version` and `rev` (the revision of its last change), as the store
//! holds them. Every field is required and no other is allowed; integers
//! are JSON numbers without fraction or exponent.
//!
//! [`read`] checks every line before it returns (see
//! [`Dump::validate`](crate::backend::dump::Dump::validate)), and counts
//! them against the header, so a truncated file is refused.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};

use serde_json::{Map, Value};

use crate::backend::dump::{Dump, DumpEntry, DumpError, check_entry, check_namespace};

/// The header's `format`.
pub const FORMAT: &str = "zestor-export";

/// The version of the format this build writes and the newest it reads.
pub const VERSION: u64 = 1;

fn json(s: &str) -> String {
    Value::from(s).to_string()
}

/// Writes `dump` as an export file.
pub fn write(dump: &Dump, mut out: impl Write) -> io::Result<()> {
    writeln!(
        out,
        r#"{{"format":"{FORMAT}","version":{VERSION},"namespace":{},"rev":{},"entries":{}}}"#,
        json(&dump.namespace),
        dump.rev,
        dump.entries.len()
    )?;
    for e in &dump.entries {
        writeln!(
            out,
            r#"{{"kind":{},"key":{},"value":{},"version":{},"rev":{}}}"#,
            json(&e.kind),
            json(&e.key),
            e.value,
            e.version,
            e.rev
        )?;
    }
    out.flush()
}

/// A JSON value's type, for messages.
fn type_of(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a string".to_owned(),
        Value::String(s) => format!("the string {}", json(s)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The fields of one line's object, each taken once; what is left over is
/// an unknown field.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(text: &str, what: &str) -> Result<Fields, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(other) => Err(format!("{what} must be a JSON object, got {}", type_of(&other))),
            Err(e) => Err(format!("not JSON: {e}")),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, String> {
        self.0.remove(name).ok_or_else(|| format!("{name} is missing"))
    }

    fn string(&mut self, name: &str) -> Result<String, String> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            other => Err(format!("{name} must be a string, got {}", type_of(&other))),
        }
    }

    fn integer(&mut self, name: &str) -> Result<u64, String> {
        let v = self.take(name)?;
        v.as_u64().ok_or_else(|| {
            format!(
                "{name} must be an integer from 0 to 18446744073709551615, got {}",
                type_of(&v)
            )
        })
    }

    fn done(self) -> Result<(), String> {
        match self.0.keys().next() {
            Some(name) => Err(format!("unknown field {}", json(name))),
            None => Ok(()),
        }
    }
}

/// The header line.
struct Header {
    namespace: String,
    rev: u64,
    entries: u64,
}

fn header(text: &str) -> Result<Header, String> {
    let mut f = Fields::parse(text, "the header")?;
    let format = f.take("format").ok();
    if format.as_ref().and_then(Value::as_str) != Some(FORMAT) {
        let found = format.map_or("no format".to_owned(), |v| format!("format {}", type_of(&v)));
        return Err(format!(
            "not a Zestor export: its first line must be the header, with format {}; found {found}",
            json(FORMAT)
        ));
    }
    let version = f.integer("version")?;
    if version > VERSION {
        return Err(format!(
            "the export's format version {version} is newer than this build reads ({VERSION}); \
             upgrade Zestor to import it"
        ));
    }
    if version == 0 {
        return Err("version must be at least 1".to_owned());
    }
    let namespace = f.string("namespace")?;
    check_namespace(&namespace)?;
    let rev = f.integer("rev")?;
    let entries = f.integer("entries")?;
    f.done()?;
    Ok(Header {
        namespace,
        rev,
        entries,
    })
}

fn entry(text: &str) -> Result<DumpEntry, String> {
    let mut f = Fields::parse(text, "an entry")?;
    let entry = DumpEntry {
        kind: f.string("kind")?,
        key: f.string("key")?,
        value: f.take("value")?,
        version: f.integer("version")?,
        rev: f.integer("rev")?,
    };
    f.done()?;
    Ok(entry)
}

/// Reads an export file, checking every line: the header first, then
/// exactly as many entries as it says, each valid on its own and none
/// repeating another's key or revision. The first problem found is the
/// error, with its line number.
pub fn read(input: impl BufRead) -> Result<Dump, DumpError> {
    let mut lines = input.lines();
    let at = |line: usize| move |message: String| DumpError::Line { line, message };
    let unreadable = |line: usize, e: io::Error| DumpError::Line {
        line,
        message: match e.kind() {
            io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
            _ => format!("cannot read it: {e}"),
        },
    };
    let first = match lines.next() {
        Some(line) => line.map_err(|e| unreadable(1, e))?,
        None => {
            return Err(DumpError::Invalid(
                "the file is empty: an export starts with its header line".to_owned(),
            ));
        }
    };
    let header = header(first.trim_end_matches('\r')).map_err(at(1))?;
    let mut entries = Vec::with_capacity(usize::try_from(header.entries.min(1 << 20)).unwrap_or(0));
    let mut keys: HashMap<(String, String), usize> = HashMap::new();
    let mut revs: HashMap<u64, usize> = HashMap::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line.map_err(|e| unreadable(n, e))?;
        let text = line.trim_end_matches('\r');
        if entries.len() as u64 == header.entries {
            return Err(at(n)(format!(
                "more entries than the header's {}",
                header.entries
            )));
        }
        if text.trim().is_empty() {
            return Err(at(n)(
                "an empty line: each line after the header holds one entry".to_owned(),
            ));
        }
        let e = entry(text).map_err(at(n))?;
        check_entry(&e, header.rev).map_err(at(n))?;
        if let Some(first) = keys.insert((e.kind.clone(), e.key.clone()), n) {
            return Err(at(n)(format!(
                "{}/{} appears twice (first on line {first})",
                e.kind, e.key
            )));
        }
        if let Some(first) = revs.insert(e.rev, n) {
            return Err(at(n)(format!(
                "rev {} is also the rev of line {first}: a revision is one change of one key",
                e.rev
            )));
        }
        entries.push(e);
    }
    if (entries.len() as u64) < header.entries {
        return Err(DumpError::Invalid(format!(
            "the file ends after {} of the header's {} entries: it is truncated",
            entries.len(),
            header.entries
        )));
    }
    let dump = Dump {
        namespace: header.namespace,
        rev: header.rev,
        entries,
    };
    dump.validate().map_err(|e| match e {
        DumpError::Entry { index, message } => DumpError::Line {
            line: index + 2,
            message,
        },
        other => other,
    })?;
    Ok(dump)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Dump {
        Dump {
            namespace: "team \"7\"\n".into(),
            rev: 42,
            entries: vec![
                DumpEntry {
                    kind: "task".into(),
                    key: "line\nbreak".into(),
                    value: json!({"title": "ship", "nul": "a\u{0}b", "n": [1.5, -2, null]}),
                    version: 3,
                    rev: 41,
                },
                DumpEntry {
                    kind: "task".into(),
                    key: "t2".into(),
                    value: Value::Null,
                    version: 1,
                    rev: 12,
                },
            ],
        }
    }

    fn text(d: &Dump) -> String {
        let mut out = Vec::new();
        write(d, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn error(text: &str) -> String {
        read(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn a_dump_round_trips_one_object_per_line() {
        let d = sample();
        let t = text(&d);
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(
            t.starts_with(
                r#"{"format":"zestor-export","version":1,"namespace":"team \"7\"\n","rev":42,"entries":2}"#
            ),
            "{t}"
        );
        assert_eq!(read(t.as_bytes()).unwrap(), d);
        // Windows line ends read the same.
        assert_eq!(read(t.replace('\n', "\r\n").as_bytes()).unwrap(), d);
    }

    #[test]
    fn every_malformed_line_is_named() {
        let t = text(&sample());
        let lines: Vec<&str> = t.lines().collect();
        let with = |n: usize, line: &str| {
            let mut l = lines.clone();
            l[n] = line;
            l.join("\n")
        };
        let cases = [
            (with(0, "{}"), "line 1: not a Zestor export"),
            (
                with(
                    0,
                    r#"{"format":"zestor-export","version":2,"namespace":"a","rev":1,"entries":0}"#,
                ),
                "line 1: the export's format version 2 is newer",
            ),
            (
                with(
                    0,
                    r#"{"format":"zestor-export","version":1,"namespace":"","rev":42,"entries":2}"#,
                ),
                "line 1: the namespace is empty",
            ),
            (
                with(
                    0,
                    r#"{"format":"zestor-export","version":1,"namespace":"a","rev":42,"entries":2,"x":1}"#,
                ),
                "line 1: unknown field \"x\"",
            ),
            (with(1, "not json"), "line 2: not JSON"),
            (
                with(1, "[1]"),
                "line 2: an entry must be a JSON object, got an array",
            ),
            (
                with(1, r#"{"kind":"task","key":"a","version":1,"rev":1}"#),
                "line 2: value is missing",
            ),
            (
                with(1, r#"{"kind":5,"key":"a","value":1,"version":1,"rev":1}"#),
                "line 2: kind must be a string, got the number 5",
            ),
            (
                with(1, r#"{"kind":"task","key":"a","value":1,"version":"1","rev":1}"#),
                "line 2: version must be an integer from 0 to 18446744073709551615, got the string \"1\"",
            ),
            (
                with(1, r#"{"kind":"task","key":"a","value":1,"version":1.0,"rev":1}"#),
                "line 2: version must be an integer",
            ),
            (
                with(1, r#"{"kind":"task","key":"a","value":1,"version":1,"rev":-1}"#),
                "line 2: rev must be an integer",
            ),
            (
                with(
                    1,
                    r#"{"kind":"task","key":"a","value":1,"version":1,"rev":1,"extra":true}"#,
                ),
                "line 2: unknown field \"extra\"",
            ),
            (
                with(1, r#"{"kind":"","key":"a","value":1,"version":1,"rev":1}"#),
                "line 2: kind required",
            ),
            (
                with(1, r#"{"kind":"task","key":"a","value":1,"version":1,"rev":43}"#),
                "line 2: rev must be from 1 to the namespace's revision 42, got 43",
            ),
            (
                with(
                    2,
                    r#"{"kind":"task","key":"line\nbreak","value":1,"version":1,"rev":5}"#,
                ),
                "line 3: task/line\nbreak appears twice (first on line 2)",
            ),
            (
                with(2, r#"{"kind":"task","key":"t3","value":1,"version":1,"rev":41}"#),
                "line 3: rev 41 is also the rev of line 2",
            ),
            (with(1, ""), "line 2: an empty line"),
            (
                lines[..2].join("\n"),
                "the file ends after 1 of the header's 2 entries: it is truncated",
            ),
            (
                format!("{t}{}\n", lines[2]),
                "line 4: more entries than the header's 2",
            ),
            (String::new(), "the file is empty"),
        ];
        for (input, expected) in cases {
            let message = error(&input);
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
        }
        let bytes = [t.as_bytes(), b"\xff\n"].concat();
        assert_eq!(
            read(&bytes[..]).unwrap_err().to_string(),
            "line 4: not UTF-8 text"
        );
    }
}
