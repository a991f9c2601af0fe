//! Dependencies linked once: the handler's dependencies (the SDK, tokio, hyper, axum, serde...)
//! built into one Rust `dylib` that every generation loads, so that a direct build of the
//! handler links only the app's own code.
//!
//! After a cargo build that compiled the handler, the daemon writes a package of its own under
//! the target directory (`hotswap-shared-deps/<hash>/`): a `dylib` whose dependencies are the
//! handler's, each at the version and source of the lock file and with the features
//! `cargo metadata` resolves, and whose `lib.rs` names each of them (`pub extern crate tokio;`),
//! so that all of them are in it. `cargo rustc` builds it in the background, at low priority and
//! killed if the daemon dies, with `-C prefer-dynamic` for its own link (its own target
//! directory, the workspace's profiles, `Cargo.lock` copied from the workspace). A direct
//! build of the handler then runs the rustc cargo used with three changes: its `--extern`s point
//! at the rlibs inside that library, `--cfg hotswap_shared_deps` makes `export_handler!` name the
//! library (`extern crate hotswap_shared_deps as _;`, so that rustc links it), and
//! `-C prefer-dynamic` with an rpath to the library and to libstd's shared library.
//!
//! Before a library is used, the handler is compiled on it once in the background: a library a
//! handler cannot build or link on is never used, and the build says why in the daemon's log;
//! one the handler's own errors stopped (a save mid-edit) is checked again after the next good
//! build. It is used only for a command line with the `--extern`s it was checked with.
//! Each library is copied to a directory named after the file (`lib/<id>/`): a generation's
//! process keeps the one it loaded while newer generations load a newer one.
//!
//! Not used (the handler's own dependencies are linked into its library, as cargo does): with
//! `shared_deps = false` in hotswap.toml, for dependencies from a registry other than crates.io,
//! when the workspace's manifest patches dependencies, and on platforms other than Linux.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cargo_metadata::{DependencyKind, Message, MetadataCommand, TargetKind};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::BuildSpec;
use super::rustc_wrapper::Invocation;

/// The name the handler's library knows the shared library by (`export_handler!` names it).
pub(crate) const LIBRARY_NAME: &str = "hotswap_shared_deps";
/// The cfg under which `export_handler!` names it.
const CFG: &str = "hotswap_shared_deps";

/// A built shared dependency library, and how the handler links on it.
#[derive(Debug)]
pub(crate) struct SharedLibrary {
    /// The library, in a directory of its own (its rpath).
    pub(crate) dylib: PathBuf,
    /// The rlib of each dependency inside the library, by the name the handler uses for it.
    externs: BTreeMap<String, PathBuf>,
    /// Where the dependencies' rlibs are (`-L dependency=`).
    dependency_dir: PathBuf,
    /// libstd's shared library's directory (`rustc --print target-libdir`).
    target_libdir: PathBuf,
    /// Where rustc writes the handler's library built on it, and its incremental state.
    out_dir: PathBuf,
    incremental_dir: PathBuf,
    /// What it was built for: its generated manifest.
    pub(crate) manifest: String,
    /// The `--extern`s of the handler's rustc it was built and checked for (cargo's file names
    /// carry each crate's version and features): a command line with other ones is not built
    /// on it.
    checked_externs: Vec<String>,
    /// How long cargo took to build it.
    pub(crate) build_time: Duration,
}

