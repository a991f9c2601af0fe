//! A chat room: people talk over a WebSocket (`/ws`), listeners follow along with server-sent
//! events (`/events`), and `ConnectInfo<SocketAddr>` names everyone by their address, which
//! `GET /who` lists. The last 100 lines are hotswap's `State`, so they survive every swap; the
//! room itself (who is connected, the broadcast channel) belongs to each generation: after a
//! swap, open sockets stay on the old code until `stream_drain_timeout_ms` (3 s here), then get
//! close code 1012 and reconnect to the new one.
//!
//! Run it with hotswap, from anywhere:
//!
//! ```sh
//! hotswap serve -w examples/chat
//! websocat ws://localhost:3005/ws       # type lines; everyone sees them
//! curl -N localhost:3005/events         # follow along
//! curl -d 'hello from curl' localhost:3005/say
//! curl localhost:3005/who
//! ```
//!
//! or without it, for production: `cargo run -p chat` (the same `app()`, `axum::serve`d by
//! `src/main.rs` with `into_make_service_with_connect_info`).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// The greeting each new WebSocket gets, and `GET /` says.
const WELCOME: &str = "welcome to the chat";

/// How many lines the history keeps.
const HISTORY: usize = 100;

/// The last lines said: hotswap's `State`, so they survive every swap.
pub type History = Arc<RwLock<VecDeque<Line>>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    from: SocketAddr,
    text: String,
}

impl Line {
    fn shown(&self) -> String {
        format!("{}: {}", self.from, self.text)
    }
}

/// What the routes share: the history, and this generation's room.
#[derive(Clone)]
struct Room {
    history: History,
    live: broadcast::Sender<Line>,
    /// Who is connected, and how (`websocket`, `events`).
    present: Arc<Mutex<BTreeMap<SocketAddr, &'static str>>>,
}

impl Room {
    fn say(&self, line: Line) {
        {
            let mut history = self.history.write().unwrap();
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(line.clone());
        }
        // Nobody listening is fine.
        let _ = self.live.send(line);
    }

    /// Lists `peer` until the returned guard is dropped.
    fn enter(&self, peer: SocketAddr, how: &'static str) -> Presence {
        self.present.lock().unwrap().insert(peer, how);
        Presence { room: self.clone(), peer }
    }
}

/// Someone in the room; leaving is dropping it.
struct Presence {
    room: Room,
    peer: SocketAddr,
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.room.present.lock().unwrap().remove(&self.peer);
    }
}

/// The app, under `hotswap serve` with the history of the previous generation, under `cargo
/// run` with none.
pub async fn app(history: History) -> Router {
    let (live, _) = broadcast::channel(64);
    let room = Room { history, live, present: Default::default() };
    Router::new()
        .route("/", get(|| async { format!("{WELCOME}\n") }))
        .route("/ws", get(websocket))
        .route("/events", get(events))
        .route("/say", post(say))
        .route("/who", get(who))
        .route("/history", get(history_lines))
        .with_state(room)
}

hotswap_handler::export_router!(app, History);

async fn websocket(
    upgrade: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(room): State<Room>,
) -> Response {
    upgrade.on_upgrade(move |socket| talk(socket, peer, room))
}

/// Greets the peer, then passes each line it says to the room and each line of the room to it.
async fn talk(mut socket: WebSocket, peer: SocketAddr, room: Room) {
    let _presence = room.enter(peer, "websocket");
    let mut heard = room.live.subscribe();
    if socket.send(Message::Text(format!("{WELCOME}, {peer}").into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => room.say(Line { from: peer, text: text.to_string() }),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            line = heard.recv() => match line {
                Ok(line) => {
                    if socket.send(Message::Text(line.shown().into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Every line said from now on, as an event.
async fn events(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(room): State<Room>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let presence = room.enter(peer, "events");
    let heard = room.live.subscribe();
    let lines = stream::unfold((heard, presence), |(mut heard, presence)| async move {
        loop {
            match heard.recv().await {
                Ok(line) => {
                    let event = Event::default().event("line").data(line.shown());
                    return Some((Ok(event), (heard, presence)));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // The first event says the stream is open, so a listener knows it will miss nothing.
    let open =
        stream::once(async move { Ok(Event::default().event("open").data(peer.to_string())) });
    Sse::new(open.chain(lines)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Says the body, as the client's address.
async fn say(ConnectInfo(peer): ConnectInfo<SocketAddr>, State(room): State<Room>, text: String) {
    room.say(Line { from: peer, text });
}

/// Who is connected now, one `address how` per line.
async fn who(State(room): State<Room>) -> String {
    let present = room.present.lock().unwrap();
    present.iter().map(|(peer, how)| format!("{peer} {how}\n")).collect()
}

async fn history_lines(State(room): State<Room>) -> Json<Vec<String>> {
    Json(room.history.read().unwrap().iter().map(Line::shown).collect())
}
