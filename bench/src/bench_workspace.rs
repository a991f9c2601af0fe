//! The apps the benchmark edits and builds, kept apart from the repository's `examples/` so that a
//! run never touches files other people work on: copies of `examples/hello` and `examples/todo`
//! (each with a `hotswap.toml` for the daemon) and the big app the benchmark generates
//! (`tracker`, see [`crate::big_app`]), and each app again as one binary served by
//! hotswap's SDK (`<app>-standalone`, serving the same `src/lib.rs` with
//! `hotswap_handler::standalone`), in one cargo workspace under `target/hotswap-bench/apps` with
//! one shared target directory; and each app as a user without hotswap writes it (`<app>-axum`,
//! an ordinary axum binary, see [`crate::user_style`]) in a workspace of its own under
//! `target/hotswap-bench/user-apps`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::big_app;
use crate::cases::swap_cost::FULL_DEBUG_INFO;
use crate::user_style::{
    self, BuildProfile, CheckedRequest, Linker, UserStyleCrate, UserStyleSource,
    UserStyleWorkspace, write_if_changed,
};

/// A one-line change the benchmark makes to an app, again and again, each time with a new number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OneLineEdit {
    /// Text of the original `src/lib.rs` that the edit replaces.
    pub(crate) original: &'static str,
    /// The replacement; `{edit}` becomes `(edit N)`, which then shows in the response body.
    pub(crate) replacement: &'static str,
}

impl OneLineEdit {
    /// `source` with edit number `number`, and the text that responses of the new code contain.
    fn apply(&self, source: &str, number: u64) -> (String, String) {
        let marker = format!("(edit {number})");
        let replacement = self.replacement.replace("{edit}", &marker);
        (source.replacen(self.original, &replacement, 1), marker)
    }
}

/// An app as the benchmark uses it.
#[derive(Debug, Clone)]
pub(crate) struct BenchApp {
    pub(crate) name: String,
    /// Where the app comes from, as the report and errors name it (`examples/todo`).
    pub(crate) origin: String,
    /// Whether every case measures the app; the big app is measured by case 1 only.
    pub(crate) in_every_case: bool,
    pub(crate) directory: PathBuf,
    pub(crate) source_file: PathBuf,
    original_source: String,
    edit: OneLineEdit,
    /// The path whose response shows the edit.
    pub(crate) request_path: &'static str,
    pub(crate) standalone_package: String,
    /// The app as an ordinary axum binary.
    pub(crate) user_style: UserStyleCrate,
    /// Requests that the user-style app must answer as the example does.
    pub(crate) checked_requests: &'static [CheckedRequest],
}

/// Where an app of the benchmark comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AppSource {
    /// The example of the same name in `examples/`, copied.
    Example,
    /// Written by the benchmark into the app's directory by this function (the big app).
    Generated(fn(&Path) -> anyhow::Result<()>),
}

/// An app of the benchmark: where it comes from, how it is changed, how a user without hotswap
/// writes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppDefinition {
    pub(crate) name: &'static str,
    pub(crate) source: AppSource,
    /// Whether every case measures it, or case 1 only.
    pub(crate) in_every_case: bool,
    pub(crate) edit: OneLineEdit,
    pub(crate) request_path: &'static str,
    pub(crate) user_style: UserStyleSource,
    pub(crate) checked_requests: &'static [CheckedRequest],
}

/// The apps and how each is changed: the greeting of `hello`, the summary line of `todo`, the
/// dashboard's headline of `tracker`.
pub(crate) const APPS: [AppDefinition; 3] = [
    AppDefinition {
        name: "hello",
        source: AppSource::Example,
        in_every_case: true,
        edit: OneLineEdit {
            original: "\"hello from hotswap\\n\"",
            replacement: "\"hello from hotswap {edit}\\n\"",
        },
        request_path: "/",
        user_style: user_style::HELLO_AXUM,
        checked_requests: user_style::HELLO_CHECKED_REQUESTS,
    },
    AppDefinition {
        name: "todo",
        source: AppSource::Example,
        in_every_case: true,
        edit: OneLineEdit {
            original: "\"todo: {} items, {open} open\\n\"",
            replacement: "\"todo {edit}: {} items, {open} open\\n\"",
        },
        request_path: "/",
        user_style: user_style::TODO_AXUM,
        checked_requests: user_style::TODO_CHECKED_REQUESTS,
    },
    AppDefinition {
        name: big_app::NAME,
        source: AppSource::Generated(big_app::write),
        in_every_case: false,
        edit: big_app::EDIT,
        request_path: "/",
        user_style: big_app::USER_STYLE,
        checked_requests: big_app::CHECKED_REQUESTS,
    },
];