impl SharedLibrary {
    /// The handler's rustc arguments (`invocation`, as cargo ran it), rewritten to link on this
    /// library, or why they cannot be.
    pub(crate) fn arguments(&self, invocation: &Invocation) -> Result<Vec<String>, String> {
        if extern_entries(invocation) != self.checked_externs {
            return Err("the handler's dependencies changed since the shared library was built \
                 (it is built again after cargo's next build of the handler)"
                .to_owned());
        }
        let mut arguments = Vec::with_capacity(invocation.arguments.len() + 12);
        let mut iterator = invocation.arguments.iter();
        while let Some(argument) = iterator.next() {
            // Cargo passes `--flag value`; accept `--flag=value` as well.
            let (flag, value) = match argument.split_once('=') {
                Some((flag @ ("--extern" | "--out-dir"), value)) => (flag, Some(value.to_owned())),
                _ => (argument.as_str(), None),
            };
            let value = |iterator: &mut std::slice::Iter<'_, String>| match &value {
                Some(value) => Some(value.clone()),
                None => iterator.next().cloned(),
            };
            match flag {
                "--extern" => {
                    let entry = value(&mut iterator).ok_or("rustc's --extern has no value")?;
                    arguments.push("--extern".to_owned());
                    arguments.push(self.extern_entry(&entry)?);
                }
                "--out-dir" => {
                    value(&mut iterator);
                    arguments.push("--out-dir".to_owned());
                    arguments.push(self.out_dir.to_string_lossy().into_owned());
                }
                "-L" => {
                    let path = value(&mut iterator).ok_or("rustc's -L has no value")?;
                    arguments.push("-L".to_owned());
                    arguments.push(match path.strip_prefix("dependency=") {
                        Some(_) => format!("dependency={}", self.dependency_dir.display()),
                        None => path,
                    });
                }
                "-C" => {
                    let option = value(&mut iterator).ok_or("rustc's -C has no value")?;
                    arguments.push("-C".to_owned());
                    arguments.push(if option.starts_with("incremental=") {
                        format!("incremental={}", self.incremental_dir.display())
                    } else {
                        option
                    });
                }
                _ => arguments.push(argument.clone()),
            }
        }
        let directory = self.dylib.parent().ok_or("the shared library has no directory")?;
        arguments.extend([
            "-C".to_owned(),
            "prefer-dynamic".to_owned(),
            "--extern".to_owned(),
            format!("{LIBRARY_NAME}={}", self.dylib.display()),
            "--cfg".to_owned(),
            CFG.to_owned(),
            format!("--check-cfg=cfg({CFG})"),
            "-C".to_owned(),
            format!("link-arg=-Wl,-rpath,{}:{}", directory.display(), self.target_libdir.display()),
        ]);
        Ok(arguments)
    }

    /// `name=path` pointed at the library's rlib of `name`. Proc macros (loaded by rustc, never
    /// linked) and the sysroot's crates stay as cargo gave them.
    fn extern_entry(&self, entry: &str) -> Result<String, String> {
        let (name, path) = match entry.split_once('=') {
            Some((name, path)) => (name, path),
            None => return Ok(entry.to_owned()),
        };
        // `noprelude:name=...` and other modifiers: only plain names are rewritten.
        let plain = name.rsplit(':').next().unwrap_or(name);
        if !path.ends_with(".rlib") && !path.ends_with(".rmeta") {
            return Ok(entry.to_owned());
        }
        match self.externs.get(plain) {
            Some(rlib) => Ok(format!("{name}={}", rlib.display())),
            None => Err(format!("the shared dependency library has no `{plain}`")),
        }
    }

    /// Where rustc writes the handler's dep-info file when it builds on this library.
    pub(crate) fn dep_info(&self, invocation: &Invocation) -> Option<PathBuf> {
        let crate_name = invocation.argument("--crate-name")?;
        let extra = invocation
            .arguments_named("-C")
            .find_map(|option| option.strip_prefix("extra-filename="))
            .unwrap_or("");
        Some(self.out_dir.join(format!("{crate_name}{extra}.d")))
    }
}

/// What building a shared library needs: the handler's rustc as cargo last ran it, and the
/// build's settings.
pub(crate) struct Request {
    pub(crate) invocation: Invocation,
    pub(crate) spec: BuildSpec,
    pub(crate) workspace_root: PathBuf,
}

/// The directory of everything this module writes: `<target>/hotswap-shared-deps`.
fn root(spec: &BuildSpec) -> PathBuf {
    spec.target_dir.join("hotswap-shared-deps")
}

/// Builds the shared library for the handler, then the handler on it once (so it is known to
/// work, and the next build of the handler starts from incremental state). `progress` gets a
/// line now and then.
pub(crate) async fn build(
    request: Request,
    progress: impl Fn(String) + Send + 'static,
) -> Result<Built, String> {
    if !cfg!(target_os = "linux") {
        return Err("only built on Linux".to_owned());
    }
    let started = Instant::now();
    let package = {
        let spec = request.spec.clone();
        let externs = extern_names(&request.invocation);
        let workspace_root = request.workspace_root.clone();
        let root = root(&request.spec);
        tokio::task::spawn_blocking(move || {
            let package = generate_package(&spec, &workspace_root, &externs)?;
            let directory = root.join(package.name.trim_start_matches("hotswap-shared-deps-"));
            write_package(&directory, &package, &workspace_root)
                .map_err(|error| format!("cannot write {}: {error}", directory.display()))?;
            Ok::<_, String>((package, directory))
        })
        .await
        .map_err(|error| error.to_string())??
    };
    let (package, package_dir) = package;
    let root = root(&request.spec);
    let target_libdir = target_libdir(&request.invocation).await?;
    let (dylib, by_package) =
        run_cargo(&request, &package_dir, &root.join("target"), &target_libdir, &progress).await?;
    let mut externs = BTreeMap::new();
    for (name, id) in &package.ids {
        let rlib = by_package
            .get(id)
            .ok_or_else(|| format!("cargo reported no library of `{name}` ({id})"))?;
        externs.insert(name.clone(), rlib.clone());
    }
    let dylib = {
        let copies = root.join("lib");
        tokio::task::spawn_blocking(move || install(&dylib, &copies))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("cannot copy the shared library: {error}"))?
    };
    let dependency_dir =
        dylib_dependency_dir(&externs).ok_or("cargo reported no dependency of the library")?;
    let library = SharedLibrary {
        dylib,
        externs,
        dependency_dir,
        target_libdir,
        out_dir: root.join("handler").join(&request.spec.library_name),
        incremental_dir: root.join("handler").join(&request.spec.library_name).join("incremental"),
        manifest: format!("{}{}", package.manifest, package.lib_rs),
        checked_externs: extern_entries(&request.invocation),
        build_time: started.elapsed(),
    };
    std::fs::create_dir_all(&library.out_dir)
        .map_err(|error| format!("cannot create {}: {error}", library.out_dir.display()))?;
    progress("compiling the handler on it once, to check that it links".to_owned());
    check(library, &request.invocation).await
}

