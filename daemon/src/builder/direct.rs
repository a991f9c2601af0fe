//! The fast path: rustc run directly for saves that touch only the handler crate's own sources.
//!
//! Every cargo build of the daemon records the rustc command line and environment cargo used for
//! the handler's library ([`super::rustc_wrapper`]) and a snapshot of every other file cargo
//! decides with ([`super::cargo_inputs`]). While no file of that snapshot changed and the saves
//! are the handler's own sources, running that rustc again is what cargo would do, minus cargo's
//! own work (its start, its fingerprints, its locks). Anything else, and anything unsure, is a
//! cargo build: a manifest, `Cargo.lock`, a build script or what it watches, `.cargo/config*`,
//! `rust-toolchain*`, a path dependency's sources, the start-up build, a handler library cargo
//! did not compile in its last build.
//!
//! The output is cargo's: rustc writes `deps/lib<name>.so`, which is then linked to
//! `lib<name>.so` where cargo puts it (its "uplift"); rustc's JSON diagnostics go through the
//! same conversion as cargo's. A build whose sources are byte for byte those of the library on
//! disk runs no rustc at all and reports it unchanged.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hotswap_protocol::events::{BuildReason, BuiltWith, Diagnostic, Severity};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use super::cargo_inputs::{self, InputSnapshot};
use super::rustc_wrapper::{self, Invocation};
use super::shared_deps::SharedLibrary;
use super::{BuildOutput, BuildResult, BuildSpec, ProgressLine};
use crate::diagnostics;
use crate::engine::artifact::Fingerprint;
use crate::packages::PackageSet;

/// The most source bytes kept to tell an unchanged save (beyond it, rustc always runs).
const MAX_KEPT_SOURCES: usize = 16 * 1024 * 1024;
/// The most files of a package watched whole (a path dependency whose build script names nothing
/// it watches); beyond it, cargo builds.
const MAX_PACKAGE_FILES: usize = 5000;

/// rustc errors that say the dependencies on disk are not what the command line expects (a
/// `cargo clean`, another toolchain): cargo rebuilds them.
pub(crate) const DEPENDENCY_ERRORS: [&str; 7] =
    ["E0460", "E0461", "E0462", "E0463", "E0464", "E0514", "E0786"];

/// The daemon's knowledge of the fast path: the last captured rustc of the handler and what it
/// holds for. Owned by the daemon task; builds report back with a [`Learned`].
#[derive(Debug)]
pub(crate) struct DirectRustc {
    /// Why the fast path is off for the whole daemon, when it is.
    disabled: Option<String>,
    captured: Result<Arc<Captured>, String>,
    /// The sources the library on disk was built from.
    sources: Option<Arc<SourceContents>>,
    /// Where the recorded command line is kept for the next daemon (see [`kept_record_path`]).
    kept_at: Option<PathBuf>,
    /// `captured` came from the last daemon and no cargo build of this one has said yet that it
    /// holds: until one has, builds go through cargo.
    unconfirmed: bool,
}

/// A rustc command line cargo used for the handler, with what it holds for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Captured {
    invocation: Invocation,
    /// Every file cargo decided with, but the handler's own sources.
    inputs: InputSnapshot,
    /// What the command line uses that a build writes or installs: the libraries it links
    /// against, rustc itself. Gone or changed (a `cargo clean`, a toolchain update): cargo.
    outputs: InputSnapshot,
    /// Where cargo puts the library (`target/debug/lib<name>.so`): the engine's artifact.
    artifact: PathBuf,
    /// The dep-info file rustc writes (`target/debug/deps/<name>.d`).
    dep_info: PathBuf,
    /// Cargo's lock of the build directory, held while rustc runs, as cargo holds it.
    lock_file: PathBuf,
    /// `app v0.1.0 (/home/me/app)`, as cargo says it.
    description: String,
}

/// The handler's sources as the library on disk was built from them.
#[derive(Debug)]
pub(crate) struct SourceContents {
    files: Vec<(PathBuf, Vec<u8>)>,
    artifact: PathBuf,
    fingerprint: Fingerprint,
}

/// The sources a dep-info file lists, read just before a build: their identities and bytes.
#[derive(Debug, Default)]
struct SourcesBefore {
    files: Vec<(PathBuf, cargo_inputs::FileIdentity, Vec<u8>)>,
}

impl SourcesBefore {
    fn read(dep_info: &Path, working_directory: &Path) -> Self {
        let Ok(text) = std::fs::read_to_string(dep_info) else { return Self::default() };
        let mut files = Vec::new();
        for path in cargo_inputs::dep_info_sources(&text, working_directory) {
            let identity = cargo_inputs::FileIdentity::of(&path);
            let bytes = std::fs::read(&path);
            // The identity again: a file written while it was read is left out.
            if let (Some(identity), Ok(bytes)) = (identity, bytes)
                && cargo_inputs::FileIdentity::of(&path) == Some(identity)
            {
                files.push((path, identity, bytes));
            }
        }
        Self { files }
    }
}

impl SourceContents {
    /// Reads the sources `dep_info` lists after a build, or `None` when it is unknown what the
    /// build read: a file is known when its identity is the one `before` took just before the
    /// build began (then the build read those bytes), or when it has not changed since
    /// `started`. Also `None` when they are too large to keep.
    fn read(
        dep_info: &Path,
        working_directory: &Path,
        artifact: &Path,
        started: SystemTime,
        before: &SourcesBefore,
    ) -> Option<Self> {
        let text = std::fs::read_to_string(dep_info).ok()?;
        let mut files = Vec::new();
        let mut total = 0;
        for path in cargo_inputs::dep_info_sources(&text, working_directory) {
            let identity = cargo_inputs::FileIdentity::of(&path)?;
            let known = before
                .files
                .iter()
                .find(|(known, known_identity, _)| *known == path && *known_identity == identity);
            let bytes = match known {
                Some((_, _, bytes)) => bytes.clone(),
                None if identity.changed_after(started) => return None,
                None => std::fs::read(&path).ok()?,
            };
            total += bytes.len();
            if total > MAX_KEPT_SOURCES {
                return None;
            }
            files.push((path, bytes));
        }
        let fingerprint = Fingerprint::of(artifact).ok()?;
        Some(Self { files, artifact: artifact.to_path_buf(), fingerprint })
    }

    /// True when the library on disk is still the one these sources built, and the sources read
    /// the same.
    fn still_current(&self) -> bool {
        Fingerprint::of(&self.artifact).ok() == Some(self.fingerprint)
            && self
                .files
                .iter()
                .all(|(path, bytes)| std::fs::read(path).is_ok_and(|now| now == *bytes))
    }
}

/// What a cargo build needs to record the handler's rustc, and the files it decides with.
#[derive(Debug, Clone)]
pub(crate) struct CaptureSetup {
    /// The `hotswap` binary, as cargo's `RUSTC_WORKSPACE_WRAPPER`.
    wrapper: PathBuf,
    capture_file: PathBuf,
    handler_id: String,
    handler_root: PathBuf,
    /// Where cargo runs rustc for workspace members: relative paths in dep-info files start here.
    workspace_root: PathBuf,
    /// Manifests, `Cargo.lock`, build scripts, configuration and toolchain files: what cargo
    /// reads before it builds anything, whose identities are taken before cargo starts.
    before_files: Vec<PathBuf>,
}

