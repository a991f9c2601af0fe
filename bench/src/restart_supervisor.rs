//! Relink-and-restart, the way cargo-watch, bacon and systemfd users work: after a change, build
//! the app's binary, stop the running server, start the new one. Two styles:
//!
//! - [`RestartStyle::KillAndRebind`]: SIGTERM ends the server at once (most servers install no
//!   handler), and the new process binds the port again; connections meanwhile are refused.
//! - [`RestartStyle::SocketHandoffGraceful`]: like `systemfd --no-pid -s http::PORT -- cargo watch
//!   -x run`, the supervisor owns the listening socket and passes it to each server process
//!   (`LISTEN_FDS`), so connections wait in the backlog instead of being refused; and the server
//!   drains on SIGTERM (finishes requests in flight, closes idle connections). The best a restart
//!   can do.
//!
//! The benchmark also runs the kill-and-rebind server the way `cargo watch -x run` and bacon's
//! `kill_then_restart` do by default: stop the server first, then build and start (the server is
//! down for the whole build). No watcher debounce is added in any style.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartStyle {
    KillAndRebind,
    SocketHandoffGraceful,
}

impl RestartStyle {
    pub(crate) fn label(self) -> &'static str {
        match self {
            RestartStyle::KillAndRebind => "relink + restart (kill, rebind)",
            RestartStyle::SocketHandoffGraceful => "relink + restart (socket handoff, graceful)",
        }
    }
}

/// One app served by its standalone binary, restarted on demand.
#[derive(Debug)]
pub(crate) struct StandaloneServer {
    binary: PathBuf,
    pub(crate) address: SocketAddr,
    /// The socket passed to every process (socket handoff only).
    listener: Option<std::net::TcpListener>,
    child: Option<tokio::process::Child>,
    log_path: PathBuf,
}

impl StandaloneServer {
    /// Starts the server and waits until it accepts connections.
    pub(crate) async fn start(
        binary: &Path,
        style: RestartStyle,
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        let (address, listener) = match style {
            RestartStyle::KillAndRebind => {
                // A free port, which each process then binds itself.
                let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
                (probe.local_addr()?, None)
            }
            RestartStyle::SocketHandoffGraceful => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                (listener.local_addr()?, Some(listener))
            }
        };
        let mut server = Self {
            binary: binary.to_path_buf(),
            address,
            listener,
            child: None,
            log_path: log_path.to_path_buf(),
        };
        server.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(address).await.is_err() {
            if Instant::now() > deadline {
                bail!("{} does not accept connections on {address}", binary.display());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(server)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// Starts the binary (again) without waiting for it to listen.
    pub(crate) fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path)?;
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .kill_on_drop(true);
        match &self.listener {
            None => {
                command.env("HOTSWAP_BENCH_LISTEN", self.address.to_string());
            }
            Some(listener) => {
                use std::os::fd::AsRawFd;
                let descriptor = listener.as_raw_fd();
                command.env("LISTEN_FDS", "1").env("HOTSWAP_BENCH_GRACEFUL", "1");
                // SAFETY: between fork and exec the closure only calls async-signal-safe
                // functions (dup2, fcntl) on a descriptor that stays open in the parent.
                unsafe {
                    command.pre_exec(move || {
                        let result = if descriptor == 3 {
                            // Already in place: only let it survive exec.
                            libc::fcntl(3, libc::F_SETFD, 0)
                        } else {
                            libc::dup2(descriptor, 3)
                        };
                        if result == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
                    });
                }
            }
        }
        let child =
            command.spawn().with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the running process with SIGTERM (waiting for it to exit) and starts the binary
    /// again. Does not wait for the new process to listen: clients find out.
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.terminate().await?;
        self.spawn()
    }

    /// Stops the running process with SIGTERM and waits for it to exit.
    pub(crate) async fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        if let Some(pid) = child.id() {
            // SAFETY: kill only sends a signal to our own child process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
            child.kill().await?;
        }
        Ok(())
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.terminate().await
    }
}
