#![cfg(target_arch = "wasm32")]
//! The JavaScript API's conversions: what a write accepts as JSON and what
//! it refuses, and the shapes of what reads, writes and watches return.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use zestor::api::{JsStore, open};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
export function sample(name) {
  const cycle = { a: 1 };
  cycle.self = cycle;
  const nested = (depth) => { let v = 0; for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { v }; return v; };
  class Point { constructor() { this.x = 1; this.y = 2; } get sum() { return 3; } }
  const samples = {
    // Refused.
    undefined: undefined,
    undefinedProperty: { a: 1, b: undefined },
    undefinedInArray: [1, undefined],
    hole: [1, , 3],
    function: () => 1,
    method: { f() {} },
    symbol: Symbol('s'),
    bigint: 10n,
    nestedBigint: { n: [1n] },
    cycle,
    nan: NaN,
    infinity: { x: [Infinity] },
    minusInfinity: -Infinity,
    set: new Set([1]),
    typedArray: new Uint8Array(2),
    arrayBuffer: new ArrayBuffer(2),
    mapWithNumberKey: new Map([[1, 'one']]),
    throwingGetter: { get x() { throw new Error('getter failed'); } },
    // Deeper than a value read back from IndexedDB may be (serde_json's
    // limit of 128).
    tooDeep: nested(200),
    deepCycle: (() => { const o = nested(100); let last = o; while (typeof (last.v ?? last[0]) === 'object') last = last.v ?? last[0]; last.back = o; return o; })(),
    // Accepted.
    plain: { title: 'é ✓ "quoted"\n', done: false, n: -1.5, big: 2 ** 60, list: [null, 0, 'x', { deep: [[]] }], empty: {} },
    nullProto: Object.assign(Object.create(null), { a: 1 }),
    map: new Map([['a', 1], ['b', { c: 2 }]]),
    date: new Date(Date.UTC(2020, 0, 2, 3, 4, 5)),
    boxed: [new Number(3), new String('s'), new Boolean(false)],
    instance: new Point(),
    withToJSON: { toJSON() { return { via: 'toJSON' }; } },
    null: null,
    string: 'text',
    deep: nested(100),
  };
  return samples[name];
}

export function json(value) {
  return JSON.stringify(value);
}

export function options(name) {
  return { name };
}

export function recorder() {
  const seen = [];
  const callback = (event, error) => seen.push(error ? { error: error.code } : event);
  return { seen, callback };
}
"#)]
extern "C" {
    fn sample(name: &str) -> JsValue;
    fn json(value: &JsValue) -> String;
    fn options(name: &str) -> JsValue;
    fn recorder() -> JsValue;
}

fn fresh_name(what: &str) -> String {
    let suffix = (js_sys::Math::random() * 2f64.powi(48)) as u64;
    format!("zestor-api-{what}-{suffix:012x}")
}

async fn open_store(what: &str) -> JsStore {
    open(options(&fresh_name(what)))
        .await
        .expect("open a local store")
}

fn get(target: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap()
}

