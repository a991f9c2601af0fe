//! The editor scenarios against the real daemon (cargo feature `real-daemon-tests`): `hotswap new`
//! scaffolds an app, `hotswap serve` builds and serves it, and neovim 0.7.2, neovim 0.11.4 and
//! Emacs with eglot edit it through the real `hotswap-lsp`: save → the app answers with the new
//! code; break it → the diagnostic appears and the old code keeps serving; roll back; fix it.
//!
//! `HOTSWAP_BIN` must name the `hotswap` binary (e.g. `target/debug/hotswap`); without it the
//! test fails rather than passing without having run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hotswap_protocol::endpoint::{EndpointEnvironment, current_uid};
use hotswap_protocol::events::{BuildOutcome, Event};
use hotswap_protocol::messages::{NoParams, Reload, ReloadOutcome, Status, Subscribe};
use hotswap_protocol::{Client, Endpoint};
use tokio::process::{Child, Command};

use crate::editors::{ScenarioApp, http_get_body, run_eglot_scenario, run_neovim_scenario};

/// The first build compiles the app's dependencies: minutes on a small machine.
const FIRST_BUILD: Duration = Duration::from_secs(600);

fn hotswap_binary() -> PathBuf {
    let Some(path) = std::env::var_os("HOTSWAP_BIN") else {
        panic!(
            "HOTSWAP_BIN is not set: these tests need the real daemon. Build it \
             (`cargo build -p hotswap-daemon`) and run \
             `HOTSWAP_BIN=$PWD/target/debug/hotswap cargo test -p hotswap-lsp --features real-daemon-tests`"
        );
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "HOTSWAP_BIN={} is not a file", path.display());
    path
}

/// A scaffolded app served by the real daemon, with its own socket directory.
struct ServedApp {
    _temp: tempfile::TempDir,
    root: PathBuf,
    runtime_dir: PathBuf,
    http_address: String,
    daemon_log: PathBuf,
    daemon: Child,
    scaffolded_source: String,
}

