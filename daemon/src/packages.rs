//! Which packages a save can change: the handler package and the local path dependencies it
//! builds from, found with `cargo metadata`. A save anywhere else builds nothing.

use std::path::{Path, PathBuf};

use cargo_metadata::{Metadata, MetadataCommand, PackageId, TargetKind};

use crate::config::CONFIG_FILE;

/// The handler package and its local packages.
#[derive(Debug, Clone)]
pub struct PackageSet {
    /// The handler package's name, as people call it.
    pub handler: String,
    /// The handler's package ID spec, as `cargo build -p` takes it: unambiguous even when a
    /// dependency has the same name (`sqlx-postgres` depending on sqlx, which depends on a crate
    /// `sqlx-postgres`).
    pub handler_spec: String,
    pub handler_manifest: PathBuf,
    /// The handler's library name (the artifact is `lib<name>.so`).
    pub library_name: String,
    /// Directories of the handler package and of every local package it depends on.
    pub package_roots: Vec<PathBuf>,
    /// The handler package (first) and every local package it builds from.
    pub local_packages: Vec<LocalPackage>,
    /// The cargo workspace root (compiler messages name files relative to it).
    pub cargo_workspace_root: PathBuf,
    /// Cargo's own target directory.
    pub cargo_target_dir: PathBuf,
}

/// A package of the workspace's own files (not from a registry or git): the handler or one of
/// its path dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPackage {
    /// `cargo metadata`'s package id (the form cargo's JSON messages use).
    pub id: String,
    pub name: String,
    pub manifest: PathBuf,
}

impl LocalPackage {
    pub fn root(&self) -> &Path {
        self.manifest.parent().expect("manifests are files")
    }
}

/// Why a saved path builds nothing.
pub const OUTSIDE_PACKAGES: &str = "outside the handler's packages";

