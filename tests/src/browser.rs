//! Headless Chromium for the tests and the benchmark, driven by playwright-core through
//! `tests/browser/driver.mjs` (a Node process that takes one JSON command per line). Chromium and
//! playwright-core come from `scripts/browser-e2e-setup.sh`, cached in `~/.cache/hotswap-e2e`
//! (or `$HOTSWAP_E2E_CACHE`); when they are missing, [`Browser::launch`] fails saying so.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::artifacts::repository_root;

/// Keep in step with `scripts/browser-e2e-setup.sh`.
pub const PLAYWRIGHT_CORE_VERSION: &str = "1.64.1";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one driver command may take, beyond what it waits for itself.
const COMMAND_MARGIN: Duration = Duration::from_secs(60);

/// Where the end-to-end tools are cached.
pub fn e2e_cache() -> PathBuf {
    match std::env::var_os("HOTSWAP_E2E_CACHE") {
        Some(cache) => PathBuf::from(cache),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/hotswap-e2e")
        }
    }
}

/// The `node_modules` folder that holds playwright-core.
fn playwright_modules() -> PathBuf {
    e2e_cache().join(format!("playwright-core-{PLAYWRIGHT_CORE_VERSION}")).join("node_modules")
}

/// A console message of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleMessage {
    pub kind: String,
    pub text: String,
}

/// A running Chromium; quits when dropped (the driver ends with its standard input).
#[derive(Debug)]
pub struct Browser {
    child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts the driver and Chromium (headless, a fresh profile).
    pub async fn launch() -> Result<Browser, String> {
        let modules = playwright_modules();
        let missing: Vec<String> = [modules.join("playwright-core"), PathBuf::from(CHROMIUM)]
            .into_iter()
            .filter(|path| !path.exists())
            .map(|path| path.display().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the browser tests need Chromium and playwright-core {PLAYWRIGHT_CORE_VERSION}; missing: {}. \
                 Run scripts/browser-e2e-setup.sh once (it caches them in {})",
                missing.join(", "),
                e2e_cache().display()
            ));
        }
        let mut child =
            Command::new(std::env::var_os("HOTSWAP_NODE").unwrap_or_else(|| "node".into()))
                .arg(repository_root().join("tests/browser/driver.mjs"))
                .env("NODE_PATH", &modules)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|error| format!("cannot run node (needed to drive Chromium): {error}"))?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped")).lines();
        let profile = tempfile::tempdir().map_err(|error| error.to_string())?;
        let mut browser = Browser { child, input, output, next_id: 0, _profile: profile };
        let profile = browser._profile.path().display().to_string();
        browser.command("launch", json!({ "userDataDir": profile }), Duration::ZERO).await?;
        Ok(browser)
    }

    async fn command(
        &mut self,
        op: &str,
        arguments: Value,
        waits: Duration,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = arguments;
        message["id"] = json!(id);
        message["op"] = json!(op);
        let mut line = message.to_string();
        line.push('\n');
        self.input
            .write_all(line.as_bytes())
            .await
            .map_err(|error| format!("driver gone: {error}"))?;
        let answer = tokio::time::timeout(waits + COMMAND_MARGIN, self.output.next_line())
            .await
            .map_err(|_| format!("the browser driver did not answer {op} in time"))?
            .map_err(|error| error.to_string())?
            .ok_or_else(|| "the browser driver ended".to_owned())?;
        let answer: Value =
            serde_json::from_str(&answer).map_err(|error| format!("{error}: {answer}"))?;
        assert_eq!(answer["id"], json!(id), "answers come in order");
        if answer["ok"] == json!(true) {
            Ok(answer["result"].clone())
        } else {
            Err(format!("{op}: {}", answer["error"].as_str().unwrap_or("failed")))
        }
    }

    /// Opens `url` in a new tab named `page` and waits for it to load.
    pub async fn open(&mut self, page: &str, url: &str) -> Result<(), String> {
        self.command("open", json!({ "page": page, "url": url }), Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// Runs a JavaScript expression in the page and returns its value.
    pub async fn evaluate(&mut self, page: &str, expression: &str) -> Result<Value, String> {
        self.command("evaluate", json!({ "page": page, "expression": expression }), Duration::ZERO)
            .await
    }

    /// Polls `expression` in the page every 10 ms (through reloads) until it is truthy, and
    /// returns that value.
    pub async fn wait_for(
        &mut self,
        page: &str,
        expression: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let arguments = json!({ "page": page, "expression": expression, "timeoutMs": timeout.as_millis() as u64 });
        self.command("waitFor", arguments, timeout).await
    }

    /// Everything the page wrote to its console (and uncaught errors, as `pageerror`).
    pub async fn console(&mut self, page: &str) -> Result<Vec<ConsoleMessage>, String> {
        let messages = self.command("console", json!({ "page": page }), Duration::ZERO).await?;
        Ok(messages
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|message| ConsoleMessage {
                kind: message["type"].as_str().unwrap_or_default().to_owned(),
                text: message["text"].as_str().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// How many times the page has loaded (1 after `open`; each reload adds one).
    pub async fn loads(&mut self, page: &str) -> Result<u64, String> {
        Ok(self
            .command("loads", json!({ "page": page }), Duration::ZERO)
            .await?
            .as_u64()
            .unwrap_or(0))
    }

    pub async fn screenshot(&mut self, page: &str, path: &std::path::Path) -> Result<(), String> {
        let arguments = json!({ "page": page, "path": path.display().to_string() });
        self.command("screenshot", arguments, Duration::from_secs(30)).await.map(drop)
    }

    pub async fn close(&mut self, page: &str) -> Result<(), String> {
        self.command("close", json!({ "page": page }), Duration::ZERO).await.map(drop)
    }

    /// Closes Chromium and waits for the driver to end.
    pub async fn quit(mut self) {
        let _ = self.command("quit", json!({}), Duration::ZERO).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// A JavaScript expression: when the current document first painted (`first-contentful-paint`),
/// in milliseconds since the Unix epoch by the page's clock, or now when it has not painted yet.
/// Polling only notices a reloaded page some milliseconds after it shows; the paint entry says
/// when it did.
pub const PAINTED_AT: &str = "(() => { const paint = performance.getEntriesByName('first-contentful-paint')[0]; return paint ? performance.timeOrigin + paint.startTime : Date.now(); })()";

/// Milliseconds since the Unix epoch: the clock `Date.now()` reads in the page, on this machine.
pub fn epoch_millis() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64() * 1000.0)
}
