//! Giving each generation a library file of its own.
//!
//! `dlopen` of a path (or an inode) that is already loaded returns the loaded library, and
//! overwriting a mapped file crashes the process, so every generation loads a file nobody else
//! writes: a hard link to the artifact when the linker wrote a new inode (the cheap case, ~16 µs),
//! else a copy.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Identity of an artifact file as the file system sees it: a new link writes a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

impl Fingerprint {
    pub fn of(path: &Path) -> io::Result<Self> {
        let metadata = std::fs::metadata(path)?;
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: metadata.modified().ok(),
        })
    }
}

/// How a generation's file was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    HardLink,
    Copy,
}

/// Inodes this process has hard-linked for a generation and still holds. An artifact whose inode
/// is here was rewritten in place (or not rebuilt): a generation may be running that very file,
/// and a linker writing into it again would change its code under it (SIGBUS), so it is copied
/// instead. Process-wide, because several engines may live in one process.
static LINKED_INODES: std::sync::Mutex<Option<HashSet<(u64, u64)>>> = std::sync::Mutex::new(None);

fn linked_inodes() -> std::sync::MutexGuard<'static, Option<HashSet<(u64, u64)>>> {
    LINKED_INODES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The directory of generation files of this daemon process.
#[derive(Debug)]
pub struct GenerationFiles {
    directory: PathBuf,
}

/// `name` without the `<pid>-g<number>-` prefixes that [`GenerationFiles::place`] puts in front.
fn without_generation_prefixes(mut name: &str) -> &str {
    loop {
        let Some((pid, rest)) = name.split_once("-g") else { return name };
        let Some((number, rest)) = rest.split_once('-') else { return name };
        let digits =
            |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
        if !digits(pid) || !digits(number) || rest.is_empty() {
            return name;
        }
        name = rest;
    }
}

impl GenerationFiles {
    /// Uses `directory`, creating it, and deletes files left there by daemons that no longer
    /// run (a daemon killed with SIGKILL cannot clean up after itself).
    pub fn new(directory: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&directory).map_err(|error| {
            io::Error::new(error.kind(), format!("cannot create {}: {error}", directory.display()))
        })?;
        remove_stale_files(&directory);
        Ok(Self { directory })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Makes the file generation `number` loads, from `artifact`.
    pub fn place(&self, artifact: &Path, number: u64) -> io::Result<(PathBuf, Placement)> {
        let file_name = artifact.file_name().map(|name| name.to_string_lossy().into_owned());
        let mut file_name = file_name.unwrap_or_else(|| "handler.so".to_owned());
        // A restart or a rollback places one of this directory's own files again: its name
        // keeps the artifact's, not a prefix more per generation (which would soon be too long).
        if artifact.parent() == Some(self.directory.as_path()) {
            file_name = without_generation_prefixes(&file_name).to_owned();
        }
        let target = self.directory.join(format!("{}-g{number}-{file_name}", std::process::id()));
        let _ = std::fs::remove_file(&target);
        let metadata = std::fs::metadata(artifact).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("the artifact {} is gone: {error}", artifact.display()),
            )
        })?;
        let key = (metadata.dev(), metadata.ino());
        {
            let mut guard = linked_inodes();
            let linked = guard.get_or_insert_with(HashSet::new);
            if !linked.contains(&key) && std::fs::hard_link(artifact, &target).is_ok() {
                linked.insert(key);
                return Ok((target, Placement::HardLink));
            }
        }
        std::fs::copy(artifact, &target).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot copy {} to {}: {error}", artifact.display(), target.display()),
            )
        })?;
        Ok((target, Placement::Copy))
    }

    /// Deletes a generation file that is no longer needed.
    pub fn remove(&self, path: &Path) {
        if let Ok(metadata) = std::fs::metadata(path) {
            // The last link of an inode we linked (besides the artifact itself): no generation
            // runs it any more.
            if metadata.nlink() <= 2
                && let Some(linked) = linked_inodes().as_mut()
            {
                linked.remove(&(metadata.dev(), metadata.ino()));
            }
        }
        let _ = std::fs::remove_file(path);
    }
}

/// Deletes `<pid>-g<n>-*` files whose daemon process is gone.
fn remove_stale_files(directory: &Path) {
    let Ok(entries) = std::fs::read_dir(directory) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|pid| pid.parse::<i32>().ok()) else {
            continue;
        };
        if pid != std::process::id() as i32 && !process_is_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn process_is_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_a_fresh_inode_and_copies_one_already_linked() {
        let temp = tempfile::tempdir().unwrap();
        let artifact = temp.path().join("libapp.so");
        std::fs::write(&artifact, b"first build").unwrap();
        let files = GenerationFiles::new(temp.path().join("generations")).unwrap();
        let (first, placement) = files.place(&artifact, 1).unwrap();
        assert_eq!(placement, Placement::HardLink);
        // The same inode again (the linker wrote in place, or no rebuild): copy.
        let (second, placement) = files.place(&artifact, 2).unwrap();
        assert_eq!(placement, Placement::Copy);
        assert_ne!(first, second);
        // A new inode (what linkers do): link again.
        std::fs::remove_file(&artifact).unwrap();
        std::fs::write(&artifact, b"second build").unwrap();
        let (_, placement) = files.place(&artifact, 3).unwrap();
        assert_eq!(placement, Placement::HardLink);
        assert_eq!(std::fs::read(&first).unwrap(), b"first build");
    }

    #[test]
    fn a_generation_file_placed_again_keeps_the_artifacts_name() {
        let temp = tempfile::tempdir().unwrap();
        let artifact = temp.path().join("libtodo-g2-x.so");
        std::fs::write(&artifact, b"build").unwrap();
        let files = GenerationFiles::new(temp.path().join("generations")).unwrap();
        let (first, _) = files.place(&artifact, 1).unwrap();
        let mut placed = first.clone();
        // Restarts after crashes, one after the other, each from the file of the one before.
        for number in 2..200 {
            let next = files.place(&placed, number).unwrap().0;
            if placed != first {
                files.remove(&placed);
            }
            placed = next;
        }
        assert_eq!(
            placed.file_name().unwrap().to_string_lossy(),
            format!("{}-g199-libtodo-g2-x.so", std::process::id())
        );
        assert_eq!(std::fs::read(&placed).unwrap(), b"build");
        // Its inode leaves the set of linked ones, which other tests' new files may reuse.
        files.remove(&first);
    }

    #[test]
    fn a_missing_artifact_is_a_clear_error() {
        let temp = tempfile::tempdir().unwrap();
        let files = GenerationFiles::new(temp.path().join("generations")).unwrap();
        let error = files.place(&temp.path().join("libgone.so"), 1).unwrap_err();
        assert!(error.to_string().contains("libgone.so is gone"), "{error}");
    }

    #[test]
    fn files_of_dead_daemons_are_removed_at_start() {
        let temp = tempfile::tempdir().unwrap();
        let directory = temp.path().join("generations");
        std::fs::create_dir_all(&directory).unwrap();
        // pid 0x7ffffffe is above every pid_max, so it cannot be a live process.
        let stale = directory.join("2147483646-g3-libapp.so");
        let own = directory.join(format!("{}-g1-libapp.so", std::process::id()));
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(&own, b"x").unwrap();
        GenerationFiles::new(directory).unwrap();
        assert!(!stale.exists());
        assert!(own.exists());
    }
}
