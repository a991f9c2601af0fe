//! A scripted LSP client that drives `hotswap_lsp::serve` over in-memory streams with raw
//! JSON-RPC, the way an editor would: it answers the server's requests (`$/progress` tokens,
//! `window/showDocument`) at once and keeps every message the server sent, in order, for the test to look at.

use std::time::Duration;

use hotswap_lsp::{ServeEnd, ServerEnvironment};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::stand_in_daemon::WAIT;

type SharedWriter = std::sync::Arc<tokio::sync::Mutex<WriteHalf<DuplexStream>>>;

pub(crate) struct FakeEditor {
    writer: SharedWriter,
    /// Every message from the server so far, in order.
    received: Vec<Value>,
    incoming: mpsc::UnboundedReceiver<Value>,
    reader: JoinHandle<()>,
    server: Option<JoinHandle<ServeEnd>>,
    next_id: i64,
}

impl Drop for FakeEditor {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

async fn write_message(writer: &SharedWriter, message: &Value) {
    let body = serde_json::to_vec(message).unwrap();
    let mut writer = writer.lock().await;
    let header = format!("Content-Length: {}\r\n\r\n", body.len());
    // The server may be gone (a test of its end); writing then fails, which is fine.
    let _ = writer.write_all(header.as_bytes()).await;
    let _ = writer.write_all(&body).await;
    let _ = writer.flush().await;
}

/// Reads `Content-Length` framed messages; answers server requests with `null` like an editor.
async fn read_messages(
    stream: tokio::io::ReadHalf<DuplexStream>,
    writer: SharedWriter,
    incoming: mpsc::UnboundedSender<Value>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("Content-Length:") {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.expect("every message has a Content-Length")];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let message: Value = serde_json::from_slice(&body).expect("the server sends JSON");
        if let Some(method) = message.get("method").and_then(Value::as_str)
            && let Some(id) = message.get("id")
        {
            // `window/showDocument` answers whether it showed the document; the rest, nothing.
            let result = if method == "window/showDocument" {
                json!({"success": true})
            } else {
                Value::Null
            };
            write_message(&writer, &json!({"jsonrpc": "2.0", "id": id, "result": result})).await;
        }
        if incoming.send(message).is_err() {
            return;
        }
    }
}

impl FakeEditor {
    /// Starts the server on in-memory streams.
    pub(crate) fn start(environment: ServerEnvironment) -> Self {
        let (editor_side, server_side) = tokio::io::duplex(1 << 20);
        let (server_input, server_output) = tokio::io::split(server_side);
        let server = tokio::spawn(hotswap_lsp::serve(server_input, server_output, environment));
        let (editor_input, editor_output) = tokio::io::split(editor_side);
        let writer: SharedWriter = std::sync::Arc::new(tokio::sync::Mutex::new(editor_output));
        let (incoming_sender, incoming) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_messages(editor_input, writer.clone(), incoming_sender));
        Self { writer, received: Vec::new(), incoming, reader, server: Some(server), next_id: 1 }
    }

    /// `initialize` and `initialized`; returns the `initialize` result.
    pub(crate) async fn initialize(&mut self, params: Value) -> Value {
        let response = self.request("initialize", params).await;
        self.notify("initialized", json!({})).await;
        response.get("result").cloned().unwrap_or_else(|| panic!("initialize failed: {response}"))
    }

    pub(crate) async fn notify(&mut self, method: &str, params: Value) {
        write_message(&self.writer, &json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await;
    }

    /// Sends a request and returns the whole response (with `result` or `error`).
    pub(crate) async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        write_message(
            &self.writer,
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .await;
        self.wait_for(&format!("the response to {method} (id {id})"), |message| {
            message.get("id") == Some(&json!(id)) && message.get("method").is_none()
        })
        .await
    }

    pub(crate) async fn execute_command(&mut self, command: &str) -> Value {
        self.request("workspace/executeCommand", json!({"command": command, "arguments": []})).await
    }

    pub(crate) async fn did_save(&mut self, uri: &str) {
        self.notify("textDocument/didSave", json!({"textDocument": {"uri": uri}})).await;
    }

    /// Everything received so far.
    pub(crate) fn received(&self) -> &[Value] {
        &self.received
    }

    /// The first message (received so far or arriving within the wait) that `matches`.
    pub(crate) async fn wait_for(
        &mut self,
        description: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(found) = self.received.iter().find(|message| matches(message)) {
            return found.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(message)) => {
                    self.received.push(message.clone());
                    if matches(&message) {
                        return message;
                    }
                }
                Ok(None) => panic!(
                    "the server closed the stream while waiting for {description}; it sent: {:#?}",
                    self.received
                ),
                Err(_) => panic!(
                    "no {description} within {WAIT:?}; the server sent: {:#?}",
                    self.received
                ),
            }
        }
    }

    /// The first notification `method` whose params match.
    pub(crate) async fn wait_for_notification(
        &mut self,
        method: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let message = self
            .wait_for(&format!("a {method} notification"), |message| {
                message.get("method").and_then(Value::as_str) == Some(method)
                    && message.get("id").is_none()
                    && matches(&message["params"])
            })
            .await;
        message["params"].clone()
    }

    /// Waits until `count` messages match; returns the last of them.
    pub(crate) async fn wait_for_count(
        &mut self,
        description: &str,
        count: usize,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found: Vec<&Value> =
                self.received.iter().filter(|message| matches(message)).collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(message)) => self.received.push(message),
                Ok(None) => panic!(
                    "the server closed the stream while waiting for {count} × {description}; it sent: {:#?}",
                    self.received
                ),
                Err(_) => panic!(
                    "not {count} × {description} within {WAIT:?}; the server sent: {:#?}",
                    self.received
                ),
            }
        }
    }

    /// Closes the stream to the server, as an editor that crashed.
    pub(crate) async fn close_input(&mut self) {
        let _ = self.writer.lock().await.shutdown().await;
    }

    /// The first `window/showMessage` or `window/logMessage` (per `method`) containing `text`.
    pub(crate) async fn wait_for_message(&mut self, method: &str, text: &str) -> Value {
        self.wait_for_notification(method, |params| {
            params["message"].as_str().is_some_and(|message| message.contains(text))
        })
        .await
    }

    /// All notifications `method` received so far.
    pub(crate) fn notifications(&self, method: &str) -> Vec<Value> {
        self.received
            .iter()
            .filter(|message| {
                message.get("method").and_then(Value::as_str) == Some(method)
                    && message.get("id").is_none()
            })
            .map(|message| message["params"].clone())
            .collect()
    }

    /// How the server ended, waiting for it at most `limit`.
    pub(crate) async fn server_end(&mut self, limit: Duration) -> ServeEnd {
        let server = self.server.take().expect("the server runs");
        tokio::time::timeout(limit, server)
            .await
            .unwrap_or_else(|_| panic!("the server did not stop within {limit:?}"))
            .expect("the server task did not panic")
    }

    /// `shutdown` then `exit`, as an editor that quits; returns how the server ended.
    pub(crate) async fn quit(&mut self) -> ServeEnd {
        let response = self.request("shutdown", Value::Null).await;
        assert!(response.get("error").is_none(), "shutdown failed: {response}");
        self.notify("exit", Value::Null).await;
        self.server_end(WAIT).await
    }
}
