//! Real editors driving the real `hotswap-lsp` binary: neovim 0.7.2 and 0.11.4 headless with the
//! Lua scenario `lsp/tests/scenarios/neovim.lua`, and Emacs with eglot running
//! `lsp/tests/scenarios/eglot.el`. The editors are found where `lsp/scripts/install-editors.sh`
//! puts them; a missing one fails the test with the command to run.
//!
//! The scenario is the same against the stand-in daemon (here) and the real daemon
//! (`real_daemon.rs`): open the handler, change its greeting and save (the app answers with the
//! new code), break it and save (a diagnostic appears, the old code keeps serving), roll back
//! through the language server, fix it and save (the diagnostic goes away).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::simulated_app::{SimulatedApp, SimulatedHttpServer};
use crate::stand_in_daemon::StandInDaemon;
use crate::test_workspace::TestWorkspace;

/// Where `install-editors.sh` links the editors.
pub(crate) fn editor_cache() -> PathBuf {
    match std::env::var_os("HOTSWAP_E2E_CACHE") {
        Some(cache) => PathBuf::from(cache),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/hotswap-e2e")
        }
    }
}

/// The editor `name` (`nvim-0.7.2`, `nvim-0.11.4`, `emacs`), or a failure saying how to get it.
pub(crate) fn installed_editor(name: &str) -> PathBuf {
    let path = editor_cache().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run lsp/scripts/install-editors.sh, which installs the editors the \
         end-to-end tests use and links them into {}",
        path.display(),
        editor_cache().join("bin").display()
    );
    path
}

/// What a scenario needs to know about the app under test.
pub(crate) struct ScenarioApp {
    pub(crate) root: PathBuf,
    /// The handler source the scenario edits.
    pub(crate) source_file: PathBuf,
    /// The app's HTTP address, `127.0.0.1:PORT`.
    pub(crate) http_address: String,
    /// Where the daemon's socket is found: `XDG_RUNTIME_DIR` for the editor and the server.
    pub(crate) runtime_dir: Option<PathBuf>,
    /// How long one step may wait (a build of the real daemon takes longer than the stand-in).
    pub(crate) step_timeout: Duration,
}

fn scenario_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(name)
}

