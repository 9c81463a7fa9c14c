//! The HTTP API end to end: a real server on port 0 over a real SQLite file
//! (and real PostgreSQL for the write, read and change-stream path), talked
//! to with a real HTTP client (reqwest), next to real WebSocket clients.

#[path = "support/pg.rs"]
mod pg;
mod support;
#[path = "support/server.rs"]
mod test_server;

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use store_core::StoreOptions;
use store_core::schema::Schema;
use store_core::sync::Rights;
use store_core::sync::session::ServerConfig;
use sync_server::backend::sqlite::Synchronous;
use sync_server::server::{AppState, Auth, Database, JwtConfig, JwtKeys, Metrics, Stores, Tokens};
use test_server::{Server, recv, send, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- a server, and a client of its HTTP API ----

/// How a test server differs from the default one.
struct Setup {
    database: Database,
    auth: Auth,
    session: ServerConfig,
    retention: Option<usize>,
}

impl Setup {
    /// SQLite in a fresh file; the tokens `writer` and `reader` (read-only)
    /// of the namespace `team`, and `other` of `elsewhere`.
    fn sqlite(name: &str) -> Setup {
        Setup::on(Database::Sqlite(support::fresh_db(name)))
    }

    fn on(database: Database) -> Setup {
        let mut tokens = Tokens::default();
        tokens.grant("writer", "team", Rights::ReadWrite);
        tokens.grant("reader", "team", Rights::Read);
        tokens.grant("other", "elsewhere", Rights::ReadWrite);
        Setup {
            database,
            auth: tokens.into(),
            session: ServerConfig {
                heartbeat_ms: 60_000,
                ..ServerConfig::default()
            },
            retention: None,
        }
    }

    /// Serves it; the kind `task` must have a string `title`.
    async fn start(self) -> Api {
        let schema = Schema::compile(json!({
            "type": "object",
            "required": ["title"],
            "properties": {"title": {"type": "string"}},
        }))
        .unwrap();
        let mut options = StoreOptions::new().schema("task", schema);
        if let Some(retention) = self.retention {
            options = options.retention(retention);
        }
        let Setup {
            database,
            auth,
            session,
            ..
        } = self;
        let server = spawn(move |shutdown| AppState {
            stores: Stores::new(database, Synchronous::Normal, options),
            auth,
            session,
            metrics: Metrics::default(),
            allowed_origins: Vec::new(),
            send_timeout: Duration::from_secs(5),
            shutdown,
        })
        .await;
        // reqwest's TLS needs a process-wide crypto provider, even for http://.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            server,
        }
    }
}

struct Api {
    http: reqwest::Client,
    server: Server,
}

/// A response: its status, headers and JSON body (`Value::Null` when the
/// body is not JSON).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// Asserts an error reply: this status and code.
    #[track_caller]
    fn refused(&self, status: u16, code: &str) -> &str {
        assert_eq!(
            (self.status, self.body["code"].as_str()),
            (status, Some(code)),
            "{self:?}"
        );
        self.body["message"].as_str().expect("a message")
    }

    #[track_caller]
    fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{self:?}");
        &self.body
    }
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.address)
    }

    /// The server's `/metrics` text.
    async fn metrics(&self) -> String {
        let res = self.http.get(self.url("/metrics")).send().await.unwrap();
        res.text().await.unwrap()
    }

    /// A request with the `writer` token.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth("writer")
    }

    async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request.send().await.expect("a response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = tokio::time::timeout(Duration::from_secs(30), response.text())
            .await
            .expect("a whole body within 30 s")
            .expect("a body");
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    async fn put(&self, path: &str, value: Value) -> Reply {
        self.send(json_body(self.request(Method::PUT, path), &value))
            .await
    }

    async fn patch(&self, path: &str, patch: Value) -> Reply {
        let request = self
            .request(Method::PATCH, path)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string());
        self.send(request).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path)).await
    }

    async fn ops(&self, ops: Value) -> Reply {
        let request = self.request(Method::POST, "/v1/ns/team/ops");
        self.send(json_body(request, &json!({"ops": ops}))).await
    }

    /// Opens the change stream at `path`, with `headers`.
    async fn stream(&self, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut request = self.request(Method::GET, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("a response");
        assert_eq!(response.status().as_u16(), 200, "{response:?}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{response:?}"
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

fn json_body(request: RequestBuilder, value: &Value) -> RequestBuilder {
    request
        .header("content-type", "application/json")
        .body(value.to_string())
}

/// A task: a value the kind's schema takes.
fn task(title: &str) -> Value {
    json!({"title": title})
}

// ---- Server-Sent Events ----

/// One event of a change stream.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
}

struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    /// The next block of lines (an event, or a comment); `None` when the
    /// stream ended.
    async fn block(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(block);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("a chunk within 30 s")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => {
                    assert!(self.buffer.is_empty(), "a partial event: {:?}", self.buffer);
                    return None;
                }
            }
        }
    }

    /// The next event (comments skipped); `None` when the stream ended.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            let block = self.block().await?;
            let mut sse = Sse {
                event: "message".into(),
                id: None,
                data: Value::Null,
            };
            let mut is_event = false;
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "" => {}
                    "event" => sse.event = value.into(),
                    "id" => sse.id = Some(value.into()),
                    "data" => sse.data = serde_json::from_str(value).unwrap(),
                    other => panic!("unknown field {other:?} in {block:?}"),
                }
                is_event |= !field.is_empty();
            }
            if is_event {
                return Some(sse);
            }
        }
    }

    /// The next event, which must be a change: `(rev, key)`.
    async fn change(&mut self) -> (u64, String) {
        let sse = self.next().await.expect("a change");
        assert_eq!(sse.event, "change", "{sse:?}");
        let rev = sse.data["rev"].as_u64().unwrap();
        assert_eq!(sse.id, Some(rev.to_string()), "the id is the revision");
        (rev, sse.data["key"].as_str().unwrap().to_owned())
    }
}

