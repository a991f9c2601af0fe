//! `hotswap.toml`: the workspace's settings, with defaults for everything.
//!
//! ```toml
//! package = "todo"                  # the handler crate; default: the package in this directory
//!
//! [server]
//! listen = "127.0.0.1:3000"
//! max_body_bytes = 0                # request bodies stream; above this many bytes, 413 (0: no limit)
//! worker_threads = 2                # of each generation's runtime
//! max_connections = 10000           # beyond this, new connections get a 503
//! first_byte_timeout_ms = 10000     # a connection that sends nothing for this long is closed (0: never)
//!
//! [build]
//! profile = "dev"
//! features = []
//! no_default_features = false
//! target_dir = "target/hotswap"     # default: <cargo's target dir>/hotswap
//! debounce_ms = 50                  # quiet time after a save before building
//! direct_rustc = true               # saves of the handler's own sources: rustc without cargo
//! shared_deps = true                # ...linking only the app's code (dependencies linked once)
//!
//! [swap]
//! drain_timeout_ms = 5000           # then requests still running on the old code get 503
//! stream_drain_timeout_ms = 10000   # then WebSockets get close 1012 and streamed responses end
//! snapshot_interval_ms = 1000       # state snapshots while serving: the most a crash loses (0: off)
//! smoke_path = "/health"            # must answer 2xx before a new generation serves
//! state_on_import_failure = "reject" # or "fresh": drop a state the new build cannot read
//! export_timeout_ms = 60000         # then the swap is refused and the old generation keeps its state
//! init_timeout_ms = 10000
//! rollback_depth = 5
//!
//! [log]
//! filter = "info"                   # handler `tracing`, e.g. "info,tower_http=debug" (RUST_LOG and -v win)
//! [browser]
//! live_reload = true                # pages reload after a swap, swap stylesheets in place, show build errors
//! asset_dirs = ["assets", "static", "public"] # saves here start no build (default: those of the handler package that exist)
//! runtime_templates = []            # globs of templates the app reads at run time, e.g. ["templates/**/*.html"]
//! ```
//!
//! `asset_dirs` and `runtime_templates` are relative to the handler package's directory (where
//! generations run). A file the last build read (`include_str!`, an askama template) builds
//! anyway: see `browser.rs`.
//!
//! Unknown keys and bad values are errors that name the key and the line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::engine::StatePolicy;

/// The name of the file that marks a hotswap workspace.
pub const CONFIG_FILE: &str = "hotswap.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub build: BuildSection,
    #[serde(default)]
    pub swap: SwapSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub browser: BrowserSection,
}

/// `[log]`: what handler code logs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `tracing` directives for handler code, as `RUST_LOG` takes them without regular
    /// expressions: `info`, `warn,my_app=debug,tower_http=debug`. `RUST_LOG` and `hotswap serve
    /// -v` override it.
    #[serde(default)]
    pub filter: Option<String>,
}

/// `[browser]`: live reload in pages, and the files that start no build.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserSection {
    #[serde(default = "default_live_reload")]
    pub live_reload: bool,
    /// `None`: `assets/`, `static/` and `public/` of the handler package, where they exist.
    #[serde(default)]
    pub asset_dirs: Option<Vec<PathBuf>>,
    #[serde(default, deserialize_with = "runtime_templates")]
    pub runtime_templates: Vec<String>,
}

impl Default for BrowserSection {
    fn default() -> Self {
        Self { live_reload: default_live_reload(), asset_dirs: None, runtime_templates: Vec::new() }
    }
}

fn default_live_reload() -> bool {
    true
}

fn runtime_templates<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let globs = Vec::<String>::deserialize(deserializer)?;
    for glob in &globs {
        crate::browser::check_glob(glob).map_err(serde::de::Error::custom)?;
    }
    Ok(globs)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// 0: no limit of hotswap's own (the app's, such as axum's `DefaultBodyLimit`, applies).
    #[serde(default)]
    pub max_body_bytes: u64,
    #[serde(default = "default_worker_threads", deserialize_with = "worker_threads")]
    pub worker_threads: u32,
    #[serde(default = "default_max_connections", deserialize_with = "positive_u64")]
    pub max_connections: u64,
    #[serde(default = "default_first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: 0,
            worker_threads: default_worker_threads(),
            max_connections: default_max_connections(),
            first_byte_timeout_ms: default_first_byte_timeout_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    #[serde(default = "default_profile", deserialize_with = "profile")]
    pub profile: String,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub no_default_features: bool,
    #[serde(default)]
    pub target_dir: Option<PathBuf>,
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// Saves that touch only the handler's own sources run the rustc cargo last ran for it,
    /// without cargo (see `builder::direct`).
    #[serde(default = "default_direct_rustc")]
    pub direct_rustc: bool,
    /// Those saves link only the app's code: its dependencies are one shared library, built
    /// once in the background (see `builder::shared_deps`).
    #[serde(default = "default_shared_deps")]
    pub shared_deps: bool,
}