/// Runs `command` (an editor on a scenario) with the scenario's environment; the scenario
/// writes its steps to a results file. Panics with the steps and the editor's output unless it
/// ends with `PASS`.
async fn run_scenario(mut command: Command, app: &ScenarioApp, description: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let results = scratch.path().join("results.txt");
    let port = app.http_address.rsplit(':').next().unwrap().to_owned();
    command
        .env("HOTSWAP_TEST_LSP", env!("CARGO_BIN_EXE_hotswap-lsp"))
        .env("HOTSWAP_TEST_ROOT", &app.root)
        .env("HOTSWAP_TEST_FILE", &app.source_file)
        .env("HOTSWAP_TEST_PORT", &port)
        .env("HOTSWAP_TEST_RESULTS", &results)
        .env("HOTSWAP_TEST_WAIT_MS", app.step_timeout.as_millis().to_string())
        .env("HOTSWAP_LSP_LOG", "debug")
        // The editors' own files (logs, state, shada) stay out of the user's home.
        .env("HOME", scratch.path())
        .env("XDG_CONFIG_HOME", scratch.path().join("config"))
        .env("XDG_DATA_HOME", scratch.path().join("data"))
        .env("XDG_STATE_HOME", scratch.path().join("state"))
        .env("XDG_CACHE_HOME", scratch.path().join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(runtime_dir) = &app.runtime_dir {
        command.env("XDG_RUNTIME_DIR", runtime_dir);
    }
    let mut child =
        command.spawn().unwrap_or_else(|error| panic!("cannot start {description}: {error}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // Seven steps, each bounded by the step timeout, plus start-up.
    let limit = app.step_timeout * 8 + Duration::from_secs(30);
    let finished = tokio::time::timeout(limit, async {
        let (status, _, _) =
            tokio::join!(child.wait(), stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        status
    })
    .await;
    let steps = std::fs::read_to_string(&results).unwrap_or_default();
    let output = format!(
        "steps:\n{steps}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    let status = match finished {
        Ok(status) => status.expect("wait for the editor"),
        Err(_) => {
            let _ = child.kill().await;
            panic!("{description} did not finish within {limit:?}\n{output}");
        }
    };
    assert!(
        status.success() && steps.lines().last() == Some("PASS"),
        "{description} failed ({status})\n{output}"
    );
    // Shown with `--nocapture`: what the editor went through.
    println!("{description}:\n{steps}");
}

/// Runs the neovim scenario with the neovim `version` (`0.7.2` or `0.11.4`).
pub(crate) async fn run_neovim_scenario(version: &str, app: &ScenarioApp) {
    let nvim = installed_editor(&format!("nvim-{version}"));
    let mut command = Command::new(&nvim);
    command
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", scenario_file("neovim.lua").display()))
        // The scenario quits by itself; if it cannot even start (a Lua error at load), this
        // exits with an error instead of leaving a headless editor waiting forever.
        .args(["-c", "cquit 3"])
        .current_dir(&app.root);
    run_scenario(command, app, &format!("neovim {version}")).await;
}

/// Runs the Emacs scenario (eglot, Debian's Emacs).
pub(crate) async fn run_eglot_scenario(app: &ScenarioApp) {
    let emacs = installed_editor("emacs");
    let mut command = Command::new(&emacs);
    command.args(["--batch", "-Q", "-l"]).arg(scenario_file("eglot.el")).current_dir(&app.root);
    run_scenario(command, app, "emacs with eglot").await;
}

/// `GET /` over a plain TCP connection; the response body.
pub(crate) async fn http_get_body(address: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response).into_owned();
    Ok(response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// The stand-in daemon with a simulated app for `workspace`.
async fn simulated_app(workspace: &TestWorkspace) -> (SimulatedHttpServer, StandInDaemon) {
    let http = SimulatedHttpServer::start("hello from hotswap").await;
    let behavior = Arc::new(SimulatedApp::new(workspace.path("src/lib.rs"), &http));
    let daemon = StandInDaemon::start(workspace.endpoint(), &http.address.to_string(), behavior);
    (http, daemon)
}

fn stand_in_scenario_app(workspace: &TestWorkspace, http: &SimulatedHttpServer) -> ScenarioApp {
    ScenarioApp {
        root: workspace.root.clone(),
        source_file: workspace.path("src/lib.rs"),
        http_address: http.address.to_string(),
        runtime_dir: Some(workspace.runtime_dir.clone()),
        step_timeout: Duration::from_secs(20),
    }
}

/// What the stand-in daemon must have seen after the whole scenario.
async fn assert_the_daemon_saw_the_scenario(
    daemon: &StandInDaemon,
    http: &SimulatedHttpServer,
    greeting: &str,
) {
    assert!(daemon.count("didSave") >= 3, "three saves: {:?}", daemon.received());
    assert_eq!(daemon.count("rollback"), 1, "one rollback: {:?}", daemon.received());
    let body = http_get_body(&http.address.to_string()).await.unwrap();
    assert_eq!(body, greeting, "the fixed code serves at the end");
}

#[tokio::test]
async fn neovim_0_7_2_saves_sees_diagnostics_and_rolls_back_against_the_stand_in_daemon() {
    let workspace = TestWorkspace::new();
    let (http, daemon) = simulated_app(&workspace).await;
    run_neovim_scenario("0.7.2", &stand_in_scenario_app(&workspace, &http)).await;
    assert_the_daemon_saw_the_scenario(&daemon, &http, "hello from neovim").await;
}

#[tokio::test]
async fn neovim_0_11_4_saves_sees_diagnostics_and_rolls_back_against_the_stand_in_daemon() {
    let workspace = TestWorkspace::new();
    let (http, daemon) = simulated_app(&workspace).await;
    run_neovim_scenario("0.11.4", &stand_in_scenario_app(&workspace, &http)).await;
    assert_the_daemon_saw_the_scenario(&daemon, &http, "hello from neovim").await;
}

#[tokio::test]
async fn emacs_eglot_saves_sees_diagnostics_and_rolls_back_against_the_stand_in_daemon() {
    let workspace = TestWorkspace::new();
    let (http, daemon) = simulated_app(&workspace).await;
    run_eglot_scenario(&stand_in_scenario_app(&workspace, &http)).await;
    assert_the_daemon_saw_the_scenario(&daemon, &http, "hello from emacs").await;
}