impl PackageSet {
    /// Runs `cargo metadata` for the workspace at `root` and finds the handler package: the one
    /// named `package`, or else the package whose manifest is `root/Cargo.toml`.
    pub fn discover(cargo: &Path, root: &Path, package: Option<&str>) -> Result<Self, String> {
        let manifest = root.join("Cargo.toml");
        if !manifest.is_file() {
            return Err(format!(
                "no Cargo.toml next to {CONFIG_FILE} in {}: hotswap builds the handler crate of that directory",
                root.display()
            ));
        }
        let metadata = MetadataCommand::new()
            .cargo_path(cargo)
            .manifest_path(&manifest)
            // Cargo reads its configuration from the directory it runs in: the app's, as for
            // `cargo build` there, wherever `hotswap serve` was started.
            .current_dir(root)
            .exec()
            .map_err(|error| match &error {
                cargo_metadata::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                    format!(
                        "cannot run `{}`: it is not installed or not on PATH (hotswap needs cargo)",
                        cargo.display()
                    )
                }
                _ => format!("`cargo metadata` failed for {}: {error}", manifest.display()),
            })?;
        Self::from_metadata(&metadata, &manifest, package)
    }

    fn from_metadata(
        metadata: &Metadata,
        manifest: &Path,
        package: Option<&str>,
    ) -> Result<Self, String> {
        let handler = match package {
            Some(wanted) => metadata
                .workspace_packages()
                .into_iter()
                .chain(metadata.packages.iter())
                .find(|candidate| {
                    candidate.source.is_none()
                        && matches_name_and_version(&candidate.name, &candidate.version, wanted)
                })
                .ok_or_else(|| {
                    format!(
                        "package `{wanted}` (the `package` in {CONFIG_FILE}) is not in the cargo workspace of {}; \
                         name it as `name` or `name@version`",
                        manifest.display()
                    )
                })?,
            None => metadata
                .packages
                .iter()
                .find(|candidate| candidate.manifest_path.as_std_path() == manifest)
                .ok_or_else(|| {
                    format!(
                        "{} is a virtual workspace: name the handler crate with `package = \"...\"` in {CONFIG_FILE}",
                        manifest.display()
                    )
                })?,
        };
        let library = handler
            .targets
            .iter()
            .find(|target| target.kind.contains(&TargetKind::CDyLib))
            .ok_or_else(|| {
                format!(
                    "package `{}` has no cdylib target: add\n\n[lib]\ncrate-type = [\"cdylib\"]\n\nto {}",
                    handler.name,
                    handler.manifest_path
                )
            })?;
        let mut roots = vec![
            handler
                .manifest_path
                .parent()
                .expect("manifests are files")
                .as_std_path()
                .to_path_buf(),
        ];
        let mut local_packages = vec![LocalPackage {
            id: handler.id.repr.clone(),
            name: handler.name.to_string(),
            manifest: handler.manifest_path.clone().into_std_path_buf(),
        }];
        if let Some(resolve) = &metadata.resolve {
            let mut pending: Vec<&PackageId> = vec![&handler.id];
            let mut seen: Vec<&PackageId> = Vec::new();
            while let Some(id) = pending.pop() {
                if seen.contains(&id) {
                    continue;
                }
                seen.push(id);
                let Some(node) = resolve.nodes.iter().find(|node| &node.id == id) else { continue };
                for dependency in &node.deps {
                    let Some(package) =
                        metadata.packages.iter().find(|package| package.id == dependency.pkg)
                    else {
                        continue;
                    };
                    // Local packages have no source; registry and git packages cannot be edited.
                    if package.source.is_none() {
                        let root = package
                            .manifest_path
                            .parent()
                            .expect("manifests are files")
                            .as_std_path();
                        if !roots.iter().any(|known| known == root) {
                            roots.push(root.to_path_buf());
                        }
                        if !local_packages.iter().any(|known| known.id == package.id.repr) {
                            local_packages.push(LocalPackage {
                                id: package.id.repr.clone(),
                                name: package.name.to_string(),
                                manifest: package.manifest_path.clone().into_std_path_buf(),
                            });
                        }
                        pending.push(&package.id);
                    }
                }
            }
        }
        Ok(Self {
            handler: handler.name.to_string(),
            handler_spec: package_id_spec(&handler.id.repr, &handler.name, &handler.version),
            handler_manifest: handler.manifest_path.clone().into_std_path_buf(),
            library_name: library.name.replace('-', "_"),
            package_roots: roots,
            local_packages,
            cargo_workspace_root: metadata.workspace_root.clone().into_std_path_buf(),
            cargo_target_dir: metadata.target_directory.clone().into_std_path_buf(),
        })
    }

    /// `Ok` when a save of `path` should cause a build, else why not. `target_dirs` are build
    /// output directories (never sources, even inside a package).
    pub fn classify(&self, path: &Path, target_dirs: &[&Path]) -> Result<(), String> {
        if !path.is_absolute() {
            return Err("not an absolute path".to_owned());
        }
        let path = resolve(path);
        if target_dirs.iter().any(|target| path.starts_with(target)) {
            return Err("inside a build output directory".to_owned());
        }
        if path.file_name().is_some_and(|name| name == CONFIG_FILE) {
            return Err(format!(
                "changes to {CONFIG_FILE} take effect when `hotswap serve` restarts"
            ));
        }
        if self.package_roots.iter().any(|root| path.starts_with(root)) {
            Ok(())
        } else {
            Err(OUTSIDE_PACKAGES.to_owned())
        }
    }

    /// True for a manifest of one of the packages: the package set may have changed.
    pub fn is_manifest(&self, path: &Path) -> bool {
        path.file_name().is_some_and(|name| name == "Cargo.toml" || name == "Cargo.lock")
    }
}

/// True when `wanted` (`name` or `name@version`, the version whole or its first numbers:
/// `app@0.1`) names the package `name` at `version`.
fn matches_name_and_version(
    name: &str,
    version: &cargo_metadata::semver::Version,
    wanted: &str,
) -> bool {
    let Some((wanted_name, wanted_version)) = wanted.split_once('@') else {
        return name == wanted;
    };
    if name != wanted_name {
        return false;
    }
    let full = version.to_string();
    full == wanted_version
        || full.strip_prefix(wanted_version).is_some_and(|rest| rest.starts_with('.'))
}

/// The package ID spec `cargo build -p` takes for the package with `id` (cargo metadata's id,
/// which since cargo 1.77 is a spec itself: `path+file:///w/app#0.1.0`), else `name@version`.
fn package_id_spec(id: &str, name: &str, version: &cargo_metadata::semver::Version) -> String {
    let is_spec =
        ["path+", "registry+", "git+", "sparse+"].iter().any(|scheme| id.starts_with(scheme));
    if is_spec { id.to_owned() } else { format!("{name}@{version}") }
}