impl BenchApp {
    /// Rewrites `src/lib.rs` with edit number `number` (as an editor saves: the whole file) and
    /// returns the text that responses of the new code contain.
    pub(crate) fn write_edit(&self, number: u64) -> anyhow::Result<String> {
        let (text, marker) = self.edit.apply(&self.original_source, number);
        std::fs::write(&self.source_file, text)
            .with_context(|| format!("cannot write {}", self.source_file.display()))?;
        Ok(marker)
    }

    /// The same edit, made to the user-style app's `src/main.rs`.
    pub(crate) fn write_user_style_edit(&self, number: u64) -> anyhow::Result<String> {
        let (text, marker) = self.edit.apply(&self.user_style.original_source, number);
        std::fs::write(&self.user_style.source_file, text)
            .with_context(|| format!("cannot write {}", self.user_style.source_file.display()))?;
        Ok(marker)
    }

    /// Puts the unedited sources back.
    pub(crate) fn restore(&self) -> anyhow::Result<()> {
        std::fs::write(&self.source_file, &self.original_source)
            .with_context(|| format!("cannot write {}", self.source_file.display()))?;
        std::fs::write(&self.user_style.source_file, &self.user_style.original_source)
            .with_context(|| format!("cannot write {}", self.user_style.source_file.display()))
    }

    /// The `hotswap.toml` of the app's daemon, with `debounce_ms`.
    pub(crate) fn write_hotswap_toml(&self, debounce_ms: u64) -> anyhow::Result<()> {
        let path = self.directory.join("hotswap.toml");
        let mut config: toml::Table = std::fs::read_to_string(&path)?.parse()?;
        let server = table_entry(&mut config, "server");
        server.insert("listen".into(), "127.0.0.1:0".into());
        let build = table_entry(&mut config, "build");
        // Absolute, and spelled exactly as the floor's and the standalone builds' `--target-dir`:
        // cargo rebuilds crates when the same directory is named by another path (`app/../target`).
        let target_dir =
            self.directory.parent().map(|root| root.join("target")).unwrap_or_default();
        build.insert("target_dir".into(), target_dir.display().to_string().into());
        build.insert("debounce_ms".into(), toml::Value::Integer(debounce_ms as i64));
        let text = format!(
            "# Written by hotswap-bench from {}/hotswap.toml.\n{}",
            self.origin,
            toml::to_string(&config)?
        );
        std::fs::write(&path, text)?;
        Ok(())
    }
}

fn table_entry<'a>(table: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    let entry = table.entry(key).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    entry.as_table_mut().expect("made a table above")
}

/// The benchmark's cargo workspace.
#[derive(Debug, Clone)]
pub(crate) struct BenchWorkspace {
    pub(crate) root: PathBuf,
    /// Every build of the apps (daemon, floor, standalone binaries) happens here.
    pub(crate) target_dir: PathBuf,
    /// Builds with full debug info (the ~20 MiB library of the swap-cost case).
    pub(crate) debuginfo_target_dir: PathBuf,
    pub(crate) apps: Vec<BenchApp>,
    /// The apps as ordinary axum binaries.
    pub(crate) user_style: UserStyleWorkspace,
}

