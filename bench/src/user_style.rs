//! The apps as a user without hotswap writes them: each an ordinary axum binary (`#[tokio::main]`,
//! axum with its default features, `axum::serve`), the relink-and-restart baseline of someone who
//! runs `cargo watch -x run` or bacon on a plain axum app.
//!
//! `hello` is written here once, with the same two routes and bodies as `examples/hello`; `todo`
//! is generated from `examples/todo/src/lib.rs` by dropping what belongs to hotswap (the handler
//! type and its `Handler` impl, `export_handler!`, the SDK's re-exports) and adding a `main`. They
//! form a cargo workspace of their own, with no profile settings, under
//! `target/hotswap-bench/user-apps`: built once with cargo's default dev profile (full debug info
//! for every crate, what a user gets without tuning) and once with the examples' profile (the
//! `[profile]` table of `examples/Cargo.toml`, passed with `--config`), each in its own target
//! directory. At start-up the benchmark checks that each answers the same requests with the same
//! status and body as the app served by hotswap's SDK ([`check_same_responses`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hotswap_tests::http::HttpConnection;

/// The axum version of the user-style apps (the one `examples/todo` asks for).
const AXUM_VERSION: &str = "0.8.9";

/// The dev profile a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum BuildProfile {
    /// Cargo's default dev profile: full debug info for the app and every dependency.
    CargoDefault,
    /// The examples' profile (what `hotswap new` writes): line tables for the app, no debug info
    /// for dependencies.
    ExamplesProfile,
}

impl BuildProfile {
    pub(crate) const ALL: [BuildProfile; 2] =
        [BuildProfile::CargoDefault, BuildProfile::ExamplesProfile];

    pub(crate) fn label(self) -> &'static str {
        match self {
            BuildProfile::CargoDefault => "cargo's default dev profile",
            BuildProfile::ExamplesProfile => "examples' profile",
        }
    }

    /// What a user-style build rebuilds, for the report's tables.
    pub(crate) fn user_style_label(self) -> &'static str {
        match self {
            BuildProfile::CargoDefault => "axum binary, cargo's default dev profile",
            BuildProfile::ExamplesProfile => "axum binary, examples' profile",
        }
    }

    /// A short name for file names.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            BuildProfile::CargoDefault => "default-profile",
            BuildProfile::ExamplesProfile => "examples-profile",
        }
    }

    fn user_style_target_dir_name(self) -> &'static str {
        match self {
            BuildProfile::CargoDefault => "target",
            BuildProfile::ExamplesProfile => "target-examples-profile",
        }
    }
}

/// The linker of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Linker {
    /// Whatever rustc links with by default (rust-lld on x86_64 Linux since Rust 1.90).
    RustcDefault,
    /// The C compiler driving GNU ld, rustc's default on Linux before 1.90
    /// (`-C linker-features=-lld`).
    GnuLd,
}

impl Linker {
    pub(crate) const ALL: [Linker; 2] = [Linker::RustcDefault, Linker::GnuLd];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Linker::RustcDefault => "rustc's default",
            Linker::GnuLd => "GNU ld",
        }
    }

    /// Extra cargo arguments that choose the linker.
    pub(crate) fn cargo_arguments(self) -> &'static [&'static str] {
        match self {
            Linker::RustcDefault => &[],
            Linker::GnuLd => &["--config", "build.rustflags=[\"-C\", \"linker-features=-lld\"]"],
        }
    }

    /// Appended to the name of a target directory (other flags, other artifacts).
    pub(crate) fn target_dir_suffix(self) -> &'static str {
        match self {
            Linker::RustcDefault => "",
            Linker::GnuLd => "-gnu-ld",
        }
    }
}

/// The version of LLD that linked an ELF file, from the `Linker: LLD x.y.z` note LLD leaves in
/// its `.comment` section; `None` when another linker (GNU ld) made it.
pub(crate) fn lld_version(bytes: &[u8]) -> Option<String> {
    let needle = b"Linker: LLD ";
    let start = bytes.windows(needle.len()).position(|window| window == needle)?;
    let rest = &bytes[start + needle.len()..];
    let end = rest.iter().position(|byte| *byte == 0 || *byte == b' ').unwrap_or(rest.len());
    Some(format!("LLD {}", String::from_utf8_lossy(&rest[..end])))
}