impl Default for BuildSection {
    fn default() -> Self {
        Self {
            profile: default_profile(),
            features: Vec::new(),
            no_default_features: false,
            target_dir: None,
            debounce_ms: default_debounce_ms(),
            direct_rustc: default_direct_rustc(),
            shared_deps: default_shared_deps(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapSection {
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    #[serde(default = "default_stream_drain_timeout_ms")]
    pub stream_drain_timeout_ms: u64,
    #[serde(default = "default_snapshot_interval_ms")]
    pub snapshot_interval_ms: u64,
    #[serde(default = "default_export_timeout_ms", deserialize_with = "positive_u64")]
    pub export_timeout_ms: u64,
    #[serde(default, deserialize_with = "smoke_path")]
    pub smoke_path: Option<String>,
    #[serde(default = "default_state_policy")]
    pub state_on_import_failure: StatePolicy,
    #[serde(default = "default_init_timeout_ms", deserialize_with = "positive_u64")]
    pub init_timeout_ms: u64,
    #[serde(default = "default_rollback_depth")]
    pub rollback_depth: usize,
}

impl Default for SwapSection {
    fn default() -> Self {
        Self {
            drain_timeout_ms: default_drain_timeout_ms(),
            stream_drain_timeout_ms: default_stream_drain_timeout_ms(),
            snapshot_interval_ms: default_snapshot_interval_ms(),
            export_timeout_ms: default_export_timeout_ms(),
            smoke_path: None,
            state_on_import_failure: default_state_policy(),
            init_timeout_ms: default_init_timeout_ms(),
            rollback_depth: default_rollback_depth(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3000))
}
fn default_worker_threads() -> u32 {
    2
}
fn default_profile() -> String {
    "dev".to_owned()
}
fn default_debounce_ms() -> u64 {
    50
}
fn default_direct_rustc() -> bool {
    true
}
fn default_shared_deps() -> bool {
    true
}
fn default_drain_timeout_ms() -> u64 {
    5000
}
fn default_stream_drain_timeout_ms() -> u64 {
    10_000
}
fn default_snapshot_interval_ms() -> u64 {
    1000
}
fn default_export_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> u64 {
    10_000
}
fn default_first_byte_timeout_ms() -> u64 {
    10_000
}
fn default_state_policy() -> StatePolicy {
    StatePolicy::Reject
}
fn default_init_timeout_ms() -> u64 {
    10_000
}
fn default_rollback_depth() -> usize {
    5
}

fn positive_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = u64::deserialize(deserializer)?;
    if value == 0 {
        return Err(serde::de::Error::custom("must be greater than 0"));
    }
    Ok(value)
}

fn worker_threads<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = u32::deserialize(deserializer)?;
    if !(1..=256).contains(&value) {
        return Err(serde::de::Error::custom(format!("must be between 1 and 256, not {value}")));
    }
    Ok(value)
}

fn profile<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    let valid = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(serde::de::Error::custom(format!("{value:?} is not a cargo profile name")));
    }
    Ok(value)
}

fn smoke_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(deserializer)?;
    if !value.starts_with('/') || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(serde::de::Error::custom(format!(
            "must be a request path starting with `/` and without spaces, like \"/health\", not {value:?}"
        )));
    }
    Ok(Some(value))
}

/// A workspace's settings after reading `hotswap.toml` and applying command-line overrides.
#[derive(Debug, Clone)]
pub struct Config {
    /// The canonical directory that holds `hotswap.toml`.
    pub workspace_root: PathBuf,
    pub file: ConfigFile,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no {CONFIG_FILE} in {} or any directory above it; create one (or run `hotswap new DIR` to start an app)",
        start.display()
    )]
    NotFound { start: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Finds `hotswap.toml` in `start` or the nearest directory above it, and reads it.
    pub fn discover(start: &Path) -> Result<Self, ConfigError> {
        let start = start
            .canonicalize()
            .map_err(|source| ConfigError::Read { path: start.to_path_buf(), source })?;
        let root = start
            .ancestors()
            .find(|directory| directory.join(CONFIG_FILE).is_file())
            .ok_or_else(|| ConfigError::NotFound { start: start.clone() })?;
        Self::load(root)
    }

    /// Reads `root/hotswap.toml`.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let path = root.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let file = Self::parse(&text)
            .map_err(|message| ConfigError::Invalid { path: path.clone(), message })?;
        let workspace_root = root
            .canonicalize()
            .map_err(|source| ConfigError::Read { path: root.to_path_buf(), source })?;
        Ok(Self { workspace_root, file })
    }

    /// Parses the text of a `hotswap.toml`. Errors name the key and line.
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())
    }

    pub fn listen(&self) -> SocketAddr {
        self.file.server.listen
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.file.build.debounce_ms)
    }

    /// The target directory hotswap builds in, made absolute against the workspace root; `None`
    /// means the default, `<cargo's target dir>/hotswap`.
    pub fn target_dir(&self) -> Option<PathBuf> {
        self.file.build.target_dir.as_ref().map(|dir| normalized(&self.workspace_root.join(dir)))
    }
}

