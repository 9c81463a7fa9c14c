use serde_json::{Value, json};

use super::*;

fn schema(v: Value) -> Schema {
    Schema::compile(v).expect("schema compiles")
}

fn compile_err(v: Value) -> SchemaError {
    Schema::compile(v).expect_err("schema must not compile")
}

fn invalid(s: &Schema, instance: Value) -> ValidationError {
    s.validate(&instance).expect_err("instance must be invalid")
}

fn assert_unsupported(v: Value, keyword: &str, pointer: &str) {
    let e = compile_err(v);
    assert!(
        e.message.starts_with(&format!("unsupported keyword `{keyword}`")),
        "{e}"
    );
    assert_eq!(e.pointer, pointer, "{e}");
}

#[test]
fn schema_is_send_sync_clone_debug_and_compares_sources() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug + PartialEq>() {}
    assert_traits::<Schema>();
    let a = schema(json!({"type": "string"}));
    let b = a.clone();
    assert_eq!(a, b);
    assert_eq!(a, schema(json!({"type": "string"})));
    assert_ne!(a, schema(json!({"type": "number"})));
    assert_eq!(a.source(), &json!({"type": "string"}));
    assert!(format!("{a:?}").contains("string"));
}

#[test]
fn type_messages() {
    let s = schema(json!({"type": "string"}));
    let e = invalid(&s, json!(3));
    assert_eq!(
        e,
        ValidationError {
            instance_path: String::new(),
            keyword: "type",
            message: "expected string, got number".into()
        }
    );
    assert_eq!(e.to_string(), "(root): expected string, got number");
    let s = schema(json!({"type": ["string", "null"]}));
    assert_eq!(
        invalid(&s, json!([])).message,
        "expected null or string, got array"
    );
    let s = schema(json!({"type": "integer"}));
    assert!(s.validate(&json!(1.0)).is_ok());
    assert!(s.validate(&json!(u64::MAX)).is_ok());
    assert!(s.validate(&json!(i64::MIN)).is_ok());
    assert_eq!(invalid(&s, json!(1.5)).message, "expected integer, got number");
}

#[test]
fn object_messages_and_paths() {
    let s = schema(json!({
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 80},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}},
            "a/b~c": {"type": "integer"}
        },
        "additionalProperties": false
    }));
    assert!(
        s.validate(&json!({"title": "hello", "tags": ["a", "bc"]}))
            .is_ok()
    );

    let e = invalid(&s, json!({}));
    assert_eq!((e.instance_path.as_str(), e.keyword), ("", "required"));
    assert_eq!(e.message, "missing required property `title`");

    let e = invalid(&s, json!({"title": ""}));
    assert_eq!((e.instance_path.as_str(), e.keyword), ("/title", "minLength"));
    assert_eq!(e.to_string(), "/title: must be at least 1 character long");

    let e = invalid(&s, json!({"title": "é".repeat(81)}));
    assert_eq!(e.to_string(), "/title: must be at most 80 characters long");
    // Code points, not bytes: 80 two-byte characters are fine.
    assert!(s.validate(&json!({"title": "é".repeat(80)})).is_ok());

    let e = invalid(&s, json!({"title": "x", "tags": ["ok", "NO"]}));
    assert_eq!(e.to_string(), "/tags/1: must match pattern `^[a-z]+$`");
    assert_eq!(e.keyword, "pattern");

    let e = invalid(&s, json!({"title": "x", "foo": 1}));
    assert_eq!(
        (e.instance_path.as_str(), e.keyword),
        ("", "additionalProperties")
    );
    assert_eq!(e.message, "additional property `foo` is not allowed");

    let e = invalid(&s, json!({"title": "x", "a/b~c": "no"}));
    assert_eq!(e.instance_path, "/a~1b~0c");

    let e = invalid(&s, json!("str"));
    assert_eq!(e.message, "expected object, got string");
}

