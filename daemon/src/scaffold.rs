//! `hotswap new DIR`: a handler crate and `hotswap.toml` that build and serve at once.

use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("../templates/new/Cargo.toml.in");
const HOTSWAP_TOML: &str = include_str!("../templates/new/hotswap.toml.in");
const LIB_RS: &str = include_str!("../templates/new/lib.rs.in");
const GITIGNORE: &str = "/target\n";

/// Where the new crate gets `hotswap-handler` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A local checkout's `handler/` directory.
    Path(PathBuf),
    /// A version from the registry.
    Version(String),
}

#[derive(Debug, Clone)]
pub struct ScaffoldOptions {
    pub directory: PathBuf,
    /// The package name; default: from the directory's name.
    pub name: Option<String>,
    pub sdk: SdkSource,
    /// A target directory to share with other apps (written into `hotswap.toml`).
    pub target_dir: Option<PathBuf>,
    pub listen: String,
}

/// What was made.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    pub directory: PathBuf,
    pub name: String,
    pub files: Vec<PathBuf>,
}

/// The `handler/` directory of the checkout this binary was built from, if it is still there.
pub fn checkout_handler_dir() -> Option<PathBuf> {
    let handler = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.join("handler");
    handler.join("Cargo.toml").is_file().then_some(handler)
}

/// The directory where apps made from a checkout share their build, so the dependencies build
/// once for all of them.
pub fn checkout_shared_target_dir() -> Option<PathBuf> {
    Some(checkout_handler_dir()?.parent()?.join("target").join("hotswap-apps"))
}

/// A valid cargo package name made from a directory name.
pub fn package_name(directory_name: &str) -> String {
    let mut name: String = directory_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_owned();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name = format!("app-{name}").trim_end_matches('-').to_owned();
    }
    const RESERVED: [&str; 8] =
        ["std", "core", "alloc", "test", "proc_macro", "self", "crate", "super"];
    if RESERVED.contains(&name.as_str()) {
        name = format!("{name}-app");
    }
    name
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Writes the new crate. Refuses a directory that exists and is not empty.
pub fn scaffold(options: &ScaffoldOptions) -> Result<Scaffolded, String> {
    let directory = std::path::absolute(&options.directory).map_err(|error| error.to_string())?;
    if directory.exists() {
        let mut entries = std::fs::read_dir(&directory)
            .map_err(|error| format!("cannot read {}: {error}", directory.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} already exists and is not empty; choose a new directory",
                directory.display()
            ));
        }
    }
    let directory_name =
        directory.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match &options.name {
        Some(name) => name.clone(),
        None => package_name(&directory_name),
    };
    let sdk = match &options.sdk {
        SdkSource::Path(path) => {
            format!("{{ path = {} }}", toml_string(&path.display().to_string()))
        }
        SdkSource::Version(version) => toml_string(version),
    };
    let target_dir = match &options.target_dir {
        Some(dir) => format!(
            "# Shared with other apps, so that dependencies build once.\ntarget_dir = {}\n",
            toml_string(&dir.display().to_string())
        ),
        None => String::new(),
    };
    let files = [
        ("Cargo.toml", CARGO_TOML.replace("{name}", &name).replace("{sdk}", &sdk)),
        (
            "hotswap.toml",
            HOTSWAP_TOML
                .replace("{name}", &name)
                .replace("{listen}", &options.listen)
                .replace("{target_dir}", &target_dir),
        ),
        ("src/lib.rs", LIB_RS.replace("{name}", &name)),
        (".gitignore", GITIGNORE.to_owned()),
    ];
    std::fs::create_dir_all(directory.join("src"))
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = directory.join(relative);
        std::fs::write(&path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        written.push(path);
    }
    // From a checkout, start from the examples' lock file: the same dependency versions as the
    // examples, so a shared target directory already holds them.
    if let SdkSource::Path(handler) = &options.sdk
        && let Some(lock) = handler.parent().map(|checkout| checkout.join("examples/Cargo.lock"))
        && lock.is_file()
    {
        let path = directory.join("Cargo.lock");
        std::fs::copy(&lock, &path)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        written.push(path);
    }
    Ok(Scaffolded { directory, name, files: written })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_valid() {
        assert_eq!(package_name("my-app"), "my-app");
        assert_eq!(package_name("My App"), "my-app");
        assert_eq!(package_name("2fast"), "app-2fast");
        assert_eq!(package_name("test"), "test-app");
        assert_eq!(package_name("__"), "app-__");
        assert_eq!(package_name("..."), "app");
    }

    #[test]
    fn writes_a_crate_and_refuses_a_non_empty_directory() {
        let temp = tempfile::tempdir().unwrap();
        let options = ScaffoldOptions {
            directory: temp.path().join("shop"),
            name: None,
            sdk: SdkSource::Path("/opt/hotswap/handler".into()),
            target_dir: Some("/tmp/shared".into()),
            listen: "127.0.0.1:3000".into(),
        };
        let made = scaffold(&options).unwrap();
        assert_eq!(made.name, "shop");
        let manifest = std::fs::read_to_string(temp.path().join("shop/Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"shop\""));
        assert!(manifest.contains("hotswap-handler = { path = \"/opt/hotswap/handler\" }"));
        let config = std::fs::read_to_string(temp.path().join("shop/hotswap.toml")).unwrap();
        crate::config::Config::parse(&config).expect("the generated hotswap.toml is valid");
        assert!(config.contains("target_dir = \"/tmp/shared\""));
        let library = std::fs::read_to_string(temp.path().join("shop/src/lib.rs")).unwrap();
        assert!(library.contains("hello from hotswap"));
        let error = scaffold(&options).unwrap_err();
        assert!(error.contains("not empty"), "{error}");
    }
}
