//! Where the daemon of a workspace listens: one local socket per workspace root.
//!
//! On Unix the endpoint is a socket file `<dir>/<name>-<hash>.sock`, where `<dir>` is
//! `$XDG_RUNTIME_DIR/hotswap` when `XDG_RUNTIME_DIR` is set to an absolute path, else
//! `<temp dir>/hotswap-<uid>`; the directory is created with mode 0700. `<hash>` is the first 16
//! hex digits of the SHA-256 of the canonical workspace root (its bytes as UTF-8), and `<name>` is
//! the root's last component with every character outside `[A-Za-z0-9._-]` replaced by `_`, cut
//! to 32 characters (`workspace` when empty). On Windows it is the named pipe
//! `\\.\pipe\hotswap-<name>-<hash>`.
//!
//! The derivation is pure ([`Endpoint::derive`]) and pinned by `protocol/vectors/endpoints.jsonl`,
//! which the TypeScript extension checks too.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The facts of the environment the endpoint depends on, so that the derivation stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEnvironment {
    /// `$XDG_RUNTIME_DIR`, when set.
    pub runtime_dir: Option<PathBuf>,
    /// The system temporary directory (`$TMPDIR` or `/tmp`).
    pub temp_dir: PathBuf,
    /// The effective user id (0 on Windows, where it is unused).
    pub uid: u32,
}

impl EndpointEnvironment {
    /// The environment of this process.
    pub fn current() -> Self {
        Self {
            runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
            temp_dir: std::env::temp_dir(),
            uid: current_uid(),
        }
    }

    /// The directory that holds the sockets of all workspaces (Unix).
    pub fn socket_directory(&self) -> PathBuf {
        match &self.runtime_dir {
            Some(dir) if dir.is_absolute() => dir.join("hotswap"),
            _ => self.temp_dir.join(format!("hotswap-{}", self.uid)),
        }
    }
}

/// The socket (or pipe) of one workspace's daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    workspace_root: PathBuf,
    path: PathBuf,
}

impl Endpoint {
    /// The endpoint of the workspace at `root` (any path to it; it is canonicalized).
    pub fn for_workspace(root: &Path) -> io::Result<Self> {
        let canonical = root.canonicalize().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot resolve workspace {}: {error}", root.display()),
            )
        })?;
        Ok(Self::derive(&canonical, &EndpointEnvironment::current()))
    }

    /// The endpoint of `canonical_root` in `environment`. Pure: no file system access.
    pub fn derive(canonical_root: &Path, environment: &EndpointEnvironment) -> Self {
        let path = if cfg!(windows) {
            PathBuf::from(windows_pipe_name(canonical_root))
        } else {
            unix_socket_path(canonical_root, environment)
        };
        Self { workspace_root: canonical_root.to_path_buf(), path }
    }

    /// An endpoint at an explicit socket path, for clients told where the daemon listens.
    pub fn at_path(workspace_root: &Path, path: PathBuf) -> Self {
        Self { workspace_root: workspace_root.to_path_buf(), path }
    }

    /// The canonical workspace root this endpoint belongs to.
    pub fn workspace_root(&self) -> &Path {
        &self.workspace_root
    }

    /// The socket file (Unix) or pipe name (Windows).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the socket's directory if needed (mode 0700) and checks that no one else can
    /// open it: it must belong to this user and grant nothing to group or others.
    pub fn prepare_directory(&self) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
            let Some(directory) = self.path.parent() else { return Ok(()) };
            match std::fs::DirBuilder::new().mode(0o700).recursive(false).create(directory) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    std::fs::DirBuilder::new().mode(0o700).recursive(true).create(directory)?;
                }
                Err(error) => return Err(error),
            }
            let metadata = std::fs::symlink_metadata(directory)?;
            if !metadata.is_dir() {
                return Err(io::Error::other(format!(
                    "socket directory {} is not a directory; remove it and try again",
                    directory.display()
                )));
            }
            if metadata.uid() != current_uid() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "socket directory {} belongs to uid {}, not to you (uid {}); hotswap will not use it",
                        directory.display(),
                        metadata.uid(),
                        current_uid()
                    ),
                ));
            }
            if metadata.mode() & 0o077 != 0 {
                std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(())
    }
}