// ---- the routes ----

#[tokio::test]
async fn put_get_patch_delete_answer_like_acks() {
    let api = Setup::sqlite("http-routes").start().await;
    let path = "/v1/ns/team/task/t1";
    let created = api.put(path, task("ship")).await;
    assert_eq!(
        created.ok(201),
        &json!({"result": "created", "version": 1, "rev": 1})
    );
    assert_eq!(created.headers["content-type"], "application/json");
    // The same value again changes nothing and spends no revision.
    assert_eq!(
        api.put(path, task("ship")).await.ok(200),
        &json!({"result": "unchanged", "version": 1, "rev": 1})
    );
    assert_eq!(
        api.put(path, json!({"title": "ship", "owner": "kim"}))
            .await
            .ok(200),
        &json!({"result": "updated", "version": 2, "rev": 2})
    );
    assert_eq!(
        api.get(path).await.ok(200),
        &json!({"value": {"title": "ship", "owner": "kim"}, "version": 2, "rev": 2})
    );
    // A merge patch edits members; its answer carries the value it left.
    assert_eq!(
        api.patch(path, json!({"owner": null, "done": true}))
            .await
            .ok(200),
        &json!({"result": "updated", "version": 3, "rev": 3, "value": {"title": "ship", "done": true}})
    );
    assert_eq!(
        api.patch(path, json!({"done": true})).await.ok(200),
        &json!({"result": "unchanged", "version": 3, "rev": 3})
    );
    // Validated after merging.
    api.patch(path, json!({"title": 7}))
        .await
        .refused(422, "validation");
    assert_eq!(
        api.delete(path).await.ok(200),
        &json!({"result": "deleted", "version": 0, "rev": 4})
    );
    let gone = api.get(path).await;
    assert!(gone.refused(404, "not_found").contains("task/t1"));
    assert_eq!(
        api.delete(path).await.ok(200),
        &json!({"result": "absent", "version": 0, "rev": 4})
    );
    api.patch(path, json!({"done": false}))
        .await
        .refused(404, "key_not_found");
    // Keys are percent-decoded path segments: any key, `/` included.
    let odd = "/v1/ns/team/task/a%2Fb%20%C3%A9";
    api.put(odd, task("odd")).await.ok(201);
    let listed = api.get("/v1/ns/team/task").await;
    assert_eq!(listed.ok(200)["entries"][0]["key"], "a/b é");
    // A kind named like a route of the namespace is reached percent-encoded.
    api.put("/v1/ns/team/ops/k", json!(1)).await.ok(201);
    let listed = api.get("/v1/ns/team/%6Fps").await;
    assert_eq!(listed.ok(200)["entries"][0]["key"], "k");
    api.stop().await;
}

