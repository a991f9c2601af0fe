//! `hotswap serve`: start every part of the daemon for one workspace, run until asked to stop,
//! then stop in order (no new clients or connections, running builds killed, in-flight HTTP
//! requests finished, generations unloaded).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hotswap_protocol::endpoint::Endpoint;
use hotswap_protocol::{Client, ClientError};
use tokio::sync::watch;

use crate::builder::{BuildSpec, cargo_program, default_target_dir};
use crate::config::Config;
use crate::daemon::{DaemonInfo, DaemonParts};
use crate::engine::events::EventSink;
use crate::engine::{Engine, EngineConfig};
use crate::packages::PackageSet;
use crate::subscribers::Subscribers;

/// Command-line choices of `hotswap serve`, which win over `hotswap.toml`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The workspace (or a directory inside it); default: the current directory.
    pub workspace: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub target_dir: Option<PathBuf>,
    /// Do not import the state the last `hotswap serve` of this app left on disk.
    pub fresh_state: bool,
    /// `-v`: 1 for debug, 2 or more for trace.
    pub verbose: u8,
}

/// The `tracing` directives for handler code: `RUST_LOG` when set, else `-v`, else `[log]
/// filter` in hotswap.toml, else `info`.
pub fn handler_log_directives(
    rust_log: Option<&str>,
    verbose: u8,
    configured: Option<&str>,
) -> String {
    fn given(value: Option<&str>) -> Option<&str> {
        value.map(str::trim).filter(|value| !value.is_empty())
    }
    if let Some(directives) = given(rust_log) {
        return directives.to_owned();
    }
    match verbose {
        0 => given(configured).unwrap_or("info").to_owned(),
        1 => "debug".to_owned(),
        _ => "trace".to_owned(),
    }
}

