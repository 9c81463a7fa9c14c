//! A sync server on a free loopback port, for the tests that talk to it
//! over real WebSockets.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sync_server::server::{AppState, serve};
use tokio_tungstenite::tungstenite::Message;

/// A client's WebSocket to the test server.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Server {
    pub address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

/// Serves the state `make` builds (around the shutdown signal it is given)
/// on a free port, until [`Server::stop`].
pub async fn spawn(make: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> AppState) -> Server {
    let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
    let state = Arc::new(make(shutdown));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        serve(listener, state, None, stop_tx, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        address,
        stop: Some(stop),
        done,
    }
}

impl Server {
    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("graceful shutdown")
            .unwrap();
    }
}

/// Sends one protocol message.
pub async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next protocol message (server pings skipped); panics on a close.
pub async fn recv(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] != "ping" {
                    return v;
                }
            }
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}
