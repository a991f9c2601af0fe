//! Opening a handler library and checking its ABI header.

use std::path::Path;

use hotswap_handler::abi::{self, EntryFunction, HandlerFunctions};

/// A loaded handler library whose header matched this daemon.
pub struct LoadedLibrary {
    library: libloading::Library,
    pub functions: HandlerFunctions,
    pub sdk_version: String,
}

impl std::fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedLibrary")
            .field("sdk_version", &self.sdk_version)
            .finish_non_exhaustive()
    }
}

/// Why a library was refused, and at which stage.
#[derive(Debug)]
pub enum LoadError {
    /// `dlopen` failed or the entry symbol is missing.
    Load(String),
    /// The header does not match.
    Verify(String),
}

impl LoadedLibrary {
    /// `dlopen`s `path`, finds the entry symbol, calls it and verifies the header. The entry
    /// function only returns a pointer to static data, so calling it from this thread runs no
    /// code that could pin the library.
    /// Also returns the time the header check took.
    pub fn open(path: &Path) -> Result<(Self, std::time::Duration), LoadError> {
        // SAFETY: loading runs the library's initialisers; a hotswap handler library has only
        // Rust's, which touch no thread-local state of this thread.
        let library = unsafe { libloading::Library::new(path) }.map_err(|error| {
            LoadError::Load(format!("cannot load {}: {}", path.display(), with_source(&error)))
        })?;
        // SAFETY: the symbol's type is the ABI's entry function type.
        let entry = unsafe { library.get::<EntryFunction>(abi::ENTRY_SYMBOL) }.map_err(|_| {
            LoadError::Load(
                "the library exports no `hotswap_handler_entry` symbol: export the app with \
                 `hotswap_handler::export_handler!(App);` and build the crate as a cdylib"
                    .to_owned(),
            )
        })?;
        // SAFETY: the entry function takes no arguments and returns a pointer to static data.
        let header = unsafe { entry() };
        if header.is_null() {
            return Err(LoadError::Verify(
                "the library's entry symbol returned a null header".to_owned(),
            ));
        }
        let verify_started = std::time::Instant::now();
        // SAFETY: a non-null pointer from the entry symbol points into the library's static data,
        // which stays mapped while `library` lives (the returned value owns both).
        let header = unsafe { abi::verify_header(header) }
            .map_err(|mismatch| LoadError::Verify(mismatch.to_string()))?;
        let verify_time = verify_started.elapsed();
        let functions = header.functions;
        // SAFETY: the header was verified, so sdk_version points to static UTF-8 bytes.
        let sdk_version =
            String::from_utf8_lossy(unsafe { header.sdk_version.as_bytes() }).into_owned();
        Ok((Self { library, functions, sdk_version }, verify_time))
    }

    /// `dlclose`s the library. Call only when no thread can run its code any more.
    pub fn close(self) -> Result<(), String> {
        self.library.close().map_err(|error| with_source(&error))
    }

    /// Keeps the library mapped for the rest of the process (its threads may still run).
    pub fn leak(self) {
        std::mem::forget(self.library);
    }
}

/// An error and its source: libloading keeps `dlerror()`'s text (which says *why*: a missing
/// file, an undefined symbol, a wrong architecture) in the source, not in its own message.
fn with_source(error: &libloading::Error) -> String {
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Bytes of `path` still mapped into this process, from `/proc/self/maps`; `None` where that
/// file does not exist.
pub fn mapped_bytes(path: &Path) -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let wanted = path.to_string_lossy();
    let mut total = 0;
    for line in maps.lines() {
        // address perms offset dev inode pathname
        let mut fields = line.splitn(6, ' ');
        let range = fields.next().unwrap_or_default();
        let pathname = fields.nth(4).unwrap_or_default().trim_start();
        let pathname = pathname.strip_suffix(" (deleted)").unwrap_or(pathname);
        if pathname != wanted {
            continue;
        }
        if let Some((start, end)) = range.split_once('-') {
            let start = u64::from_str_radix(start, 16).unwrap_or(0);
            let end = u64::from_str_radix(end, 16).unwrap_or(0);
            total += end.saturating_sub(start);
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_library_is_refused_at_load() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("libbroken.so");
        std::fs::write(&path, b"\x7fELF but truncated").unwrap();
        match LoadedLibrary::open(&path) {
            Err(LoadError::Load(message)) => {
                assert!(message.contains("libbroken.so"), "{message}");
                // dlerror's reason, not only "dlopen failed".
                assert!(message.contains("file too short"), "{message}");
            }
            other => panic!("expected a load error, got {other:?}"),
        }
    }

    #[test]
    fn mapped_bytes_sees_libc_and_not_an_unmapped_file() {
        let temp = tempfile::tempdir().unwrap();
        assert_eq!(mapped_bytes(&temp.path().join("nothing.so")), Some(0));
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc_path = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| path.contains("libc.so") || path.contains("libc-"))
            .expect("libc is mapped")
            .to_owned();
        assert!(mapped_bytes(Path::new(&libc_path)).unwrap() > 0);
    }
}