#[test]
fn other_keyword_messages() {
    let cases = [
        (json!({"minimum": 5}), json!(4), "minimum", "must be at least 5"),
        (
            json!({"exclusiveMinimum": 5}),
            json!(5),
            "exclusiveMinimum",
            "must be greater than 5",
        ),
        (
            json!({"maximum": 5.5}),
            json!(6),
            "maximum",
            "must be at most 5.5",
        ),
        (
            json!({"exclusiveMaximum": 5}),
            json!(5.0),
            "exclusiveMaximum",
            "must be less than 5",
        ),
        (
            json!({"multipleOf": 0.01}),
            json!(0.015),
            "multipleOf",
            "must be a multiple of 0.01",
        ),
        (
            json!({"const": "a"}),
            json!("b"),
            "const",
            "must be equal to \"a\"",
        ),
        (
            json!({"enum": ["a", 1]}),
            json!(2),
            "enum",
            "must be one of [\"a\",1]",
        ),
        (
            json!({"minItems": 2}),
            json!([1]),
            "minItems",
            "must have at least 2 items",
        ),
        (
            json!({"maxItems": 1}),
            json!([1, 2]),
            "maxItems",
            "must have at most 1 item",
        ),
        (
            json!({"uniqueItems": true}),
            json!([1, 2, 1.0]),
            "uniqueItems",
            "must not contain duplicate items (items 0 and 2 are equal)",
        ),
        (
            json!({"prefixItems": [{}], "items": false}),
            json!([1, 2]),
            "items",
            "must have at most 1 item",
        ),
        (
            json!({"contains": {"type": "string"}}),
            json!([1]),
            "contains",
            "must contain an item matching `contains`",
        ),
        (
            json!({"contains": {"type": "string"}, "minContains": 2}),
            json!(["a", 1]),
            "minContains",
            "must contain at least 2 items matching `contains` (found 1)",
        ),
        (
            json!({"contains": {"type": "string"}, "maxContains": 1}),
            json!(["a", "b"]),
            "maxContains",
            "must contain at most 1 item matching `contains` (found 2)",
        ),
        (
            json!({"minProperties": 1}),
            json!({}),
            "minProperties",
            "must have at least 1 property",
        ),
        (
            json!({"maxProperties": 1}),
            json!({"a": 1, "b": 2}),
            "maxProperties",
            "must have at most 1 property",
        ),
        (
            json!({"propertyNames": {"maxLength": 2}}),
            json!({"abc": 1}),
            "propertyNames",
            "property name `abc` is invalid: must be at most 2 characters long",
        ),
        (
            json!({"dependentRequired": {"a": ["b"]}}),
            json!({"a": 1}),
            "dependentRequired",
            "missing property `b`, required when `a` is present",
        ),
        (
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
            json!(1),
            "anyOf",
            "must match at least one schema in `anyOf`",
        ),
        (
            json!({"oneOf": [{"type": "number"}, {"type": "integer"}]}),
            json!(1),
            "oneOf",
            "must match exactly one schema in `oneOf`, but matches #0 and #1",
        ),
        (
            json!({"oneOf": [{"type": "string"}]}),
            json!(1),
            "oneOf",
            "must match exactly one schema in `oneOf`, but matches none",
        ),
        (
            json!({"not": {"type": "integer"}}),
            json!(1),
            "not",
            "must not match the schema in `not`",
        ),
        (json!(false), json!(1), "false", "no value is allowed here"),
    ];
    for (schema_json, instance, keyword, message) in cases {
        let s = schema(schema_json.clone());
        let e = invalid(&s, instance);
        assert_eq!(
            (e.keyword, e.message.as_str()),
            (keyword, message),
            "schema {schema_json}"
        );
    }
}

#[test]
fn errors_inside_applicators_keep_their_path() {
    let s = schema(json!({
        "$defs": {"name": {"type": "string"}},
        "properties": {"list": {"items": {"$ref": "#/$defs/name"}}},
        "if": {"required": ["kind"]},
        "then": {"properties": {"kind": {"const": "a"}}},
        "dependentSchemas": {"x": {"required": ["y"]}}
    }));
    assert_eq!(
        invalid(&s, json!({"list": ["a", 2]})).to_string(),
        "/list/1: expected string, got number"
    );
    assert_eq!(
        invalid(&s, json!({"kind": "b"})).to_string(),
        "/kind: must be equal to \"a\""
    );
    assert_eq!(
        invalid(&s, json!({"x": 1})).message,
        "missing required property `y`"
    );
}