/// `path` without `.` and `..` components (resolved by the text, since the directory may not
/// exist yet). Cargo keys its incremental cache by the target directory's spelling: `app/../target`
/// and `target` would rebuild from scratch each time one follows the other.
pub fn normalized(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut result = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !result.pop() {
                    result.push(component);
                }
            }
            other => result.push(other),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let file = Config::parse("").unwrap();
        assert_eq!(file.server.listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(file.build.profile, "dev");
        assert_eq!(file.build.debounce_ms, 50);
        assert_eq!(file.swap.drain_timeout_ms, 5000);
        assert_eq!(file.swap.state_on_import_failure, StatePolicy::Reject);
        assert_eq!(file.swap.smoke_path, None);
        assert!(file.browser.live_reload);
        assert_eq!(file.browser.asset_dirs, None);
        assert!(file.browser.runtime_templates.is_empty());
    }

    #[test]
    fn the_browser_section_is_read_and_checked() {
        let file = Config::parse(
            "[browser]\nlive_reload = false\nasset_dirs = [\"web\"]\nruntime_templates = [\"views/**/*.tera\"]\n",
        )
        .unwrap();
        assert!(!file.browser.live_reload);
        assert_eq!(file.browser.asset_dirs, Some(vec![PathBuf::from("web")]));
        assert_eq!(file.browser.runtime_templates, ["views/**/*.tera"]);
        let error = error_of("[browser]\nruntime_templates = [\"/srv/*.html\"]\n");
        assert!(error.contains("line 2") && error.contains("absolute"), "{error}");
        let error = error_of("[browser]\nreload = true\n");
        assert!(error.contains("unknown field `reload`"), "{error}");
    }

    #[test]
    fn a_full_file_is_read() {
        let file = Config::parse(
            r#"
package = "todo"
[server]
listen = "0.0.0.0:8080"
max_body_bytes = 1024
worker_threads = 4
[build]
profile = "release"
features = ["fast"]
no_default_features = true
target_dir = "/tmp/t"
debounce_ms = 10
[swap]
drain_timeout_ms = 100
smoke_path = "/health"
state_on_import_failure = "reject"
init_timeout_ms = 500
rollback_depth = 2
"#,
        )
        .unwrap();
        assert_eq!(file.package.as_deref(), Some("todo"));
        assert_eq!(file.server.worker_threads, 4);
        assert_eq!(file.build.features, ["fast"]);
        assert_eq!(file.swap.state_on_import_failure, StatePolicy::Reject);
        assert_eq!(file.swap.smoke_path.as_deref(), Some("/health"));
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let error = error_of("package = \"x\"\n\n[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n");
        assert!(error.contains("line 5"), "{error}");
        assert!(error.contains("unknown field `port`"), "{error}");
        assert!(error.contains("listen"), "lists the known keys: {error}");
        let error = error_of("[swapping]\n");
        assert!(error.contains("unknown field `swapping`") && error.contains("line 1"), "{error}");
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let error = error_of("[server]\nlisten = \"localhost\"\n");
        assert!(error.contains("line 2") && error.contains("listen"), "{error}");
        let error = error_of("[server]\nworker_threads = 0\n");
        assert!(error.contains("line 2") && error.contains("between 1 and 256"), "{error}");
        let error = error_of("[swap]\nsmoke_path = \"health\"\n");
        assert!(error.contains("line 2") && error.contains("starting with `/`"), "{error}");
        let error = error_of("[swap]\nstate_on_import_failure = \"maybe\"\n");
        assert!(error.contains("line 2") && error.contains("fresh"), "{error}");
        let error = error_of("[build]\ndebounce_ms = -1\n");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn target_dirs_are_spelled_without_dots() {
        assert_eq!(
            normalized(Path::new("/w/app/../target/./hotswap")),
            Path::new("/w/target/hotswap")
        );
        assert_eq!(normalized(Path::new("/w/app")), Path::new("/w/app"));
        let config = Config {
            workspace_root: "/w/app".into(),
            file: Config::parse("[build]\ntarget_dir = \"../target\"\n").unwrap(),
        };
        assert_eq!(config.target_dir(), Some(PathBuf::from("/w/target")));
    }

    #[test]
    fn discover_walks_up_to_the_file() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join(CONFIG_FILE), "package = \"app\"\n").unwrap();
        std::fs::create_dir_all(temp.path().join("src/routes")).unwrap();
        let config = Config::discover(&temp.path().join("src/routes")).unwrap();
        assert_eq!(config.workspace_root, temp.path().canonicalize().unwrap());
        assert_eq!(config.file.package.as_deref(), Some("app"));
        let elsewhere = tempfile::tempdir().unwrap();
        let error = Config::discover(elsewhere.path()).unwrap_err();
        assert!(error.to_string().contains("no hotswap.toml"), "{error}");
    }
}