/// Runs the daemon until SIGINT, SIGTERM or a `shutdown` request.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    raise_descriptor_limit();
    let start = match &options.workspace {
        Some(workspace) => workspace.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let mut config = Config::discover(&start)?;
    if let Some(listen) = options.listen {
        config.file.server.listen = listen;
    }
    if let Some(target_dir) = &options.target_dir {
        config.file.build.target_dir =
            Some(crate::config::normalized(&std::path::absolute(target_dir)?));
    }
    let root = config.workspace_root.clone();
    let endpoint = Endpoint::for_workspace(&root)?;

    // One daemon per workspace: the lock file next to the socket says who owns it.
    endpoint
        .prepare_directory()
        .with_context(|| format!("cannot prepare {}", endpoint.path().display()))?;
    let lock_path = endpoint.path().with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!("{}", already_served(&endpoint).await);
    }
    if endpoint.path().exists() {
        // We hold the lock, so whoever made this socket is gone (e.g. killed with SIGKILL).
        tracing::info!(
            "reclaiming the socket of a daemon that is gone: {}",
            endpoint.path().display()
        );
        let _ = std::fs::remove_file(endpoint.path());
    }
    let socket = hotswap_protocol::transport::listen(&endpoint)
        .with_context(|| format!("cannot listen on {}", endpoint.path().display()))?;

    let listen = config.listen();
    let http = http_listener(listen).map_err(|error| {
        anyhow::anyhow!(
            "cannot listen for HTTP on {listen}: {error}; choose another address with `listen` in the \
             [server] section of {} or `hotswap serve --listen ADDRESS`",
            root.join(crate::config::CONFIG_FILE).display()
        )
    })?;
    let listen_address = http.local_addr()?;

    let cargo = cargo_program();
    let packages = {
        let (cargo, root, package) = (cargo.clone(), root.clone(), config.file.package.clone());
        tokio::task::spawn_blocking(move || PackageSet::discover(&cargo, &root, package.as_deref()))
            .await?
            .map_err(anyhow::Error::msg)?
    };
    let target_dir =
        config.target_dir().unwrap_or_else(|| default_target_dir(&packages.cargo_target_dir));
    let swap = &config.file.swap;
    let mut host = crate::engine::host_process::HostProgram {
        // Generations run where the app's crate is, as under `cargo run`: relative paths
        // (static files, templates, `.env`) mean the same.
        working_directory: packages.handler_manifest.parent().map(std::path::Path::to_path_buf),
        ..crate::engine::host_process::HostProgram::current_exe()
            .context("cannot find the hotswap binary to run generations with")?
    };
    let directives = handler_log_directives(
        std::env::var("RUST_LOG").ok().as_deref(),
        options.verbose,
        config.file.log.filter.as_deref(),
    );
    tracing::debug!("handler code logs with the directives {directives:?}");
    host.environment.push(("HOTSWAP_LOG".into(), directives.into()));
    let browser = crate::browser::BrowserFiles::new(
        &config.file.browser,
        packages.handler_manifest.parent().unwrap_or(&root),
    );
    if config.file.browser.live_reload {
        host.environment.push(crate::browser::live_reload_environment(endpoint.path()));
    }
    let mut engine_config = EngineConfig::with_host(target_dir.join("generations"), host);
    engine_config.drain_timeout = Duration::from_millis(swap.drain_timeout_ms);
    engine_config.stream_drain_timeout = Duration::from_millis(swap.stream_drain_timeout_ms);
    engine_config.snapshot_interval =
        (swap.snapshot_interval_ms > 0).then(|| Duration::from_millis(swap.snapshot_interval_ms));
    engine_config.max_connections = config.file.server.max_connections;
    engine_config.first_byte_timeout = (config.file.server.first_byte_timeout_ms > 0)
        .then(|| Duration::from_millis(config.file.server.first_byte_timeout_ms));
    engine_config.smoke_path = swap.smoke_path.clone();
    engine_config.state_policy = swap.state_on_import_failure;
    engine_config.init_timeout = Duration::from_millis(swap.init_timeout_ms);
    engine_config.rollback_depth = swap.rollback_depth;
    engine_config.max_body_bytes = config.file.server.max_body_bytes;
    engine_config.worker_threads = config.file.server.worker_threads;
    // One snapshot per app: a target directory may be shared by several (CARGO_TARGET_DIR).
    engine_config.snapshot_file = Some(target_dir.join("state").join(format!(
        "{}-{}.hsstate",
        packages.library_name,
        hotswap_protocol::endpoint::workspace_hash(&config.workspace_root)
    )));
    engine_config.forward_address = Some(listen_address);
    engine_config.export_timeout = Duration::from_millis(swap.export_timeout_ms);
    let (sink, mut engine_events) = EventSink::channel(4096);
    let engine = Engine::new(engine_config, sink)
        .with_context(|| format!("cannot use the build directory {}", target_dir.display()))?;
    if options.fresh_state {
        engine.discard_snapshot_on_disk();
        tracing::info!("starting with a fresh state, as asked (--fresh-state)");
    } else {
        match engine.restore_snapshot_from_disk() {
            Ok(Some((age, bytes))) => tracing::info!(
                "found the state the last `hotswap serve` left ({bytes} bytes, taken {} ago): the first generation starts from it (`hotswap serve --fresh-state` starts empty)",
                human_age(age)
            ),
            Ok(None) => {}
            Err(error) => tracing::warn!("the state left on disk cannot be read: {error}"),
        }
    }

    let subscribers = Arc::new(Subscribers::default());
    let (shutdown, shutdown_requested) = watch::channel(false);
    let build = BuildSpec {
        cargo,
        manifest: packages.handler_manifest.clone(),
        package: packages.handler_spec.clone(),
        library_name: packages.library_name.clone(),
        profile: config.file.build.profile.clone(),
        features: config.file.build.features.clone(),
        no_default_features: config.file.build.no_default_features,
        target_dir: target_dir.clone(),
        cargo_workspace_root: packages.cargo_workspace_root.clone(),
        direct_rustc: config.file.build.direct_rustc,
        shared_deps: shared_deps_setting(config.file.build.shared_deps),
    };
    let info = DaemonInfo {
        workspace_root: root.clone(),
        package: packages.handler.clone(),
        endpoint: endpoint.path().display().to_string(),
        listen_address: listen_address.to_string(),
        started: Instant::now(),
    };
    tracing::info!(
        "serving {} on http://{listen_address} (workspace {}, socket {}, builds in {})",
        packages.handler,
        root.display(),
        endpoint.path().display(),
        target_dir.display()
    );
    crate::browser::log_settings(&config.file.browser, &browser);
    let parts = DaemonParts {
        info,
        engine: engine.clone(),
        packages,
        build,
        debounce: config.debounce(),
        browser,
        subscribers: subscribers.clone(),
        shutdown: shutdown.clone(),
    };
    let (daemon, daemon_task) = crate::daemon::spawn(parts, true);

    let forward_events = {
        let subscribers = subscribers.clone();
        tokio::spawn(async move {
            while let Some(event) = engine_events.recv().await {
                subscribers.send(&event);
            }
        })
    };
    let socket_server = tokio::spawn(crate::server::serve(
        socket,
        daemon.clone(),
        subscribers.clone(),
        shutdown_requested.clone(),
    ));
    let http_server = {
        let engine = engine.clone();
        let mut stop = shutdown_requested.clone();
        tokio::spawn(async move {
            engine
                .serve(http, async move {
                    crate::serve::stopped(&mut stop).await;
                })
                .await
        })
    };
    let signals = tokio::spawn(stop_on_signals(shutdown.clone()));

    let mut stop = shutdown_requested.clone();
    crate::serve::stopped(&mut stop).await;
    tracing::info!("stopping: finishing in-flight requests (press Ctrl-C again to stop at once)");
    let _ = socket_server.await;
    let _ = http_server.await;
    drop(daemon);
    let _ = daemon_task.await;
    engine.shutdown().await;
    forward_events.abort();
    // Until here a second SIGINT or SIGTERM stops the daemon at once.
    signals.abort();
    drop(lock);
    let _ = std::fs::remove_file(&lock_path);
    tracing::info!("stopped");
    Ok(())
}

