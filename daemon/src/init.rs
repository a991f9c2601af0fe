//! `hotswap init`: makes an existing crate (an axum binary, usually) ready for `hotswap serve`.
//! It edits what it can without guessing (the `[lib]` target, the dependencies, `hotswap.toml`,
//! `.gitignore`), keeping the manifest's comments and layout, and says the rest as a before and
//! an after: the router code moves into `pub async fn app(...)` in `src/lib.rs`.

use std::path::Path;

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};

use crate::scaffold::SdkSource;

/// What `init` did, and what is left to the user.
#[derive(Debug, Clone, Default)]
pub struct Initialized {
    pub package: String,
    /// One line per change, e.g. `Cargo.toml: [lib] crate-type = ["cdylib", "rlib"]`.
    pub changes: Vec<String>,
    /// Already so, e.g. `Cargo.toml already depends on hotswap-handler`.
    pub already: Vec<String>,
    /// What to do by hand, as text to print (with the before and after of the code).
    pub next_steps: String,
}

/// Sets up the crate in `directory`.
pub fn init(directory: &Path, sdk: &SdkSource, listen: &str) -> Result<Initialized, String> {
    let manifest_path = directory.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|error| {
        format!(
            "cannot read {} ({error}): run `hotswap init` in the directory of your crate, or \
             `hotswap new DIR` to start a new one",
            manifest_path.display()
        )
    })?;
    let mut manifest: DocumentMut = text
        .parse()
        .map_err(|error| format!("{} is not valid TOML: {error}", manifest_path.display()))?;
    let Some(package) = manifest.get("package").and_then(|package| package.get("name")) else {
        return Err(format!(
            "{} has no [package]: `hotswap init` sets up one crate; run it in the directory of \
             the crate that builds your server",
            manifest_path.display()
        ));
    };
    let package = package.as_str().unwrap_or_default().to_owned();
    let crate_name = package.replace('-', "_");
    let mut done = Initialized { package: package.clone(), ..Initialized::default() };
    let uses_axum = has_dependency(&manifest, "axum");

    // [lib] crate-type: a cdylib for hotswap, an rlib for the crate's own binary.
    let has_binary = directory.join("src/main.rs").is_file() || manifest.get("bin").is_some();
    let wanted: &[&str] = if has_binary { &["cdylib", "rlib"] } else { &["cdylib"] };
    let lib = manifest
        .entry("lib")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| format!("{}: [lib] is not a table", manifest_path.display()))?;
    let mut types: Vec<String> = lib
        .get("crate-type")
        .and_then(Item::as_array)
        .map(|types| types.iter().filter_map(|kind| kind.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let missing: Vec<&str> =
        wanted.iter().copied().filter(|kind| !types.iter().any(|have| have == kind)).collect();
    if missing.is_empty() {
        done.already.push(format!("Cargo.toml: [lib] crate-type has {}", wanted.join(" and ")));
    } else {
        if types.is_empty() && lib.get("crate-type").is_none() {
            // Without a crate-type a library is an rlib; keep it one.
            types.push("rlib".to_owned());
        }
        types.extend(missing.iter().map(|kind| (*kind).to_owned()));
        types.sort_by_key(|kind| kind != "cdylib");
        types.dedup();
        let mut array = Array::new();
        for kind in &types {
            array.push(kind.as_str());
        }
        lib.insert("crate-type", value(array));
        done.changes.push(format!(
            "Cargo.toml: [lib] crate-type = [{}]",
            types.iter().map(|kind| format!("\"{kind}\"")).collect::<Vec<_>>().join(", ")
        ));
    }

    // The dependencies: the SDK (with its axum adapter for an axum app) and serde for the State.
    let dependencies = manifest
        .entry("dependencies")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| format!("{}: [dependencies] is not a table", manifest_path.display()))?;
    if dependencies.contains_key("hotswap-handler") {
        done.already.push("Cargo.toml already depends on hotswap-handler".to_owned());
    } else {
        let mut sdk_table = InlineTable::new();
        match sdk {
            SdkSource::Path(path) => {
                sdk_table.insert("path", path.display().to_string().into());
            }
            SdkSource::Version(version) => {
                sdk_table.insert("version", version.as_str().into());
            }
        }
        if uses_axum {
            let mut features = Array::new();
            features.push("axum");
            sdk_table.insert("features", features.into());
        }
        dependencies.insert("hotswap-handler", value(sdk_table.clone()));
        done.changes.push(format!("Cargo.toml: hotswap-handler = {sdk_table}"));
    }
    if dependencies.contains_key("serde") {
        done.already.push("Cargo.toml already depends on serde".to_owned());
    } else {
        let mut serde = InlineTable::new();
        serde.insert("version", "1".into());
        let mut features = Array::new();
        features.push("derive");
        serde.insert("features", features.into());
        dependencies.insert("serde", value(serde));
        done.changes.push(
            "Cargo.toml: serde = { version = \"1\", features = [\"derive\"] } (the State that \
             survives swaps is serde)"
                .to_owned(),
        );
    }
    if done.changes.iter().any(|change| change.starts_with("Cargo.toml")) {
        std::fs::write(&manifest_path, manifest.to_string())
            .map_err(|error| format!("cannot write {}: {error}", manifest_path.display()))?;
    }

    // hotswap.toml.
    let config = directory.join(crate::config::CONFIG_FILE);
    if config.exists() {
        done.already.push(format!("{} exists", crate::config::CONFIG_FILE));
    } else {
        let text = format!(
            "# hotswap serve reads this file. Every key is optional; see the hotswap README.\n\
             package = \"{package}\"\n\n\
             [server]\n\
             listen = \"{listen}\"\n\n\
             [swap]\n\
             # A path that must answer 2xx before a new generation serves, e.g. \"/health\".\n\
             # smoke_path = \"/health\"\n\n\
             [log]\n\
             # Handler `tracing`, as RUST_LOG takes it (RUST_LOG and `hotswap serve -v` win).\n\
             filter = \"info\"\n"
        );
        std::fs::write(&config, text)
            .map_err(|error| format!("cannot write {}: {error}", config.display()))?;
        done.changes.push(format!("{}: listen = \"{listen}\"", crate::config::CONFIG_FILE));
    }

    // .gitignore: the build directory (and the state snapshots under it).
    let gitignore = directory.join(".gitignore");
    let ignored = std::fs::read_to_string(&gitignore).unwrap_or_default();
    if ignored
        .lines()
        .any(|line| matches!(line.trim(), "/target" | "target" | "target/" | "/target/"))
    {
        done.already.push(".gitignore ignores target/".to_owned());
    } else {
        let mut text = ignored.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("/target\n");
        std::fs::write(&gitignore, text)
            .map_err(|error| format!("cannot write {}: {error}", gitignore.display()))?;
        done.changes.push(".gitignore: /target (builds and hotswap's state snapshots)".to_owned());
    }

    done.next_steps = next_steps(directory, &crate_name, uses_axum);
    Ok(done)
}