impl CaptureSetup {
    pub(crate) fn handler_id(&self) -> &str {
        &self.handler_id
    }

    /// The environment that makes cargo run the wrapper.
    pub(crate) fn environment(&self) -> [(&'static str, &Path); 3] {
        [
            ("RUSTC_WORKSPACE_WRAPPER", self.wrapper.as_path()),
            (rustc_wrapper::CAPTURE_FILE_VARIABLE, self.capture_file.as_path()),
            (rustc_wrapper::CAPTURE_PACKAGE_VARIABLE, self.handler_root.as_path()),
        ]
    }

    /// Prepares a capture: removes an earlier record, and takes the identities of the files cargo
    /// reads first.
    pub(crate) fn begin(&self) -> InputSnapshot {
        let _ = std::fs::remove_file(&self.capture_file);
        if let Some(directory) = self.capture_file.parent() {
            let _ = std::fs::create_dir_all(directory);
        }
        InputSnapshot::of(self.before_files.iter().cloned())
    }
}

/// What cargo's JSON messages said that the fast path needs.
#[derive(Debug, Default)]
pub(crate) struct CargoFacts {
    /// Units of local packages (`path+file://` ids) other than the handler's library: whether it
    /// is a build script's compilation, its manifest, its files.
    pub(crate) local_units: Vec<LocalUnit>,
    /// Build scripts that ran or were fresh: package id, `OUT_DIR`.
    pub(crate) build_scripts: Vec<(String, PathBuf)>,
    /// Each package's manifest, by id.
    pub(crate) manifests: Vec<(String, PathBuf)>,
}

#[derive(Debug)]
pub(crate) struct LocalUnit {
    pub(crate) package_id: String,
    pub(crate) build_script: bool,
    pub(crate) files: Vec<PathBuf>,
}

impl CargoFacts {
    /// Notes one `compiler-artifact` message.
    pub(crate) fn artifact(&mut self, artifact: &cargo_metadata::Artifact, handler_id: &str) {
        let id = &artifact.package_id.repr;
        if !self.manifests.iter().any(|(known, _)| known == id) {
            self.manifests.push((id.clone(), artifact.manifest_path.clone().into_std_path_buf()));
        }
        let build_script = artifact.target.kind.contains(&cargo_metadata::TargetKind::CustomBuild);
        if is_local(id) && (id != handler_id || build_script) {
            self.local_units.push(LocalUnit {
                package_id: id.clone(),
                build_script,
                files: artifact
                    .filenames
                    .iter()
                    .map(|file| file.clone().into_std_path_buf())
                    .collect(),
            });
        }
    }

    pub(crate) fn build_script(&mut self, executed: &cargo_metadata::BuildScript) {
        self.build_scripts
            .push((executed.package_id.repr.clone(), executed.out_dir.clone().into_std_path_buf()));
    }

