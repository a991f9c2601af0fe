//! The files cargo reads to decide how to build the handler, other than the handler's own
//! sources: manifests, `Cargo.lock`, configuration and toolchain files, path dependencies'
//! sources, what build scripts watch, the libraries the handler links, rustc itself.
//!
//! A snapshot of their identities (inode, size, modification and change times) taken with a
//! cargo build says later, without running cargo, whether that build's rustc command line for
//! the handler still holds: when no file in it changed, cargo would run the same rustc.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A file as the file system sees it; any write, rename or `touch` changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileIdentity {
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl FileIdentity {
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            changed_ns: i128::from(metadata.ctime()) * 1_000_000_000
                + i128::from(metadata.ctime_nsec()),
        })
    }

    /// True when the file may have changed after `instant` (the file system's clock is coarser
    /// than the system's, so "may" includes a margin before it).
    pub(crate) fn changed_after(&self, instant: SystemTime) -> bool {
        const MARGIN_NS: i128 = 20_000_000;
        let instant_ns = instant
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as i128);
        self.changed_ns.max(self.modified_ns) > instant_ns - MARGIN_NS
    }
}

/// The identities of a set of files (`None`: the file did not exist, which counts too: a
/// configuration file that appears changes the build).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct InputSnapshot {
    files: Vec<(PathBuf, Option<FileIdentity>)>,
}

impl InputSnapshot {
    pub(crate) fn of(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut snapshot = Self::default();
        snapshot.add(paths);
        snapshot
    }

    /// Adds files not already in the snapshot.
    pub(crate) fn add(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        for path in paths {
            if !self.files.iter().any(|(known, _)| *known == path) {
                let identity = FileIdentity::of(&path);
                self.files.push((path, identity));
            }
        }
    }

    /// Adds the files of `other` not already in this snapshot, with the identities it took.
    pub(crate) fn merge(&mut self, other: InputSnapshot) {
        for (path, identity) in other.files {
            if !self.files.iter().any(|(known, _)| *known == path) {
                self.files.push((path, identity));
            }
        }
    }

    /// The first file whose identity differs now.
    pub(crate) fn first_change(&self) -> Option<&Path> {
        self.files
            .iter()
            .find(|(path, identity)| FileIdentity::of(path) != *identity)
            .map(|(path, _)| path.as_path())
    }

    /// The first file that may have changed after `instant`.
    pub(crate) fn first_changed_after(&self, instant: SystemTime) -> Option<&Path> {
        self.files
            .iter()
            .find(|(_, identity)| identity.is_some_and(|identity| identity.changed_after(instant)))
            .map(|(path, _)| path.as_path())
    }

    /// The first file that does not exist.
    pub(crate) fn first_missing(&self) -> Option<&Path> {
        self.files.iter().find(|(_, identity)| identity.is_none()).map(|(path, _)| path.as_path())
    }
}

/// The configuration and toolchain files cargo and rustup may read for a build run from these
/// directories: `.cargo/config.toml`, `.cargo/config`, `rust-toolchain.toml` and
/// `rust-toolchain` in each of them and their ancestors, cargo's home configuration and rustup's
/// settings.
pub(crate) fn configuration_files(directories: &[&Path]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for directory in directories {
        for ancestor in directory.ancestors() {
            for name in
                [".cargo/config.toml", ".cargo/config", "rust-toolchain.toml", "rust-toolchain"]
            {
                let file = ancestor.join(name);
                if !files.contains(&file) {
                    files.push(file);
                }
            }
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|home| home.join(".cargo")));
    if let Some(cargo_home) = cargo_home {
        files.push(cargo_home.join("config.toml"));
        files.push(cargo_home.join("config"));
    }
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|home| home.join(".rustup")));
    if let Some(rustup_home) = rustup_home {
        files.push(rustup_home.join("settings.toml"));
    }
    files
}

/// The source files a rustc dep-info file (make syntax, as `--emit=dep-info` writes it) lists,
/// relative ones resolved against `base` (the directory rustc ran in).
pub(crate) fn dep_info_sources(text: &str, base: &Path) -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for line in text.lines() {
        // Each source has a rule of its own with no prerequisites: `src/lib.rs:`.
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(target) = line.strip_suffix(':') else { continue };
        let path = unescape(target);
        let path = base.join(path);
        if !sources.contains(&path) {
            sources.push(path);
        }
    }
    sources
}

/// Make's escapes in a dep-info path: `\ ` is a space, `\\` a backslash, `$$` a dollar.
fn unescape(path: &str) -> String {
    let mut unescaped = String::with_capacity(path.len());
    let mut characters = path.chars().peekable();
    while let Some(character) = characters.next() {
        match (character, characters.peek()) {
            ('\\', Some(' ' | '\\' | '#' | ':')) | ('$', Some('$')) => {
                unescaped.push(characters.next().expect("peeked"));
            }
            _ => unescaped.push(character),
        }
    }
    unescaped
}

