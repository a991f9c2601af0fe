//! The real binaries, built once per test process, and a running `hotswap serve` to drive.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hotswap_protocol::endpoint::{Endpoint, EndpointEnvironment};
use hotswap_protocol::events::Event;
use hotswap_protocol::messages::{NoParams, Status, StatusResult, Subscribe};
use hotswap_protocol::{Client, ClientError};

use crate::artifacts::{cargo_target_dir, repository_root, shared_handler_target_dir};

/// How long the first build of a test app may take (it may compile every dependency).
pub const FIRST_BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Builds the workspace's binaries once per test process and returns the path of `name`.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "hotswap-daemon", "--bin", "hotswap"])
            .current_dir(repository_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the hotswap binary failed");
    });
    let path = cargo_target_dir().join("debug").join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// `hotswap` with `arguments`, run to completion in `directory`, with the environment of
/// `runtime_dir` (where sockets live).
pub fn hotswap(directory: &Path, runtime_dir: &Path, arguments: &[&str]) -> Output {
    Command::new(binary("hotswap"))
        .args(arguments)
        .current_dir(directory)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .stdin(Stdio::null())
        .output()
        .expect("hotswap runs")
}

/// A scaffolded app in a temporary directory, with a private runtime directory for its socket.
#[derive(Debug)]
pub struct App {
    pub directory: PathBuf,
    pub runtime_dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl App {
    /// `hotswap new` in a fresh directory; `name` must be unique across tests (it names the
    /// library in the shared target directory).
    pub fn scaffold(name: &str) -> App {
        let temp = tempfile::tempdir().unwrap();
        let runtime_dir = temp.path().join("runtime");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        let directory = temp.path().join(name);
        let target = shared_handler_target_dir();
        let output = hotswap(
            temp.path(),
            &runtime_dir,
            &["new", name, "--listen", "127.0.0.1:0", "--target-dir", target.to_str().unwrap()],
        );
        assert!(
            output.status.success(),
            "hotswap new failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        App { directory, runtime_dir, _temp: temp }
    }

    /// An app that is already in `directory` (created by the test), with a private runtime
    /// directory; `temp` is kept alive with it.
    pub fn existing(directory: PathBuf, temp: tempfile::TempDir) -> App {
        let runtime_dir = temp.path().join("runtime");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        App { directory, runtime_dir, _temp: temp }
    }

    /// A copy of the handler crate `crate_dir` (of `examples/` or `tests/fixtures/`, with the
    /// lock file of that workspace) as an app of its own named `name` (unique across tests, as
    /// for [`App::scaffold`]). Its `hotswap.toml` names the package, an unused port and the
    /// shared target directory, then has `sections` (`[swap]`, `[browser]`; not `[server]` or
    /// `[build]`).
    pub fn copy_of_crate(crate_dir: &Path, name: &str, sections: &str) -> App {
        let temp = tempfile::tempdir().unwrap();
        let runtime_dir = temp.path().join("runtime");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        let directory = temp.path().join(name);
        copy_directory(crate_dir, &directory);
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        let package = manifest
            .lines()
            .find_map(|line| line.strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .expect("the crate has a name");
        let handler = repository_root().join("handler");
        let manifest = manifest
            .replacen(&format!("name = \"{package}\""), &format!("name = \"{name}\""), 1)
            .replace("version.workspace = true", "version = \"0.1.0\"")
            .replace("edition.workspace = true", "edition = \"2024\"")
            .replace("publish.workspace = true", "publish = false")
            .replace(
                "hotswap-handler.workspace = true",
                &format!("hotswap-handler = {{ path = {:?} }}", handler.display().to_string()),
            )
            .replace(
                "hotswap-handler = { workspace = true,",
                &format!("hotswap-handler = {{ path = {:?},", handler.display().to_string()),
            )
            .replace("\"../../../handler\"", &format!("{:?}", handler.display().to_string()));
        std::fs::write(
            directory.join("Cargo.toml"),
            format!(
                "{manifest}\n[workspace]\n\n[profile.dev]\ndebug = \"line-tables-only\"\n\n[profile.dev.package.\"*\"]\ndebug = false\n"
            ),
        )
        .unwrap();
        let workspace_lock = crate_dir.parent().expect("a workspace member").join("Cargo.lock");
        std::fs::copy(workspace_lock, directory.join("Cargo.lock")).unwrap();
        let target = shared_handler_target_dir();
        std::fs::write(
            directory.join("hotswap.toml"),
            format!(
                "package = \"{name}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[build]\ntarget_dir = {:?}\n\n{sections}\n",
                target.display().to_string()
            ),
        )
        .unwrap();
        App { directory, runtime_dir, _temp: temp }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.directory.join(relative)
    }

    /// Replaces `old` with `new` in `src/lib.rs` (writing a new file, as editors do).
    pub fn edit_library(&self, old: &str, new: &str) {
        let path = self.path("src/lib.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(old), "src/lib.rs does not contain {old:?}");
        std::fs::write(&path, text.replacen(old, new, 1)).unwrap();
    }

    /// Runs a `hotswap` command in the app's directory.
    pub fn hotswap(&self, arguments: &[&str]) -> Output {
        hotswap(&self.directory, &self.runtime_dir, arguments)
    }

    pub fn endpoint(&self) -> Endpoint {
        let environment = EndpointEnvironment {
            runtime_dir: Some(self.runtime_dir.clone()),
            temp_dir: std::env::temp_dir(),
            uid: hotswap_protocol::endpoint::current_uid(),
        };
        Endpoint::derive(&self.directory.canonicalize().unwrap(), &environment)
    }

    /// Starts `hotswap serve` and waits until its socket answers.
    pub async fn serve(&self) -> Daemon {
        self.serve_with(&[]).await
    }

    /// Starts `hotswap serve ARGUMENTS...` and waits until its socket answers.
    pub async fn serve_with(&self, arguments: &[&str]) -> Daemon {
        self.serve_from(&self.directory, arguments, &[]).await
    }

    /// Starts `hotswap serve ARGUMENTS...` in `working_directory` (`-w` names the app when that
    /// is not its directory) with `environment` added, and waits until its socket answers.
    pub async fn serve_from(
        &self,
        working_directory: &Path,
        arguments: &[&str],
        environment: &[(&str, &str)],
    ) -> Daemon {
        let log_path = self.runtime_dir.join(format!("serve-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary("hotswap"))
            .arg("serve")
            .args(arguments)
            .current_dir(working_directory)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            // Builds on the shared dependency library once it is ready, which takes a minute in
            // the background: off, but where a test says otherwise, so that what builds a save
            // does not depend on how fast that was.
            .env("HOTSWAP_SHARED_DEPS", "0")
            .envs(environment.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("hotswap serve starts");
        let mut daemon =
            Daemon { child: Some(child), endpoint: self.endpoint(), log_path, address: None };
        let client = daemon.wait_for_socket().await;
        let initialized = client.initialize("hotswap-tests").await.unwrap();
        daemon.address = Some(initialized.listen_address.parse().unwrap());
        daemon
    }
}

/// A running `hotswap serve`; killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    pub endpoint: Endpoint,
    pub log_path: PathBuf,
    address: Option<SocketAddr>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Its builds and hosts run in process groups of their own, which a kill of the
            // daemon leaves running: a cargo left behind would go on in a directory the test
            // is about to delete.
            for (pid, _) in crate::in_process::children_of(child.id()) {
                // SAFETY: killpg only sends a signal to that child's own process group.
                unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The HTTP address it serves.
    pub fn address(&self) -> SocketAddr {
        self.address.expect("initialized")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn wait_for_socket(&mut self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Client::connect(&self.endpoint).await {
                Ok(client) => return client,
                Err(ClientError::NoDaemon { .. }) if Instant::now() < deadline => {
                    if let Some(status) =
                        self.child.as_mut().and_then(|child| child.try_wait().unwrap())
                    {
                        panic!("hotswap serve exited ({status}) before listening:\n{}", self.log());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("cannot connect to hotswap serve: {error}\n{}", self.log()),
            }
        }
    }

    /// A new initialized client.
    pub async fn client(&self) -> Client {
        Client::connect_and_initialize(&self.endpoint, "hotswap-tests").await.unwrap().0
    }

    /// A client subscribed to events.
    pub async fn subscriber(&self) -> Client {
        let client = self.client().await;
        client.request::<Subscribe>(NoParams {}).await.unwrap();
        client
    }

    pub async fn status(&self) -> StatusResult {
        self.client().await.request::<Status>(NoParams {}).await.unwrap()
    }

    /// Waits until a generation serves (the first build can take minutes).
    pub async fn wait_for_generation(&self, generation: u64) {
        let deadline = Instant::now() + FIRST_BUILD_TIMEOUT;
        loop {
            let status = self.status().await;
            if status.current_generation >= Some(generation) {
                return;
            }
            if let Some(build) = &status.last_build
                && build.outcome == hotswap_protocol::events::BuildOutcome::Failed
                && status.current_generation.is_none()
            {
                panic!("the first build failed:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no generation {generation} after {FIRST_BUILD_TIMEOUT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "hotswap serve did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits for the first event `matches` accepts.
pub async fn wait_for_event(
    client: &mut Client,
    timeout: Duration,
    mut matches: impl FnMut(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(event)) if matches(&event) => return event,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the daemon closed the connection"),
            Err(_) => panic!("no matching event within {timeout:?}"),
        }
    }
}

/// Copies `from` into `to`, leaving out build output (`target/`).
fn copy_directory(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let destination = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_directory(&entry.path(), &destination);
        } else {
            std::fs::copy(entry.path(), destination).unwrap();
        }
    }
}