fn has_dependency(manifest: &DocumentMut, name: &str) -> bool {
    manifest
        .get("dependencies")
        .and_then(Item::as_table_like)
        .is_some_and(|dependencies| dependencies.contains_key(name))
}

/// What the user does by hand: the code, as a before and an after.
fn next_steps(directory: &Path, crate_name: &str, uses_axum: bool) -> String {
    let lib = directory.join("src/lib.rs");
    let exported = std::fs::read_to_string(&lib)
        .is_ok_and(|text| text.contains("export_router!") || text.contains("export_handler!"));
    if exported {
        return "src/lib.rs exports a handler already: run `hotswap serve`.".to_owned();
    }
    if !uses_axum {
        return format!(
            "No axum dependency: implement `hotswap_handler::Handler` for your app in src/lib.rs and \
             end it with `hotswap_handler::export_handler!(YourApp);` (see `hotswap new` for an \
             example), then run `hotswap serve`.{}",
            lib_note(&lib)
        );
    }
    format!(
        "Now move the code that builds your Router into src/lib.rs (beside the move, a few changed lines: 9 in docs/axum.md's example, the AppState derives included):

  before, src/main.rs:
    #[tokio::main]
    async fn main() {{
        let state = AppState::default();
        let app = Router::new().route(\"/\", get(index)).with_state(state);
        let listener = tokio::net::TcpListener::bind(\"127.0.0.1:3000\").await.unwrap();
        axum::serve(listener, app).await.unwrap();
    }}

  after, src/lib.rs (the routes, handlers and state move here):
    pub async fn app(state: AppState) -> Router {{
        Router::new().route(\"/\", get(index)).with_state(state)
    }}
    hotswap_handler::export_router!(app, AppState);

  after, src/main.rs (`cargo run` serves it as before, without hotswap):
    #[tokio::main]
    async fn main() {{
        let app = {crate_name}::app(AppState::default()).await;
        let listener = tokio::net::TcpListener::bind(\"127.0.0.1:3000\").await.unwrap();
        axum::serve(listener, app).await.unwrap();
    }}

AppState is what survives swaps: derive Clone, Default, serde::Serialize and serde::Deserialize,
and keep its data in Arcs (Arc<RwLock<...>>), as axum state usually is. Without state:
`pub async fn app() -> Router` and `export_router!(app)`. A database pool or a client does not
survive: connect it inside `app()` (it may be async and return a Result). Then run
`hotswap serve`. The guide: docs/axum.md in the hotswap repository.{}",
        lib_note(&lib)
    )
}

fn lib_note(lib: &Path) -> String {
    if lib.exists() {
        String::new()
    } else {
        "\n(There is no src/lib.rs yet: create it; the [lib] target needs it.)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(manifest: &str, main: bool) -> tempfile::TempDir {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("Cargo.toml"), manifest).unwrap();
        std::fs::create_dir_all(directory.path().join("src")).unwrap();
        if main {
            std::fs::write(directory.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        }
        directory
    }

    const AXUM_BINARY: &str = "[package]\nname = \"shop-api\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n# The web framework.\n[dependencies]\naxum = \"0.8\"\ntokio = { version = \"1\", features = [\"full\"] }\n";

    #[test]
    fn an_axum_binary_gets_a_library_target_the_sdk_with_axum_and_serde_keeping_its_comments() {
        let directory = crate_with(AXUM_BINARY, true);
        let done =
            init(directory.path(), &SdkSource::Version("0.1.0".into()), "127.0.0.1:3000").unwrap();
        let manifest = std::fs::read_to_string(directory.path().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("# The web framework."), "{manifest}");
        let parsed: toml::Table = manifest.parse().unwrap();
        assert_eq!(
            parsed["lib"]["crate-type"],
            toml::Value::Array(vec!["cdylib".into(), "rlib".into()])
        );
        assert_eq!(parsed["dependencies"]["hotswap-handler"]["version"].as_str(), Some("0.1.0"));
        assert_eq!(
            parsed["dependencies"]["hotswap-handler"]["features"],
            toml::Value::Array(vec!["axum".into()])
        );
        assert!(parsed["dependencies"].get("serde").is_some());
        let config = std::fs::read_to_string(directory.path().join("hotswap.toml")).unwrap();
        assert!(config.contains("package = \"shop-api\""), "{config}");
        assert!(config.contains("listen = \"127.0.0.1:3000\""), "{config}");
        assert_eq!(
            std::fs::read_to_string(directory.path().join(".gitignore")).unwrap(),
            "/target\n"
        );
        assert_eq!(done.changes.len(), 5, "{:?}", done.changes);
        assert!(
            done.next_steps.contains("shop_api::app(AppState::default()).await"),
            "{}",
            done.next_steps
        );
        assert!(done.next_steps.contains("export_router!(app, AppState)"));

        // Again: nothing to change, everything already so.
        let again =
            init(directory.path(), &SdkSource::Version("0.1.0".into()), "127.0.0.1:3000").unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert_eq!(std::fs::read_to_string(directory.path().join("Cargo.toml")).unwrap(), manifest);
    }

    #[test]
    fn an_existing_library_keeps_its_crate_types_and_gains_cdylib() {
        let manifest = "[package]\nname = \"lib-only\"\nversion = \"0.1.0\"\n\n[lib]\ncrate-type = [\"staticlib\"]\n";
        let directory = crate_with(manifest, false);
        init(directory.path(), &SdkSource::Path("/opt/hotswap/handler".into()), "127.0.0.1:4000")
            .unwrap();
        let parsed: toml::Table =
            std::fs::read_to_string(directory.path().join("Cargo.toml")).unwrap().parse().unwrap();
        assert_eq!(
            parsed["lib"]["crate-type"],
            toml::Value::Array(vec!["cdylib".into(), "staticlib".into()])
        );
        assert_eq!(
            parsed["dependencies"]["hotswap-handler"]["path"].as_str(),
            Some("/opt/hotswap/handler")
        );
        assert!(parsed["dependencies"]["hotswap-handler"].get("features").is_none());
    }

    #[test]
    fn a_workspace_manifest_or_no_manifest_says_where_to_run_it() {
        let directory = crate_with("[workspace]\nmembers = [\"api\"]\n", false);
        let error = init(directory.path(), &SdkSource::Version("0.1.0".into()), "x").unwrap_err();
        assert!(error.contains("has no [package]"), "{error}");
        let empty = tempfile::tempdir().unwrap();
        let error = init(empty.path(), &SdkSource::Version("0.1.0".into()), "x").unwrap_err();
        assert!(error.contains("hotswap new DIR"), "{error}");
    }
}
