//! The swap engine (`hotswap_daemon::engine`, the daemon's own) in a process of its own, driven
//! line by line over stdin/stdout, so that swaps can be timed stage by stage and repeated a
//! thousand times without a build each, and its memory read from `/proc` without the
//! benchmark's own allocations in it.
//!
//! The worker is this binary run as `hotswap-bench engine-worker GENERATIONS_DIR`. Commands, one
//! per line: `swap PATH`, `memory`, `wait-retired N`, `kill-current` (SIGKILL to the current
//! generation's process, as any crash ends it), `quit`; each answer is one JSON line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hotswap_daemon::engine::events::EventSink;
use hotswap_daemon::engine::{Engine, EngineConfig};
use hotswap_protocol::events::SwapStages;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The worker's answer to `swap`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SwapAnswer {
    pub(crate) ok: bool,
    #[serde(default)]
    pub(crate) generation: u64,
    #[serde(default)]
    pub(crate) swap_ms: f64,
    #[serde(default)]
    pub(crate) stages: SwapStages,
    #[serde(default)]
    pub(crate) message: String,
}

/// The worker's answer to `memory`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemoryAnswer {
    /// The engine's process and the current generation's, together.
    pub(crate) resident_kib: u64,
    /// Host processes alive: the current generation's, the spare, and any still draining.
    pub(crate) host_processes: usize,
    pub(crate) threads: u64,
    pub(crate) ended_generations: u64,
    pub(crate) crashes: u64,
}

/// Runs the worker until `quit` or the end of stdin.
pub(crate) async fn run_worker(generations_dir: PathBuf) -> anyhow::Result<()> {
    // The engine's warnings and errors (a crash, a refused restart) reach the benchmark's stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_ansi(false)
        .try_init();
    // The daemon's defaults (see `hotswap serve`), with the examples' smoke request.
    let mut config = EngineConfig::new(generations_dir.clone())?;
    config.smoke_path = Some("/health".to_owned());
    let engine = Engine::new(config, EventSink::discard())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        }
    });
    let mut stdout = tokio::io::stdout();
    let say = |value: serde_json::Value| format!("{value}\n");
    stdout.write_all(say(json!({ "listening": address.to_string() })).as_bytes()).await?;
    stdout.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let (command, argument) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match command {
            "swap" => match engine.swap(Path::new(argument)).await {
                Ok(report) => serde_json::to_value(SwapAnswer {
                    ok: true,
                    generation: report.generation,
                    swap_ms: report.swap_ms,
                    stages: report.stages,
                    message: String::new(),
                })?,
                Err(failure) => serde_json::to_value(SwapAnswer {
                    ok: false,
                    generation: failure.generation,
                    swap_ms: 0.0,
                    stages: SwapStages::default(),
                    message: failure.to_string(),
                })?,
            },
            "memory" => serde_json::to_value(memory_answer(&engine, &generations_dir))?,
            "wait-retired" => {
                let wanted: u64 = argument.trim().parse().context("wait-retired N")?;
                let deadline = Instant::now() + Duration::from_secs(300);
                loop {
                    let status = engine.status();
                    if status.ended_generations + status.crashes >= wanted
                        || Instant::now() > deadline
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                serde_json::to_value(memory_answer(&engine, &generations_dir))?
            }
            "kill-current" => {
                let status = engine.status();
                match status.generations.first() {
                    Some(current) => {
                        // SAFETY: kill(2) on a host process this engine started.
                        unsafe { libc::kill(current.pid as i32, libc::SIGKILL) };
                        json!({ "ok": true, "generation": current.generation, "pid": current.pid })
                    }
                    None => json!({ "ok": false, "message": "no generation serves" }),
                }
            }
            "quit" => break,
            other => json!({ "ok": false, "message": format!("unknown command {other:?}") }),
        };
        stdout.write_all(say(answer).as_bytes()).await?;
        stdout.flush().await?;
    }
    let _ = stop.send(());
    server.await??;
    engine.shutdown().await;
    let answer = memory_answer(&engine, &generations_dir);
    stdout.write_all(say(serde_json::to_value(answer)?).as_bytes()).await?;
    stdout.flush().await?;
    Ok(())
}

fn memory_answer(engine: &Engine, _generations_dir: &Path) -> MemoryAnswer {
    let sample = crate::machine::ProcessSample::read(std::process::id()).unwrap_or_default();
    let status = engine.status();
    let current = status.generations.first().map(|generation| generation.pid);
    let current_kib = current
        .and_then(crate::machine::ProcessSample::read)
        .map_or(0, |sample| sample.resident_kib);
    MemoryAnswer {
        resident_kib: sample.resident_kib + current_kib,
        host_processes: crate::machine::children_of(std::process::id()).len(),
        threads: sample.threads,
        ended_generations: status.ended_generations,
        crashes: status.crashes,
    }
}

/// The benchmark's side: a running worker.
#[derive(Debug)]
pub(crate) struct EngineWorker {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pub(crate) address: SocketAddr,
}

impl EngineWorker {
    pub(crate) async fn start(generations_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(generations_dir)?;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("engine-worker")
            .arg(generations_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        let first = stdout.next_line().await?.context("the engine worker exited at once")?;
        let first: serde_json::Value = serde_json::from_str(&first)?;
        let address = first["listening"].as_str().context("the worker's address")?.parse()?;
        Ok(Self { child, stdin, stdout, address })
    }

    async fn command(&mut self, line: &str) -> anyhow::Result<String> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        match self.stdout.next_line().await? {
            Some(answer) => Ok(answer),
            None => bail!("the engine worker exited during `{line}`"),
        }
    }

    pub(crate) async fn swap(&mut self, library: &Path) -> anyhow::Result<SwapAnswer> {
        let answer: SwapAnswer =
            serde_json::from_str(&self.command(&format!("swap {}", library.display())).await?)?;
        if !answer.ok {
            bail!("swap of {} failed: {}", library.display(), answer.message);
        }
        Ok(answer)
    }

    pub(crate) async fn memory(&mut self) -> anyhow::Result<MemoryAnswer> {
        Ok(serde_json::from_str(&self.command("memory").await?)?)
    }

    /// Kills the current generation's process; returns the number of the generation killed.
    pub(crate) async fn kill_current(&mut self) -> anyhow::Result<u64> {
        let answer: serde_json::Value = serde_json::from_str(&self.command("kill-current").await?)?;
        anyhow::ensure!(answer["ok"] == true, "kill-current: {answer}");
        answer["generation"].as_u64().context("the killed generation")
    }

    /// Waits until `count` generations were retired (ended after draining, or crashed).
    pub(crate) async fn wait_retired(&mut self, count: u64) -> anyhow::Result<MemoryAnswer> {
        Ok(serde_json::from_str(&self.command(&format!("wait-retired {count}")).await?)?)
    }

    /// Shuts the engine down and returns its memory after every generation ended.
    pub(crate) async fn quit(mut self) -> anyhow::Result<MemoryAnswer> {
        self.stdin.write_all(b"quit\n").await?;
        self.stdin.flush().await?;
        let last = self.stdout.next_line().await?.context("the worker's last answer")?;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        Ok(serde_json::from_str(&last)?)
    }
}
