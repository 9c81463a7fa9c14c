//! Runs every `curl` example of `docs/http.md`, in order, against the
//! demo's server (the `sync-server` binary with `scripts/demo.sh`'s tokens
//! and schemas, on a fresh database) and checks that each prints what the
//! page shows, so the page cannot drift from the server.
//!
//! An example is a `sh` block holding one `curl` command, followed by a
//! `text` block with its output. A command with `-N` streams: it is
//! stopped once it printed what the page shows (or after 15 s).

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The address the page's commands name: the demo's default.
const DEMO_ADDRESS: &str = "127.0.0.1:8787";

/// A command of the page and what it prints.
#[derive(Debug)]
struct Example {
    line: usize,
    command: String,
    output: String,
}

/// The examples of a Markdown page, in order.
fn examples(page: &str) -> Vec<Example> {
    // Fenced blocks: (info string, body, first line).
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<&str>, usize)> = None;
    for (n, line) in page.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), Vec::new(), n + 1)),
            (Some(_), Some("")) => {
                let (info, body, at) = open.take().unwrap();
                blocks.push((info, body.join("\n"), at));
            }
            (Some((_, body, _)), _) => body.push(line),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed block");
    let mut examples = Vec::new();
    for (i, (info, body, line)) in blocks.iter().enumerate() {
        if info != "sh" || !body.starts_with("curl ") {
            continue;
        }
        match blocks.get(i + 1) {
            Some((next, output, _)) if next == "text" => examples.push(Example {
                line: *line,
                command: body.clone(),
                output: output.clone(),
            }),
            _ => panic!("docs/http.md:{line}: a curl example without a text block of its output"),
        }
    }
    examples
}

/// The server as `scripts/demo.sh` starts it, on a free port; its address.
fn start_demo_server() -> (Child, String) {
    let db = support::fresh_db("http-docs");
    let mut server = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args(["--db", &format!("sqlite://{}", db.display())])
        .args(["--tokens", &format!("{ROOT}/sync-server/dev-tokens.txt")])
        .args(["--schemas", &format!("{ROOT}/web-demo/schemas")])
        .args(["--listen", "127.0.0.1:0"])
        // The demo's defaults, whatever the environment says.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sync-server");
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the server's first line");
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (server, address)
}

/// Runs `command` with `sh`; what it printed on stdout. A streaming
/// command is stopped once it printed `expected`.
fn run(command: &str, expected: &str) -> String {
    let streams = command.split_whitespace().any(|word| word == "-N");
    let mut child = Command::new("sh")
        .arg("-c")
        // `exec`: the shell becomes curl, so stopping it stops curl.
        .arg(format!("exec {command}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run sh");
    let printed = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let printed = Arc::clone(&printed);
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                printed.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        })
    };
    let started = Instant::now();
    let text = || String::from_utf8_lossy(&printed.lock().unwrap()).into_owned();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if streams && same(&text(), expected) || started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap();
    text()
}

/// Equal but for trailing blank space.
fn same(printed: &str, expected: &str) -> bool {
    printed.trim_end() == expected.trim_end()
}

#[test]
fn every_curl_example_of_the_http_docs_prints_what_the_page_shows() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert_ne!(
            std::env::var("ZESTOR_REQUIRE_ALL").as_deref(),
            Ok("1"),
            "curl is needed to run the examples of docs/http.md"
        );
        eprintln!("\n## SKIPPED the examples of docs/http.md: curl is not installed\n");
        return;
    }
    let page = std::fs::read_to_string(format!("{ROOT}/docs/http.md")).unwrap();
    let examples = examples(&page);
    assert!(examples.len() >= 10, "{} examples found", examples.len());
    let (mut server, address) = start_demo_server();
    let mut wrong = Vec::new();
    for example in &examples {
        assert!(
            example.command.contains(DEMO_ADDRESS),
            "docs/http.md:{}: a command not aimed at the demo's address",
            example.line
        );
        let command = example.command.replace(DEMO_ADDRESS, &address);
        let printed = run(&command, &example.output);
        if !same(&printed, &example.output) {
            wrong.push(format!(
                "docs/http.md:{}:\n{}\n-- the page shows:\n{}\n-- it printed:\n{}",
                example.line, example.command, example.output, printed
            ));
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