#[tokio::test]
async fn a_kind_is_listed_in_key_order_a_page_at_a_time() {
    let api = Setup::sqlite("http-list").start().await;
    let keys = ["b", "a", "e", "c", "d", ""];
    for key in keys {
        let ops =
            json!([{"op_id": format!("o{key}"), "kind": "note", "key": key, "action": "set", "value": key}]);
        assert_eq!(api.ops(ops).await.ok(200)["answers"][0]["type"], "ack");
    }
    let page = |after: Option<&str>, limit: Option<&str>| {
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(format!("after={after}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        format!("/v1/ns/team/note?{}", query.join("&"))
    };
    let keys_of = |reply: &Reply| -> Vec<String> {
        reply.ok(200)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = api.get(&page(None, Some("2"))).await;
    assert_eq!(keys_of(&first), ["", "a"]);
    assert_eq!(first.body["next"], "a");
    assert_eq!(first.body["rev"], 6);
    assert_eq!(
        first.body["entries"][1],
        json!({"key": "a", "value": "a", "version": 1, "rev": 2})
    );
    let second = api.get(&page(Some("a"), Some("2"))).await;
    assert_eq!(keys_of(&second), ["b", "c"]);
    let last = api.get(&page(Some("c"), Some("3"))).await;
    assert_eq!(keys_of(&last), ["d", "e"]);
    assert_eq!(last.body["next"], Value::Null);
    // `after` is a position, not a key that must exist.
    assert_eq!(keys_of(&api.get(&page(Some("bb"), None)).await), ["c", "d", "e"]);
    // The empty `after` is after the empty key.
    assert_eq!(keys_of(&api.get(&page(Some(""), Some("1"))).await), ["a"]);
    // The default page holds them all; an unknown kind is an empty page.
    assert_eq!(keys_of(&api.get("/v1/ns/team/note").await).len(), 6);
    let empty = api.get("/v1/ns/team/nothing").await;
    assert_eq!(empty.ok(200), &json!({"entries": [], "next": null, "rev": 6}));
    // The default is 100 a page.
    let many: Vec<Value> = (0..150)
        .map(|i| json!({"op_id": format!("m{i}"), "kind": "many", "key": format!("{i:03}"), "action": "set", "value": i}))
        .collect();
    api.ops(json!(many)).await.ok(200);
    let hundred = api.get("/v1/ns/team/many").await;
    assert_eq!(keys_of(&hundred).len(), 100);
    assert_eq!(hundred.body["next"], "099");
    // Bad parameters.
    for bad in ["0", "1001", "-1", "two", "", "+5", "1.5"] {
        let message = api
            .get(&page(None, Some(bad)))
            .await
            .refused(400, "bad_message")
            .to_owned();
        assert!(
            message.contains("limit must be an integer from 1 to 1000"),
            "{message}"
        );
    }
    api.get("/v1/ns/team/note?limit=1&limit=2")
        .await
        .refused(400, "bad_message");
    // Reading takes a read-only token.
    let read = api.send(api.http.get(api.url("/v1/ns/team/note")).bearer_auth("reader"));
    assert_eq!(keys_of(&read.await).len(), 6);
    api.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_like_a_hello() {
    let api = Setup::sqlite("http-auth").start().await;
    let path = "/v1/ns/team/task/t1";
    // No token, or not a bearer one: 401 and a challenge.
    let none = api.send(api.http.get(api.url(path))).await;
    none.refused(401, "unauthorized");
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    let basic = api
        .send(
            api.http
                .get(api.url(path))
                .header("authorization", "Basic d3JpdGVyOg=="),
        )
        .await;
    basic.refused(401, "unauthorized");
    let unknown = api.send(api.http.get(api.url(path)).bearer_auth("nope")).await;
    unknown.refused(401, "unauthorized");
    assert!(
        unknown.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    // A token of another namespace.
    let elsewhere = api.send(api.http.get(api.url(path)).bearer_auth("other")).await;
    elsewhere.refused(403, "forbidden");
    // A read-only token reads, and writes nothing.
    api.put(path, task("by the writer")).await.ok(201);
    let reader = |method: Method| api.http.request(method, api.url(path)).bearer_auth("reader");
    assert_eq!(api.send(reader(Method::GET)).await.ok(200)["version"], 1);
    let refused = [
        api.send(json_body(reader(Method::PUT), &task("by the reader")))
            .await,
        api.send(
            reader(Method::PATCH)
                .header("content-type", "application/merge-patch+json")
                .body("{}"),
        )
        .await,
        api.send(reader(Method::DELETE)).await,
        api.send(json_body(
            api.http.post(api.url("/v1/ns/team/ops")).bearer_auth("reader"),
            &json!({"ops": []}),
        ))
        .await,
    ];
    for reply in &refused {
        assert_eq!(reply.refused(403, "forbidden"), "the token is read-only");
    }
    assert_eq!(
        api.get(path).await.ok(200),
        &json!({"value": task("by the writer"), "version": 1, "rev": 1})
    );
    // Refusals are counted with the sessions'.
    let metrics = api.metrics().await;
    // A missing or malformed Authorization header never reaches the check.
    assert!(metrics.contains("zestor_auth_refused_total 2"), "{metrics}");
    assert!(metrics.contains("zestor_http_client_errors_total 8"), "{metrics}");
    assert!(metrics.contains("zestor_http_requests_total 11"), "{metrics}");
    api.stop().await;
}

#[tokio::test]
async fn bad_requests_get_their_code_and_leave_the_server_serving() {
    let mut setup = Setup::sqlite("http-errors");
    setup.session.limits.max_frame_bytes = 64 * 1024;
    let api = setup.start().await;
    let path = "/v1/ns/team/task/t1";
    // The kind's schema.
    let invalid = api.put(path, json!({"title": 5})).await;
    assert!(invalid.refused(422, "validation").contains("task/t1"));
    // Preconditions.
    api.put(path, task("one")).await.ok(201);
    let put_if = |header: &'static str, value: &'static str, title: &'static str| {
        json_body(api.request(Method::PUT, path), &task(title)).header(header, value)
    };
    let conflict = api.send(put_if("if-match", "2", "two")).await;
    assert_eq!(
        conflict.refused(412, "conflict"),
        "version conflict: expected 2, found 1"
    );
    assert_eq!(
        api.send(put_if("if-match", "1", "two")).await.ok(200)["version"],
        2
    );
    assert_eq!(
        api.send(put_if("if-match", "\"2\"", "three")).await.ok(200)["version"],
        3
    );
    api.send(put_if("if-none-match", "*", "again"))
        .await
        .refused(412, "conflict");
    let fresh = "/v1/ns/team/task/t2";
    let create_only = json_body(api.request(Method::PUT, fresh), &task("new")).header("if-none-match", "*");
    assert_eq!(api.send(create_only).await.ok(201)["result"], "created");
    let delete_if = api.request(Method::DELETE, fresh).header("if-match", "7");
    api.send(delete_if).await.refused(412, "conflict");
    for (header, value) in [
        ("if-match", "*"),
        ("if-match", "W/\"1\""),
        ("if-match", "one"),
        ("if-none-match", "\"1\""),
    ] {
        api.send(put_if(header, value, "x"))
            .await
            .refused(400, "bad_message");
    }
    let both = put_if("if-match", "3", "x").header("if-none-match", "*");
    api.send(both).await.refused(400, "bad_message");
    assert_eq!(api.get(path).await.ok(200)["value"], task("three"));
    // Bodies: not JSON, not of the method's type, too large.
    let malformed = api
        .request(Method::PUT, path)
        .header("content-type", "application/json");
    let message = api
        .send(malformed.body("{\"title\": "))
        .await
        .refused(400, "bad_message")
        .to_owned();
    assert!(message.starts_with("the body is not JSON"), "{message}");
    let form = api
        .request(Method::PUT, path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("title=x");
    api.send(form).await.refused(415, "bad_message");
    let plain_patch = json_body(api.request(Method::PATCH, path), &json!({"title": "x"}));
    let message = api.send(plain_patch).await.refused(415, "bad_message").to_owned();
    assert!(message.contains("application/merge-patch+json"), "{message}");
    let big = task(&"x".repeat(70 * 1024));
    let message = api.put(path, big).await.refused(413, "too_large").to_owned();
    assert!(message.contains("65536"), "{message}");
    // Announced far over the limit: refused from its header, unread.
    let mut raw = tokio::net::TcpStream::connect(api.server.address).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer writer\r\n\
         content-type: application/json\r\ncontent-length: 100000000\r\n\r\n"
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"too_large""#), "{answer}");
    // Kinds and keys break the store's rules.
    let long = format!("/v1/ns/team/task/{}", "k".repeat(1025));
    api.put(&long, task("x")).await.refused(400, "key_too_long");
    api.get(&long).await.refused(400, "key_too_long");
    api.put("/v1/ns/team/task/a%00b", task("x"))
        .await
        .refused(400, "invalid_key");
    api.get("/v1/ns/team/task/%FF").await.refused(400, "bad_message");
    let namespace = format!("/v1/ns/{}/task/k", "n".repeat(257));
    api.get(&namespace).await.refused(400, "bad_message");
    // Headers.
    let long_key =
        json_body(api.request(Method::PUT, path), &task("x")).header("idempotency-key", "i".repeat(257));
    api.send(long_key).await.refused(400, "bad_message");
    let long_client =
        json_body(api.request(Method::PUT, path), &task("x")).header("zestor-client-id", "c".repeat(252));
    api.send(long_client).await.refused(400, "bad_message");
    // Paths and methods.
    api.get("/v1/ns/team/task/t1/more")
        .await
        .refused(404, "not_found");
    api.get("/v1/nope").await.refused(404, "not_found");
    let post = json_body(api.request(Method::POST, path), &task("x"));
    let not_allowed = api.send(post).await;
    not_allowed.refused(405, "bad_message");
    assert_eq!(not_allowed.headers["allow"], "GET, PUT, PATCH, DELETE");
    // Nothing of this reached the store.
    assert_eq!(
        api.get(path).await.ok(200),
        &json!({"value": task("three"), "version": 3, "rev": 3})
    );
    api.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_is_an_op_id_applied_once() {
    let api = Setup::sqlite("http-idempotency").start().await;
    let path = "/v1/ns/team/task/t1";
    let put = |title: &str, key: &'static str| {
        json_body(api.request(Method::PUT, path), &task(title)).header("idempotency-key", key)
    };
    let first = api.send(put("one", "k1")).await;
    assert_eq!(
        first.ok(201),
        &json!({"result": "created", "version": 1, "rev": 1})
    );
    let update = api.send(put("two", "k2")).await;
    assert_eq!(
        update.ok(200),
        &json!({"result": "updated", "version": 2, "rev": 2})
    );
    // Retried (the answer was lost): the recorded answer, not a new write.
    let retried = api.send(put("two", "k2")).await;
    assert_eq!(retried.status, update.status);
    assert_eq!(retried.body, update.body);
    let again = api.send(put("one", "k1")).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(
        api.get(path).await.ok(200),
        &json!({"value": task("two"), "version": 2, "rev": 2})
    );
    // A refusal is recorded too.
    let invalid =
        json_body(api.request(Method::PUT, path), &json!({"title": 1})).header("idempotency-key", "k3");
    api.send(invalid).await.refused(422, "validation");
    api.send(put("three", "k3")).await.refused(422, "validation");
    // Keys are unique per client id: another caller's k2 is its own.
    let named = put("mine", "k2").header("zestor-client-id", "billing");
    assert_eq!(
        api.send(named).await.ok(200),
        &json!({"result": "updated", "version": 3, "rev": 3})
    );
    // An op of POST …/ops is the same op as the header's, under the same
    // client id.
    let ops = api
        .ops(json!([{"op_id": "k2", "kind": "task", "key": "t1", "action": "delete"}]))
        .await;
    assert_eq!(
        ops.ok(200)["answers"][0],
        json!({"type": "ack", "op_id": "k2", "result": "updated", "version": 2, "rev": 2})
    );
    // Without a key, every request is a new write.
    let patch = || {
        api.request(Method::PATCH, path)
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"n": 1}"#)
    };
    assert_eq!(api.send(patch()).await.ok(200)["version"], 4);
    assert_eq!(api.send(patch()).await.ok(200)["result"], "unchanged");
    api.stop().await;
}

#[tokio::test]
async fn ops_are_applied_in_order_and_answered_in_order() {
    let api = Setup::sqlite("http-ops").start().await;
    let ops = json!([
        {"op_id": "1", "kind": "task", "key": "a", "action": "set", "value": task("a")},
        {"op_id": "2", "kind": "task", "key": "a", "action": "patch", "value": {"done": true}},
        {"op_id": "3", "kind": "task", "key": "b", "action": "set", "value": {"no": "title"}},
        {"op_id": "4", "kind": "", "key": "b", "action": "delete"},
        {"op_id": "5", "kind": "task", "key": "b", "action": "set"},
        {"op_id": "6", "kind": "task", "key": "a", "action": "set", "value": task("x"), "if_version": 1},
        {"op_id": "7", "kind": "task", "key": "a", "action": "delete", "if_version": 2},
        {"op_id": "8", "kind": "task", "key": "a", "action": "delete"},
    ]);
    let answered = api.ops(ops.clone()).await;
    let answers = answered.ok(200)["answers"].as_array().unwrap().clone();
    let summary: Vec<(String, String, String)> = answers
        .iter()
        .map(|a| {
            let what = a["result"].as_str().or(a["code"].as_str()).unwrap();
            (
                a["op_id"].as_str().unwrap().into(),
                a["type"].as_str().unwrap().into(),
                what.into(),
            )
        })
        .collect();
    let wanted = [
        ("1", "ack", "created"),
        ("2", "ack", "updated"),
        ("3", "reject", "validation"),
        ("4", "reject", "kind_required"),
        ("5", "reject", "bad_message"),
        ("6", "reject", "conflict"),
        ("7", "ack", "deleted"),
        ("8", "ack", "absent"),
    ];
    let wanted: Vec<(String, String, String)> = wanted
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect();
    assert_eq!(summary, wanted, "{answers:?}");
    assert_eq!(answers[1]["value"], json!({"title": "a", "done": true}));
    assert_eq!(answers[6]["rev"], 3);
    // Sent again: the same answers, nothing applied twice.
    let again = api.ops(ops).await;
    assert_eq!(again.ok(200)["answers"].as_array().unwrap(), &answers);
    assert_eq!(api.get("/v1/ns/team/task").await.ok(200)["rev"], 3);
    // The body is a push's: its fields are checked and named.
    let message = api
        .ops(json!([{"op_id": "x", "kind": "task", "key": 5, "action": "set", "value": 1}]))
        .await
        .refused(400, "bad_message")
        .to_owned();
    assert!(
        message.contains("ops[0].key must be a string, got the number 5"),
        "{message}"
    );
    let post = |body: &str| {
        api.request(Method::POST, "/v1/ns/team/ops")
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    for body in ["[]", "{}", "{\"ops\": {}}", "nope", "{\"ops\": [7]}"] {
        api.send(post(body)).await.refused(400, "bad_message");
    }
    assert_eq!(
        api.send(post("{\"ops\": []}")).await.ok(200),
        &json!({"answers": []})
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"op_id": format!("{i}"), "kind": "n", "key": "k", "action": "delete"}))
        .collect();
    api.ops(json!(too_many)).await.refused(413, "too_many_in_flight");
    let keyed = post("{\"ops\": []}").header("idempotency-key", "k");
    api.send(keyed).await.refused(400, "bad_message");
    api.stop().await;
}

#[tokio::test]
async fn an_http_write_reaches_websocket_clients() {
    let api = Setup::sqlite("http-to-ws").start().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/sync", api.server.address))
        .await
        .unwrap();
    let hello = json!({"type": "hello", "protocol": 2, "namespace": "team", "token": "reader", "client_id": "browser"});
    send(&mut socket, hello).await;
    assert_eq!(recv(&mut socket).await["type"], "welcome");
    assert_eq!(recv(&mut socket).await["type"], "snapshot");
    api.put("/v1/ns/team/task/t1", task("from a backend"))
        .await
        .ok(201);
    let changes = recv(&mut socket).await;
    assert_eq!(
        changes,
        json!({"type": "changes", "rev": 1, "events": [
            {"kind": "task", "key": "t1", "type": "create", "value": task("from a backend"), "version": 1, "rev": 1},
        ]})
    );
    api.patch("/v1/ns/team/task/t1", json!({"done": true}))
        .await
        .ok(200);
    let changes = recv(&mut socket).await;
    assert_eq!(
        changes["events"][0]["value"],
        json!({"title": "from a backend", "done": true})
    );
    api.stop().await;
}

// ---- the change stream ----

/// Writes, streams and resumes; on SQLite and on PostgreSQL (`other`, when
/// given, is a second server on the same database, whose writes the first
/// one's stream carries).
async fn write_read_and_stream(api: &Api, other: Option<&Api>) {
    let writer = other.unwrap_or(api);
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        let reply = writer.put(&format!("/v1/ns/team/task/{key}"), task(key)).await;
        assert_eq!(reply.ok(201)["rev"], i + 1);
    }
    // Another server relays the writes shortly after they commit.
    let started = std::time::Instant::now();
    while api.get("/v1/ns/team/task").await.ok(200)["rev"] != 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "not relayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Live from now: `ready` says where the stream stands.
    let mut live = api.stream("/v1/ns/team/changes", &[]).await;
    let ready = live.next().await.unwrap();
    assert_eq!(
        ready,
        Sse {
            event: "ready".into(),
            id: Some("3".into()),
            data: json!({"rev": 3}),
        }
    );
    // From a revision: what followed it, then live changes, in order.
    let mut resumed = api.stream("/v1/ns/team/changes?since=1", &[]).await;
    assert_eq!(resumed.next().await.unwrap().id, Some("1".into()));
    assert_eq!(resumed.change().await, (2, "b".into()));
    let third = resumed.next().await.unwrap();
    assert_eq!(
        third,
        Sse {
            event: "change".into(),
            id: Some("3".into()),
            data: json!({"kind": "task", "key": "c", "type": "create", "value": task("c"), "version": 1, "rev": 3}),
        }
    );
    writer
        .patch("/v1/ns/team/task/a", json!({"done": true}))
        .await
        .ok(200);
    writer.delete("/v1/ns/team/task/b").await.ok(200);
    let fourth = resumed.next().await.unwrap();
    assert_eq!(fourth.data["type"], "update");
    assert_eq!(fourth.data["value"], json!({"title": "a", "done": true}));
    let fifth = resumed.next().await.unwrap();
    assert_eq!(
        (fifth.data["type"].as_str(), fifth.data["value"].clone()),
        (Some("delete"), task("b"))
    );
    assert_eq!(live.change().await, (4, "a".into()));
    assert_eq!(live.change().await, (5, "b".into()));
    // A reader that lost its connection resumes after its last event id,
    // which wins over the URL's `since` (an EventSource sends both).
    let mut again = api
        .stream("/v1/ns/team/changes?since=0", &[("last-event-id", "3")])
        .await;
    assert_eq!(again.next().await.unwrap().id, Some("3".into()));
    assert_eq!(again.change().await, (4, "a".into()));
    assert_eq!(again.change().await, (5, "b".into()));
    // Reads.
    assert_eq!(
        api.get("/v1/ns/team/task/a").await.ok(200),
        &json!({"value": {"title": "a", "done": true}, "version": 2, "rev": 4})
    );
    let listed = api.get("/v1/ns/team/task").await;
    assert_eq!(listed.ok(200)["rev"], 5);
    assert_eq!(listed.body["entries"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn changes_stream_in_order_and_resume_on_sqlite() {
    let api = Setup::sqlite("http-sse").start().await;
    write_read_and_stream(&api, None).await;
    api.stop().await;
}

#[test]
fn changes_stream_in_order_and_resume_on_postgres() {
    let Some(url) = pg::url("changes_stream_in_order_and_resume_on_postgres") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let database = || Database::Postgres {
            conn: url.to_owned(),
            schema: schema.clone(),
        };
        let one = Setup::on(database()).start().await;
        write_read_and_stream(&one, None).await;
        one.stop().await;
        pg::drop_schema(url, &schema).await;

        // Two servers on one database: one's stream carries the other's writes.
        let schema = pg::create_schema(url).await;
        let database = || Database::Postgres {
            conn: url.to_owned(),
            schema: schema.clone(),
        };
        let (one, two) = (
            Setup::on(database()).start().await,
            Setup::on(database()).start().await,
        );
        write_read_and_stream(&one, Some(&two)).await;
        one.stop().await;
        two.stop().await;
        pg::drop_schema(url, &schema).await;
    });
}

#[tokio::test]
async fn a_stream_from_before_the_history_says_compacted() {
    let mut setup = Setup::sqlite("http-compacted");
    setup.retention = Some(3);
    let api = setup.start().await;
    for i in 0..6 {
        api.put(&format!("/v1/ns/team/task/t{i}"), task("x"))
            .await
            .ok(201);
    }
    let mut old = api.stream("/v1/ns/team/changes?since=1", &[]).await;
    let compacted = old.next().await.unwrap();
    assert_eq!(
        (compacted.event.as_str(), compacted.id.as_deref()),
        ("compacted", None)
    );
    assert_eq!(compacted.data["code"], "compacted");
    let oldest = compacted.data["oldest"].as_u64().unwrap();
    assert!((2..=3).contains(&oldest), "{compacted:?}");
    assert_eq!(old.next().await, None, "the stream ends");
    // From the oldest revision kept, it resumes.
    let mut kept = api
        .stream(&format!("/v1/ns/team/changes?since={oldest}"), &[])
        .await;
    assert_eq!(kept.next().await.unwrap().event, "ready");
    assert_eq!(kept.change().await.0, oldest + 1);
    // A revision the namespace never reached: its data was replaced.
    let mut ahead = api.stream("/v1/ns/team/changes?since=99", &[]).await;
    let reset = ahead.next().await.unwrap();
    assert_eq!((reset.event.as_str(), &reset.data["rev"]), ("reset", &json!(6)));
    assert_eq!(ahead.next().await, None);
    // Bad resume points.
    for (query, header) in [
        ("?since=x", None),
        ("?since=-1", None),
        ("?since=1&since=2", None),
        ("", Some("x")),
    ] {
        let mut request = api.request(Method::GET, &format!("/v1/ns/team/changes{query}"));
        if let Some(id) = header {
            request = request.header("last-event-id", id);
        }
        api.send(request).await.refused(400, "bad_message");
    }
    api.stop().await;
}

#[tokio::test]
async fn a_reader_that_falls_behind_gets_its_changes_then_an_end() {
    let db = support::fresh_db("http-slow");
    let mut setup = Setup::on(Database::Sqlite(db.clone()));
    // Enough history to resume from where the stream ended.
    setup.retention = Some(50_000);
    let api = setup.start().await;
    let mut stream = api.stream("/v1/ns/team/changes", &[]).await;
    assert_eq!(stream.next().await.unwrap().event, "ready");
    // Not read while far more than the stream's buffer (4,096 changes) and
    // the sockets' buffers can hold is written.
    let filler = "x".repeat(1_000);
    let batches = 40;
    for batch in 0..batches {
        let ops: Vec<Value> = (0..500)
            .map(|i| json!({"op_id": format!("{batch}-{i}"), "kind": "note", "key": format!("{batch}-{i}"), "action": "set", "value": filler}))
            .collect();
        let reply = api.ops(json!(ops)).await;
        assert_eq!(reply.ok(200)["answers"][499]["type"], "ack");
    }
    // The changes that waited arrive in order, then the end, well before
    // the last change.
    let mut rev = 0;
    let end = loop {
        let sse = stream.next().await.expect("an end event");
        if sse.event != "change" {
            break sse;
        }
        rev += 1;
        assert_eq!(sse.id, Some(rev.to_string()), "gap-free");
    };
    assert_eq!(
        (end.event.as_str(), &end.data["code"]),
        ("end", &json!("slow_consumer"))
    );
    assert!(rev >= 4_096 && rev < batches * 500, "{rev}");
    assert_eq!(stream.next().await, None);
    // It resumes from its last event id.
    let mut resumed = api
        .stream("/v1/ns/team/changes", &[("last-event-id", &rev.to_string())])
        .await;
    assert_eq!(resumed.next().await.unwrap().event, "ready");
    assert_eq!(resumed.change().await.0, rev + 1);
    let metrics = api.metrics().await;
    assert!(metrics.contains("zestor_slow_consumers_total 1"), "{metrics}");
    assert!(metrics.contains("zestor_http_streams 1"), "{metrics}");
    // A stream nobody reads (its connection is stuck writing) does not
    // hold the server's shutdown forever.
    let stopped = std::time::Instant::now();
    api.stop().await;
    assert!(stopped.elapsed() < Duration::from_secs(20));
    drop(resumed);
    // Some 200 MB: not left behind.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

#[tokio::test]
async fn a_stream_keeps_alive_and_ends_at_shutdown() {
    let mut setup = Setup::sqlite("http-shutdown");
    setup.session.heartbeat_ms = 100;
    let api = setup.start().await;
    let mut stream = api.stream("/v1/ns/team/changes", &[]).await;
    assert_eq!(stream.next().await.unwrap().event, "ready");
    // A comment while nothing changes, so proxies keep the connection.
    assert_eq!(stream.block().await.as_deref(), Some(": keep-alive"));
    let Api { http, server } = api;
    let asked = std::time::Instant::now();
    let stopping = tokio::spawn(server.stop());
    let end = stream.next().await.expect("an end event");
    assert_eq!(
        (end.event.as_str(), &end.data["code"]),
        ("end", &json!("shutting_down"))
    );
    assert_eq!(stream.next().await, None);
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("the server stops")
        .unwrap();
    // At once: the stream ended when asked, not when the server gave up
    // waiting for it and closed the store.
    assert!(asked.elapsed() < Duration::from_secs(5), "{:?}", asked.elapsed());
    drop(http);
}

#[tokio::test]
async fn a_jwt_works_over_http_and_a_stream_ends_when_it_expires() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let secret = b"a secret of the HTTP tests, 32 bytes or more".to_vec();
    let config = JwtConfig {
        leeway: Duration::ZERO,
        ..JwtConfig::new(JwtKeys::Secret(secret.clone()))
    };
    let mut setup = Setup::sqlite("http-jwt");
    setup.auth = Auth::new(None, Some(config)).await.unwrap();
    let api = setup.start().await;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = EncodingKey::from_secret(&secret).unwrap();
    let mint = |grants: Value, exp: u64| {
        let claims = json!({"sub": "svc", "exp": exp, "zestor": {"ns": grants}});
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    let writer = mint(json!({"team": "read_write"}), now + 3600);
    let reader = mint(json!({"team": "read"}), now + 3600);
    let expired = mint(json!({"team": "read_write"}), now - 10);
    let path = "/v1/ns/team/task/t1";
    let put = |token: &str| json_body(api.http.put(api.url(path)), &task("by a service")).bearer_auth(token);
    assert_eq!(api.send(put(&writer)).await.ok(201)["rev"], 1);
    api.send(put(&reader)).await.refused(403, "forbidden");
    let message = api
        .send(put(&expired))
        .await
        .refused(401, "unauthorized")
        .to_owned();
    assert!(message.contains("expired"), "{message}");
    let elsewhere = api
        .send(api.http.get(api.url("/v1/ns/other/task/t1")).bearer_auth(&writer))
        .await;
    elsewhere.refused(403, "forbidden");
    let read = api.send(api.http.get(api.url(path)).bearer_auth(&reader)).await;
    assert_eq!(read.ok(200)["value"], task("by a service"));
    // A stream lasts as long as its token.
    let soon = mint(json!({"team": "read"}), now + 3);
    let response = api
        .http
        .get(api.url("/v1/ns/team/changes?since=0"))
        .bearer_auth(&soon)
        .send()
        .await
        .unwrap();
    let mut stream = Stream {
        response,
        buffer: String::new(),
    };
    assert_eq!(stream.next().await.unwrap().event, "ready");
    assert_eq!(stream.change().await, (1, "t1".into()));
    let end = stream.next().await.expect("an end event");
    assert_eq!(
        (end.event.as_str(), &end.data["code"]),
        ("end", &json!("unauthorized"))
    );
    assert_eq!(stream.next().await, None);
    api.stop().await;
}