#[test]
fn numbers_are_exact_and_never_panic() {
    let s = schema(json!({"maximum": 9007199254740993u64}));
    assert!(s.validate(&json!(9007199254740993u64)).is_ok());
    assert!(s.validate(&json!(9007199254740992.0)).is_ok());
    assert!(s.validate(&json!(9007199254740994u64)).is_err());
    let s = schema(json!({"minimum": -1.5}));
    assert!(s.validate(&json!(i64::MIN)).is_err());
    assert!(s.validate(&json!(-1)).is_ok());
    assert!(s.validate(&json!(u64::MAX)).is_ok());

    let s = schema(json!({"multipleOf": 0.0001}));
    assert!(s.validate(&json!(0.0075)).is_ok());
    assert!(s.validate(&json!(0.00751)).is_err());
    let s = schema(json!({"multipleOf": 1e308}));
    assert!(s.validate(&json!(1e-308)).is_err());
    assert!(s.validate(&json!(0)).is_ok());
    assert!(s.validate(&json!(u64::MAX)).is_err());
    let s = schema(json!({"multipleOf": 1e-300}));
    assert!(s.validate(&json!(u64::MAX)).is_ok());
    assert!(s.validate(&json!(1e308)).is_ok());
    let s = schema(json!({"multipleOf": 3}));
    assert!(s.validate(&json!(i64::MIN + 2)).is_ok());
    assert!(s.validate(&json!(-7.5)).is_err());
    let s = schema(json!({"multipleOf": 0.5}));
    assert!(s.validate(&json!(-7.5)).is_ok());

    // Counts beyond u64 saturate; 2.0 is an integer.
    let s = schema(json!({"minLength": 1e300, "maxItems": 2.0}));
    assert!(s.validate(&json!("abc")).is_err());
    assert!(s.validate(&json!([1, 2, 3])).is_err());

    let s = schema(json!({"const": 1, "enum": [1.0, {"a": [1]}]}));
    assert!(s.validate(&json!(1.0)).is_ok());
    let s = schema(json!({"const": {"a": [1.0], "b": null}}));
    assert!(s.validate(&json!({"b": null, "a": [1]})).is_ok());
    assert!(s.validate(&json!({"b": null, "a": [1], "c": 1})).is_err());
}

#[test]
fn unique_items_on_long_arrays() {
    let s = schema(json!({"uniqueItems": true}));
    let mut items: Vec<Value> = (0..200).map(|i| json!({"n": i, "tag": [i, "x"]})).collect();
    assert!(s.validate(&Value::Array(items.clone())).is_ok());
    items.push(json!({"tag": [7.0, "x"], "n": 7}));
    let e = invalid(&s, Value::Array(items));
    assert_eq!(
        e.message,
        "must not contain duplicate items (items 7 and 200 are equal)"
    );
    let mixed: Vec<Value> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                json!(i)
            } else {
                json!(format!("{i}"))
            }
        })
        .collect();
    assert!(s.validate(&Value::Array(mixed)).is_ok());
}

#[test]
fn refs_resolve_locally_and_recurse_on_instance_depth() {
    let s = schema(json!({
        "type": "object",
        "properties": {"value": {"type": "integer"}, "next": {"$ref": "#"}},
        "additionalProperties": false
    }));
    assert!(
        s.validate(&json!({"value": 1, "next": {"value": 2, "next": {}}}))
            .is_ok()
    );
    let e = invalid(&s, json!({"next": {"next": {"value": "x"}}}));
    assert_eq!(e.to_string(), "/next/next/value: expected integer, got string");

    let s = schema(json!({
        "$defs": {"a/b": {"type": "string"}, "c%d": {"type": "number"}, "t~": {"type": "null"}},
        "properties": {
            "x": {"$ref": "#/$defs/a~1b"},
            "y": {"$ref": "#/$defs/c%25d"},
            "z": {"$ref": "#/$defs/t~0"},
            "w": {"$ref": "#/properties/x"}
        }
    }));
    assert!(
        s.validate(&json!({"x": "s", "y": 1, "z": null, "w": "s"}))
            .is_ok()
    );
    assert!(s.validate(&json!({"w": 1})).is_err());

    let s = schema(json!({"definitions": {"n": {"type": "null"}}, "items": {"$ref": "#/definitions/n"}}));
    assert!(s.validate(&json!([null])).is_ok());
    assert!(s.validate(&json!([1])).is_err());

    // A `$ref` that spells out the root `$id` is local.
    let s = schema(
        json!({"$id": "urn:example:root", "$defs": {"s": {"type": "string"}}, "items": {"$ref": "urn:example:root#/$defs/s"}}),
    );
    assert!(s.validate(&json!([1])).is_err());
}