/// The Unix socket path of the workspace at `canonical_root`.
pub fn unix_socket_path(canonical_root: &Path, environment: &EndpointEnvironment) -> PathBuf {
    environment.socket_directory().join(format!("{}.sock", endpoint_stem(canonical_root)))
}

/// The Windows named pipe of the workspace at `canonical_root`.
pub fn windows_pipe_name(canonical_root: &Path) -> String {
    format!(r"\\.\pipe\hotswap-{}", endpoint_stem(canonical_root))
}

fn endpoint_stem(canonical_root: &Path) -> String {
    format!("{}-{}", sanitized_name(canonical_root), workspace_hash(canonical_root))
}

/// The first 16 hex digits of the SHA-256 of the root's bytes.
pub fn workspace_hash(canonical_root: &Path) -> String {
    let digest = Sha256::digest(path_bytes(canonical_root));
    digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect()
}

/// The root's last component, restricted to `[A-Za-z0-9._-]` and 32 characters.
pub fn sanitized_name(canonical_root: &Path) -> String {
    let last = canonical_root.file_name().map(|name| name.to_string_lossy().into_owned());
    let name: String = last
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(32)
        .collect();
    if name.is_empty() { "workspace".to_owned() } else { name }
}

fn path_bytes(path: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned().into_bytes()
    }
}

/// The effective user id of this process (0 where there is none).
pub fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(runtime_dir: Option<&str>) -> EndpointEnvironment {
        EndpointEnvironment {
            runtime_dir: runtime_dir.map(PathBuf::from),
            temp_dir: PathBuf::from("/tmp"),
            uid: 1000,
        }
    }

    #[test]
    fn runtime_dir_wins_when_absolute() {
        assert_eq!(
            environment(Some("/run/user/1000")).socket_directory(),
            Path::new("/run/user/1000/hotswap")
        );
        assert_eq!(
            environment(Some("relative")).socket_directory(),
            Path::new("/tmp/hotswap-1000")
        );
        assert_eq!(environment(None).socket_directory(), Path::new("/tmp/hotswap-1000"));
    }

    #[test]
    fn names_are_sanitized_and_bounded() {
        assert_eq!(sanitized_name(Path::new("/home/me/my app (1)")), "my_app__1_");
        assert_eq!(sanitized_name(Path::new("/")), "workspace");
        assert_eq!(sanitized_name(Path::new("/x/caf\u{e9}")), "caf_");
        assert_eq!(sanitized_name(Path::new(&format!("/x/{}", "a".repeat(40)))).len(), 32);
    }

    #[test]
    fn different_roots_get_different_sockets() {
        let a = Endpoint::derive(Path::new("/home/me/app"), &environment(None));
        let b = Endpoint::derive(Path::new("/home/you/app"), &environment(None));
        assert_ne!(a.path(), b.path());
        assert!(a.path().to_string_lossy().starts_with("/tmp/hotswap-1000/app-"));
    }

    #[cfg(unix)]
    #[test]
    fn prepare_directory_creates_a_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let environment = EndpointEnvironment {
            runtime_dir: Some(temp.path().to_path_buf()),
            temp_dir: temp.path().to_path_buf(),
            uid: current_uid(),
        };
        let endpoint = Endpoint::derive(Path::new("/srv/app"), &environment);
        endpoint.prepare_directory().unwrap();
        let mode = std::fs::metadata(temp.path().join("hotswap")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A directory someone loosened is tightened again.
        std::fs::set_permissions(
            temp.path().join("hotswap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        endpoint.prepare_directory().unwrap();
        let mode = std::fs::metadata(temp.path().join("hotswap")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