/// What a build script's recorded output says it watches, when it says anything: the paths of
/// its `rerun-if-changed` lines. `None` when it has no `rerun-if-*` line at all: cargo then runs
/// it again whenever any file of its package changes.
pub(crate) fn build_script_watches(output: &str) -> Option<Vec<String>> {
    let mut watched = Vec::new();
    let mut directives = false;
    for line in output.lines() {
        let Some(directive) = line.strip_prefix("cargo::").or_else(|| line.strip_prefix("cargo:"))
        else {
            continue;
        };
        if let Some(path) = directive.strip_prefix("rerun-if-changed=") {
            directives = true;
            watched.push(path.to_owned());
        } else if directive.starts_with("rerun-if-env-changed=") {
            directives = true;
        }
    }
    directives.then_some(watched)
}

/// Every file under `root`, except in build output and hidden directories, or `None` when there
/// are more than `limit`.
pub(crate) fn package_files(root: &Path, limit: usize) -> Option<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = std::fs::read_dir(&directory).ok()?;
        for entry in entries {
            let entry = entry.ok()?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type().ok()?;
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    pending.push(entry.path());
                }
            } else {
                files.push(entry.path());
                if files.len() > limit {
                    return None;
                }
            }
        }
        // A directory's own identity changes when a file is added to or removed from it.
        files.push(directory);
    }
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sources_of_a_dep_info_file() {
        let text = "/t/debug/deps/app.d: src/lib.rs src/my\\ routes.rs /abs/shared.rs\n\n\
                    /t/debug/deps/libapp.so: src/lib.rs src/my\\ routes.rs /abs/shared.rs\n\n\
                    src/lib.rs:\nsrc/my\\ routes.rs:\n/abs/shared.rs:\n\n\
                    # env-dep:CARGO_PKG_NAME=app\n";
        assert_eq!(
            dep_info_sources(text, Path::new("/w")),
            vec![
                PathBuf::from("/w/src/lib.rs"),
                PathBuf::from("/w/src/my routes.rs"),
                PathBuf::from("/abs/shared.rs")
            ]
        );
    }

    #[test]
    fn reads_what_a_build_script_watches() {
        assert_eq!(
            build_script_watches("cargo:rustc-env=X=1\ncargo:rerun-if-changed=build.rs\n"),
            Some(vec!["build.rs".to_owned()])
        );
        assert_eq!(
            build_script_watches("cargo::rerun-if-changed=proto\ncargo::rerun-if-env-changed=X\n"),
            Some(vec!["proto".to_owned()])
        );
        assert_eq!(build_script_watches("cargo:rerun-if-env-changed=X\n"), Some(vec![]));
        assert_eq!(build_script_watches("cargo:rustc-cfg=fast\n"), None);
    }

    #[test]
    fn a_snapshot_sees_writes_new_files_and_removals() {
        let directory = tempfile::tempdir().unwrap();
        let existing = directory.path().join("Cargo.toml");
        let absent = directory.path().join(".cargo/config.toml");
        std::fs::write(&existing, "[package]\n").unwrap();
        let snapshot = InputSnapshot::of([existing.clone(), absent.clone()]);
        assert_eq!(snapshot.first_change(), None);
        assert_eq!(snapshot.first_missing(), Some(absent.as_path()));
        std::fs::create_dir_all(absent.parent().unwrap()).unwrap();
        std::fs::write(&absent, "").unwrap();
        assert_eq!(snapshot.first_change(), Some(absent.as_path()));
        std::fs::remove_file(&absent).unwrap();
        assert_eq!(snapshot.first_change(), None);
        std::fs::write(&existing, "[package]\nname = \"x\"\n").unwrap();
        assert_eq!(snapshot.first_change(), Some(existing.as_path()));
    }

    #[test]
    fn a_file_written_now_changed_after_an_earlier_instant() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("lib.rs");
        let before = SystemTime::now() - std::time::Duration::from_secs(10);
        std::fs::write(&file, "").unwrap();
        let identity = FileIdentity::of(&file).unwrap();
        assert!(identity.changed_after(before));
        assert!(!identity.changed_after(SystemTime::now() + std::time::Duration::from_secs(10)));
    }

    #[test]
    fn lists_a_package_s_files_without_its_outputs() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        for file in ["Cargo.toml", "src/lib.rs", "target/debug/x", ".git/HEAD"] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let files = package_files(root, 100).unwrap();
        assert!(files.contains(&root.join("Cargo.toml")));
        assert!(files.contains(&root.join("src/lib.rs")));
        assert!(!files.iter().any(|file| file.starts_with(root.join("target"))));
        assert!(!files.iter().any(|file| file.starts_with(root.join(".git"))));
        assert_eq!(package_files(root, 1), None);
    }
}
