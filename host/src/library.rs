//! Opening a handler library and checking its ABI header, in the host process.

use std::path::Path;

use hotswap_handler::abi::{self, EntryFunction, HandlerFunctions};

/// A loaded handler library whose header matched this daemon.
pub(crate) struct LoadedLibrary {
    library: libloading::Library,
    pub(crate) functions: HandlerFunctions,
    pub(crate) sdk_version: String,
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
pub(crate) enum LoadError {
    /// `dlopen` failed or the entry symbol is missing.
    Load(String),
    /// The header does not match.
    Verify(String),
}

impl LoadedLibrary {
    /// `dlopen`s `path`, finds the entry symbol, calls it and verifies the header. Also returns
    /// the time the header check took.
    pub(crate) fn open(path: &Path) -> Result<(Self, std::time::Duration), LoadError> {
        check_complete_file(path).map_err(|reason| {
            LoadError::Load(format!("cannot load {}: {reason}", path.display()))
        })?;
        // SAFETY: loading runs the library's initialisers, in this process of its own: whatever
        // they do ends with it.
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

    /// Keeps the library mapped for the rest of the process: it is never unloaded, the process
    /// ends instead (`dlclose` with threads of the library still running would crash).
    pub(crate) fn keep(self) -> HandlerFunctions {
        let functions = self.functions;
        std::mem::forget(self.library);
        functions
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

/// Refuses an ELF file whose loadable segments reach past its end (a truncated or half-written
/// library). `dlopen` maps such a file without complaint, and the first touch of a page past
/// the end kills the whole process with SIGBUS. Files that are not ELF are left to `dlopen`,
/// which refuses them with a message of its own.
fn check_complete_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|error| format!("cannot open it: {error}"))?;
    let size = file.metadata().map_err(|error| format!("cannot read it: {error}"))?.len();
    let mut header = [0u8; 64];
    if file.read_exact_at(&mut header, 0).is_err()
        || header[..4] != *b"\x7fELF"
        || header[4] != 2
        || header[5] != 1
    {
        // Not a 64-bit little-endian ELF file: dlopen says what is wrong with it.
        return Ok(());
    }
    let truncated = |what: String| {
        format!("the file is truncated or corrupt: {what}, but it has only {size} bytes")
    };
    let program_headers = u64::from_le_bytes(header[32..40].try_into().expect("8 bytes"));
    let entry_size = u64::from(u16::from_le_bytes([header[54], header[55]]));
    let entries = u64::from(u16::from_le_bytes([header[56], header[57]]));
    let table_length = entries * entry_size;
    if entry_size < 56 || program_headers.checked_add(table_length).is_none_or(|end| end > size) {
        return Err(truncated(format!("its program headers start at byte {program_headers}")));
    }
    let mut table = vec![0u8; table_length as usize];
    file.read_exact_at(&mut table, program_headers)
        .map_err(|error| format!("cannot read its program headers: {error}"))?;
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    for (index, entry) in table.chunks_exact(entry_size as usize).enumerate() {
        let kind = u32::from_le_bytes(entry[0..4].try_into().expect("4 bytes"));
        if kind != PT_LOAD && kind != PT_DYNAMIC {
            continue;
        }
        let offset = u64::from_le_bytes(entry[8..16].try_into().expect("8 bytes"));
        let file_size = u64::from_le_bytes(entry[32..40].try_into().expect("8 bytes"));
        if offset.checked_add(file_size).is_none_or(|end| end > size) {
            return Err(truncated(format!(
                "segment {index} needs bytes {offset} to {}",
                offset.saturating_add(file_size)
            )));
        }
    }
    Ok(())
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
    fn a_truncated_library_is_refused_before_dlopen_maps_it() {
        let temp = tempfile::tempdir().unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc_path = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| path.contains("libc.so") || path.contains("libc-"))
            .expect("libc is mapped")
            .to_owned();
        let bytes = std::fs::read(&libc_path).unwrap();
        assert_eq!(check_complete_file(Path::new(&libc_path)), Ok(()));
        let path = temp.path().join("libtruncated.so");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        match LoadedLibrary::open(&path) {
            Err(LoadError::Load(message)) => {
                assert!(message.contains("truncated or corrupt"), "{message}")
            }
            other => panic!("expected a load error, got {other:?}"),
        }
    }
}
