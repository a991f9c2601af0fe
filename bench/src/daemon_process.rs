//! A real `hotswap serve` for one bench app, driven over its socket as an editor plugin drives it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hotswap_protocol::endpoint::Endpoint;
use hotswap_protocol::messages::{
    DidSave, DidSaveParams, NoParams, Reload, ReloadOutcome, Shutdown, Status, StatusResult,
};
use hotswap_protocol::{Client, ClientError};

/// The first build compiles every dependency of the app.
const FIRST_BUILD_TIMEOUT: Duration = Duration::from_secs(1200);

/// A running `hotswap serve`, killed if dropped.
#[derive(Debug)]
pub(crate) struct DaemonProcess {
    child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) address: SocketAddr,
    client: Client,
}

impl DaemonProcess {
    /// Starts `hotswap serve` in `app_directory` and waits until its first generation serves.
    pub(crate) async fn start(
        hotswap: &Path,
        app_directory: &Path,
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log_path)?;
        let mut child = tokio::process::Command::new(hotswap)
            .arg("serve")
            .current_dir(app_directory)
            // The app's target directory is in its hotswap.toml; a `CARGO_TARGET_DIR` of the
            // benchmark's own build would make cargo metadata name that one, which holds the
            // app, and the daemon would ignore every save as a build output.
            .env_remove("CARGO_TARGET_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} serve", hotswap.display()))?;
        let pid = child.id().context("hotswap serve has a pid")?;
        let endpoint = Endpoint::for_workspace(app_directory)?;
        let read_log = || std::fs::read_to_string(log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(120);
        let client = loop {
            match Client::connect_and_initialize(&endpoint, "hotswap-bench").await {
                Ok((client, _)) => break client,
                Err(ClientError::NoDaemon { .. }) if Instant::now() < deadline => {
                    if let Some(status) = child.try_wait()? {
                        bail!("hotswap serve exited ({status}) before listening:\n{}", read_log());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => bail!("cannot connect to hotswap serve: {error}\n{}", read_log()),
            }
        };
        let deadline = Instant::now() + FIRST_BUILD_TIMEOUT;
        let status = loop {
            let status = client.request::<Status>(NoParams {}).await?;
            if status.current_generation.is_some() {
                break status;
            }
            if let Some(exit) = child.try_wait()? {
                bail!("hotswap serve exited ({exit}):\n{}", read_log());
            }
            if Instant::now() > deadline {
                bail!("no generation after {FIRST_BUILD_TIMEOUT:?}:\n{}", read_log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let address = status.listen_address.parse().context("the daemon's listen address")?;
        let daemon = Self { child, pid, address, client };
        daemon.wait_for_shared_deps().await?;
        Ok(daemon)
    }

    /// Waits until the shared library of the handler's dependencies, which the daemon builds in
    /// the background after a cargo build compiled the handler, is ready (or known not to be
    /// used): the steady state a user's saves meet after the first minute.
    pub(crate) async fn wait_for_shared_deps(&self) -> anyhow::Result<()> {
        use hotswap_protocol::messages::SharedDepsStatus;
        let deadline = Instant::now() + FIRST_BUILD_TIMEOUT;
        loop {
            let status = self.client.request::<Status>(NoParams {}).await?;
            match status.shared_deps {
                None | Some(SharedDepsStatus::Ready { .. }) => return Ok(()),
                // Cargo found the handler built at start-up: the library comes after the first
                // save that cargo builds (the warm-up round waits for it then).
                Some(SharedDepsStatus::Off { reason })
                    if reason.contains("no cargo build has compiled") =>
                {
                    return Ok(());
                }
                Some(SharedDepsStatus::Off { reason }) => {
                    eprintln!("hotswap-bench: no shared dependency library: {reason}");
                    return Ok(());
                }
                Some(_) if Instant::now() > deadline => {
                    bail!(
                        "the shared dependency library is not ready after {FIRST_BUILD_TIMEOUT:?}"
                    )
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Sends an editor's save message for `path`; the daemon builds after its debounce.
    pub(crate) async fn did_save(&self, path: &Path) -> anyhow::Result<()> {
        self.did_save_all(&[path]).await
    }

    /// A `didSave` of several files at once.
    pub(crate) async fn did_save_all(&self, paths: &[&Path]) -> anyhow::Result<()> {
        let paths = paths.iter().map(|path| path.to_path_buf()).collect();
        let result = self.client.request::<DidSave>(DidSaveParams { paths }).await?;
        if !result.ignored.is_empty() {
            bail!("the daemon ignored saves: {:?}", result.ignored);
        }
        Ok(())
    }

    /// Sends the save of an asset: the daemon must tell pages at once, without a build.
    pub(crate) async fn did_save_asset(&self, path: &Path) -> anyhow::Result<()> {
        let result = self
            .client
            .request::<DidSave>(DidSaveParams { paths: vec![path.to_path_buf()] })
            .await?;
        let asset = result
            .ignored
            .iter()
            .any(|ignored| ignored.reason == hotswap_daemon::browser::ASSET_SAVED);
        if !result.accepted.is_empty() || !asset {
            bail!("the daemon did not take {} for an asset: {result:?}", path.display());
        }
        Ok(())
    }

    /// `hotswap reload`: build and swap now; answers when the new generation serves.
    pub(crate) async fn reload(&self) -> anyhow::Result<ReloadOutcome> {
        Ok(self.client.request::<Reload>(Default::default()).await?)
    }

    pub(crate) async fn status(&self) -> anyhow::Result<StatusResult> {
        Ok(self.client.request::<Status>(NoParams {}).await?)
    }

    /// Asks the daemon to stop and waits for it (killing it after 30 s).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.client.request::<Shutdown>(NoParams {}).await;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}
