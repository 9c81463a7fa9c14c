//! `sync-server client …`: put, patch, get, delete and watch from a shell.

use std::hash::BuildHasher;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use store_core::sync::session::ClientEvent;

use super::{CaCerts, Client, ClientOptions, Events, Link, PendingWrite, Update};

const USAGE: &str = "usage: sync-server client [--url URL] [--namespace NS] [--token TOKEN] [--ca-file FILE]
                          [--timeout SECS] COMMAND
commands:
  put <kind> <key> <json>   write a value and wait for the server's ack
  patch <kind> <key> <json> merge a JSON Merge Patch into the value (null removes a member)
                            and wait for the server's ack
  get <kind> <key>          print the value as JSON
  delete <kind> <key>       delete and wait for the server's ack
  watch [kind]              print each change as a JSON line until Ctrl-C
flags default to $ZESTOR_URL, $ZESTOR_NAMESPACE, $ZESTOR_TOKEN, $ZESTOR_CA_FILE; the url to ws://127.0.0.1:8787/sync
--ca-file: the PEM certificates of the CAs a wss:// server's certificate must chain to,
           instead of the system's root certificates";

/// Runs one client command; `args` are the words after `client`, e.g.
/// `["put", "task", "t1", "{\"title\":\"ship\"}", "--namespace", "ns"]`.
/// Prints results on stdout; the error is the message to show the user.
pub async fn run_cli(args: Vec<String>) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") || args.is_empty() {
        println!("{USAGE}");
        return Ok(());
    }
    let cli = Cli::parse(args)?;
    let words: Vec<&str> = cli.words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["put", kind, key, json] => {
            let value: Value =
                serde_json::from_str(json).map_err(|e| format!("the value is not JSON: {e}"))?;
            let (client, events) = cli.connect(None);
            let write = client.set(kind, key, value).map_err(|e| e.to_string())?;
            // A fresh client shows nothing the value could equal.
            let write = write.ok_or("nothing to write")?;
            cli.print_ack(&client, events, write).await
        }
        ["patch", kind, key, json] => {
            let patch: Value =
                serde_json::from_str(json).map_err(|e| format!("the patch is not JSON: {e}"))?;
            // A client patches what it shows: sync the kind first.
            let (client, events) = cli.synced(kind).await?;
            let write = client.patch(kind, key, patch);
            let write = match write {
                Ok(Some(write)) => write,
                Ok(None) => {
                    client.close().await;
                    println!(r#"{{"result":"unchanged"}}"#);
                    return Ok(());
                }
                Err(e) => {
                    client.close().await;
                    return Err(e.to_string());
                }
            };
            cli.print_ack(&client, events, write).await
        }
        ["delete", kind, key] => {
            // A client deletes what it shows: sync the kind first.
            let (client, events) = cli.synced(kind).await?;
            let write = client.delete(kind, key).map_err(|e| e.to_string())?;
            let Some(write) = write else {
                client.close().await;
                return Err(format!("{kind}/{key} not found"));
            };
            cli.print_ack(&client, events, write).await
        }
        ["get", kind, key] => {
            let (client, _) = cli.synced(kind).await?;
            let value = client.get(kind, key);
            client.close().await;
            let value = value.ok_or_else(|| format!("{kind}/{key} not found"))?;
            println!("{value}");
            Ok(())
        }
        ["watch", rest @ ..] if rest.len() <= 1 => {
            let (client, events) = cli.connect(rest.first().copied());
            let result = tokio::select! {
                r = watch(events) => r,
                r = tokio::signal::ctrl_c() => r.map_err(|e| format!("cannot wait for Ctrl-C: {e}")),
            };
            client.close().await;
            result
        }
        _ => Err(USAGE.to_owned()),
    }
}

struct Cli {
    url: String,
    namespace: String,
    token: String,
    ca: Option<CaCerts>,
    timeout: Duration,
    words: Vec<String>,
}