impl ServedApp {
    async fn start(hotswap: &Path) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let base = temp.path().canonicalize().unwrap();
        let runtime_dir = base.join("runtime");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        let root = base.join("app");
        let scaffold = Command::new(hotswap)
            .arg("new")
            .arg(&root)
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .output()
            .await
            .expect("run `hotswap new`");
        assert!(
            scaffold.status.success(),
            "`hotswap new` failed: {}\n{}",
            String::from_utf8_lossy(&scaffold.stdout),
            String::from_utf8_lossy(&scaffold.stderr)
        );
        let scaffolded_source = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(
            scaffolded_source.contains("hello from hotswap"),
            "the scaffolded src/lib.rs must answer with \"hello from hotswap\":\n{scaffolded_source}"
        );
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let http_address = format!("127.0.0.1:{port}");
        let daemon_log = base.join("daemon.log");
        let log = std::fs::File::create(&daemon_log).unwrap();
        let daemon = Command::new(hotswap)
            .args(["serve", "--workspace"])
            .arg(&root)
            .args(["--listen", &http_address])
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            // Editors are what these tests are about, not the shared dependency library, which
            // would take a minute of both CPUs to build in the background.
            .env("HOTSWAP_SHARED_DEPS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start `hotswap serve`");
        let mut app = Self {
            _temp: temp,
            root,
            runtime_dir,
            http_address,
            daemon_log,
            daemon,
            scaffolded_source,
        };
        app.wait_until_serving().await;
        app
    }

    fn endpoint(&self) -> Endpoint {
        let environment = EndpointEnvironment {
            runtime_dir: Some(self.runtime_dir.clone()),
            temp_dir: self.runtime_dir.clone(),
            uid: current_uid(),
        };
        Endpoint::derive(&self.root, &environment)
    }

    fn daemon_output(&self) -> String {
        std::fs::read_to_string(&self.daemon_log).unwrap_or_default()
    }

    /// Connects to the daemon (it creates its socket at start) and waits for its first
    /// generation, through its events.
    async fn wait_until_serving(&mut self) {
        let endpoint = self.endpoint();
        let deadline = tokio::time::Instant::now() + FIRST_BUILD;
        let mut client = loop {
            if let Ok(Some(status)) = self.daemon.try_wait() {
                panic!(
                    "`hotswap serve` exited ({status}) before serving:\n{}",
                    self.daemon_output()
                );
            }
            match Client::connect_and_initialize(&endpoint, "hotswap-lsp-tests").await {
                Ok((client, _)) => break client,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    panic!(
                        "no daemon socket within {FIRST_BUILD:?}: {error}\n{}",
                        self.daemon_output()
                    )
                }
                // The daemon is starting: its socket appears in a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        client.request::<Subscribe>(NoParams {}).await.expect("subscribe");
        let status = client.request::<Status>(NoParams {}).await.expect("status");
        if status.current_generation.is_some() {
            return;
        }
        let first_generation = tokio::time::timeout_at(deadline, async {
            while let Some(event) = client.next_event().await {
                match event {
                    Event::SwapFinished(_) => return Ok(()),
                    Event::BuildFinished(build) if build.outcome == BuildOutcome::Failed => {
                        return Err(format!("the first build failed: {:#?}", build.diagnostics));
                    }
                    Event::SwapFailed(failed) => {
                        return Err(format!("the first swap failed: {failed:?}"));
                    }
                    _ => {}
                }
            }
            Err("the daemon closed the connection".to_owned())
        })
        .await;
        match first_generation {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => panic!("{problem}\n{}", self.daemon_output()),
            Err(_) => {
                panic!("no generation served within {FIRST_BUILD:?}\n{}", self.daemon_output())
            }
        }
    }

    /// Puts the scaffolded source back and reloads, so that the next editor starts from there.
    async fn restore_scaffolded_code(&self) {
        std::fs::write(self.root.join("src/lib.rs"), &self.scaffolded_source).unwrap();
        let (client, _) = Client::connect_and_initialize(&self.endpoint(), "hotswap-lsp-tests")
            .await
            .expect("connect to the daemon");
        let outcome = client.request::<Reload>(Default::default()).await.expect("reload");
        assert!(
            matches!(outcome, ReloadOutcome::Swapped { .. } | ReloadOutcome::Unchanged { .. }),
            "reloading the scaffolded code: {outcome:?}"
        );
        let body = http_get_body(&self.http_address).await.expect("the app answers");
        assert!(body.contains("hello from hotswap"), "the scaffolded code serves again: {body}");
    }

    fn scenario_app(&self) -> ScenarioApp {
        ScenarioApp {
            root: self.root.clone(),
            source_file: self.root.join("src/lib.rs"),
            http_address: self.http_address.clone(),
            runtime_dir: Some(self.runtime_dir.clone()),
            step_timeout: Duration::from_secs(180),
        }
    }
}

#[tokio::test]
async fn neovim_0_7_2_neovim_0_11_4_and_emacs_hot_swap_a_scaffolded_app_through_the_real_daemon() {
    let hotswap = hotswap_binary();
    let app = ServedApp::start(&hotswap).await;

    run_neovim_scenario("0.7.2", &app.scenario_app()).await;
    let body = http_get_body(&app.http_address).await.unwrap();
    assert!(body.contains("hello from neovim"), "after neovim 0.7.2 the fixed code serves: {body}");

    app.restore_scaffolded_code().await;
    run_neovim_scenario("0.11.4", &app.scenario_app()).await;
    let body = http_get_body(&app.http_address).await.unwrap();
    assert!(
        body.contains("hello from neovim"),
        "after neovim 0.11.4 the fixed code serves: {body}"
    );

    app.restore_scaffolded_code().await;
    run_eglot_scenario(&app.scenario_app()).await;
    let body = http_get_body(&app.http_address).await.unwrap();
    assert!(body.contains("hello from emacs"), "after Emacs the fixed code serves: {body}");
}