impl BenchWorkspace {
    /// Lays out the workspace under `bench_dir` from the repository's examples (sources are
    /// copied afresh on every run; the target directories are kept, so dependencies build once).
    pub(crate) fn prepare(repository: &Path, bench_dir: &Path) -> anyhow::Result<Self> {
        let root = bench_dir.join("apps");
        std::fs::create_dir_all(&root)?;
        let examples = repository.join("examples");
        let mut members = Vec::new();
        let mut apps = Vec::new();
        let user_style_workspace = UserStyleWorkspace::prepare(
            bench_dir.join("user-apps"),
            &examples,
            &APPS.map(|definition| format!("{}-axum", definition.name)),
        )?;
        for AppDefinition {
            name,
            source,
            in_every_case,
            edit,
            request_path,
            user_style,
            checked_requests,
        } in APPS
        {
            let directory = root.join(name);
            let origin = match source {
                AppSource::Example => {
                    copy_directory(&examples.join(name), &directory, &["target"])?;
                    format!("examples/{name}")
                }
                AppSource::Generated(write) => {
                    write(&directory).with_context(|| format!("cannot generate the app {name}"))?;
                    // Generated by bench/src/big_app.rs.
                    format!("target/hotswap-bench/apps/{name}")
                }
            };
            let source_file = directory.join("src/lib.rs");
            let original_source = std::fs::read_to_string(&source_file)?;
            if !original_source.contains(edit.original) {
                bail!(
                    "{origin}'s src/lib.rs no longer contains {} (the line the benchmark edits); \
                     update APPS in bench/src/bench_workspace.rs",
                    edit.original
                );
            }
            let standalone_package = format!("{name}-standalone");
            write_standalone_crate(
                &directory,
                &root.join(&standalone_package),
                name,
                &origin,
                &original_source,
            )?;
            let user_style = user_style_workspace.write_crate(
                name,
                &origin,
                &directory,
                user_style,
                &original_source,
                edit.original,
            )?;
            if !user_style.original_source.contains(edit.original) {
                bail!(
                    "{} lacks {} (the line the benchmark edits); update bench/src/user_style.rs",
                    user_style.source_file.display(),
                    edit.original
                );
            }
            members.push(name.to_owned());
            members.push(standalone_package.clone());
            apps.push(BenchApp {
                name: name.to_owned(),
                origin,
                in_every_case,
                directory,
                source_file,
                original_source,
                edit,
                request_path,
                standalone_package,
                user_style,
                checked_requests,
            });
        }
        // The workspace manifest: the examples' own (profiles included), with our members and the
        // SDK of this repository.
        let mut manifest: toml::Table =
            std::fs::read_to_string(examples.join("Cargo.toml"))?.parse()?;
        let workspace = table_entry(&mut manifest, "workspace");
        workspace.insert(
            "members".into(),
            toml::Value::Array(members.into_iter().map(toml::Value::String).collect()),
        );
        let dependencies = table_entry(workspace, "dependencies");
        let mut handler = toml::Table::new();
        handler.insert("path".into(), repository.join("handler").display().to_string().into());
        dependencies.insert("hotswap-handler".into(), toml::Value::Table(handler));
        std::fs::write(
            root.join("Cargo.toml"),
            format!(
                "# Written by hotswap-bench from examples/Cargo.toml: the examples, and each as one binary.\n{}",
                toml::to_string(&manifest)?
            ),
        )?;
        let lock = root.join("Cargo.lock");
        if !lock.exists() {
            // The examples' versions, so that the benchmark measures what the examples use.
            std::fs::copy(examples.join("Cargo.lock"), &lock)?;
        }
        Ok(Self {
            target_dir: root.join("target"),
            debuginfo_target_dir: root.join("target-debuginfo"),
            root,
            apps,
            user_style: user_style_workspace,
        })
    }

    pub(crate) fn app(&self, name: &str) -> &BenchApp {
        self.apps.iter().find(|app| app.name == name).expect("a known app")
    }

    /// The apps every case measures (all but the big app, which case 1 measures alone).
    pub(crate) fn apps_of_every_case(&self) -> Vec<BenchApp> {
        self.apps.iter().filter(|app| app.in_every_case).cloned().collect()
    }