/// What a build (or a check) of the shared library came to.
#[derive(Debug)]
pub(crate) enum Built {
    /// Checked: saves of the handler's own sources link on it.
    Ready(SharedLibrary),
    /// Built, but the handler's sources had errors when it was checked (saved mid-edit): it is
    /// checked again after the next good build of the handler.
    Unchecked(SharedLibrary, String),
}

/// Compiles the handler's sources as they are now (`invocation`, cargo's rustc) on `library`.
pub(crate) async fn check(
    library: SharedLibrary,
    invocation: &Invocation,
) -> Result<Built, String> {
    match check_handler_builds(invocation, &library).await {
        Ok(()) => Ok(Built::Ready(library)),
        Err(CheckFailure::HandlerErrors(why)) => Ok(Built::Unchecked(library, why)),
        Err(CheckFailure::Incompatible(why)) => Err(why),
    }
}

/// The handler's `--extern` entries, sorted.
fn extern_entries(invocation: &Invocation) -> Vec<String> {
    let mut entries: Vec<String> =
        invocation.arguments_named("--extern").map(str::to_owned).collect();
    entries.sort();
    entries
}

/// The names of the crates the handler's rustc links (`--extern name=...rlib`).
fn extern_names(invocation: &Invocation) -> Vec<String> {
    invocation
        .arguments_named("--extern")
        .filter_map(|entry| entry.split_once('='))
        .filter(|(_, path)| path.ends_with(".rlib") || path.ends_with(".rmeta"))
        .map(|(name, _)| name.rsplit(':').next().unwrap_or(name).to_owned())
        .collect()
}

/// The shared library's package, generated for the handler.
struct Generated {
    /// `hotswap-shared-deps-<hash of the rest>`.
    name: String,
    manifest: String,
    lib_rs: String,
    /// Each dependency's package ID (cargo's JSON messages name packages so), by the name the
    /// handler uses for it.
    ids: BTreeMap<String, String>,
}

/// The shared library's package for the handler: every normal dependency the handler links
/// (proc macros aside), at the version, from the source and with the features cargo resolved.
fn generate_package(
    spec: &BuildSpec,
    workspace_root: &Path,
    externs: &[String],
) -> Result<Generated, String> {
    let mut command = MetadataCommand::new();
    command.cargo_path(&spec.cargo).manifest_path(&spec.manifest);
    let mut options = Vec::new();
    if !spec.features.is_empty() {
        options.push("--features".to_owned());
        options.push(spec.features.join(","));
    }
    if spec.no_default_features {
        options.push("--no-default-features".to_owned());
    }
    command.other_options(options);
    let metadata = command.exec().map_err(|error| format!("`cargo metadata` failed: {error}"))?;
    let handler = metadata
        .packages
        .iter()
        .find(|package| package.manifest_path.as_std_path() == spec.manifest)
        .ok_or("the handler package is not in `cargo metadata`")?;
    let resolve = metadata.resolve.as_ref().ok_or("`cargo metadata` resolved nothing")?;
    let node = |id: &cargo_metadata::PackageId| resolve.nodes.iter().find(|node| node.id == *id);
    let handler_node = node(&handler.id).ok_or("the handler is not in cargo's resolve")?;

    let root_manifest: toml::Table = std::fs::read_to_string(workspace_root.join("Cargo.toml"))
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_default();
    if root_manifest.contains_key("patch") || root_manifest.contains_key("replace") {
        return Err("the workspace's manifest patches dependencies".to_owned());
    }

    let mut dependencies = toml::Table::new();
    let mut ids = BTreeMap::new();
    for dependency in &handler_node.deps {
        let normal = dependency.dep_kinds.iter().any(|kind| kind.kind == DependencyKind::Normal);
        if !normal || !externs.contains(&dependency.name) {
            continue;
        }
        let package = metadata
            .packages
            .iter()
            .find(|package| package.id == dependency.pkg)
            .ok_or_else(|| format!("`{}` is not in `cargo metadata`", dependency.name))?;
        if package.targets.iter().any(|target| target.is_kind(TargetKind::ProcMacro)) {
            continue;
        }
        let mut entry = toml::Table::new();
        entry.insert("package".into(), package.name.to_string().into());
        match &package.source {
            None => {
                let directory =
                    package.manifest_path.parent().ok_or("a manifest has no directory")?;
                entry.insert("path".into(), directory.to_string().into());
            }
            Some(source)
                if source.is_crates_io() || source.repr == "sparse+https://index.crates.io/" =>
            {
                entry.insert("version".into(), format!("={}", package.version).into());
            }
            Some(source) if source.repr.starts_with("git+") => {
                let url = &source.repr["git+".len()..];
                let (url, revision) = url.split_once('#').ok_or("a git source has no revision")?;
                let url = url.split_once('?').map_or(url, |(url, _)| url);
                entry.insert("git".into(), url.into());
                entry.insert("rev".into(), revision.into());
            }
            Some(source) => return Err(format!("`{}` comes from {}", package.name, source.repr)),
        }
        let features = node(&package.id).map(|node| node.features.clone()).unwrap_or_default();
        entry.insert("default-features".into(), false.into());
        entry.insert(
            "features".into(),
            toml::Value::Array(features.iter().map(|feature| feature.to_string().into()).collect()),
        );
        ids.insert(dependency.name.clone(), package.id.repr.clone());
        dependencies.insert(dependency.name.clone(), entry.into());
    }
    if dependencies.is_empty() {
        return Err("the handler has no dependencies to share".to_owned());
    }

    let mut manifest = toml::Table::new();
    let mut lib = toml::Table::new();
    lib.insert("crate-type".into(), toml::Value::Array(vec!["dylib".into()]));
    lib.insert("path".into(), "lib.rs".into());
    manifest.insert("lib".into(), lib.into());
    manifest.insert("dependencies".into(), dependencies.into());
    if let Some(profile) = root_manifest.get("profile") {
        manifest.insert("profile".into(), profile.clone());
    }
    manifest.insert("workspace".into(), toml::Table::new().into());
    let body = toml::to_string(&manifest).map_err(|error| error.to_string())?;
    // The lock file too: two workspaces with the same dependencies but other versions of an
    // indirect one never share a package (and its lock file).
    let lock = std::fs::read_to_string(workspace_root.join("Cargo.lock")).unwrap_or_default();
    let name = format!(
        "hotswap-shared-deps-{:016x}",
        stable_hash(&format!("{}{body}{lock}", spec.profile))
    );
    let mut package = toml::Table::new();
    package.insert("name".into(), name.clone().into());
    package.insert("version".into(), "0.0.0".into());
    package.insert("edition".into(), "2021".into());
    package.insert("publish".into(), false.into());
    manifest.insert("package".into(), package.into());
    let manifest = format!(
        "# Written by hotswap: the handler's dependencies, linked once for every generation.\n{}",
        toml::to_string(&manifest).map_err(|error| error.to_string())?
    );
    let mut lib_rs = String::from(
        "//! Written by hotswap: the handler's dependencies, linked once for every generation.\n\
         #![allow(unused_extern_crates)]\n",
    );
    for name in ids.keys() {
        lib_rs.push_str(&format!("pub extern crate {name};\n"));
    }
    Ok(Generated { name, manifest, lib_rs, ids })
}