impl Cli {
    fn parse(args: Vec<String>) -> Result<Cli, String> {
        let mut url = std::env::var("ZESTOR_URL").ok();
        let mut namespace = std::env::var("ZESTOR_NAMESPACE").ok();
        let mut token = std::env::var("ZESTOR_TOKEN").ok();
        let mut ca_file = std::env::var_os("ZESTOR_CA_FILE").map(std::path::PathBuf::from);
        let mut timeout = 30.0_f64;
        let mut words = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                words.push(arg);
                continue;
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = args
                        .next()
                        .ok_or_else(|| format!("--{flag} needs a value\n{USAGE}"))?;
                    (flag.to_owned(), value)
                }
            };
            match name.as_str() {
                "url" => url = Some(value),
                "namespace" => namespace = Some(value),
                "token" => token = Some(value),
                "ca-file" => ca_file = Some(value.into()),
                "timeout" => {
                    timeout = value
                        .parse()
                        .ok()
                        .filter(|t: &f64| t.is_finite() && *t > 0.0)
                        .ok_or_else(|| format!("--timeout takes seconds, not {value:?}"))?;
                }
                _ => return Err(format!("unknown flag --{name}\n{USAGE}")),
            }
        }
        let ca = ca_file
            .map(|file| CaCerts::from_file(file).map_err(|e| format!("the CA file: {e}")))
            .transpose()?;
        Ok(Cli {
            ca,
            url: url.unwrap_or_else(|| "ws://127.0.0.1:8787/sync".to_owned()),
            namespace: namespace
                .ok_or_else(|| format!("--namespace (or ZESTOR_NAMESPACE) is required\n{USAGE}"))?,
            token: token.ok_or_else(|| format!("--token (or ZESTOR_TOKEN) is required\n{USAGE}"))?,
            timeout: Duration::from_secs_f64(timeout),
            words,
        })
    }

    /// A client, and its events from the start.
    fn connect(&self, kind: Option<&str>) -> (Client, Events) {
        let id = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let mut options =
            ClientOptions::new(&self.url, &self.namespace, &self.token, format!("cli-{id:016x}"));
        options.kinds = kind.map(|k| vec![k.to_owned()]);
        options.ca = self.ca.clone();
        options.backoff_max = Duration::from_secs(2);
        let client = Client::connect(options);
        // Its first connection takes a round trip at least: nothing is missed.
        let events = client.events();
        (client, events)
    }

    /// A client that caught up with the server on `kind`.
    async fn synced(&self, kind: &str) -> Result<(Client, Events), String> {
        let (client, mut events) = self.connect(Some(kind));
        let mut tries = Tries::default();
        let synced = tokio::time::timeout(self.timeout, wait_synced(&client, &mut events, &mut tries)).await;
        let error = match synced {
            Ok(Ok(())) => return Ok((client, events)),
            Ok(Err(e)) => e,
            Err(_) => format!("not synced within {:?}{}", self.timeout, tries.last()),
        };
        client.close().await;
        Err(error)
    }

    async fn print_ack(
        &self,
        client: &Client,
        mut events: Events,
        write: PendingWrite,
    ) -> Result<(), String> {
        let mut tries = Tries::default();
        let answer = tokio::time::timeout(self.timeout, async {
            tokio::select! {
                answer = write.acked() => answer,
                never = tries.follow(&mut events) => never,
            }
        })
        .await;
        client.close().await;
        let ack = answer
            .map_err(|_| match tries.connected {
                true => format!("no answer within {:?}; the write may still apply", self.timeout),
                false => format!(
                    "not connected within {:?}{}; nothing was written",
                    self.timeout,
                    tries.last()
                ),
            })?
            .map_err(|e| e.to_string())?;
        println!("{}", serde_json::to_string(&ack).map_err(|e| e.to_string())?);
        Ok(())
    }
}

/// What a one-shot command saw of its connections: a failed one is told
/// on stderr at once (an untrusted certificate, a server that is down),
/// and again in the error if the command times out.
#[derive(Default)]
struct Tries {
    connected: bool,
    last_failure: Option<String>,
}

impl Tries {
    fn see(&mut self, update: &Update) {
        match update {
            Update::Session(ClientEvent::Connected { .. }) => self.connected = true,
            Update::Disconnected { reason } => {
                if self.last_failure.as_ref() != Some(reason) {
                    eprintln!("disconnected ({reason}); retrying");
                }
                self.last_failure = Some(reason.clone());
            }
            _ => {}
        }
    }

    /// Follows `events` until they end; never resolves after that.
    async fn follow<T>(&mut self, events: &mut Events) -> T {
        while let Some(update) = events.next().await {
            self.see(&update);
        }
        std::future::pending().await
    }

    /// The last failure, to append to a timeout's message.
    fn last(&self) -> String {
        match &self.last_failure {
            Some(reason) => format!(" (last: {reason})"),
            None => String::new(),
        }
    }
}

async fn wait_synced(client: &Client, events: &mut Events, tries: &mut Tries) -> Result<(), String> {
    loop {
        let status = client.status();
        if status.synced {
            return Ok(());
        }
        if status.link == Link::Stopped {
            // A new subscriber hears why at once.
            return match client.events().next().await {
                Some(Update::Stopped(e)) => Err(e.to_string()),
                _ => Err("the client stopped".into()),
            };
        }
        match events.next().await {
            Some(Update::Stopped(e)) => return Err(e.to_string()),
            None => return Err("the client stopped".into()),
            Some(update) => tries.see(&update),
        }
    }
}

async fn watch(mut events: Events) -> Result<(), String> {
    while let Some(update) = events.next().await {
        match update {
            Update::Session(ClientEvent::Changed { events }) => {
                for event in events {
                    println!("{}", serde_json::to_string(&event).map_err(|e| e.to_string())?);
                }
            }
            Update::Disconnected { reason } => eprintln!("disconnected ({reason}); reconnecting"),
            Update::Stopped(e) => return Err(e.to_string()),
            Update::Session(_) => {}
        }
    }
    Ok(())
}
