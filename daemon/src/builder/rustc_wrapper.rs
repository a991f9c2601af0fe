//! `hotswap` as cargo's `RUSTC_WORKSPACE_WRAPPER`: records the rustc command line and
//! environment cargo uses for the handler crate, then becomes that rustc.
//!
//! The daemon runs cargo with `RUSTC_WORKSPACE_WRAPPER` set to its own binary and
//! [`CAPTURE_FILE_VARIABLE`] set to where the record goes. Cargo then runs
//! `hotswap <rustc> <arguments...>` for each rustc of a workspace member (and for its own
//! `rustc -vV` queries). For the handler's library, the wrapper writes an [`Invocation`]; for
//! everything it `exec`s rustc with the same arguments, so cargo sees rustc itself (its output,
//! its exit status, its jobserver tokens, its process group).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the wrapper writes the record of the handler's rustc.
pub(crate) const CAPTURE_FILE_VARIABLE: &str = "HOTSWAP_RUSTC_CAPTURE";
/// The handler package's directory: only its library's rustc is recorded.
pub(crate) const CAPTURE_PACKAGE_VARIABLE: &str = "HOTSWAP_RUSTC_CAPTURE_PACKAGE";

/// Environment variables not to pass on when rustc runs again outside cargo: ours, and cargo's
/// jobserver (its descriptors exist only while that cargo runs).
const NOT_RECORDED: [&str; 5] =
    [CAPTURE_FILE_VARIABLE, CAPTURE_PACKAGE_VARIABLE, "CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS"];

/// One rustc as cargo ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub program: PathBuf,
    pub arguments: Vec<String>,
    pub working_directory: PathBuf,
    /// The whole environment rustc got (cargo's `CARGO_PKG_*`, `OUT_DIR`... and the daemon's),
    /// sorted by name.
    pub environment: Vec<(String, String)>,
}

impl Invocation {
    /// This rustc with `arguments` in its place, run again as cargo ran it (its environment
    /// only, its working directory), in a process group of its own, killed when dropped.
    pub(crate) fn command(&self, arguments: &[String]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(arguments)
            .env_clear()
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .current_dir(&self.working_directory)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    /// The value of `--name value` or `--name=value` among the arguments.
    pub fn argument(&self, name: &str) -> Option<&str> {
        let mut arguments = self.arguments.iter();
        while let Some(argument) = arguments.next() {
            if argument == name {
                return arguments.next().map(String::as_str);
            }
            if let Some(value) = argument.strip_prefix(name).and_then(|rest| rest.strip_prefix('='))
            {
                return Some(value);
            }
        }
        None
    }

    /// Every value of `--name value` (or `--name=value`).
    pub fn arguments_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let mut previous_was_name = false;
        self.arguments.iter().filter_map(move |argument| {
            if std::mem::replace(&mut previous_was_name, argument == name) {
                return Some(argument.as_str());
            }
            argument.strip_prefix(name).and_then(|rest| rest.strip_prefix('='))
        })
    }