/// FNV-1a: a name derived from the manifest that stays the same across runs and versions.
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes the package: its manifest, `lib.rs` and the workspace's lock file.
fn write_package(
    directory: &Path,
    package: &Generated,
    workspace_root: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    write_if_changed(&directory.join("Cargo.toml"), &package.manifest)?;
    write_if_changed(&directory.join("lib.rs"), &package.lib_rs)?;
    // The workspace's lock file each time: the same versions of every crate, direct or not, as
    // the handler's own build (cargo adds the generated package to it, keeping the rest).
    if let Ok(text) = std::fs::read_to_string(workspace_root.join("Cargo.lock")) {
        write_if_changed(&directory.join("Cargo.lock"), &text)?;
    }
    Ok(())
}

fn write_if_changed(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|current| current == text) {
        return Ok(());
    }
    std::fs::write(path, text)
}

async fn target_libdir(invocation: &Invocation) -> Result<PathBuf, String> {
    let output = tokio::process::Command::new(&invocation.program)
        .args(["--print", "target-libdir"])
        .env_clear()
        .envs(invocation.environment.iter().map(|(name, value)| (name, value)))
        .output()
        .await
        .map_err(|error| format!("cannot run {}: {error}", invocation.program.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || text.is_empty() {
        return Err(format!("`rustc --print target-libdir` failed ({})", output.status));
    }
    Ok(PathBuf::from(text))
}

/// Runs cargo on the package; returns the library it built and each package's rlib by package
/// ID.
async fn run_cargo(
    request: &Request,
    package_dir: &Path,
    target_dir: &Path,
    target_libdir: &Path,
    progress: &impl Fn(String),
) -> Result<(PathBuf, BTreeMap<String, PathBuf>), String> {
    let manifest = package_dir.join("Cargo.toml");
    let mut command = tokio::process::Command::new(&request.spec.cargo);
    // `cargo rustc`: our flags go to the library's own rustc only (where it links: every
    // dependency and libstd as shared libraries can, and it finds libstd by its rpath), while
    // the user's flags (RUSTFLAGS, `build.rustflags`, `target.<triple>.rustflags`) reach every
    // crate as in the handler's own build.
    command
        .args(["rustc", "--lib", "--message-format=json", "--color=never", "--manifest-path"])
        .arg(&manifest)
        .arg("--profile")
        .arg(&request.spec.profile)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--", "-C", "prefer-dynamic", "-C"])
        .arg(format!("link-arg=-Wl,-rpath,{}", target_libdir.display()));
    command
        .env("CARGO_TERM_PROGRESS_WHEN", "never")
        // Cargo reads its configuration (registries, source replacement, `[build]`) from the
        // directory it runs in: the app's, as for the handler's own build.
        .current_dir(request.spec.manifest.parent().unwrap_or(package_dir))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    in_the_background(&mut command);
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", request.spec.cargo.display()))?;
    let process_group = child.id();
    // A build stopped midway (a newer one, the daemon stopping) stops cargo's rustcs too.
    let mut group = KillGroupOnDrop(process_group);
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let stderr = child.stderr.take().expect("piped");
    let errors = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut kept = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if kept.len() < 40 && !line.trim_start().starts_with("Compiling") {
                kept.push(line);
            }
        }
        kept
    });
    let mut by_package: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut compiled = 0usize;
    let mut last_progress = Instant::now();
    let mut library = None;
    let mut failures = Vec::new();
    let result = async {
        while let Ok(Some(line)) = stdout.next_line().await {
            match serde_json::from_str::<Message>(&line) {
                Ok(Message::CompilerArtifact(artifact)) => {
                    compiled += 1;
                    if last_progress.elapsed() > Duration::from_secs(10) {
                        last_progress = Instant::now();
                        progress(format!("{compiled} crates built ({})", artifact.target.name));
                    }
                    if artifact.manifest_path.as_std_path() == manifest {
                        library = artifact
                            .filenames
                            .iter()
                            .find(|file| file.as_str().ends_with(std::env::consts::DLL_SUFFIX))
                            .map(|file| file.clone().into_std_path_buf());
                    } else if let Some(rlib) =
                        artifact.filenames.iter().find(|file| file.as_str().ends_with(".rlib"))
                    {
                        by_package.insert(
                            artifact.package_id.repr.clone(),
                            rlib.clone().into_std_path_buf(),
                        );
                    }
                }
                Ok(Message::CompilerMessage(message))
                    if message.message.level
                        == cargo_metadata::diagnostic::DiagnosticLevel::Error =>
                {
                    failures.push(message.message.rendered.unwrap_or(message.message.message));
                }
                _ => {}
            }
        }
        child.wait().await
    }
    .await;
    let status = match result {
        Ok(status) => status,
        Err(error) => {
            super::end_build(&mut child, process_group).await;
            return Err(format!("cargo could not be waited for: {error}"));
        }
    };
    group.0 = None;
    let cargo_errors = errors.await.unwrap_or_default();
    if !status.success() {
        let what = failures.first().cloned().unwrap_or_else(|| cargo_errors.join("\n"));
        return Err(format!("cargo failed to build it ({status}): {}", what.trim()));
    }
    let library = library.ok_or("cargo built no library")?;
    Ok((library, by_package))
}