/// `path` with symbolic links, `.` and `..` resolved. A path that does not exist (a deleted
/// file, or a made-up one) cannot be canonicalized: its `.` and `..` are resolved by hand, then
/// the directory that exists, so that `app/src/../../elsewhere/x.rs` is not taken for a file of
/// `app`.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    match (normal.parent().and_then(|parent| parent.canonicalize().ok()), normal.file_name()) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => normal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package_set(roots: &[&str]) -> PackageSet {
        PackageSet {
            handler: "app".into(),
            handler_spec: "path+file:///w/app#0.1.0".into(),
            handler_manifest: "/w/app/Cargo.toml".into(),
            library_name: "app".into(),
            package_roots: roots.iter().map(PathBuf::from).collect(),
            local_packages: Vec::new(),
            cargo_workspace_root: "/w".into(),
            cargo_target_dir: "/w/target".into(),
        }
    }

    #[test]
    fn names_a_package_by_name_or_name_and_version() {
        let version = cargo_metadata::semver::Version::new(0, 12, 3);
        assert!(matches_name_and_version("app", &version, "app"));
        assert!(matches_name_and_version("app", &version, "app@0.12.3"));
        assert!(matches_name_and_version("app", &version, "app@0.12"));
        assert!(matches_name_and_version("app", &version, "app@0"));
        assert!(!matches_name_and_version("app", &version, "app@0.1"));
        assert!(!matches_name_and_version("app", &version, "app@0.12.4"));
        assert!(!matches_name_and_version("app", &version, "other@0.12.3"));
        assert!(!matches_name_and_version("app-x", &version, "app"));
    }

    #[test]
    fn builds_the_package_by_its_id() {
        let version = cargo_metadata::semver::Version::new(0, 1, 0);
        assert_eq!(
            package_id_spec("path+file:///w/sqlx-postgres#0.1.0", "sqlx-postgres", &version),
            "path+file:///w/sqlx-postgres#0.1.0"
        );
        // The id format of cargo before 1.77 is no spec.
        assert_eq!(package_id_spec("app 0.1.0 (path+file:///w/app)", "app", &version), "app@0.1.0");
    }

    #[test]
    fn classifies_saves() {
        let set = package_set(&["/w/app", "/w/shared"]);
        let targets = [Path::new("/w/app/target")];
        assert_eq!(set.classify(Path::new("/w/app/src/lib.rs"), &targets), Ok(()));
        assert_eq!(set.classify(Path::new("/w/shared/src/db.rs"), &targets), Ok(()));
        assert_eq!(set.classify(Path::new("/w/app/Cargo.toml"), &targets), Ok(()));
        assert_eq!(
            set.classify(Path::new("/w/other/src/lib.rs"), &targets),
            Err(OUTSIDE_PACKAGES.to_owned())
        );
        assert_eq!(
            set.classify(Path::new("/w/README.md"), &targets),
            Err(OUTSIDE_PACKAGES.to_owned())
        );
        assert!(
            set.classify(Path::new("/w/app/target/debug/x.rs"), &targets)
                .unwrap_err()
                .contains("output")
        );
        assert!(
            set.classify(Path::new("/w/app/hotswap.toml"), &targets)
                .unwrap_err()
                .contains("restarts")
        );
        assert!(set.classify(Path::new("src/lib.rs"), &targets).unwrap_err().contains("absolute"));
        // A prefix of a name is not a parent directory.
        assert_eq!(
            set.classify(Path::new("/w/application/x.rs"), &targets),
            Err(OUTSIDE_PACKAGES.to_owned())
        );
        // Climbing out with `..` (the files do not exist, so nothing resolves them but us).
        assert_eq!(
            set.classify(Path::new("/w/app/src/../../other/lib.rs"), &targets),
            Err(OUTSIDE_PACKAGES.to_owned())
        );
        assert_eq!(
            set.classify(Path::new("/w/app/../etc/passwd"), &targets),
            Err(OUTSIDE_PACKAGES.to_owned())
        );
        assert_eq!(set.classify(Path::new("/w/app/src/./x/../lib.rs"), &targets), Ok(()));
    }
}