#[test]
fn ref_loops_that_never_descend_are_rejected() {
    let e = compile_err(json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}));
    assert_eq!(e.pointer, "/$defs/a/$ref");
    assert!(e.message.starts_with("`$ref` loop"), "{e}");
    let e = compile_err(json!({"$ref": "#"}));
    assert_eq!(e.pointer, "/$ref");
    let e = compile_err(
        json!({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"not": {"$ref": "#/$defs/a"}}}}),
    );
    assert!(e.message.starts_with("`$ref` loop"), "{e}");
    // Diamonds are fine.
    schema(
        json!({"$defs": {"i": {"type": "integer"}}, "allOf": [{"$ref": "#/$defs/i"}, {"$ref": "#/$defs/i"}]}),
    );
}

#[test]
fn deep_instances_report_depth_instead_of_overflowing() {
    let s = schema(json!({"items": {"$ref": "#"}}));
    let mut deep = json!([]);
    for _ in 0..2000 {
        deep = Value::Array(vec![deep]);
    }
    let e = invalid(&s, deep.clone());
    assert_eq!(e.keyword, "depth");
    // An abort is not turned into a success by `not`.
    let s = schema(json!({"$defs": {"r": {"items": {"$ref": "#/$defs/r"}}}, "not": {"$ref": "#/$defs/r"}}));
    assert_eq!(invalid(&s, deep.clone()).keyword, "depth");
    // Moderate depth is fine.
    let s = schema(json!({"items": {"$ref": "#"}}));
    let mut ok = json!([]);
    for _ in 0..200 {
        ok = Value::Array(vec![ok]);
    }
    assert!(s.validate(&ok).is_ok());
    // Dropping a 2000-deep value recurses in serde_json; dismantle it iteratively.
    let mut v = deep;
    while let Value::Array(mut a) = v {
        v = a.pop().unwrap_or(Value::Null);
    }
}

#[test]
fn malformed_schemas_point_at_the_problem() {
    let cases = [
        (
            json!({"minLength": -1}),
            "/minLength",
            "`minLength` must be a non-negative integer",
        ),
        (
            json!({"maxItems": 2.5}),
            "/maxItems",
            "`maxItems` must be a non-negative integer",
        ),
        (
            json!({"type": "strnig"}),
            "/type",
            "unknown type `strnig` (expected one of null, boolean, object, array, number, string, integer)",
        ),
        (
            json!({"type": ["string", 1]}),
            "/type/1",
            "type names must be strings",
        ),
        (json!({"type": []}), "/type", "`type` must not be an empty array"),
        (
            json!({"required": "title"}),
            "/required",
            "`required` must be an array of strings",
        ),
        (
            json!({"required": ["a", 1]}),
            "/required/1",
            "`required` must be an array of strings",
        ),
        (
            json!({"required": ["a", "a"]}),
            "/required/1",
            "duplicate `required` entry `a`",
        ),
        (
            json!({"properties": {"a": {"minimum": "1"}}}),
            "/properties/a/minimum",
            "`minimum` must be a number",
        ),
        (
            json!({"properties": {"a": 3}}),
            "/properties/a",
            "schema must be an object or a boolean, got number",
        ),
        (
            json!({"multipleOf": 0}),
            "/multipleOf",
            "`multipleOf` must be a number greater than 0",
        ),
        (
            json!({"multipleOf": -2}),
            "/multipleOf",
            "`multipleOf` must be a number greater than 0",
        ),
        (
            json!({"items": [{}]}),
            "/items",
            "`items` must be a schema (use `prefixItems` for tuples in draft 2020-12)",
        ),
        (
            json!({"allOf": []}),
            "/allOf",
            "`allOf` must be a non-empty array of schemas",
        ),
        (json!({"enum": 1}), "/enum", "`enum` must be an array"),
        (
            json!({"uniqueItems": 1}),
            "/uniqueItems",
            "`uniqueItems` must be a boolean",
        ),
        (
            json!({"$ref": "#/$defs/missing"}),
            "/$ref",
            "`$ref` target `#/$defs/missing` does not exist",
        ),
        (json!({"$ref": 1}), "/$ref", "`$ref` must be a string"),
        (
            json!({"$defs": {"x": {"type": "nope"}}}),
            "/$defs/x/type",
            "unknown type `nope` (expected one of null, boolean, object, array, number, string, integer)",
        ),
        (json!([]), "", "schema must be an object or a boolean, got array"),
    ];
    for (schema_json, pointer, message) in cases {
        let e = compile_err(schema_json.clone());
        assert_eq!(
            (e.pointer.as_str(), e.message.as_str()),
            (pointer, message),
            "schema {schema_json}"
        );
    }
    let e = compile_err(json!({"pattern": "(unclosed"}));
    assert_eq!(e.pointer, "/pattern");
    assert!(
        e.message.starts_with("invalid regular expression `(unclosed`"),
        "{e}"
    );
    let e = compile_err(json!({"patternProperties": {"[": {}}}));
    assert_eq!(e.pointer, "/patternProperties/[");
    assert_eq!(
        compile_err(json!({"minLength": -1})).to_string(),
        "invalid schema at \"/minLength\": `minLength` must be a non-negative integer"
    );
}