async fn settle(promise: js_sys::Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

fn code(error: &JsValue) -> String {
    get(error, "code").as_string().unwrap_or_default()
}

fn parse(text: &str) -> JsValue {
    js_sys::JSON::parse(text).unwrap()
}

const REFUSED: &[&str] = &[
    "undefined",
    "undefinedProperty",
    "undefinedInArray",
    "hole",
    "function",
    "method",
    "symbol",
    "bigint",
    "nestedBigint",
    "cycle",
    "nan",
    "infinity",
    "minusInfinity",
    "set",
    "typedArray",
    "arrayBuffer",
    "mapWithNumberKey",
    "throwingGetter",
    "tooDeep",
    "deepCycle",
];

#[wasm_bindgen_test]
async fn values_json_cannot_hold_are_refused_with_encoding() {
    let store = open_store("refused").await;
    for name in REFUSED {
        let value = sample(name);
        let set = settle(store.set("k".into(), "a".into(), value.clone(), JsValue::UNDEFINED)).await;
        let error = set.expect_err(&format!("set accepted {name}"));
        assert_eq!(code(&error), "encoding", "set of {name}: {}", json(&error));

        let items = js_sys::Array::of2(
            &js_sys::Array::of2(&"ok".into(), &1.into()),
            &js_sys::Array::of2(&"bad".into(), &value),
        );
        let many = settle(store.set_many("k".into(), items.into())).await;
        let error = many.expect_err(&format!("setMany accepted {name}"));
        assert_eq!(code(&error), "encoding", "setMany of {name}");
    }
    // Nothing was written, not even the good item of a refused setMany.
    assert_eq!(store.count("k".into()).unwrap(), 0.0);
    assert_eq!(store.rev().unwrap(), 0.0);
    let message = settle(store.set(
        "k".into(),
        "a".into(),
        sample("undefinedProperty"),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap_err();
    let message = get(&message, "message").as_string().unwrap();
    assert!(
        message.contains("undefined") && message.contains("\"b\""),
        "{message}"
    );
    settle(store.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn values_json_can_hold_are_written_as_json_stringify_writes_them() {
    let store = open_store("accepted").await;
    let cases = [
        ("plain", None),
        ("nullProto", Some(r#"{"a":1}"#)),
        ("map", Some(r#"{"a":1,"b":{"c":2}}"#)),
        ("date", Some(r#""2020-01-02T03:04:05.000Z""#)),
        ("boxed", Some(r#"[3,"s",false]"#)),
        ("instance", Some(r#"{"x":1,"y":2}"#)),
        ("withToJSON", Some(r#"{"via":"toJSON"}"#)),
        ("null", Some("null")),
        ("string", Some(r#""text""#)),
        ("deep", None),
    ];
    for (name, expected) in cases {
        let value = sample(name);
        let written = settle(store.set("k".into(), name.into(), value.clone(), JsValue::UNDEFINED))
            .await
            .unwrap_or_else(|e| panic!("{name} refused: {}", json(&e)));
        assert_eq!(get(&written, "result").as_string().as_deref(), Some("created"));
        let entry = store.get("k".into(), name.into()).unwrap();
        let expected = expected.map_or_else(|| json(&value), str::to_owned);
        // Keys come back sorted (the engine keeps JSON objects as maps).
        let sorted = |text: &str| json(&parse(text));
        assert_eq!(
            sorted(&json(&get(&entry, "value"))),
            sorted(&normalize(&expected)),
            "{name}"
        );
    }
    settle(store.close()).await.unwrap();
}

/// `text` with its objects' keys in sorted order, as the engine keeps them.
fn normalize(text: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    serde_json::to_string(&value).unwrap()
}

#[wasm_bindgen_test]
async fn set_many_checks_its_items_in_order() {
    let store = open_store("items").await;
    let bad_shape = parse(r#"[["a", 1], {"not": "a pair"}]"#);
    let error = settle(store.set_many("k".into(), bad_shape)).await.unwrap_err();
    assert_eq!(code(&error), "invalid_argument");
    let bad_key = parse(r#"[["a", 1], [2, 2]]"#);
    let error = settle(store.set_many("k".into(), bad_key)).await.unwrap_err();
    assert_eq!(code(&error), "invalid_argument");
    let error = settle(store.set_many("k".into(), "text".into()))
        .await
        .unwrap_err();
    assert_eq!(code(&error), "invalid_argument");
    // The first bad item decides: a bad value before a bad shape...
    let items = js_sys::Array::of2(
        &js_sys::Array::of2(&"a".into(), &sample("function")),
        &JsValue::from(3),
    );
    let error = settle(store.set_many("k".into(), items.into()))
        .await
        .unwrap_err();
    assert_eq!(code(&error), "encoding");
    // ... and a bad shape before a bad value.
    let items = js_sys::Array::of2(
        &JsValue::from(3),
        &js_sys::Array::of2(&"a".into(), &sample("function")),
    );
    let error = settle(store.set_many("k".into(), items.into()))
        .await
        .unwrap_err();
    assert_eq!(code(&error), "invalid_argument");

    // Values that are not plain JSON among plain ones, either side of a bad
    // shape.
    let with = |items: &[(&str, JsValue)]| -> JsValue {
        items
            .iter()
            .map(|(k, v)| JsValue::from(js_sys::Array::of2(&(*k).into(), v)))
            .collect::<js_sys::Array>()
            .into()
    };
    let items = with(&[("x", 1.into()), ("y", sample("date")), ("z", sample("undefined"))]);
    let error = settle(store.set_many("k".into(), items)).await.unwrap_err();
    assert_eq!(code(&error), "encoding");
    let items = js_sys::Array::of2(
        &js_sys::Array::of2(&"a".into(), &sample("date")),
        &JsValue::from(3),
    );
    let error = settle(store.set_many("k".into(), items.into()))
        .await
        .unwrap_err();
    assert_eq!(code(&error), "invalid_argument");
    assert_eq!(store.count("k".into()).unwrap(), 0.0);
    // An object and an array of pairs; results in key order.
    let out = settle(store.set_many("k".into(), parse(r#"{"b": {"n": 2}, "a": [1]}"#)))
        .await
        .unwrap();
    assert_eq!(
        json(&out),
        r#"[{"result":"created","version":1,"rev":1,"key":"a"},{"result":"created","version":1,"rev":2,"key":"b"}]"#
    );
    let out = settle(store.set_many("k".into(), parse(r#"[["a", [1]], ["c", "x"]]"#)))
        .await
        .unwrap();
    assert_eq!(
        json(&out),
        r#"[{"result":"unchanged","version":1,"rev":1,"key":"a"},{"result":"created","version":1,"rev":3,"key":"c"}]"#
    );
    let items = with(&[
        ("x", parse(r#"{"p": 1}"#)),
        ("y", sample("date")),
        ("z", sample("map")),
    ]);
    settle(store.set_many("other".into(), items)).await.unwrap();
    assert_eq!(
        json(&store.values("other".into()).unwrap()),
        r#"[{"p":1},"2020-01-02T03:04:05.000Z",{"a":1,"b":{"c":2}}]"#
    );

    settle(store.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn reads_and_answers_have_their_documented_shapes() {
    let store = open_store("shapes").await;
    let w = settle(store.set("k".into(), "b".into(), parse(r#"{"n": 2}"#), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(json(&w), r#"{"result":"created","version":1,"rev":1}"#);
    settle(store.set("k".into(), "a".into(), parse("[1]"), JsValue::UNDEFINED))
        .await
        .unwrap();
    settle(store.set("k".into(), "__proto__".into(), parse("0"), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(
        json(&store.get("k".into(), "b".into()).unwrap()),
        r#"{"value":{"n":2},"version":1,"rev":1,"pending":false}"#
    );
    assert!(store.get("k".into(), "zzz".into()).unwrap().is_undefined());
    assert_eq!(json(&store.keys("k".into()).unwrap()), r#"["__proto__","a","b"]"#);
    assert_eq!(json(&store.values("k".into()).unwrap()), r#"[0,[1],{"n":2}]"#);
    assert_eq!(
        json(&store.list("k".into(), JsValue::UNDEFINED).unwrap()),
        concat!(
            r#"[{"value":0,"version":1,"rev":3,"pending":false,"key":"__proto__"},"#,
            r#"{"value":[1],"version":1,"rev":2,"pending":false,"key":"a"},"#,
            r#"{"value":{"n":2},"version":1,"rev":1,"pending":false,"key":"b"}]"#
        )
    );
    let all = store.get_all("k".into()).unwrap();
    assert_eq!(
        json(&all),
        concat!(
            r#"{"__proto__":{"value":0,"version":1,"rev":3,"pending":false},"#,
            r#""a":{"value":[1],"version":1,"rev":2,"pending":false},"#,
            r#""b":{"value":{"n":2},"version":1,"rev":1,"pending":false}}"#
        )
    );
    // "__proto__" is an own key, not the object's prototype.
    assert_eq!(
        js_sys::Object::get_prototype_of(&all),
        js_sys::Object::get_prototype_of(&js_sys::Object::new().into())
    );
    // A filter sees (value, key); what it throws is thrown.
    let filter = js_sys::Function::new_with_args("value, key", "return key !== 'a' && value !== 0;");
    assert_eq!(
        json(&store.list("k".into(), filter.into()).unwrap()),
        r#"[{"value":{"n":2},"version":1,"rev":1,"pending":false,"key":"b"}]"#
    );
    let throwing = js_sys::Function::new_with_args("", "throw new RangeError('from the filter');");
    let thrown = store.list("k".into(), throwing.into()).unwrap_err();
    assert_eq!(
        get(&thrown, "message").as_string().as_deref(),
        Some("from the filter")
    );
    let d = settle(store.delete("k".into(), "b".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(json(&d), r#"{"value":{"n":2},"version":1,"rev":4}"#);
    let d = settle(store.delete("k".into(), "b".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert!(d.is_null());
    settle(store.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn every_callback_gets_its_own_event_object() {
    let store = open_store("watch").await;
    let first = recorder();
    let second = recorder();
    let callback = |r: &JsValue| -> JsValue { get(r, "callback") };
    let _stop1 = store
        .watch("k".into(), JsValue::UNDEFINED, callback(&first))
        .unwrap();
    // The first callback mutates what it gets, before the second runs.
    let mutating = js_sys::Function::new_with_args(
        "event",
        "if (event) { event.value.changed = true; event.key = 'changed'; }",
    );
    let _stop_mutating = store
        .watch("k".into(), JsValue::UNDEFINED, mutating.into())
        .unwrap();
    let _stop2 = store
        .watch("k".into(), JsValue::UNDEFINED, callback(&second))
        .unwrap();
    settle(store.set("k".into(), "a".into(), parse(r#"{"n": 1}"#), JsValue::UNDEFINED))
        .await
        .unwrap();
    let items = parse(r#"[["b", 2], ["c", 3]]"#);
    settle(store.set_many("k".into(), items)).await.unwrap();
    settle(store.delete("k".into(), "b".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    let expected = concat!(
        r#"[{"kind":"k","key":"a","type":"create","value":{"n":1},"version":1,"rev":1,"pending":false},"#,
        r#"{"kind":"k","key":"b","type":"create","value":2,"version":1,"rev":2,"pending":false},"#,
        r#"{"kind":"k","key":"c","type":"create","value":3,"version":1,"rev":3,"pending":false},"#,
        r#"{"kind":"k","key":"b","type":"delete","value":2,"version":1,"rev":4,"pending":false}]"#
    );
    // The callbacks ran before the writes resolved; the mutating one, run
    // between the two recorders, changed only its own objects.
    assert_eq!(json(&get(&first, "seen")), expected);
    assert_eq!(json(&get(&second, "seen")), expected);
    let seen1: js_sys::Array = get(&first, "seen").unchecked_into();
    let seen2: js_sys::Array = get(&second, "seen").unchecked_into();
    for i in 0..4 {
        assert_ne!(
            seen1.get(i),
            seen2.get(i),
            "event {i} is one object for two callbacks"
        );
    }
    settle(store.close()).await.unwrap();
}
