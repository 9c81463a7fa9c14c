//! Randomized convergence against a real server: clients (store-core's
//! `ClientSession` over real WebSockets) write, delete, drop their
//! connections and come back, in a seeded random order; at the end every
//! client's view equals what a fresh client receives from the server.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use store_core::StoreOptions;
use store_core::sync::session::{ClientConfig, ClientSession, ServerConfig};
use store_core::sync::{OpAction, Rights};
use store_core::testkit::sync::Rng;
use sync_server::backend::sqlite::Synchronous;
use sync_server::server::{AppState, Database, Metrics, Stores, Tokens, serve};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Peer {
    session: ClientSession,
    socket: Option<Socket>,
}

fn now(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

impl Peer {
    async fn connect(&mut self, url: &str, start: Instant) {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        self.socket = Some(socket);
        self.session.connect(now(start));
    }

    fn drop_connection(&mut self) {
        self.socket = None;
        self.session.disconnected();
    }

    /// Sends what the session has to send, then feeds it what arrives
    /// within `wait`.
    async fn pump(&mut self, start: Instant, wait: Duration) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        while let Some(frame) = self.session.poll_transmit_frame(now(start)) {
            if socket.send(Message::Text(frame.into())).await.is_err() {
                return self.drop_connection();
            }
        }
        while let Ok(frame) = tokio::time::timeout(wait, socket.next()).await {
            match frame {
                Some(Ok(Message::Text(text))) => {
                    self.session
                        .handle_frame(text.as_bytes(), now(start))
                        .expect("valid server frames");
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return self.drop_connection(),
            }
            while let Some(frame) = self.session.poll_transmit_frame(now(start)) {
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    return self.drop_connection();
                }
            }
        }
        while self.session.poll_event().is_some() {}
    }
}

#[tokio::test]
async fn clients_converge_through_writes_deletes_and_disconnects() {
    let db = support::fresh_db("convergence");
    let mut tokens = Tokens::default();
    tokens.grant("t", "ns", Rights::ReadWrite);
    let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        stores: Stores::new(
            Database::Sqlite(db),
            Synchronous::Normal,
            StoreOptions::new().retention(50),
        ),
        auth: tokens.into(),
        session: ServerConfig::default(),
        metrics: Metrics::default(),
        allowed_origins: vec![],
        send_timeout: Duration::from_secs(10),
        shutdown,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/sync", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, None, stop_tx, async {
        let _ = stopped.await;
    }));

    let start = Instant::now();
    for seed in [7u64, 1_234, 99_991] {
        let mut rng = Rng::new(seed);
        let mut peers: Vec<Peer> = (0..3)
            .map(|i| Peer {
                session: ClientSession::new(ClientConfig::new("ns", "t", format!("s{seed}-c{i}"))),
                socket: None,
            })
            .collect();
        for peer in &mut peers {
            peer.connect(&url, start).await;
        }
        for step in 0..150 {
            let i = rng.below(peers.len() as u64) as usize;
            let key = format!("k{}", rng.below(8));
            let peer = &mut peers[i];
            match rng.below(10) {
                0 => peer.drop_connection(),
                1 if peer.socket.is_none() => peer.connect(&url, start).await,
                2 => {
                    peer.session.push_op("task", &key, OpAction::Delete, None, None);
                }
                _ => {
                    peer.session.push_op(
                        "task",
                        &key,
                        OpAction::Set,
                        Some(json!({"by": i, "step": step})),
                        None,
                    );
                }
            }
            peer.pump(start, Duration::from_millis(2)).await;
        }
        // Everyone comes back and settles.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for peer in &mut peers {
                if peer.socket.is_none() {
                    peer.connect(&url, start).await;
                }
                peer.pump(start, Duration::from_millis(20)).await;
            }
            if peers
                .iter()
                .all(|p| p.session.is_synced() && p.session.pending().len() == 0)
            {
                break;
            }
            assert!(Instant::now() < deadline, "seed {seed}: clients did not settle");
        }
        let mut observer = Peer {
            session: ClientSession::new(ClientConfig::new("ns", "t", "observer")),
            socket: None,
        };
        observer.connect(&url, start).await;
        while !observer.session.is_synced() {
            observer.pump(start, Duration::from_millis(20)).await;
        }
        // One more round so every peer has the last changes.
        for peer in &mut peers {
            peer.pump(start, Duration::from_millis(50)).await;
        }
        let truth: Vec<(String, Value)> = observer.session.list("task");
        for (i, peer) in peers.iter().enumerate() {
            assert_eq!(
                peer.session.list("task"),
                truth,
                "seed {seed}: client {i} differs from the server"
            );
        }
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