#[test]
fn deeply_nested_schemas_compile_without_recursion() {
    let nest = |levels: usize| {
        let mut v = json!({"type": "integer"});
        for _ in 0..2 * levels {
            v = Value::Object(serde_json::Map::from_iter([("not".to_owned(), v)]));
        }
        v
    };
    let s = schema(nest(100));
    assert!(s.validate(&json!(1)).is_ok());
    assert!(s.validate(&json!("x")).is_err());
    // Compiling uses work lists, not recursion; evaluation gives up cleanly.
    let s = schema(nest(1000));
    assert_eq!(invalid(&s, json!(1)).keyword, "depth");
}

#[test]
fn unsupported_keywords_are_rejected_by_name() {
    assert_unsupported(
        json!({"unevaluatedProperties": false}),
        "unevaluatedProperties",
        "/unevaluatedProperties",
    );
    assert_unsupported(
        json!({"items": {"unevaluatedItems": false}}),
        "unevaluatedItems",
        "/items/unevaluatedItems",
    );
    assert_unsupported(json!({"$dynamicRef": "#meta"}), "$dynamicRef", "/$dynamicRef");
    assert_unsupported(
        json!({"$defs": {"a": {"$anchor": "a"}}}),
        "$anchor",
        "/$defs/a/$anchor",
    );
    assert_unsupported(
        json!({"contentMediaType": "application/json"}),
        "contentMediaType",
        "/contentMediaType",
    );
    assert_unsupported(
        json!({"properties": {"a": {"$id": "a.json"}}}),
        "$id",
        "/properties/a/$id",
    );
    assert_unsupported(json!({"$ref": "https://example.com/s.json"}), "$ref", "/$ref");
    assert_unsupported(json!({"$ref": "other.json#/a"}), "$ref", "/$ref");
    assert_unsupported(json!({"$ref": "#anchor"}), "$ref", "/$ref");
    assert_unsupported(json!({"dependencies": {}}), "dependencies", "/dependencies");
    assert_eq!(
        compile_err(json!({"unevaluatedProperties": false})).to_string(),
        "invalid schema at \"/unevaluatedProperties\": unsupported keyword `unevaluatedProperties`"
    );
}

#[test]
fn annotations_and_unknown_keywords_are_ignored() {
    let s = schema(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/note.json",
        "$comment": "c", "title": "t", "description": "d", "default": 1, "examples": [1],
        "deprecated": true, "readOnly": true, "writeOnly": false, "format": "email",
        "x-custom": {"type": "nonsense"},
        "enum": [{"$ref": "#/not/a/schema"}, "not-an-email"]
    }));
    assert!(s.validate(&json!("not-an-email")).is_ok());
    assert!(s.validate(&json!({"$ref": "#/not/a/schema"})).is_ok());
    assert!(s.validate(&json!(1)).is_err());
}

#[test]
fn validating_does_not_depend_on_instance_key_order() {
    let s = schema(
        json!({"patternProperties": {"^x": {"type": "integer"}}, "additionalProperties": {"type": "string"}}),
    );
    assert!(s.validate(&json!({"x1": 1, "y": "s"})).is_ok());
    assert_eq!(
        invalid(&s, json!({"x1": "1"})).to_string(),
        "/x1: expected integer, got string"
    );
    assert_eq!(
        invalid(&s, json!({"y": 1})).to_string(),
        "/y: expected string, got number"
    );
}