    /// The command the daemon runs for `app` (see `daemon/src/builder.rs`), in `target_dir`,
    /// with extra cargo arguments (`--config` for full debug info).
    pub(crate) fn handler_build_command(
        &self,
        app: &BenchApp,
        target_dir: &Path,
        extra: &[&str],
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(cargo_program());
        command
            .args(["build", "--lib", "--message-format=json", "--color=never", "--manifest-path"])
            .arg(app.directory.join("Cargo.toml"))
            .args(["-p", &app.name, "--profile", "dev", "--target-dir"])
            .arg(target_dir)
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// `cargo build` of the app's handler library, exactly as the daemon runs it: the floor.
    pub(crate) async fn build_handler(&self, app: &BenchApp) -> anyhow::Result<Duration> {
        run_timed(self.handler_build_command(app, &self.target_dir, &[]), &app.name).await
    }

    /// The handler library the last build in `target_dir` wrote.
    pub(crate) fn handler_library(&self, app: &BenchApp, target_dir: &Path) -> PathBuf {
        target_dir.join("debug").join(format!("lib{}.so", app.name.replace('-', "_")))
    }

    /// `cargo build` of the app as one binary: the relink of relink-and-restart.
    pub(crate) async fn build_standalone(&self, app: &BenchApp) -> anyhow::Result<Duration> {
        let mut command = tokio::process::Command::new(cargo_program());
        command
            .args(["build", "--color=never", "--manifest-path"])
            .arg(self.root.join("Cargo.toml"))
            .args(["-p", &app.standalone_package, "--bin", &app.standalone_package, "--target-dir"])
            .arg(&self.target_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        run_timed(command, &app.standalone_package).await
    }

    pub(crate) fn standalone_binary(&self, app: &BenchApp) -> PathBuf {
        self.target_dir.join("debug").join(&app.standalone_package)
    }

    /// `cargo build` of the app as an ordinary axum binary, with `profile` and rustc's default
    /// linker.
    pub(crate) async fn build_user_style(
        &self,
        app: &BenchApp,
        profile: BuildProfile,
    ) -> anyhow::Result<Duration> {
        self.build_user_style_with(app, profile, Linker::RustcDefault).await
    }

    pub(crate) async fn build_user_style_with(
        &self,
        app: &BenchApp,
        profile: BuildProfile,
        linker: Linker,
    ) -> anyhow::Result<Duration> {
        let command = self.user_style.build_command(&app.user_style.package, profile, linker);
        run_timed(command, &app.user_style.package).await
    }

    pub(crate) fn user_style_binary(&self, app: &BenchApp, profile: BuildProfile) -> PathBuf {
        self.user_style.binary(&app.user_style.package, profile, Linker::RustcDefault)
    }

    /// `cargo build` of the handler library with `profile` and `linker`, each pair in a target
    /// directory of its own: the examples' profile with rustc's default linker is the floor's
    /// build; cargo's default dev profile is full debug info for every crate (the swap-cost
    /// case's build).
    pub(crate) async fn build_handler_with(
        &self,
        app: &BenchApp,
        profile: BuildProfile,
        linker: Linker,
    ) -> anyhow::Result<(Duration, PathBuf)> {
        let (base, profile_arguments): (&Path, &[&str]) = match profile {
            BuildProfile::ExamplesProfile => (&self.target_dir, &[]),
            BuildProfile::CargoDefault => (&self.debuginfo_target_dir, &FULL_DEBUG_INFO),
        };
        let mut target_dir = base.as_os_str().to_owned();
        target_dir.push(linker.target_dir_suffix());
        let target_dir = PathBuf::from(target_dir);
        let mut arguments = profile_arguments.to_vec();
        arguments.extend_from_slice(linker.cargo_arguments());
        let command = self.handler_build_command(app, &target_dir, &arguments);
        let elapsed = run_timed(command, &app.name).await?;
        Ok((elapsed, self.handler_library(app, &target_dir)))
    }
}

/// Runs a cargo command and returns how long it took, or its errors.
pub(crate) async fn run_timed(
    mut command: tokio::process::Command,
    what: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = command.output().await.with_context(|| format!("cannot run cargo for {what}"))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!("cargo build of {what} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(elapsed)
}

/// `$CARGO` (set under `cargo run`) or `cargo`.
pub(crate) fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Copies `from` into `to` (files overwritten only when they differ, so cargo sees no change
/// where there is none), skipping directories named in `skip`.
pub(crate) fn copy_directory(from: &Path, to: &Path, skip: &[&str]) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|skipped| name == *skipped) {
            continue;
        }
        let destination = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_directory(&entry.path(), &destination, skip)?;
        } else {
            let bytes = std::fs::read(entry.path())?;
            if std::fs::read(&destination).ok().as_deref() != Some(&bytes[..]) {
                std::fs::write(&destination, bytes)?;
            }
        }
    }
    Ok(())
}