/// Runs `command`'s process in the background: at a lower priority (the user's own builds come
/// first), and killed when the daemon dies (a SIGKILL of the daemon leaves no build behind it).
fn in_the_background(command: &mut tokio::process::Command) {
    // SAFETY: setpriority(2) and prctl(2) are async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Kills a process group when dropped, unless its id was taken out.
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            // SAFETY: killpg(2) of the group this build started.
            unsafe { libc::killpg(group as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// The directory of the dependencies' rlibs.
fn dylib_dependency_dir(externs: &BTreeMap<String, PathBuf>) -> Option<PathBuf> {
    externs.values().next()?.parent().map(Path::to_path_buf)
}

/// Copies the library to `lib/<id>/` (its identity: size and modification time), where it
/// never changes: a generation's process keeps the one it loaded, whatever cargo builds next.
fn install(library: &Path, directory: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(library)?;
    let id = format!(
        "{:x}-{:x}",
        metadata.size(),
        metadata.mtime_nsec() as u64 ^ (metadata.mtime() as u64) << 30
    );
    let file_name = library.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
    let destination = directory.join(id).join(file_name);
    if destination.is_file() {
        // Used again: the newest, as far as removing old copies goes.
        if let Some(parent) = destination.parent()
            && let Ok(file) = std::fs::File::open(parent)
        {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        return Ok(destination);
    }
    remove_old_copies(directory);
    let parent = destination.parent().expect("joined");
    std::fs::create_dir_all(parent)?;
    let partial = destination.with_extension("partial");
    std::fs::copy(library, &partial)?;
    std::fs::rename(&partial, &destination)?;
    Ok(destination)
}

/// Copies kept: a generation restarted after a crash, or rolled back to, loads the copy it was
/// built on again.
const KEPT_COPIES: usize = 8;

/// Removes all but the newest [`KEPT_COPIES`] - 1 copies (a new one is about to be made). A
/// process that loaded a removed copy keeps it mapped.
fn remove_old_copies(directory: &Path) {
    let Ok(entries) = std::fs::read_dir(directory) else { return };
    let mut copies: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    copies.sort();
    let excess = copies.len().saturating_sub(KEPT_COPIES - 1);
    for (_, path) in copies.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Why the handler did not build on a library.
#[derive(Debug)]
enum CheckFailure {
    /// The library does not fit the handler (its dependencies, linking, an older SDK): never
    /// used.
    Incompatible(String),
    /// The handler's own code has errors (saved mid-edit while the library was built): checked
    /// again after the next good build.
    HandlerErrors(String),
}

/// rustc errors that say the library does not fit, rather than that the code is wrong.
fn is_incompatibility(code: Option<&str>, message: &str) -> bool {
    code.is_some_and(|code| super::direct::DEPENDENCY_ERRORS.contains(&code))
        || ["linking with", "only shows up once", "cannot satisfy dependencies", "crate-type"]
            .iter()
            .any(|words| message.contains(words))
}

/// Compiles the handler on the library (the rustc cargo ran, rewritten): it must build, link
/// and name the library.
async fn check_handler_builds(
    invocation: &Invocation,
    library: &SharedLibrary,
) -> Result<(), CheckFailure> {
    let arguments = library.arguments(invocation).map_err(CheckFailure::Incompatible)?;
    let mut command = invocation.command(&arguments);
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    in_the_background(&mut command);
    let child = command.spawn().map_err(|error| {
        CheckFailure::Incompatible(format!("cannot run {}: {error}", invocation.program.display()))
    })?;
    let mut group = KillGroupOnDrop(child.id());
    let output = child.wait_with_output().await.map_err(|error| {
        CheckFailure::Incompatible(format!("rustc could not be waited for: {error}"))
    })?;
    group.0 = None;
    if output.status.success() {
        let (invocation, out_dir, dylib) =
            (invocation.clone(), library.out_dir.clone(), library.dylib.clone());
        return tokio::task::spawn_blocking(move || {
            links_the_library(&invocation, &out_dir, &dylib)
        })
        .await
        .map_err(|error| CheckFailure::Incompatible(error.to_string()))?;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<(Option<String>, String)> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["level"] == "error")
        .map(|message| {
            (
                message["code"]["code"].as_str().map(str::to_owned),
                message["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let first = errors
        .first()
        .map(|(_, message)| message.clone())
        .unwrap_or_else(|| stderr.lines().take(5).collect::<Vec<_>>().join("\n"));
    let why = format!("the handler does not build on it ({}): {first}", output.status);
    if errors.is_empty()
        || errors.iter().any(|(code, message)| is_incompatibility(code.as_deref(), message))
    {
        Err(CheckFailure::Incompatible(why))
    } else {
        Err(CheckFailure::HandlerErrors(why))
    }
}

/// Whether the handler's library built on `library` needs it: an SDK older than the shared
/// library names nothing under `--cfg hotswap_shared_deps`, and rustc then links every
/// dependency in again.
fn links_the_library(
    invocation: &Invocation,
    out_dir: &Path,
    dylib: &Path,
) -> Result<(), CheckFailure> {
    let incompatible = |why: String| CheckFailure::Incompatible(why);
    let crate_name = invocation
        .argument("--crate-name")
        .ok_or_else(|| incompatible("rustc had no --crate-name".to_owned()))?;
    let extra = invocation
        .arguments_named("-C")
        .find_map(|option| option.strip_prefix("extra-filename="))
        .unwrap_or("");
    let built = out_dir.join(format!("lib{crate_name}{extra}{}", std::env::consts::DLL_SUFFIX));
    let bytes = std::fs::read(&built)
        .map_err(|error| incompatible(format!("cannot read {}: {error}", built.display())))?;
    let needed = dylib.file_name().map(|name| name.as_encoded_bytes().to_vec()).unwrap_or_default();
    if needed.is_empty() || !bytes.windows(needed.len()).any(|window| window == needed) {
        return Err(incompatible(
            "the handler's library does not load it: its hotswap-handler is older than the \
             shared dependency library (update hotswap-handler)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// How many times a library is checked again after the handler had errors on it.
const CHECKS: u32 = 3;

/// The daemon's shared library: off (and why), being built or checked, or ready.
#[derive(Debug)]
pub(crate) struct SharedDeps {
    /// Why it is off for the daemon's life: the configuration, or a library that did not load.
    pub(crate) disabled: Option<String>,
    pub(crate) ready: Option<Arc<SharedLibrary>>,
    /// Built, but the handler had errors on it: checked again after its next good build, at
    /// most this many more times.
    pub(crate) unchecked: Option<(SharedLibrary, String, u32)>,
    /// The checks left for the library being checked again now.
    pub(crate) checks_left: Option<u32>,
    /// The build or check running in the background.
    pub(crate) building: Option<tokio::task::JoinHandle<()>>,
    /// Numbers each build and check: the report of an older one is ignored.
    pub(crate) run: u64,
    /// Why the last build failed, until the next succeeds.
    pub(crate) failed: Option<String>,
    /// The manifest of the last library made ready (said once in the log).
    pub(crate) built_once: Option<String>,
    /// The `--extern`s of the handler's rustc the last build was for.
    tried: Option<Vec<String>>,
}

impl SharedDeps {
    /// `enabled`: `shared_deps` in hotswap.toml (and `HOTSWAP_SHARED_DEPS`).
    pub(crate) fn new(enabled: bool) -> Self {
        let disabled = if !enabled {
            Some("`shared_deps = false` in hotswap.toml, or HOTSWAP_SHARED_DEPS=0".to_owned())
        } else if !cfg!(target_os = "linux") {
            Some("only on Linux".to_owned())
        } else {
            None
        };
        Self {
            disabled,
            ready: None,
            unchecked: None,
            checks_left: None,
            building: None,
            run: 0,
            failed: None,
            built_once: None,
            tried: None,
        }
    }

    /// Whether a library should be built for the handler's rustc `invocation` (one that a good
    /// direct build just ran): none is being built or checked, and none was built for it yet
    /// (its first cargo build failed, or one with other dependencies did).
    pub(crate) fn wants_build_for(&self, invocation: &Invocation) -> bool {
        let entries = extern_entries(invocation);
        self.disabled.is_none()
            && self.building.is_none()
            && self.unchecked.is_none()
            && self.ready.as_ref().is_none_or(|library| library.checked_externs != entries)
            && self.tried.as_ref() != Some(&entries)
    }

    /// Stops what runs in the background and forgets the library: none is used until built
    /// and checked again (for `invocation`, when given). Returns the number of the next run.
    pub(crate) fn restart(&mut self, invocation: Option<&Invocation>) -> u64 {
        self.tried = invocation.map(extern_entries);
        self.ready = None;
        self.unchecked = None;
        self.checks_left = None;
        if let Some(running) = self.building.take() {
            running.abort();
        }
        self.run += 1;
        self.run
    }

    /// Takes in what run `run` came to, and says what to log; `None` for an older run.
    pub(crate) fn done(&mut self, run: u64, result: Result<Built, String>) -> Option<Outcome> {
        if run != self.run {
            return None;
        }
        self.building = None;
        Some(match result {
            Ok(Built::Ready(library)) => {
                let first = self.built_once.as_deref() != Some(library.manifest.as_str());
                self.built_once = Some(library.manifest.clone());
                self.failed = None;
                let library = Arc::new(library);
                self.ready = Some(library.clone());
                Outcome::Ready { library, first }
            }
            Ok(Built::Unchecked(library, why)) => {
                let left = self.checks_left.take().unwrap_or(CHECKS);
                if left == 0 {
                    let why = format!("the handler builds without it, but not on it: {why}");
                    self.failed = Some(why.clone());
                    Outcome::Failed { why }
                } else {
                    self.unchecked = Some((library, why.clone(), left - 1));
                    Outcome::Waiting { why }
                }
            }
            Err(why) => {
                self.failed = Some(why.clone());
                Outcome::Failed { why }
            }
        })
    }

    /// What `hotswap status` says of it; `fast_path_off` is why direct builds are not run, if
    /// they are not.
    pub(crate) fn status(
        &self,
        fast_path_off: Option<&str>,
    ) -> hotswap_protocol::messages::SharedDepsStatus {
        use hotswap_protocol::messages::SharedDepsStatus;
        if let Some(reason) = &self.disabled {
            return SharedDepsStatus::Off { reason: reason.clone() };
        }
        if let Some(why) = fast_path_off {
            return SharedDepsStatus::Off { reason: format!("the fast path is off: {why}") };
        }
        if let Some(library) = &self.ready {
            return SharedDepsStatus::Ready {
                bytes: std::fs::metadata(&library.dylib).map(|file| file.len()).unwrap_or(0),
                build_ms: library.build_time.as_millis() as u64,
            };
        }
        if self.building.is_some() {
            return SharedDepsStatus::Building;
        }
        if let Some((_, why, _)) = &self.unchecked {
            return SharedDepsStatus::Off {
                reason: format!("checked again after the handler's next good build: {why}"),
            };
        }
        SharedDepsStatus::Off {
            reason: self
                .failed
                .clone()
                .unwrap_or_else(|| "no cargo build has compiled the handler yet".to_owned()),
        }
    }
}

/// What a finished run means for the log.
#[derive(Debug)]
pub(crate) enum Outcome {
    Ready { library: Arc<SharedLibrary>, first: bool },
    Waiting { why: String },
    Failed { why: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library, as checked with `checked`'s command line.
    fn library(checked: &Invocation) -> SharedLibrary {
        let mut externs = BTreeMap::new();
        externs.insert("axum".to_owned(), PathBuf::from("/s/target/debug/deps/libaxum-1.rlib"));
        externs.insert("serde".to_owned(), PathBuf::from("/s/target/debug/deps/libserde-2.rlib"));
        SharedLibrary {
            dylib: PathBuf::from("/s/lib/1/libhotswap_shared_deps_x.so"),
            externs,
            dependency_dir: PathBuf::from("/s/target/debug/deps"),
            target_libdir: PathBuf::from("/rust/lib"),
            out_dir: PathBuf::from("/s/handler/app"),
            incremental_dir: PathBuf::from("/s/handler/app/incremental"),
            manifest: String::new(),
            checked_externs: extern_entries(checked),
            build_time: Duration::ZERO,
        }
    }

    fn invocation(arguments: &[&str]) -> Invocation {
        Invocation {
            program: PathBuf::from("rustc"),
            arguments: arguments.iter().map(|argument| (*argument).to_owned()).collect(),
            working_directory: PathBuf::from("/app"),
            environment: Vec::new(),
        }
    }

    #[test]
    fn rewrites_the_handler_s_rustc_to_link_on_the_library() {
        let cargo = invocation(&[
            "--crate-name",
            "app",
            "src/lib.rs",
            "--crate-type",
            "cdylib",
            "-C",
            "incremental=/app/target/debug/incremental",
            "--out-dir",
            "/app/target/debug/deps",
            "-L",
            "dependency=/app/target/debug/deps",
            "--extern",
            "axum=/app/target/debug/deps/libaxum-9.rlib",
            "--extern",
            "serde_derive=/app/target/debug/deps/libserde_derive-3.so",
            "--extern=serde=/app/target/debug/deps/libserde-8.rlib",
            "-C",
            "debuginfo=1",
        ]);
        let arguments = library(&cargo).arguments(&cargo).unwrap();
        let text = arguments.join(" ");
        assert!(text.contains("--extern axum=/s/target/debug/deps/libaxum-1.rlib"), "{text}");
        assert!(text.contains("--extern serde=/s/target/debug/deps/libserde-2.rlib"), "{text}");
        // A proc macro is loaded by rustc, never linked: it stays cargo's.
        assert!(
            text.contains("serde_derive=/app/target/debug/deps/libserde_derive-3.so"),
            "{text}"
        );
        assert!(text.contains("-L dependency=/s/target/debug/deps"), "{text}");
        assert!(text.contains("--out-dir /s/handler/app "), "{text}");
        assert!(text.contains("-C incremental=/s/handler/app/incremental"), "{text}");
        assert!(text.contains("-C debuginfo=1"), "{text}");
        assert!(text.contains("-C prefer-dynamic"), "{text}");
        assert!(text.contains("--extern hotswap_shared_deps=/s/lib/1/libhotswap_shared_deps_x.so"));
        assert!(text.contains("--cfg hotswap_shared_deps"), "{text}");
        assert!(text.contains("link-arg=-Wl,-rpath,/s/lib/1:/rust/lib"), "{text}");
        assert!(!text.contains("/app/target/debug/deps/libaxum"), "{text}");
    }

    #[test]
    fn a_crate_the_library_lacks_is_refused() {
        let cargo = invocation(&["--extern", "uuid=/app/target/debug/deps/libuuid-1.rlib"]);
        let error = library(&cargo).arguments(&cargo).unwrap_err();
        assert!(error.contains("no `uuid`"), "{error}");
    }

    #[test]
    fn a_command_line_with_other_dependencies_is_refused() {
        // What the library was checked with, then cargo's next command line (a version bump:
        // another file name), recorded by a build that failed.
        let checked = invocation(&["--extern", "axum=/app/target/debug/deps/libaxum-9.rlib"]);
        let bumped = invocation(&["--extern", "axum=/app/target/debug/deps/libaxum-10.rlib"]);
        let error = library(&checked).arguments(&bumped).unwrap_err();
        assert!(error.contains("dependencies changed"), "{error}");
        assert!(library(&checked).arguments(&checked).is_ok());
    }

    #[test]
    fn a_library_the_handler_had_errors_on_waits_and_is_given_up_after_its_checks() {
        use hotswap_protocol::messages::SharedDepsStatus;
        let cargo = invocation(&["--extern", "axum=/app/target/debug/deps/libaxum-9.rlib"]);
        let mut shared = SharedDeps::new(true);
        let run = shared.restart(Some(&cargo));
        assert!(matches!(shared.status(None), SharedDepsStatus::Off { .. }));
        let outcome = shared.done(run, Ok(Built::Unchecked(library(&cargo), "E0308".into())));
        assert!(matches!(outcome, Some(Outcome::Waiting { .. })), "{outcome:?}");
        let SharedDepsStatus::Off { reason } = shared.status(None) else { panic!() };
        assert!(reason.contains("checked again after the handler's next good build"), "{reason}");
        assert!(!shared.wants_build_for(&cargo), "it waits for its check, not a build");
        // Each check again (after a good build) that meets errors uses one of its checks.
        for _ in 0..CHECKS {
            let (library, _, left) = shared.unchecked.take().expect("waiting");
            shared.run += 1;
            shared.checks_left = Some(left);
            let outcome = shared.done(shared.run, Ok(Built::Unchecked(library, "E0308".into())));
            if left == 0 {
                assert!(matches!(outcome, Some(Outcome::Failed { .. })), "{outcome:?}");
            }
        }
        assert!(shared.unchecked.is_none() && shared.ready.is_none());
        let SharedDepsStatus::Off { reason } = shared.status(None) else { panic!() };
        assert!(reason.contains("builds without it, but not on it"), "{reason}");
        assert!(!shared.wants_build_for(&cargo), "not built again for the same command line");
        let bumped = invocation(&["--extern", "axum=/app/target/debug/deps/libaxum-10.rlib"]);
        assert!(shared.wants_build_for(&bumped), "built for other dependencies");
    }

    #[test]
    fn the_report_of_an_overtaken_run_is_dropped() {
        let cargo = invocation(&["--extern", "axum=/app/target/debug/deps/libaxum-9.rlib"]);
        let mut shared = SharedDeps::new(true);
        let old = shared.restart(Some(&cargo));
        let new = shared.restart(Some(&cargo));
        assert!(shared.done(old, Ok(Built::Ready(library(&cargo)))).is_none());
        assert!(shared.ready.is_none());
        assert!(matches!(
            shared.done(new, Ok(Built::Ready(library(&cargo)))),
            Some(Outcome::Ready { first: true, .. })
        ));
        assert!(shared.ready.is_some());
        assert!(!shared.wants_build_for(&cargo));
    }
}
