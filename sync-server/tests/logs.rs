//! The server binary's `--log-format json`: every line it writes on
//! stderr is one JSON object with a level and a message (and the event's
//! fields beside them).

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[cfg(unix)]
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_level_and_message() {
    let tokens = support::fresh_db("log-tokens").with_extension("txt");
    std::fs::write(&tokens, "alice team read_write\n").unwrap();
    let db = support::fresh_db("json-logs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--db"])
        .arg(format!("sqlite://{}", db.display()))
        .arg("--tokens")
        .arg(&tokens)
        // Debug: the dependencies' logs, too, go through the same format.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();

    // A refused token is logged with its namespace.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/sync"))
        .await
        .unwrap();
    let hello =
        json!({"type": "hello", "protocol": 2, "namespace": "team", "token": "mallory", "client_id": "c1"});
    socket.send(Message::text(hello.to_string())).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await {}

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(child.wait().unwrap().success());

    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for line in &lines {
        let level = line["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no level: {line}"));
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "{line}"
        );
        assert!(line["message"].is_string(), "no message: {line}");
        assert!(line["timestamp"].is_string(), "no timestamp: {line}");
    }
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} in {stderr}"))
    };
    let listening = find("listening");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["url"], format!("http://{address}"));
    assert_eq!(listening["tls"], false);
    let refused = find("refused a token");
    assert_eq!(refused["namespace"], "team");
    assert_eq!(find("shutting down")["level"], "INFO");
}

#[test]
fn an_unknown_log_format_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args(["--insecure-open", "--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'xml' for '--log-format"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args(["client", "get", "task", "t1"])
        .env("ZESTOR_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ZESTOR_LOG_FORMAT must be text or json"),
        "{stderr}"
    );
}