/// The app as one binary on hotswap's SDK: its `src/lib.rs` as a module, served by
/// `hotswap_handler::standalone`, with the app's own dependencies (and its askama `templates/`,
/// which askama reads from the directory of the crate it compiles).
fn write_standalone_crate(
    app_directory: &Path,
    crate_directory: &Path,
    app_name: &str,
    origin: &str,
    source: &str,
) -> anyhow::Result<()> {
    let handler_type = user_style::exported_handler_type(source).with_context(|| {
        format!("no export_handler!(...) or export_router!(...) in {origin}/src/lib.rs")
    })?;
    let mut manifest: toml::Table =
        std::fs::read_to_string(app_directory.join("Cargo.toml"))?.parse()?;
    manifest.remove("lib");
    let package = table_entry(&mut manifest, "package");
    package.insert("name".into(), format!("{app_name}-standalone").into());
    package.insert(
        "description".into(),
        format!("{origin} as one ordinary binary (hotswap-bench's relink-and-restart baseline).")
            .into(),
    );
    let mut binary = toml::Table::new();
    binary.insert("name".into(), format!("{app_name}-standalone").into());
    binary.insert("path".into(), "src/main.rs".into());
    manifest.insert("bin".into(), toml::Value::Array(vec![toml::Value::Table(binary)]));
    let dependencies = table_entry(&mut manifest, "dependencies");
    let handler = match dependencies.remove("hotswap-handler") {
        Some(toml::Value::Table(table)) => table,
        _ => {
            let mut table = toml::Table::new();
            table.insert("workspace".into(), true.into());
            table
        }
    };
    let mut handler = handler;
    let mut features: Vec<toml::Value> =
        handler.get("features").and_then(toml::Value::as_array).cloned().unwrap_or_default();
    features.push("standalone".into());
    handler.insert("features".into(), toml::Value::Array(features));
    dependencies.insert("hotswap-handler".into(), toml::Value::Table(handler));
    let mut tokio = toml::Table::new();
    tokio.insert("version".into(), "1".into());
    tokio.insert("features".into(), toml::Value::Array(vec!["signal".into()]));
    dependencies.insert("tokio".into(), toml::Value::Table(tokio));

    let source_directory = crate_directory.join("src");
    std::fs::create_dir_all(&source_directory)?;
    let manifest_text = format!("# Written by hotswap-bench.\n{}", toml::to_string(&manifest)?);
    write_if_changed(&crate_directory.join("Cargo.toml"), &manifest_text)?;
    let main = STANDALONE_MAIN
        .replace("{origin}", origin)
        .replace("{app}", app_name)
        .replace("{Handler}", &handler_type);
    write_if_changed(&source_directory.join("main.rs"), &main)?;
    let templates = app_directory.join("templates");
    if templates.is_dir() {
        copy_directory(&templates, &crate_directory.join("templates"), &[])?;
    }
    Ok(())
}

/// `src/main.rs` of an app as one binary. `HOTSWAP_BENCH_LISTEN` names the address to bind unless
/// a socket is passed with `LISTEN_FDS`; `HOTSWAP_BENCH_GRACEFUL` makes SIGTERM drain the server
/// instead of killing it (without it, SIGTERM ends the process at once, as it does most servers).
const STANDALONE_MAIN: &str = r#"//! {origin} as one ordinary binary, written by hotswap-bench: the same `src/lib.rs`, served
//! by `hotswap_handler::standalone` (the relink-and-restart baseline).

#[path = "../../{app}/src/lib.rs"]
#[allow(dead_code, unreachable_pub)]
mod app;

use hotswap_handler::standalone::{self, ServeOptions};

fn main() -> std::io::Result<()> {
    let address = std::env::var("HOTSWAP_BENCH_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let listener = standalone::listener(address.as_str())?;
    // As many runtime threads as a hotswap generation has by default.
    let options = ServeOptions { worker_threads: 2, ..ServeOptions::default() };
    if std::env::var_os("HOTSWAP_BENCH_GRACEFUL").is_some() {
        standalone::serve_until::<app::{Handler}>(listener, &options, async {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut terminate) => {
                    terminate.recv().await;
                }
                Err(error) => eprintln!("cannot watch SIGTERM: {error}"),
            }
        })
    } else {
        standalone::serve::<app::{Handler}>(listener, &options)
    }
}
"#;