    pub fn variable(&self, name: &str) -> Option<&str> {
        self.environment.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The library files the crate links against (`--extern name=path`).
    pub fn extern_files(&self) -> Vec<PathBuf> {
        self.arguments_named("--extern")
            .filter_map(|value| value.split_once('=').map(|(_, path)| PathBuf::from(path)))
            .collect()
    }
}

/// Runs as the wrapper when cargo started this process as one: records the handler's rustc,
/// then replaces this process with rustc. Returns (doing nothing) otherwise.
pub fn run_if_requested() {
    let Some(capture_file) = std::env::var_os(CAPTURE_FILE_VARIABLE) else { return };
    let mut arguments = std::env::args_os().skip(1);
    let Some(rustc) = arguments.next() else { return };
    let arguments: Vec<OsString> = arguments.collect();
    if let Some(package) = std::env::var_os(CAPTURE_PACKAGE_VARIABLE)
        && is_handler_library(&arguments, Path::new(&package))
        && let Some(invocation) = invocation(&rustc, &arguments)
    {
        // A record that cannot be written only costs the fast path: the next build uses cargo.
        let _ = write(Path::new(&capture_file), &invocation);
    }
    let mut command = std::process::Command::new(&rustc);
    command.args(&arguments);
    command.env_remove(CAPTURE_FILE_VARIABLE).env_remove(CAPTURE_PACKAGE_VARIABLE);
    let error = command.exec();
    eprintln!("error: hotswap (as cargo's rustc wrapper) cannot run {}: {error}", rustc.display());
    std::process::exit(101);
}

/// True for the rustc of the handler package's cdylib (not a `rustc -vV` or `--print` query,
/// not another workspace member).
fn is_handler_library(arguments: &[OsString], package: &Path) -> bool {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR");
    let is_package = manifest_dir.is_some_and(|directory| Path::new(&directory) == package);
    let cdylib = arguments.windows(2).any(|pair| pair[0] == "--crate-type" && pair[1] == "cdylib");
    is_package && cdylib && std::env::var_os("CARGO_PRIMARY_PACKAGE").is_some()
}

/// The record, when every part is UTF-8 and no argument is an `@file` (which rustc would expand,
/// and which cargo deletes afterwards).
fn invocation(rustc: &OsString, arguments: &[OsString]) -> Option<Invocation> {
    let arguments: Vec<String> = arguments
        .iter()
        .map(|argument| argument.to_str().map(str::to_owned))
        .collect::<Option<_>>()?;
    if arguments.iter().any(|argument| argument.starts_with('@')) {
        return None;
    }
    let mut environment = Vec::new();
    for (name, value) in std::env::vars_os() {
        let (name, value) = (name.into_string().ok()?, value.into_string().ok()?);
        if !NOT_RECORDED.contains(&name.as_str()) {
            environment.push((name, value));
        }
    }
    environment.sort();
    Some(Invocation {
        program: PathBuf::from(rustc.to_str()?),
        arguments,
        working_directory: std::env::current_dir().ok()?,
        environment,
    })
}

/// Writes the record where the daemon reads it.
fn write(path: &Path, invocation: &Invocation) -> std::io::Result<()> {
    write_private(path, &serde_json::to_vec(invocation).map_err(std::io::Error::other)?)
}

/// Writes `bytes` to `path` as a new file renamed into place, private to the user (a record
/// holds the environment).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&partial, path)
}

/// Reads the record the wrapper wrote, if it wrote one.
pub(crate) fn read(path: &Path) -> Option<Invocation> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(arguments: &[&str]) -> Invocation {
        Invocation {
            program: "rustc".into(),
            arguments: arguments.iter().map(|argument| argument.to_string()).collect(),
            working_directory: "/w".into(),
            environment: vec![("CARGO_PKG_NAME".into(), "app".into())],
        }
    }

    #[test]
    fn reads_arguments_in_both_spellings() {
        let invocation = invocation(&[
            "--crate-name",
            "app",
            "--out-dir",
            "/t/debug/deps",
            "--extern",
            "serde=/t/debug/deps/libserde-1.rlib",
            "--extern=tokio=/t/debug/deps/libtokio-2.rlib",
            "--extern",
            "proc_macro",
        ]);
        assert_eq!(invocation.argument("--crate-name"), Some("app"));
        assert_eq!(invocation.argument("--out-dir"), Some("/t/debug/deps"));
        assert_eq!(invocation.argument("--edition"), None);
        assert_eq!(
            invocation.extern_files(),
            vec![
                PathBuf::from("/t/debug/deps/libserde-1.rlib"),
                PathBuf::from("/t/debug/deps/libtokio-2.rlib")
            ]
        );
        assert_eq!(invocation.variable("CARGO_PKG_NAME"), Some("app"));
    }

    #[test]
    fn recognises_the_handler_library() {
        let arguments: Vec<OsString> =
            ["--crate-name", "app", "--crate-type", "cdylib"].iter().map(OsString::from).collect();
        // Not run by cargo for a package here: no CARGO_MANIFEST_DIR pointing at /nowhere.
        assert!(!is_handler_library(&arguments, Path::new("/nowhere/app")));
    }

    #[test]
    fn a_record_survives_writing_and_reading() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("capture.json");
        let record = invocation(&["--crate-name", "app"]);
        write(&path, &record).unwrap();
        assert_eq!(read(&path), Some(record));
        assert_eq!(read(&directory.path().join("missing.json")), None);
    }
}
