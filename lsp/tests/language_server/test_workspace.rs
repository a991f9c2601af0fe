//! A hotswap app in a temporary directory, and a private socket directory for its daemon, so
//! that tests never meet a daemon of the machine or of another test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hotswap_lsp::ServerEnvironment;
use hotswap_protocol::Endpoint;
use hotswap_protocol::endpoint::{EndpointEnvironment, current_uid};
use serde_json::{Value, json};

/// The handler source the tests start from; the editor scenarios change its greeting.
pub(crate) const INITIAL_SOURCE: &str = r#"//! The app's request handler.

pub fn greeting() -> &'static str {
    "hello from hotswap"
}
"#;

pub(crate) struct TestWorkspace {
    _temp: tempfile::TempDir,
    /// The app: holds `hotswap.toml` (canonical path).
    pub(crate) root: PathBuf,
    /// Stands for `$XDG_RUNTIME_DIR`: the daemons' sockets go below it.
    pub(crate) runtime_dir: PathBuf,
}

impl TestWorkspace {
    pub(crate) fn new() -> Self {
        let temp = tempfile::tempdir().expect("temporary directory");
        let base = temp.path().canonicalize().expect("canonical temporary directory");
        let root = base.join("app");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("hotswap.toml"), "# hotswap app\n").unwrap();
        std::fs::write(root.join("src/lib.rs"), INITIAL_SOURCE).unwrap();
        let runtime_dir = base.join("runtime");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        Self { _temp: temp, root, runtime_dir }
    }

    pub(crate) fn endpoint_environment(&self) -> EndpointEnvironment {
        EndpointEnvironment {
            runtime_dir: Some(self.runtime_dir.clone()),
            temp_dir: self.runtime_dir.clone(),
            uid: current_uid(),
        }
    }

    pub(crate) fn server_environment(&self) -> ServerEnvironment {
        ServerEnvironment {
            endpoint_environment: self.endpoint_environment(),
            editor_process_poll_interval: Duration::from_millis(50),
        }
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        Endpoint::derive(&self.root, &self.endpoint_environment())
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub(crate) fn uri(&self, relative: &str) -> String {
        file_uri(&self.path(relative))
    }

    /// `initialize` params of an editor opened on the app's folder.
    pub(crate) fn initialize_params(&self, initialization_options: Value) -> Value {
        json!({
            "processId": std::process::id(),
            "rootUri": self.uri(""),
            "workspaceFolders": [{"uri": self.uri(""), "name": "app"}],
            "capabilities": {"window": {"workDoneProgress": true, "showDocument": {"support": true}}},
            "initializationOptions": initialization_options,
        })
    }
}

/// `file://` + the path, with the characters URIs cannot hold escaped.
pub(crate) fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for byte in path.to_str().expect("UTF-8 test path").bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.trim_end_matches('/').to_owned()
}