/// "40 s", "3 min", "2 h".
fn human_age(age: Duration) -> String {
    let seconds = age.as_secs();
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7200 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3600),
    }
}

/// The HTTP listening socket, with a backlog deep enough for bursts of connects (the default of
/// 128 drops connects under a burst, and a dropped connect is retried by the client only after a
/// second).
fn http_listener(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Raises the soft limit of open files to the hard limit (generations inherit it): every HTTP
/// connection is a descriptor, and a low default (1024 on many systems) would refuse connections
/// long before `max_connections`.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        let raised = rustix::process::Rlimit { current: Some(hard), maximum: Some(hard) };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("cannot raise the open-files limit to {hard}: {error}");
        }
    }
}

/// Sets `shutdown` on SIGINT or SIGTERM; a second signal exits at once.
async fn stop_on_signals(shutdown: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    shutdown.send_replace(true);
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("hotswap: stopping at once");
    std::process::exit(130);
}

/// The message for a second `hotswap serve` on a workspace that already has a daemon.
async fn already_served(endpoint: &Endpoint) -> String {
    let root = endpoint.workspace_root().display();
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect_and_initialize(endpoint, "hotswap-serve"),
    )
    .await;
    match connected {
        Ok(Ok((_, daemon))) => format!(
            "a hotswap daemon (pid {}) already serves {root} on http://{}; stop it with `hotswap stop` first",
            daemon.pid, daemon.listen_address
        ),
        Ok(Err(ClientError::NoDaemon { .. })) | Err(_) => {
            format!("another hotswap daemon is starting for {root}; wait for it or stop it")
        }
        Ok(Err(error)) => {
            format!("another hotswap daemon holds {root} but does not answer: {error}")
        }
    }
}

/// Resolves once `shutdown` holds true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// `shared_deps` from hotswap.toml, unless `HOTSWAP_SHARED_DEPS` says otherwise (`0`/`false`/
/// `off` or `1`/`true`/`on`).
fn shared_deps_setting(from_file: bool) -> bool {
    match std::env::var("HOTSWAP_SHARED_DEPS").as_deref().map(str::to_ascii_lowercase).as_deref() {
        Ok("0" | "false" | "off" | "no") => false,
        Ok("1" | "true" | "on" | "yes") => true,
        Ok(other) => {
            tracing::warn!(
                "HOTSWAP_SHARED_DEPS={other} is not 0 or 1: `shared_deps = {from_file}` from hotswap.toml holds"
            );
            from_file
        }
        Err(_) => from_file,
    }
}

#[cfg(test)]
mod tests {
    use super::handler_log_directives;

    #[test]
    fn rust_log_wins_then_verbose_then_the_config_then_info() {
        assert_eq!(
            handler_log_directives(Some("warn,app=trace"), 2, Some("debug")),
            "warn,app=trace"
        );
        assert_eq!(handler_log_directives(Some("  "), 1, Some("warn")), "debug");
        assert_eq!(handler_log_directives(None, 2, None), "trace");
        assert_eq!(
            handler_log_directives(None, 0, Some("info,tower_http=debug")),
            "info,tower_http=debug"
        );
        assert_eq!(handler_log_directives(None, 0, None), "info");
    }
}
