//! Runs `store_core::schema` against the vendored draft 2020-12 files of the
//! official JSON-Schema-Test-Suite (`tests/fixtures/json-schema-test-suite/`).
//!
//! Every group must compile and every case must get the suite's verdict,
//! except the groups in [`UNSUPPORTED`], which must fail to compile with an
//! "unsupported keyword" error (and fail the run if they ever compile, so the
//! list stays exact).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use store_core::schema::Schema;

/// (file, group description, reason) of groups that use features the module
/// deliberately rejects at compile time.
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    (
        "defs.json",
        "validate definition against metaschema",
        "remote $ref to the draft 2020-12 metaschema",
    ),
    (
        "not.json",
        "collect annotations inside a 'not', even if collection is disabled",
        "unevaluatedProperties",
    ),
    (
        "ref.json",
        "remote ref, containing refs itself",
        "remote $ref to the draft 2020-12 metaschema",
    ),
    (
        "ref.json",
        "Recursive references between schemas",
        "$id below the root and relative $ref",
    ),
    (
        "ref.json",
        "ref creates new scope when adjacent to keywords",
        "unevaluatedProperties",
    ),
    (
        "ref.json",
        "refs with relative uris and defs",
        "$id below the root and relative $ref",
    ),
    (
        "ref.json",
        "relative refs with absolute uris and defs",
        "$id below the root and relative $ref",
    ),
    (
        "ref.json",
        "$id must be resolved against nearest parent, not just immediate parent",
        "$id below the root",
    ),
    (
        "ref.json",
        "order of evaluation: $id and $ref",
        "relative $ref resolved against $id",
    ),
    (
        "ref.json",
        "order of evaluation: $id and $anchor and $ref",
        "$anchor",
    ),
    ("ref.json", "URN base URI with URN and anchor ref", "$anchor"),
    (
        "ref.json",
        "URN ref with nested pointer ref",
        "$id below the root",
    ),
    ("ref.json", "ref to if", "$id below the root"),
    ("ref.json", "ref to then", "$id below the root"),
    ("ref.json", "ref to else", "$id below the root"),
    (
        "ref.json",
        "ref with absolute-path-reference",
        "relative $ref resolved against $id",
    ),
];

#[test]
fn json_schema_test_suite_draft2020_12() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json-schema-test-suite");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no suite files in {}", dir.display());

    let mut seen_unsupported = BTreeSet::new();
    let (mut groups, mut skipped, mut passed) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for path in &files {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 file name")
            .to_owned();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        let suite: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {file}: {e}"));
        for group in &suite {
            groups += 1;
            let description = group["description"].as_str().expect("group description");
            let allowed = UNSUPPORTED
                .iter()
                .find(|(f, d, _)| *f == file && *d == description);
            let schema = match (Schema::compile(group["schema"].clone()), allowed) {
                (Err(e), Some(_)) if e.message.starts_with("unsupported keyword") => {
                    skipped += 1;
                    seen_unsupported.insert((file.clone(), description.to_owned()));
                    continue;
                }
                (Err(e), _) => {
                    failures.push(format!("{file} / {description}: does not compile: {e}"));
                    continue;
                }
                (Ok(_), Some((_, _, reason))) => {
                    failures.push(format!(
                        "{file} / {description}: listed as unsupported ({reason}) but compiles"
                    ));
                    continue;
                }
                (Ok(schema), None) => schema,
            };
            for case in group["tests"].as_array().expect("tests array") {
                let expected = case["valid"].as_bool().expect("valid flag");
                let result = schema.validate(&case["data"]);
                if result.is_ok() == expected {
                    passed += 1;
                } else {
                    failures.push(format!(
                        "{file} / {description} / {}: expected {}, got {:?}",
                        case["description"].as_str().unwrap_or("?"),
                        if expected { "valid" } else { "invalid" },
                        result,
                    ));
                }
            }
        }
    }
    for (file, description, _) in UNSUPPORTED {
        if !seen_unsupported.contains(&(file.to_string(), description.to_string()))
            && !failures
                .iter()
                .any(|f| f.starts_with(&format!("{file} / {description}:")))
        {
            failures.push(format!(
                "{file} / {description}: listed as unsupported but no such group exists"
            ));
        }
    }

    println!(
        "json-schema-test-suite (draft 2020-12): {} files, {groups} groups ({skipped} allowlisted as unsupported), {passed} cases passed, {} failures",
        files.len(),
        failures.len(),
    );
    assert!(
        failures.is_empty(),
        "{} unexpected results:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