    fn manifest(&self, id: &str) -> Option<&Path> {
        self.manifests.iter().find(|(known, _)| known == id).map(|(_, path)| path.as_path())
    }
}

/// Local packages (path dependencies and the workspace's own) have `path+file://` ids.
fn is_local(package_id: &str) -> bool {
    package_id.starts_with("path+")
}

/// What a build taught the fast path.
#[derive(Debug, Clone, Default)]
pub(crate) enum Learned {
    /// Nothing (a cancelled build, a failed direct build, an unchanged one).
    #[default]
    Nothing,
    /// A cargo build ran to its end.
    Cargo(Arc<CargoLearned>),
    /// A direct build succeeded from these sources.
    Direct(Option<Arc<SourceContents>>),
}

impl Learned {
    /// The handler's rustc, when this was a cargo build that compiled (or tried to compile) the
    /// handler, and whether the build succeeded.
    pub(crate) fn handler_recorded_by_cargo(&self) -> Option<(Invocation, bool)> {
        match self {
            Learned::Cargo(cargo) => match &cargo.captured {
                Some(Ok(captured)) => Some((captured.invocation.clone(), cargo.succeeded)),
                _ => None,
            },
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct CargoLearned {
    succeeded: bool,
    /// Cargo found the handler's library up to date (it compiled nothing of it).
    handler_fresh: bool,
    /// The handler's rustc, when this build ran it.
    captured: Option<Result<Arc<Captured>, String>>,
    /// The files cargo decided with (when the handler was not compiled, to tell whether the
    /// command line captured earlier still holds).
    inputs: Result<InputSnapshot, String>,
    sources: Option<Arc<SourceContents>>,
}

/// After a cargo build (in a blocking thread): reads the recorded rustc and takes the snapshot.
pub(crate) fn after_cargo(
    setup: &CaptureSetup,
    facts: &CargoFacts,
    before: InputSnapshot,
    started: SystemTime,
    (succeeded, handler_fresh): (bool, bool),
    artifact: Option<&Path>,
) -> CargoLearned {
    let invocation = rustc_wrapper::read(&setup.capture_file);
    let _ = std::fs::remove_file(&setup.capture_file);
    let inputs = inputs_after_cargo(setup, facts, before, started);
    let captured = invocation.map(|invocation| {
        let inputs = inputs.clone()?;
        capture(invocation, inputs, artifact, setup).map(Arc::new)
    });
    let sources = match (&captured, artifact) {
        (Some(Ok(captured)), Some(artifact)) if succeeded => SourceContents::read(
            &captured.dep_info,
            &captured.invocation.working_directory,
            artifact,
            started,
            &SourcesBefore::default(),
        )
        .map(Arc::new),
        _ => None,
    };
    CargoLearned { succeeded, handler_fresh, captured, inputs, sources }
}

fn inputs_after_cargo(
    setup: &CaptureSetup,
    facts: &CargoFacts,
    before: InputSnapshot,
    started: SystemTime,
) -> Result<InputSnapshot, String> {
    if let Some(changed) = before.first_change() {
        return Err(format!("{} changed while cargo built", changed.display()));
    }
    let mut during = InputSnapshot::default();
    // Manifests of local packages cargo named (a path dependency added by this very build).
    during.add(
        facts.manifests.iter().filter(|(id, _)| is_local(id)).map(|(_, manifest)| manifest.clone()),
    );
    for unit in &facts.local_units {
        let dep_info = unit_dep_info(unit).ok_or_else(|| {
            format!("no dep-info file next to {:?} of {}", unit.files, unit.package_id)
        })?;
        let text = std::fs::read_to_string(&dep_info)
            .map_err(|error| format!("cannot read {}: {error}", dep_info.display()))?;
        // Cargo runs rustc in the workspace root: relative paths are relative to it.
        during.add(cargo_inputs::dep_info_sources(&text, &setup.workspace_root));
    }
    for (package_id, out_dir) in &facts.build_scripts {
        let output_file = out_dir.parent().map(|run| run.join("output"));
        let output = output_file
            .as_deref()
            .and_then(|file| std::fs::read_to_string(file).ok())
            .ok_or_else(|| format!("cannot read the output of {package_id}'s build script"))?;
        let root = facts.manifest(package_id).and_then(Path::parent);
        match (cargo_inputs::build_script_watches(&output), is_local(package_id), root) {
            (None, false, _) => {} // reruns when its package changes: registry packages do not
            (None, true, _) if *package_id == setup.handler_id => {
                return Err(
                    "the handler's build script names nothing it watches (no `cargo::rerun-if-changed`), \
                     so cargo runs it again at every change"
                        .to_owned(),
                );
            }
            (None, true, Some(root)) => {
                let files =
                    cargo_inputs::package_files(root, MAX_PACKAGE_FILES).ok_or_else(|| {
                        format!(
                            "{} has too many files to watch for its build script",
                            root.display()
                        )
                    })?;
                during.add(files);
            }
            (Some(watched), local, root) => {
                for path in watched {
                    let path = PathBuf::from(path);
                    let path = match root {
                        Some(root) if path.is_relative() => root.join(path),
                        _ if path.is_relative() => continue,
                        _ => path,
                    };
                    // A registry package's own files never change.
                    if !local && root.is_some_and(|root| path.starts_with(root)) {
                        continue;
                    }
                    if path.is_dir() {
                        during.add(
                            cargo_inputs::package_files(&path, MAX_PACKAGE_FILES).ok_or_else(
                                || format!("{} has too many files to watch", path.display()),
                            )?,
                        );
                    } else {
                        during.add([path]);
                    }
                }
            }
            (None, true, None) => {
                return Err(format!("no manifest known for {package_id}'s build script"));
            }
        }
    }
    if let Some(missing) = during.first_missing() {
        return Err(format!("{} does not exist", missing.display()));
    }
    if let Some(changed) = during.first_changed_after(started) {
        return Err(format!("{} changed while cargo built", changed.display()));
    }
    let mut inputs = before;
    inputs.merge(during);
    Ok(inputs)
}

/// The dep-info file of a unit: `deps/<name>-<hash>.d` next to `deps/lib<name>-<hash>.rlib`, or
/// the `.d` file in a build script's directory.
fn unit_dep_info(unit: &LocalUnit) -> Option<PathBuf> {
    for file in &unit.files {
        let directory = file.parent()?;
        if unit.build_script {
            let entries = std::fs::read_dir(directory).ok()?;
            return entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .find(|path| path.extension().is_some_and(|extension| extension == "d"));
        }
        let stem = file.file_stem()?.to_str()?;
        let stem = stem.strip_prefix("lib").unwrap_or(stem);
        let dep_info = directory.join(format!("{stem}.d"));
        if dep_info.is_file() {
            return Some(dep_info);
        }
    }
    None
}

fn capture(
    invocation: Invocation,
    inputs: InputSnapshot,
    artifact: Option<&Path>,
    setup: &CaptureSetup,
) -> Result<Captured, String> {
    let out_dir = invocation.argument("--out-dir").ok_or("rustc had no --out-dir")?;
    let crate_name = invocation.argument("--crate-name").ok_or("rustc had no --crate-name")?;
    // Where cargo puts a cdylib: `lib<name>.so` beside `deps/` (cargo names it only when the
    // build succeeds; a build that failed in the handler still recorded its rustc).
    let artifact = match artifact {
        Some(artifact) => artifact.to_path_buf(),
        None => Path::new(out_dir)
            .parent()
            .ok_or("rustc's --out-dir has no parent")?
            .join(format!("lib{crate_name}{}", std::env::consts::DLL_SUFFIX)),
    };
    let extra = invocation
        .arguments_named("-C")
        .find_map(|option| option.strip_prefix("extra-filename="))
        .unwrap_or("");
    let dep_info = Path::new(out_dir).join(format!("{crate_name}{extra}.d"));
    let mut outputs = InputSnapshot::of(invocation.extern_files());
    outputs.add([invocation.program.clone()]);
    if let Some(missing) = outputs.first_missing() {
        return Err(format!("{} does not exist", missing.display()));
    }
    let lock_file = artifact.parent().ok_or("the library has no directory")?.join(".cargo-lock");
    let description = format!(
        "{} v{} ({})",
        invocation.variable("CARGO_PKG_NAME").unwrap_or(crate_name),
        invocation.variable("CARGO_PKG_VERSION").unwrap_or("?"),
        setup.handler_root.display()
    );
    Ok(Captured { invocation, inputs, outputs, artifact, dep_info, lock_file, description })
}

/// The recorded command line as a daemon leaves it for the next one.
#[derive(Debug, Serialize, Deserialize)]
struct KeptRecord {
    /// The hotswap that wrote it (another may record differently: its record is not used).
    hotswap: String,
    /// The environment of the daemon that recorded it: what rustc got beyond it is what cargo
    /// (and build scripts) added, which the next daemon adds to its own environment.
    daemon_environment: Vec<(String, String)>,
    captured: Captured,
}

/// This process's environment, sorted, or `None` when a variable is not UTF-8 (the wrapper
/// records nothing then either).
fn daemon_environment() -> Option<Vec<(String, String)>> {
    let mut environment = Vec::new();
    for (name, value) in std::env::vars_os() {
        environment.push((name.into_string().ok()?, value.into_string().ok()?));
    }
    environment.sort();
    Some(environment)
}

/// The environment rustc gets from cargo for `recorded`, run by a daemon whose environment is
/// `now` where the recording one's was `then`: `now`, with what cargo added to `then` on top.
fn environment_for(
    recorded: &[(String, String)],
    then: &[(String, String)],
    now: &[(String, String)],
) -> Vec<(String, String)> {
    let mut environment: std::collections::BTreeMap<String, String> = now.iter().cloned().collect();
    for (name, value) in recorded {
        if !then.iter().any(|(known, known_value)| known == name && known_value == value) {
            environment.insert(name.clone(), value.clone());
        }
    }
    environment.into_iter().collect()
}

/// Where the handler's recorded rustc is kept between daemons: one file per cargo command (the
/// package, profile, features, and the environment variables cargo and rustc read), so that a
/// record is only ever used for the command that recorded it. A `hotswap serve` whose first cargo
/// build finds the handler up to date starts with it: its first save is a direct build too,
/// once cargo has confirmed that nothing it decides with changed since.
pub(crate) fn kept_record_path(spec: &BuildSpec) -> PathBuf {
    let mut environment: Vec<(String, String)> = std::env::vars_os()
        .map(|(name, value)| {
            (name.to_string_lossy().into_owned(), value.to_string_lossy().into_owned())
        })
        .filter(|(name, _)| name.starts_with("CARGO") || name.starts_with("RUST"))
        .collect();
    environment.sort();
    let key = format!(
        "{}|{}|{:?}|{}|{:?}",
        spec.package, spec.profile, spec.features, spec.no_default_features, environment
    );
    spec.target_dir.join("hotswap-rustc").join(format!(
        "{}-{:016x}.json",
        spec.library_name,
        super::shared_deps::stable_hash(&key)
    ))
}

impl DirectRustc {
    /// `enabled`: `direct_rustc` in hotswap.toml. `kept_at`: where the recorded command line
    /// is kept between daemons ([`kept_record_path`]); the one found there is the candidate
    /// until the first cargo build says whether it still holds.
    pub(crate) fn new(enabled: bool, kept_at: Option<PathBuf>) -> Self {
        let mut direct = Self::without_record(enabled);
        direct.kept_at = kept_at;
        if direct.disabled.is_none()
            && let Some(path) = &direct.kept_at
            && let Ok(bytes) = std::fs::read(path)
            && let Ok(kept) = serde_json::from_slice::<KeptRecord>(&bytes)
            && kept.hotswap == env!("CARGO_PKG_VERSION")
            && let Some(now) = daemon_environment()
        {
            let mut captured = kept.captured;
            captured.invocation.environment =
                environment_for(&captured.invocation.environment, &kept.daemon_environment, &now);
            direct.captured = Ok(Arc::new(captured));
            direct.unconfirmed = true;
        }
        direct
    }

    fn without_record(enabled: bool) -> Self {
        let disabled = if !enabled {
            Some("`direct_rustc = false` in hotswap.toml".to_owned())
        } else if wrapper_program().is_none() {
            Some("the hotswap binary cannot be found to record cargo's rustc".to_owned())
        } else {
            None
        };
        Self {
            disabled,
            captured: Err("no cargo build has compiled the handler yet".to_owned()),
            sources: None,
            kept_at: None,
            unconfirmed: false,
        }
    }

    /// Keeps `captured` for the next daemon, in the background.
    fn keep(&self, captured: &Captured) {
        let Some(path) = self.kept_at.clone() else { return };
        let Some(daemon_environment) = daemon_environment() else { return };
        let kept = KeptRecord {
            hotswap: env!("CARGO_PKG_VERSION").to_owned(),
            daemon_environment,
            captured: captured.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&kept) else { return };
        tokio::task::spawn_blocking(move || {
            if let Some(directory) = path.parent() {
                let _ = std::fs::create_dir_all(directory);
            }
            if let Err(error) = rustc_wrapper::write_private(&path, &bytes) {
                tracing::debug!("cannot keep the handler's rustc in {}: {error}", path.display());
            }
        });
    }

    /// How to build for these saves.
    pub(crate) fn plan(
        &self,
        reason: BuildReason,
        paths: &[PathBuf],
        packages: &PackageSet,
        spec: &BuildSpec,
        shared: Option<Arc<SharedLibrary>>,
    ) -> super::BuildPlan {
        let capture = match &self.disabled {
            Some(why) => Err(why.clone()),
            None => capture_setup(packages, spec),
        };
        let capture = match capture {
            Ok(capture) => Some(capture),
            Err(why) => {
                return super::BuildPlan::Cargo {
                    why: format!("the fast path is off: {why}"),
                    capture: None,
                };
            }
        };
        let cargo = |why: String| super::BuildPlan::Cargo { why, capture: capture.clone() };
        if reason == BuildReason::Initial {
            return cargo("the first build".to_owned());
        }
        let captured = match &self.captured {
            Ok(_) if self.unconfirmed => {
                return cargo(
                    "no cargo build of this daemon has confirmed the last daemon's record yet"
                        .to_owned(),
                );
            }
            Ok(captured) => captured,
            Err(why) => return cargo(why.clone()),
        };
        for path in paths {
            if let Some(why) = cargo_input_reason(path, packages) {
                return cargo(why);
            }
        }
        if let Some(changed) = captured.inputs.first_change() {
            return cargo(format!("{} changed since the last cargo build", changed.display()));
        }
        if let Some(changed) = captured.outputs.first_change() {
            return cargo(format!("{} changed since the last cargo build", changed.display()));
        }
        super::BuildPlan::Rustc {
            build: DirectBuild {
                captured: captured.clone(),
                sources: self.sources.clone(),
                workspace_root: packages.cargo_workspace_root.clone(),
                shared,
            },
            fallback: capture,
        }
    }

    /// The handler's rustc as cargo last ran it, when the fast path can run it.
    pub(crate) fn invocation(&self) -> Option<Invocation> {
        if self.unconfirmed {
            return None;
        }
        self.captured.as_ref().ok().map(|captured| captured.invocation.clone())
    }

    /// Takes in what a build learned.
    pub(crate) fn learn(&mut self, learned: Learned) {
        match learned {
            Learned::Nothing => {}
            Learned::Direct(sources) => self.sources = sources,
            Learned::Cargo(cargo) => {
                self.sources = cargo.sources.clone();
                self.unconfirmed = false;
                match &cargo.captured {
                    Some(Ok(captured)) => {
                        self.keep(captured);
                        self.captured = Ok(captured.clone());
                    }
                    Some(Err(why)) => {
                        self.captured =
                            Err(format!("the last cargo build cannot be repeated: {why}"))
                    }
                    // Cargo compiled the handler, but its rustc was not recorded.
                    None if cargo.succeeded && !cargo.handler_fresh => {
                        self.captured = Err(
                            "the last cargo build compiled the handler without recording its rustc"
                                .to_owned(),
                        );
                    }
                    // Cargo found the handler up to date: the command line recorded earlier is
                    // still what cargo would run, if nothing cargo reads changed since.
                    None if cargo.succeeded => {
                        let still_holds = match (&self.captured, &cargo.inputs) {
                            (Ok(captured), Ok(inputs)) => captured.inputs == *inputs,
                            _ => false,
                        };
                        if !still_holds {
                            self.captured = Err(match &cargo.inputs {
                                Err(why) => format!("the last cargo build cannot be repeated: {why}"),
                                Ok(_) => "the last cargo build did not compile the handler, and what cargo reads changed since it last did"
                                    .to_owned(),
                            });
                        }
                    }
                    None => {
                        self.captured =
                            Err("the last cargo build failed before compiling the handler"
                                .to_owned())
                    }
                }
            }
        }
    }
}

/// Why a save of `path` needs cargo, if it does: anything cargo reads to decide what to build,
/// and any file of another local package.
fn cargo_input_reason(path: &Path, packages: &PackageSet) -> Option<String> {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("");
    let in_cargo_directory =
        path.parent().and_then(Path::file_name).is_some_and(|dir| dir == ".cargo");
    if matches!(
        name,
        "Cargo.toml" | "Cargo.lock" | "build.rs" | "rust-toolchain" | "rust-toolchain.toml"
    ) || (in_cargo_directory && matches!(name, "config" | "config.toml"))
    {
        return Some(format!("{} was saved", path.display()));
    }
    // The package whose directory holds the file most closely.
    let owner = packages
        .local_packages
        .iter()
        .filter(|package| path.starts_with(package.root()))
        .max_by_key(|package| package.root().components().count());
    match owner {
        Some(owner) if owner.manifest == packages.handler_manifest => None,
        Some(owner) => {
            Some(format!("{} of path dependency `{}` was saved", path.display(), owner.name))
        }
        None => Some(format!("{} is not a source of the handler", path.display())),
    }
}

/// Environment variables that put a wrapper of the user's around rustc: cargo would run it with
/// ours as its compiler, which ours cannot answer for.
const WRAPPER_VARIABLES: [&str; 4] = [
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
];

fn capture_setup(packages: &PackageSet, spec: &BuildSpec) -> Result<CaptureSetup, String> {
    let handler = packages.local_packages.first().ok_or("the handler package is unknown")?;
    let handler_root = handler.root().to_path_buf();
    let mut before_files = Vec::new();
    for package in &packages.local_packages {
        before_files.push(package.manifest.clone());
        before_files.push(package.root().join("build.rs"));
    }
    before_files.push(packages.cargo_workspace_root.join("Cargo.toml"));
    before_files.push(packages.cargo_workspace_root.join("Cargo.lock"));
    let working_directory = std::env::current_dir().map_err(|error| error.to_string())?;
    let configuration = cargo_inputs::configuration_files(&[
        &working_directory,
        &packages.cargo_workspace_root,
        &handler_root,
    ]);
    if let Some(variable) = WRAPPER_VARIABLES
        .iter()
        .find(|variable| std::env::var_os(variable).is_some_and(|value| !value.is_empty()))
    {
        return Err(format!("{variable} is set: hotswap does not replace your wrapper"));
    }
    // A wrapper in cargo's configuration (sccache, say), the same.
    for file in &configuration {
        if let Ok(text) = std::fs::read_to_string(file)
            && (text.contains("rustc-wrapper") || text.contains("rustc-workspace-wrapper"))
        {
            return Err(format!(
                "{} names a rustc wrapper: hotswap does not replace your wrapper",
                file.display()
            ));
        }
    }
    before_files.extend(configuration);
    Ok(CaptureSetup {
        wrapper: wrapper_program()
            .ok_or("the hotswap binary cannot be found to record cargo's rustc")?,
        // Per daemon: several may build in one target directory. Read and removed after each
        // cargo build.
        capture_file: spec.target_dir.join("hotswap-rustc").join(format!(
            "{}-{}.json",
            spec.library_name,
            std::process::id()
        )),
        handler_id: handler.id.clone(),
        handler_root,
        workspace_root: packages.cargo_workspace_root.clone(),
        before_files,
    })
}

/// This binary as cargo can run it: its path while that file is still this binary (cargo keeps
/// what it learns of rustc per wrapper path, so a stable path is worth having), else
/// `/proc/<pid>/exe`, which stays this binary while the daemon runs even when the file was
/// replaced (a `cargo install` of another hotswap).
fn wrapper_program() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let by_pid = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    let running = std::fs::metadata(&by_pid).ok();
    let path = std::env::current_exe().ok().filter(|path| path.is_file());
    match (path, running) {
        (Some(path), Some(running))
            if std::fs::metadata(&path)
                .is_ok_and(|file| (file.dev(), file.ino()) == (running.dev(), running.ino())) =>
        {
            Some(path)
        }
        (_, Some(_)) => Some(by_pid),
        (path, None) => path,
    }
}

/// A direct build to run: the captured rustc, and the sources the library on disk came from.
#[derive(Debug)]
pub(crate) struct DirectBuild {
    captured: Arc<Captured>,
    sources: Option<Arc<SourceContents>>,
    workspace_root: PathBuf,
    /// The dependencies linked once, when ready: the handler links on them.
    shared: Option<Arc<SharedLibrary>>,
}

/// How a direct build ended: done, or cargo must build after all (and why).
#[derive(Debug)]
pub(crate) enum DirectOutcome {
    Done(BuildOutput),
    NeedsCargo(String),
}

/// One line of rustc's JSON output on stderr.
#[derive(Debug, Deserialize)]
struct RustcMessage {
    #[serde(rename = "$message_type")]
    message_type: Option<String>,
    artifact: Option<PathBuf>,
    emit: Option<String>,
}

/// Runs the captured rustc, reporting progress, until done or until `cancel` fires.
pub(crate) async fn run(
    build: DirectBuild,
    progress: &mut impl FnMut(ProgressLine),
    cancel: &mut oneshot::Receiver<()>,
    started: Instant,
) -> DirectOutcome {
    let captured = &build.captured;
    let invocation = &captured.invocation;
    // On the shared dependency library when it is ready and has every crate the handler links.
    let shared = build.shared.as_ref().and_then(|shared| {
        match (shared.arguments(invocation), shared.dep_info(invocation)) {
            (Ok(arguments), Some(dep_info)) => Some((arguments, dep_info)),
            (Err(why), _) => {
                tracing::info!("linking the dependencies into the library: {why}");
                None
            }
            (Ok(_), None) => None,
        }
    });
    let built_with = if shared.is_some() { BuiltWith::RustcSharedDeps } else { BuiltWith::Rustc };
    let (arguments, dep_info) = match shared {
        Some((arguments, dep_info)) => (arguments, dep_info),
        None => (invocation.arguments.clone(), captured.dep_info.clone()),
    };
    let output =
        |result: BuildResult, diagnostics: Vec<Diagnostic>, rendered: String| BuildOutput {
            result,
            diagnostics,
            rendered,
            duration: started.elapsed(),
            built_with,
            learned: Learned::Nothing,
        };
    let cancelled = || output(BuildResult::Cancelled, Vec::new(), String::new());

    // Unchanged sources: the library on disk is this build already.
    if let Some(sources) = build.sources.clone() {
        let current = tokio::task::spawn_blocking(move || sources.still_current()).await;
        if current.unwrap_or(false) {
            return DirectOutcome::Done(output(
                BuildResult::Succeeded { artifact: captured.artifact.clone(), fresh: true },
                Vec::new(),
                String::new(),
            ));
        }
    }
    let build_started = SystemTime::now();
    let before = {
        let captured = captured.clone();
        tokio::task::spawn_blocking(move || {
            SourcesBefore::read(&captured.dep_info, &captured.invocation.working_directory)
        })
        .await
        .unwrap_or_default()
    };

    // Cargo's lock of the build directory: a cargo building there now waits for us, and we for it.
    let _lock = match lock_build_directory(&captured.lock_file, progress, cancel).await {
        Ok(Some(lock)) => lock,
        Ok(None) => return DirectOutcome::Done(cancelled()),
        Err(error) => {
            return DirectOutcome::NeedsCargo(format!(
                "cannot lock {}: {error}",
                captured.lock_file.display()
            ));
        }
    };
    progress(ProgressLine {
        message: format!("Compiling {}, rustc directly", captured.description),
        blocked: false,
    });
    let mut command = invocation.command(&arguments);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return DirectOutcome::NeedsCargo(format!(
                "cannot run {}: {error}",
                invocation.program.display()
            ));
        }
    };
    let process_group = child.id();
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
    let (mut stdout_open, mut stderr_open) = (true, true);
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut other_lines = Vec::new();
    let mut library = None;
    while stdout_open || stderr_open {
        tokio::select! {
            _ = &mut *cancel => {
                super::end_build(&mut child, process_group).await;
                return DirectOutcome::Done(cancelled());
            }
            line = stderr.next_line(), if stderr_open => match line {
                Ok(Some(line)) => match serde_json::from_str::<RustcMessage>(&line) {
                    Ok(message) if message.message_type.as_deref() == Some("artifact") => {
                        if message.emit.as_deref() == Some("link")
                            && let Some(artifact) = message.artifact
                            && artifact.to_string_lossy().ends_with(std::env::consts::DLL_SUFFIX)
                        {
                            library = Some(artifact);
                        }
                    }
                    Ok(message) if message.message_type.as_deref() == Some("diagnostic") => {
                        if let Some(diagnostic) = diagnostic_from_rustc(&line, &build.workspace_root)
                            && !diagnostics.contains(&diagnostic)
                        {
                            diagnostics.push(diagnostic);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if !line.trim().is_empty() && other_lines.len() < 200 {
                            other_lines.push(line);
                        }
                    }
                },
                _ => stderr_open = false,
            },
            line = stdout.next_line(), if stdout_open => match line {
                Ok(Some(line)) => {
                    if !line.trim().is_empty() && other_lines.len() < 200 {
                        other_lines.push(line);
                    }
                }
                _ => stdout_open = false,
            },
        }
    }
    let status = child.wait().await;
    let succeeded = status.as_ref().is_ok_and(|status| status.success());
    let errors: Vec<&Diagnostic> =
        diagnostics.iter().filter(|diagnostic| diagnostic.severity == Severity::Error).collect();
    if !succeeded {
        if let Some(code) = errors
            .iter()
            .filter_map(|error| error.code.as_deref())
            .find(|code| DEPENDENCY_ERRORS.contains(code))
        {
            return DirectOutcome::NeedsCargo(format!(
                "rustc did not find the dependencies it was built against ({code})"
            ));
        }
        if errors.is_empty() {
            use std::os::unix::process::ExitStatusExt;
            return match &status {
                // Killed (the OOM killer, a stray `pkill`): a failed build, as when cargo is.
                Ok(status) if status.signal().is_some() => DirectOutcome::Done(output(
                    BuildResult::Failed,
                    diagnostics,
                    format!(
                        "rustc stopped without reporting an error ({status}); save again or run `hotswap reload` to retry\n"
                    ),
                )),
                Ok(status) => DirectOutcome::NeedsCargo(format!(
                    "rustc stopped without an error message ({status}){}",
                    other_lines.first().map(|line| format!(": {line}")).unwrap_or_default()
                )),
                Err(error) => {
                    DirectOutcome::NeedsCargo(format!("rustc could not be waited for: {error}"))
                }
            };
        }
        let rendered = diagnostics::render_errors(&diagnostics);
        return DirectOutcome::Done(output(BuildResult::Failed, diagnostics, rendered));
    }
    let Some(library) = library else {
        return DirectOutcome::NeedsCargo("rustc reported no library file".to_owned());
    };
    let artifact = captured.artifact.clone();
    let uplift = {
        let (library, artifact) = (library.clone(), artifact.clone());
        tokio::task::spawn_blocking(move || link_or_copy(&library, &artifact)).await
    };
    if let Err(error) = uplift.unwrap_or_else(|error| Err(std::io::Error::other(error))) {
        return DirectOutcome::NeedsCargo(format!(
            "cannot link {} to {}: {error}",
            library.display(),
            artifact.display()
        ));
    }
    let uplifted_dep_info = {
        let (captured, dep_info) = (captured.clone(), dep_info.clone());
        tokio::task::spawn_blocking(move || {
            update_uplifted_dep_info(
                &dep_info,
                &captured.invocation.working_directory,
                &captured.artifact,
            )
        })
        .await
    };
    if let Err(error) = uplifted_dep_info.unwrap_or_else(|error| Err(std::io::Error::other(error)))
    {
        return DirectOutcome::NeedsCargo(format!(
            "cannot update {}: {error}",
            artifact.with_extension("d").display()
        ));
    }
    let sources = {
        let captured = captured.clone();
        tokio::task::spawn_blocking(move || {
            SourceContents::read(
                &dep_info,
                &captured.invocation.working_directory,
                &captured.artifact,
                build_started,
                &before,
            )
        })
        .await
        .ok()
        .flatten()
    };
    let mut done =
        output(BuildResult::Succeeded { artifact, fresh: false }, diagnostics, String::new());
    done.learned = Learned::Direct(sources.map(Arc::new));
    DirectOutcome::Done(done)
}

/// A rustc JSON diagnostic as the protocol's, the way cargo passes it on with
/// `--message-format=json`: the rendered text without colours.
fn diagnostic_from_rustc(line: &str, workspace_root: &Path) -> Option<Diagnostic> {
    let mut message: cargo_metadata::diagnostic::Diagnostic = serde_json::from_str(line).ok()?;
    if let Some(rendered) = &mut message.rendered {
        *rendered = anstream::adapter::strip_str(rendered).to_string();
    }
    diagnostics::from_cargo(&message, workspace_root)
}

/// Waits for cargo's lock of the build directory, saying so while another cargo holds it.
/// `Ok(None)`: cancelled meanwhile.
async fn lock_build_directory(
    path: &Path,
    progress: &mut impl FnMut(ProgressLine),
    cancel: &mut oneshot::Receiver<()>,
) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => {
                if !std::mem::replace(&mut said, true) {
                    progress(ProgressLine {
                        message: "Blocking waiting for file lock on build directory".to_owned(),
                        blocked: true,
                    });
                }
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
        tokio::select! {
            _ = &mut *cancel => return Ok(None),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Keeps cargo's dep-info next to the library (`lib<name>.d`, every file the library was
/// compiled from, absolute) true after a direct build: the files rustc read now are added to the
/// ones cargo listed. Live reload reads it to tell an asset from a file the code includes
/// (`include_str!`), so a file a direct build began to read must be in it. A file no longer read
/// stays listed until cargo next builds the library: a save of it builds, which is never wrong.
fn update_uplifted_dep_info(
    dep_info: &Path,
    working_directory: &Path,
    artifact: &Path,
) -> std::io::Result<()> {
    let uplifted = artifact.with_extension("d");
    let mut files = match std::fs::read_to_string(&uplifted) {
        Ok(text) => crate::browser::dependencies_of_dep_info(&text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    let before = files.len();
    let read_now = std::fs::read_to_string(dep_info)?;
    for file in cargo_inputs::dep_info_sources(&read_now, working_directory) {
        if !files.contains(&file) {
            files.push(file);
        }
    }
    if files.len() == before && uplifted.exists() {
        return Ok(());
    }
    let escaped = |path: &Path| path.to_string_lossy().replace(' ', "\\ ");
    let mut text = format!("{}:", escaped(artifact));
    for file in &files {
        text.push(' ');
        text.push_str(&escaped(file));
    }
    text.push('\n');
    let partial = uplifted.with_extension("d.partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, &uplifted)
}

/// Puts `source` at `destination` as cargo does: a hard link, else a copy; never writing into
/// the file at `destination`, which a generation may have loaded.
fn link_or_copy(source: &Path, destination: &Path) -> std::io::Result<()> {
    if source == destination {
        return Ok(());
    }
    match std::fs::remove_file(destination) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    if std::fs::hard_link(source, destination).is_ok() {
        return Ok(());
    }
    let partial = destination.with_extension("partial");
    std::fs::copy(source, &partial)?;
    std::fs::rename(&partial, destination)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::LocalPackage;

    fn packages() -> PackageSet {
        let local = |name: &str, manifest: &str| LocalPackage {
            id: format!("path+file:///w/{name}#0.1.0"),
            name: name.to_owned(),
            manifest: manifest.into(),
        };
        PackageSet {
            handler: "app".into(),
            handler_spec: "path+file:///w/app#0.1.0".into(),
            handler_manifest: "/w/app/Cargo.toml".into(),
            library_name: "app".into(),
            package_roots: vec!["/w/app".into(), "/w/app/crates/shared".into()],
            local_packages: vec![
                local("app", "/w/app/Cargo.toml"),
                local("shared", "/w/app/crates/shared/Cargo.toml"),
            ],
            cargo_workspace_root: "/w/app".into(),
            cargo_target_dir: "/w/app/target".into(),
        }
    }

    #[test]
    fn only_the_handler_s_own_sources_skip_cargo() {
        let packages = packages();
        let reason = |path: &str| cargo_input_reason(Path::new(path), &packages);
        assert_eq!(reason("/w/app/src/lib.rs"), None);
        assert_eq!(reason("/w/app/src/routes/todos.rs"), None);
        assert_eq!(reason("/w/app/templates/index.html"), None);
        for input in [
            "/w/app/Cargo.toml",
            "/w/app/Cargo.lock",
            "/w/app/build.rs",
            "/w/app/.cargo/config.toml",
            "/w/app/.cargo/config",
            "/w/app/rust-toolchain.toml",
            "/w/app/rust-toolchain",
            "/w/app/crates/shared/Cargo.toml",
        ] {
            assert!(reason(input).unwrap().contains("was saved"), "{input}");
        }
        assert!(
            reason("/w/app/crates/shared/src/lib.rs").unwrap().contains("path dependency `shared`")
        );
        assert!(reason("/elsewhere/lib.rs").unwrap().contains("not a source of the handler"));
    }

    #[test]
    fn reads_rustc_diagnostics_as_cargo_passes_them_on() {
        let line = r#"{"$message_type":"diagnostic","message":"unused variable: `x`","code":{"code":"unused_variables","explanation":null},"level":"warning","spans":[{"file_name":"app/src/lib.rs","byte_start":10,"byte_end":11,"line_start":2,"line_end":2,"column_start":9,"column_end":10,"is_primary":true,"text":[{"text":"    let x = 1;","highlight_start":9,"highlight_end":10}],"label":null,"suggested_replacement":null,"suggestion_applicability":null,"expansion":null}],"children":[],"rendered":"\u001b[1m\u001b[33mwarning\u001b[0m: unused variable\n"}"#;
        let diagnostic = diagnostic_from_rustc(line, Path::new("/w")).unwrap();
        assert_eq!(diagnostic.severity, Severity::Warning);
        assert_eq!(diagnostic.file.as_deref(), Some(Path::new("/w/app/src/lib.rs")));
        assert_eq!(diagnostic.rendered.as_deref(), Some("warning: unused variable\n"));
        let artifact: RustcMessage = serde_json::from_str(
            r#"{"$message_type":"artifact","artifact":"/t/debug/deps/libapp.so","emit":"link"}"#,
        )
        .unwrap();
        assert_eq!(artifact.artifact.as_deref(), Some(Path::new("/t/debug/deps/libapp.so")));
    }

    #[test]
    fn finds_the_dep_info_of_a_unit() {
        let directory = tempfile::tempdir().unwrap();
        let deps = directory.path().join("deps");
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::write(deps.join("shared-1a2b.d"), "").unwrap();
        let unit = LocalUnit {
            package_id: "path+file:///w/shared#0.1.0".into(),
            build_script: false,
            files: vec![deps.join("libshared-1a2b.rlib"), deps.join("libshared-1a2b.rmeta")],
        };
        assert_eq!(unit_dep_info(&unit), Some(deps.join("shared-1a2b.d")));
        let script = directory.path().join("build/shared-9f");
        std::fs::create_dir_all(&script).unwrap();
        std::fs::write(script.join("build_script_build-9f.d"), "").unwrap();
        let unit = LocalUnit {
            package_id: "path+file:///w/shared#0.1.0".into(),
            build_script: true,
            files: vec![script.join("build-script-build")],
        };
        assert_eq!(unit_dep_info(&unit), Some(script.join("build_script_build-9f.d")));
    }

    fn captured(inputs: InputSnapshot) -> Arc<Captured> {
        Arc::new(Captured {
            invocation: Invocation {
                program: "rustc".into(),
                arguments: Vec::new(),
                working_directory: "/w".into(),
                environment: Vec::new(),
            },
            inputs,
            outputs: InputSnapshot::default(),
            artifact: "/t/debug/libapp.so".into(),
            dep_info: "/t/debug/deps/app.d".into(),
            lock_file: "/t/debug/.cargo-lock".into(),
            description: "app v0.1.0 (/w)".into(),
        })
    }

    fn cargo_build(
        succeeded: bool,
        captured: Option<Result<Arc<Captured>, String>>,
        inputs: Result<InputSnapshot, String>,
    ) -> Learned {
        Learned::Cargo(Arc::new(CargoLearned {
            succeeded,
            handler_fresh: captured.is_none(),
            captured,
            inputs,
            sources: None,
        }))
    }

    #[tokio::test]
    async fn a_record_is_kept_for_the_next_daemon_which_uses_only_a_readable_one_of_its_version() {
        let directory = tempfile::tempdir().unwrap();
        let kept = directory.path().join("hotswap-rustc/app-0123.json");
        let manifest = directory.path().join("Cargo.toml");
        std::fs::write(&manifest, "[package]\n").unwrap();
        let inputs = InputSnapshot::of([manifest.clone()]);
        let mut first = DirectRustc::new(true, Some(kept.clone()));
        assert!(first.captured.is_err(), "nothing kept yet");
        first.learn(cargo_build(true, Some(Ok(captured(inputs.clone()))), Ok(inputs.clone())));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !kept.is_file() {
            assert!(std::time::Instant::now() < deadline, "the record was not kept");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "it holds the environment: private");
        }

        // The next daemon starts with it, unconfirmed: builds go through cargo until a cargo
        // build says it holds (a cancelled one says nothing). Its first cargo build found the
        // handler up to date and nothing changed: it holds.
        let mut next = DirectRustc::new(true, Some(kept.clone()));
        let restored = next.captured.as_ref().unwrap().invocation.clone();
        assert_eq!(restored.program, first.invocation().unwrap().program);
        assert_eq!(restored.environment, daemon_environment().unwrap(), "this daemon's own");
        assert_eq!(next.invocation(), None);
        next.learn(Learned::Nothing);
        assert_eq!(next.invocation(), None);
        next.learn(cargo_build(true, None, Ok(inputs.clone())));
        assert_eq!(next.invocation(), Some(restored));
        // The manifest changed while no daemon ran: it does not.
        let mut after_change = DirectRustc::new(true, Some(kept.clone()));
        std::fs::write(&manifest, "[package]\nname = \"app\"\n").unwrap();
        after_change.learn(cargo_build(true, None, Ok(InputSnapshot::of([manifest.clone()]))));
        assert!(after_change.captured.is_err());

        // Not used: with the fast path off, one written by another hotswap, an unreadable one.
        assert!(DirectRustc::new(false, Some(kept.clone())).captured.is_err());
        let text = std::fs::read_to_string(&kept).unwrap();
        let other = text.replace(env!("CARGO_PKG_VERSION"), "0.0.0-another");
        assert_ne!(other, text);
        std::fs::write(&kept, other).unwrap();
        assert!(DirectRustc::new(true, Some(kept.clone())).captured.is_err());
        std::fs::write(&kept, "{ not a record").unwrap();
        assert!(DirectRustc::new(true, Some(kept.clone())).captured.is_err());
    }

    #[test]
    fn a_kept_record_runs_with_this_daemon_s_environment_and_what_cargo_added() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
        };
        let then = pairs(&[("A", "1"), ("B", "2"), ("PATH", "/old")]);
        let recorded = pairs(&[
            ("A", "1"),
            ("B", "9"),
            ("CARGO_PKG_NAME", "app"),
            ("OUT_DIR", "/t/out"),
            ("PATH", "/old"),
        ]);
        let now = pairs(&[("A", "1"), ("C", "3"), ("PATH", "/new")]);
        assert_eq!(
            environment_for(&recorded, &then, &now),
            pairs(&[
                ("A", "1"),
                ("B", "9"),
                ("C", "3"),
                ("CARGO_PKG_NAME", "app"),
                ("OUT_DIR", "/t/out"),
                ("PATH", "/new"),
            ])
        );
    }

    #[test]
    fn each_cargo_command_keeps_its_own_record() {
        let spec = |features: &[&str], profile: &str| BuildSpec {
            cargo: "cargo".into(),
            manifest: "/w/Cargo.toml".into(),
            package: "path+file:///w#app@0.1.0".to_owned(),
            library_name: "app".to_owned(),
            profile: profile.to_owned(),
            features: features.iter().map(|feature| (*feature).to_owned()).collect(),
            no_default_features: false,
            target_dir: "/w/target".into(),
            cargo_workspace_root: "/w".into(),
            direct_rustc: true,
            shared_deps: true,
        };
        let plain = kept_record_path(&spec(&[], "dev"));
        assert!(plain.starts_with("/w/target/hotswap-rustc"), "{}", plain.display());
        assert!(plain.file_name().unwrap().to_str().unwrap().starts_with("app-"));
        assert_eq!(plain, kept_record_path(&spec(&[], "dev")), "stable");
        assert_ne!(plain, kept_record_path(&spec(&["loud"], "dev")));
        assert_ne!(plain, kept_record_path(&spec(&[], "release")));
    }

    #[test]
    fn a_record_holds_while_cargo_finds_the_handler_up_to_date_and_nothing_it_reads_changed() {
        let directory = tempfile::tempdir().unwrap();
        let manifest = directory.path().join("Cargo.toml");
        std::fs::write(&manifest, "[package]\n").unwrap();
        let inputs = InputSnapshot::of([manifest.clone()]);
        let mut direct = DirectRustc::new(true, None);
        assert!(direct.captured.is_err());
        direct.learn(cargo_build(true, Some(Ok(captured(inputs.clone()))), Ok(inputs.clone())));
        assert!(direct.captured.is_ok());
        // Up to date, nothing changed: the record still holds.
        direct.learn(cargo_build(true, None, Ok(inputs.clone())));
        assert!(direct.captured.is_ok());
        // A failed direct build or a cancelled build teaches nothing.
        direct.learn(Learned::Nothing);
        assert!(direct.captured.is_ok());
        // Up to date, but the manifest changed since the record: cargo's next run may differ.
        std::fs::write(&manifest, "[package]\nname = \"app\"\n").unwrap();
        direct.learn(cargo_build(true, None, Ok(InputSnapshot::of([manifest.clone()]))));
        assert!(direct.captured.as_ref().unwrap_err().contains("did not compile the handler"));
        // Recorded again, then a build that failed before the handler.
        let inputs = InputSnapshot::of([manifest]);
        direct.learn(cargo_build(false, Some(Ok(captured(inputs.clone()))), Ok(inputs.clone())));
        assert!(direct.captured.is_ok(), "a compile error in the handler keeps its command line");
        direct.learn(cargo_build(false, None, Ok(inputs)));
        assert!(direct.captured.as_ref().unwrap_err().contains("failed before compiling"));
    }

    #[test]
    fn the_uplifted_dep_info_gains_the_files_a_direct_build_read() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let artifact = root.join("target/debug/libapp.so");
        std::fs::create_dir_all(root.join("target/debug/deps")).unwrap();
        let uplifted = root.join("target/debug/libapp.d");
        let library = root.join("src/lib.rs");
        let shared = root.join("shared/src/lib.rs");
        std::fs::write(
            &uplifted,
            format!("{}: {} {}\n", artifact.display(), library.display(), shared.display()),
        )
        .unwrap();
        let dep_info = root.join("target/debug/deps/app-1a2b.d");
        std::fs::write(
            &dep_info,
            "target/debug/deps/app-1a2b.d: src/lib.rs assets/my\\ page.html\n\n\
             src/lib.rs:\nassets/my\\ page.html:\n",
        )
        .unwrap();
        update_uplifted_dep_info(&dep_info, root, &artifact).unwrap();
        let text = std::fs::read_to_string(&uplifted).unwrap();
        assert_eq!(
            crate::browser::dependencies_of_dep_info(&text),
            vec![root.join("assets/my page.html"), shared, library],
            "{text}"
        );
    }

    #[test]
    fn places_the_library_where_cargo_does() {
        let directory = tempfile::tempdir().unwrap();
        let source = directory.path().join("deps-libapp.so");
        let destination = directory.path().join("libapp.so");
        std::fs::write(&source, "new").unwrap();
        std::fs::write(&destination, "old").unwrap();
        let old_inode = Fingerprint::of(&destination).unwrap().inode;
        link_or_copy(&source, &destination).unwrap();
        assert_eq!(std::fs::read_to_string(&destination).unwrap(), "new");
        assert_ne!(Fingerprint::of(&destination).unwrap().inode, old_inode);
    }
}