/// The linker that made `artifact`, as the report says it.
pub(crate) fn linker_of(artifact: &Path) -> String {
    match std::fs::read(artifact) {
        Ok(bytes) => lld_version(&bytes).unwrap_or_else(|| "not LLD (GNU ld)".to_owned()),
        Err(_) => "unknown".to_owned(),
    }
}

/// How the user-style version of an app is made.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UserStyleSource {
    /// Written here: `{greeting}` becomes the text the benchmark edits (the string literal of
    /// the example's response), so both say the same.
    Written(&'static str),
    /// Generated from the example's `src/lib.rs` ([`without_hotswap`]), followed by this `main`.
    FromExample { main: &'static str },
}

/// One request of the start-up check that the user-style app answers as the example does:
/// method, path, JSON body.
pub(crate) type CheckedRequest = (&'static str, &'static str, &'static str);

/// `examples/hello` as an axum app: the same routes `/` and `/health`, the same bodies.
pub(crate) const HELLO_AXUM: UserStyleSource = UserStyleSource::Written(
    r#"//! examples/hello as a user without hotswap writes it (generated by hotswap-bench): an ordinary
//! axum binary with the same two routes and bodies.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let app = Router::new()
        .route("/", get(|| async { {greeting} }))
        .route("/health", get(|| async { "ok\n" }));
    let address = std::env::var("HOTSWAP_BENCH_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await.expect("cannot listen");
    axum::serve(listener, app).await.expect("server failed");
}
"#,
);

/// The `main` that serves the routes of `examples/todo` (its `app` function and `Shared` state).
pub(crate) const TODO_AXUM: UserStyleSource = UserStyleSource::FromExample {
    main: r#"
#[tokio::main]
async fn main() {
    let address = std::env::var("HOTSWAP_BENCH_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await.expect("cannot listen");
    axum::serve(listener, app(Shared::default()).await).await.expect("server failed");
}
"#,
};

pub(crate) const HELLO_CHECKED_REQUESTS: &[CheckedRequest] =
    &[("GET", "/", ""), ("GET", "/health", "")];

/// Every route of `examples/todo`, leaving the list as it was (empty).
pub(crate) const TODO_CHECKED_REQUESTS: &[CheckedRequest] = &[
    ("GET", "/", ""),
    ("GET", "/health", ""),
    ("GET", "/todos", ""),
    ("POST", "/todos", r#"{"title":"check"}"#),
    ("GET", "/todos", ""),
    ("GET", "/", ""),
    ("PATCH", "/todos/1", r#"{"done":true}"#),
    ("GET", "/todos/1", ""),
    ("GET", "/", ""),
    ("DELETE", "/todos/1", ""),
    ("GET", "/todos/1", ""),
    ("DELETE", "/todos/1", ""),
    ("POST", "/todos", "not json"),
    ("GET", "/slow?ms=1", ""),
];

/// The user-style source of an app: written, or generated from the app's `src/lib.rs`.
/// `origin` names where the app comes from (`examples/todo`); `greeting` is the text the
/// benchmark edits.
pub(crate) fn user_style_source(
    source: UserStyleSource,
    origin: &str,
    lib_source: &str,
    greeting: &str,
) -> anyhow::Result<String> {
    match source {
        UserStyleSource::Written(text) => Ok(text.replace("{greeting}", greeting)),
        UserStyleSource::FromExample { main } => {
            let body = if lib_source.contains("export_router!(") {
                without_hotswap_router(lib_source)
            } else {
                let handler_type = exported_handler_type(lib_source).with_context(|| {
                    format!("no export_handler!(...) or export_router!(...) in {origin}/src/lib.rs")
                })?;
                without_hotswap(lib_source, &handler_type)
            }
            .with_context(|| {
                format!(
                    "cannot make {origin}/src/lib.rs an ordinary axum binary; \
                     update bench/src/user_style.rs"
                )
            })?;
            Ok(format!(
                "//! {origin} as a user without hotswap writes it (generated by hotswap-bench from its\n\
                 //! src/lib.rs): the same routes as an ordinary axum binary, served by `axum::serve`.\n\n\
                 {}\n{}",
                body.trim(),
                main.trim_start_matches('\n')
            ))
        }
    }
}

/// The type named by `export_handler!(...)` in a handler crate's source (`HotswapApp`, the type
/// `export_router!(...)` defines, for a router app).
pub(crate) fn exported_handler_type(source: &str) -> Option<String> {
    if source.contains("export_router!(") {
        return Some("HotswapApp".to_owned());
    }
    source
        .split("export_handler!(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// A handler crate's source without hotswap: its `//!` header, `use hotswap_handler...;`, the
/// handler type and its `Handler` impl, and `export_handler!` removed, and the SDK's re-exports
/// (`hotswap_handler::tokio`, `hotswap_handler::tracing`) named as the crates a user depends on.
/// What is left is the app's routes and state. Items are found by brace matching, which a
/// lone brace in a string literal of a removed item would confuse; the unit test runs this on the
/// real example, and the build of the result would fail.
pub(crate) fn without_hotswap(source: &str, handler_type: &str) -> anyhow::Result<String> {
    let mut text: String = source
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .map(|line| format!("{line}\n"))
        .collect();
    while let Some(start) = text.find("use hotswap_handler") {
        let end = text[start..].find(';').context("a `use hotswap_handler` without `;`")?;
        remove_with_line_end(&mut text, start, start + end + 1);
    }
    remove_item(&mut text, &format!("struct {handler_type}"))
        .with_context(|| format!("no `struct {handler_type}`"))?;
    remove_item(&mut text, &format!("impl Handler for {handler_type}"))
        .with_context(|| format!("no `impl Handler for {handler_type}`"))?;
    let export = format!("hotswap_handler::export_handler!({handler_type});");
    let start = text.find(&export).context("no `hotswap_handler::export_handler!(...)`")?;
    remove_with_line_end(&mut text, start, start + export.len());
    for crate_name in ["tokio", "tracing"] {
        text =
            text.replace(&format!("hotswap_handler::{crate_name}::"), &format!("{crate_name}::"));
    }
    if let Some(position) = text.find("hotswap_handler") {
        let line = text[position..].lines().next().unwrap_or_default();
        bail!("the source still uses hotswap_handler: {line}");
    }
    Ok(collapse_blank_lines(&text))
}

/// An `export_router!` app's source without hotswap: its `//!` header and the
/// `hotswap_handler::export_router!(...);` line removed, and the SDK's re-exports named as the
/// crates a user depends on. What is left is an ordinary axum library: its `app` function builds
/// the `Router`.
pub(crate) fn without_hotswap_router(source: &str) -> anyhow::Result<String> {
    let mut text: String = source
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .map(|line| format!("{line}\n"))
        .collect();
    let start =
        text.find("hotswap_handler::export_router!(").context("no `export_router!(...)`")?;
    let end = text[start..].find(");").context("an `export_router!(` without `);`")?;
    remove_with_line_end(&mut text, start, start + end + 2);
    for crate_name in ["tokio", "tracing"] {
        text =
            text.replace(&format!("hotswap_handler::{crate_name}::"), &format!("{crate_name}::"));
    }
    if let Some(position) = text.find("hotswap_handler") {
        let line = text[position..].lines().next().unwrap_or_default();
        bail!("the source still uses hotswap_handler: {line}");
    }
    Ok(collapse_blank_lines(&text))
}

/// Removes the item that starts with `start` (after any visibility) up to its `;` or its closing
/// brace, and the doc comments and attributes right above it. `None` if there is no such item.
fn remove_item(text: &mut String, start: &str) -> Option<()> {
    let found = find_whole_word(text, start)?;
    let mut item_start = text[..found].rfind('\n').map_or(0, |newline| newline + 1);
    // Doc comments and attributes of the item.
    while item_start > 0 {
        let previous_start = text[..item_start - 1].rfind('\n').map_or(0, |newline| newline + 1);
        let previous = text[previous_start..item_start].trim_start();
        if previous.starts_with("///") || previous.starts_with("#[") {
            item_start = previous_start;
        } else {
            break;
        }
    }
    let rest = &text[found..];
    let brace = rest.find('{');
    let semicolon = rest.find(';');
    let end = match (brace, semicolon) {
        (Some(brace), Some(semicolon)) if semicolon < brace => found + semicolon + 1,
        (None, Some(semicolon)) => found + semicolon + 1,
        (Some(brace), _) => {
            let mut depth = 0usize;
            let mut end = None;
            for (offset, character) in rest[brace..].char_indices() {
                match character {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(found + brace + offset + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end?
        }
        (None, None) => return None,
    };
    remove_with_line_end(text, item_start, end);
    Some(())
}

/// Where `pattern` occurs not followed by a character of an identifier (`struct Todo`, not
/// `struct TodoState`).
fn find_whole_word(text: &str, pattern: &str) -> Option<usize> {
    text.match_indices(pattern).map(|(position, _)| position).find(|position| {
        text[position + pattern.len()..]
            .chars()
            .next()
            .is_none_or(|next| !(next.is_alphanumeric() || next == '_'))
    })
}

/// Removes `start..end` and the line break right after it.
fn remove_with_line_end(text: &mut String, start: usize, end: usize) {
    let end = if text[end..].starts_with('\n') { end + 1 } else { end };
    text.replace_range(start..end, "");
}

/// At most one blank line in a row, none at the start.
fn collapse_blank_lines(text: &str) -> String {
    let mut result = String::new();
    let mut blank_lines = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            blank_lines += 1;
            if blank_lines > 1 || result.is_empty() {
                continue;
            }
        } else {
            blank_lines = 0;
        }
        result.push_str(line);
        result.push('\n');
    }
    result
}

/// The `[dependencies]` of a user-style app: the example's own (without hotswap's SDK; axum with
/// its default features), tokio with "full" as `cargo add tokio -F full` writes it, and `tracing`
/// when the source logs.
pub(crate) fn user_style_dependencies(
    example_dependencies: &toml::Table,
    source: &str,
) -> toml::Table {
    let mut dependencies = toml::Table::new();
    for (name, value) in example_dependencies {
        if name != "hotswap-handler" && name != "axum" {
            dependencies.insert(name.clone(), value.clone());
        }
    }
    let axum_version = match example_dependencies.get("axum") {
        Some(toml::Value::String(version)) => version.clone(),
        Some(toml::Value::Table(table)) => {
            table.get("version").and_then(toml::Value::as_str).unwrap_or(AXUM_VERSION).to_owned()
        }
        _ => AXUM_VERSION.to_owned(),
    };
    dependencies.insert("axum".into(), axum_version.into());
    let mut tokio = toml::Table::new();
    tokio.insert("version".into(), "1".into());
    tokio.insert("features".into(), toml::Value::Array(vec!["full".into()]));
    dependencies.insert("tokio".into(), toml::Value::Table(tokio));
    if source.contains("tracing::") {
        dependencies.insert("tracing".into(), "0.1".into());
    }
    dependencies
}

/// `--config` values that give the settings of a manifest's `[profile]` table, one per setting:
/// `profile.dev.debug="line-tables-only"`, `profile.dev.package."*".debug=false`.
pub(crate) fn profile_config_arguments(profile: &toml::Table) -> Vec<String> {
    fn flatten(prefix: &str, table: &toml::Table, arguments: &mut Vec<String>) {
        for (key, value) in table {
            let bare = !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            let key = if bare { key.clone() } else { format!("{key:?}") };
            let path = format!("{prefix}.{key}");
            match value {
                toml::Value::Table(inner) => flatten(&path, inner, arguments),
                other => arguments.push(format!("{path}={other}")),
            }
        }
    }
    let mut arguments = Vec::new();
    flatten("profile", profile, &mut arguments);
    arguments
}

/// The user-style workspace: where it is and how it builds.
#[derive(Debug, Clone)]
pub(crate) struct UserStyleWorkspace {
    pub(crate) root: PathBuf,
    /// `--config` values for [`BuildProfile::ExamplesProfile`].
    examples_profile_arguments: Vec<String>,
}

/// One app's user-style crate.
#[derive(Debug, Clone)]
pub(crate) struct UserStyleCrate {
    pub(crate) package: String,
    pub(crate) source_file: PathBuf,
    pub(crate) original_source: String,
}

impl UserStyleWorkspace {
    /// Writes the workspace manifest (no profile settings) for `packages`, with a lock file
    /// seeded from the examples' (so shared dependencies resolve to the same versions).
    pub(crate) fn prepare(
        root: PathBuf,
        examples: &Path,
        packages: &[String],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let examples_manifest: toml::Table =
            std::fs::read_to_string(examples.join("Cargo.toml"))?.parse()?;
        let examples_profile_arguments = examples_manifest
            .get("profile")
            .and_then(toml::Value::as_table)
            .map(profile_config_arguments)
            .unwrap_or_default();
        let mut workspace = toml::Table::new();
        workspace.insert("resolver".into(), "3".into());
        workspace.insert(
            "members".into(),
            toml::Value::Array(packages.iter().cloned().map(toml::Value::String).collect()),
        );
        let mut manifest = toml::Table::new();
        manifest.insert("workspace".into(), toml::Value::Table(workspace));
        write_if_changed(
            &root.join("Cargo.toml"),
            &format!(
                "# Written by hotswap-bench: the examples as ordinary axum binaries, with cargo's default profiles.\n{}",
                toml::to_string(&manifest)?
            ),
        )?;
        let lock = root.join("Cargo.lock");
        if !lock.exists() {
            std::fs::copy(examples.join("Cargo.lock"), &lock)?;
        }
        Ok(Self { root, examples_profile_arguments })
    }

    /// Writes `APP-axum` from the app in `example_directory` (from `origin`), with the app's
    /// askama `templates/` when it has some.
    pub(crate) fn write_crate(
        &self,
        app_name: &str,
        origin: &str,
        example_directory: &Path,
        source: UserStyleSource,
        lib_source: &str,
        greeting: &str,
    ) -> anyhow::Result<UserStyleCrate> {
        let package = format!("{app_name}-axum");
        let directory = self.root.join(&package);
        let text = user_style_source(source, origin, lib_source, greeting)?;
        let example_manifest: toml::Table =
            std::fs::read_to_string(example_directory.join("Cargo.toml"))?.parse()?;
        let example_dependencies = example_manifest
            .get("dependencies")
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default();
        let mut package_table = toml::Table::new();
        package_table.insert("name".into(), package.clone().into());
        package_table.insert("version".into(), "0.1.0".into());
        package_table.insert("edition".into(), "2024".into());
        package_table.insert("publish".into(), false.into());
        let mut manifest = toml::Table::new();
        manifest.insert("package".into(), toml::Value::Table(package_table));
        manifest.insert(
            "dependencies".into(),
            toml::Value::Table(user_style_dependencies(&example_dependencies, &text)),
        );
        std::fs::create_dir_all(directory.join("src"))?;
        write_if_changed(
            &directory.join("Cargo.toml"),
            &format!(
                "# Written by hotswap-bench: {origin} as an ordinary axum binary.\n{}",
                toml::to_string(&manifest)?
            ),
        )?;
        let source_file = directory.join("src/main.rs");
        write_if_changed(&source_file, &text)?;
        let templates = example_directory.join("templates");
        if templates.is_dir() {
            crate::bench_workspace::copy_directory(&templates, &directory.join("templates"), &[])?;
        }
        Ok(UserStyleCrate { package, source_file, original_source: text })
    }

    pub(crate) fn target_dir(&self, profile: BuildProfile, linker: Linker) -> PathBuf {
        self.root.join(format!(
            "{}{}",
            profile.user_style_target_dir_name(),
            linker.target_dir_suffix()
        ))
    }

    pub(crate) fn binary(&self, package: &str, profile: BuildProfile, linker: Linker) -> PathBuf {
        self.target_dir(profile, linker).join("debug").join(package)
    }

    /// `cargo build` of a user-style app, as `cargo run` would before starting it.
    pub(crate) fn build_command(
        &self,
        package: &str,
        profile: BuildProfile,
        linker: Linker,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(crate::bench_workspace::cargo_program());
        command
            .args(["build", "--color=never", "--manifest-path"])
            .arg(self.root.join("Cargo.toml"))
            .args(["-p", package, "--bin", package, "--target-dir"])
            .arg(self.target_dir(profile, linker))
            .args(linker.cargo_arguments());
        if profile == BuildProfile::ExamplesProfile {
            for argument in &self.examples_profile_arguments {
                command.arg("--config").arg(argument);
            }
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

pub(crate) fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// Sends `requests` in order to the app served by hotswap's SDK (`reference`) and to its
/// user-style version, each on one keep-alive connection, and fails at the first request whose
/// status or body differ.
pub(crate) async fn check_same_responses(
    app_name: &str,
    reference: SocketAddr,
    user_style: SocketAddr,
    requests: &[CheckedRequest],
) -> anyhow::Result<()> {
    let connect = |address| async move {
        HttpConnection::connect(address)
            .await
            .map_err(|error| anyhow::anyhow!("cannot connect to {address}: {error}"))
    };
    let mut reference_connection = connect(reference).await?;
    let mut user_style_connection = connect(user_style).await?;
    for (method, path, body) in requests {
        let expected = reference_connection
            .request(method, path, body)
            .await
            .map_err(|error| anyhow::anyhow!("{app_name} {method} {path}: {error}"))?;
        let got = user_style_connection
            .request(method, path, body)
            .await
            .map_err(|error| anyhow::anyhow!("{app_name}-axum {method} {path}: {error}"))?;
        if let Some(difference) =
            response_difference((expected.status, &expected.body), (got.status, &got.body))
        {
            bail!(
                "{app_name}-axum answers {method} {path} unlike {app_name} on hotswap's SDK: {difference}; \
                 update bench/src/user_style.rs"
            );
        }
    }
    Ok(())
}

/// How two responses (status, body) differ, or `None` when they do not.
fn response_difference(expected: (u16, &str), got: (u16, &str)) -> Option<String> {
    if expected.0 != got.0 {
        Some(format!("status {} instead of {}", got.0, expected.0))
    } else if expected.1 != got.1 {
        Some(format!("body {:?} instead of {:?}", got.1, expected.1))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODO_SOURCE: &str = include_str!("../../examples/todo/src/lib.rs");

    #[test]
    fn todo_becomes_an_axum_app_without_hotswap() {
        let text = user_style_source(TODO_AXUM, "examples/todo", TODO_SOURCE, "").unwrap();
        assert!(!text.contains("hotswap_handler"), "{text}");
        assert!(!text.contains("impl Handler"), "{text}");
        assert!(!text.contains("export_router"), "{text}");
        assert!(text.contains("pub struct TodoState"), "{text}");
        // The routes, the handlers and the line the benchmark edits stay.
        assert!(text.contains("fn routes(state: Shared) -> Router"), "{text}");
        assert!(text.contains(".route(\"/todos/{id}\", get(show).patch(update).delete(remove))"));
        assert!(text.contains("\"todo: {} items, {open} open\\n\""));
        assert!(text.contains("tracing::info!(id = item.id"));
        assert!(text.contains("tokio::time::sleep"));
        assert!(text.contains("#[tokio::main]\nasync fn main()"));
        assert!(text.contains("axum::serve(listener, app(Shared::default()).await)"));
        assert!(text.starts_with("//! examples/todo as a user without hotswap writes it"));
        assert_eq!(text.matches("//!").count(), 2, "only the generated header: {text}");
    }

    #[test]
    fn removes_items_with_their_docs_and_attributes() {
        let source = "//! A handler.\n\
                      use hotswap_handler::{\n    Handler,\n    Request,\n};\nuse std::sync::Arc;\n\n\
                      /// The handler.\n#[derive(Debug)]\npub struct App;\n\n\
                      impl Handler for App {\n    fn new() -> Self {\n        App {}\n    }\n}\n\n\
                      hotswap_handler::export_handler!(App);\n\n\
                      fn routes() {\n    hotswap_handler::tokio::spawn(async {});\n}\n";
        assert_eq!(
            without_hotswap(source, "App").unwrap(),
            "use std::sync::Arc;\n\nfn routes() {\n    tokio::spawn(async {});\n}\n"
        );
        assert_eq!(exported_handler_type(source).as_deref(), Some("App"));
    }

    #[test]
    fn sdk_features_without_a_plain_equivalent_are_refused() {
        let source = "pub struct App;\nimpl Handler for App {}\nhotswap_handler::export_handler!(App);\n\
                      fn body() -> hotswap_handler::Body { hotswap_handler::Body::empty() }\n";
        let error = without_hotswap(source, "App").unwrap_err().to_string();
        assert!(error.contains("hotswap_handler::Body"), "{error}");
        assert!(without_hotswap("fn main() {}\n", "App").is_err());
    }

    #[test]
    fn hello_says_what_the_example_says() {
        let text = user_style_source(HELLO_AXUM, "examples/hello", "", "\"hello from hotswap\\n\"")
            .unwrap();
        assert!(text.contains(".route(\"/\", get(|| async { \"hello from hotswap\\n\" }))"));
        assert!(text.contains(".route(\"/health\", get(|| async { \"ok\\n\" }))"));
        let example = include_str!("../../examples/hello/src/lib.rs");
        assert!(example.contains("\"hello from hotswap\\n\"") && example.contains("\"ok\\n\""));
    }

    #[test]
    fn dependencies_are_the_examples_with_axum_defaults_and_tokio_full() {
        let example: toml::Table = toml::from_str(
            r#"
            axum = { version = "0.8.9", default-features = false, features = ["json", "query"] }
            hotswap-handler = { workspace = true, features = ["axum"] }
            serde = { version = "1.0.219", features = ["derive"] }
            "#,
        )
        .unwrap();
        let dependencies = user_style_dependencies(&example, "tracing::info!()");
        assert_eq!(
            toml::to_string(&dependencies).unwrap(),
            "axum = \"0.8.9\"\ntracing = \"0.1\"\n\n[serde]\nfeatures = [\"derive\"]\nversion = \"1.0.219\"\n\n\
             [tokio]\nfeatures = [\"full\"]\nversion = \"1\"\n"
        );
        let hello = user_style_dependencies(&toml::Table::new(), "");
        assert_eq!(hello.keys().collect::<Vec<_>>(), ["axum", "tokio"]);
        assert_eq!(hello["axum"].as_str(), Some(AXUM_VERSION));
    }

    #[test]
    fn profiles_become_config_arguments() {
        let manifest: toml::Table = "[profile.dev]\ndebug = \"line-tables-only\"\n\
                                     [profile.dev.package.\"*\"]\ndebug = false\n"
            .parse()
            .unwrap();
        let profile = manifest["profile"].as_table().unwrap();
        assert_eq!(
            profile_config_arguments(profile),
            ["profile.dev.debug=\"line-tables-only\"", "profile.dev.package.\"*\".debug=false"]
        );
    }

    #[test]
    fn lld_leaves_its_version_in_the_comment_section() {
        let comment =
            b"\x7fELF...GCC: (Debian 12.2.0-14) 12.2.0\0Linker: LLD 20.1.8 (rustc)\0rustc version";
        assert_eq!(lld_version(comment).as_deref(), Some("LLD 20.1.8"));
        assert_eq!(lld_version(b"\x7fELF...GCC: (Debian 12.2.0-14) 12.2.0\0"), None);
    }

    #[test]
    fn responses_differ_by_status_or_body() {
        assert_eq!(response_difference((200, "ok\n"), (200, "ok\n")), None);
        assert_eq!(
            response_difference((404, ""), (200, "")).as_deref(),
            Some("status 200 instead of 404")
        );
        assert_eq!(
            response_difference((200, "a"), (200, "b")).as_deref(),
            Some("body \"b\" instead of \"a\"")
        );
    }
}
