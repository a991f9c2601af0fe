//! Building handler libraries for tests, once per test run, in one shared target directory.
//!
//! Every test process asks for libraries through [`example_library`] and [`fixture_library`];
//! each is built at most once per process (cargo makes later builds in other processes no-ops),
//! then copied to a path of its own so that a later build of the same crate cannot change it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The root of the hotswap repository.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The workspace's cargo target directory.
pub fn cargo_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target"))
}

/// The target directory every test shares for handler crates (examples, fixtures, scaffolds),
/// so their dependencies build once per run.
pub fn shared_handler_target_dir() -> PathBuf {
    cargo_target_dir().join("hotswap-tests")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn library_file_name(crate_name: &str) -> String {
    format!("lib{}.so", crate_name.replace('-', "_"))
}

/// Builds `package` of the workspace at `manifest` with `features`, and copies the library to a
/// file named after `label`.
fn build_library(manifest: &Path, package: &str, features: &[&str], label: &str) -> PathBuf {
    let target_dir = shared_handler_target_dir();
    let mut command = cargo();
    command
        .args(["build", "--lib", "--quiet", "--manifest-path"])
        .arg(manifest)
        .args(["-p", package, "--target-dir"])
        .arg(&target_dir);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "building {package} {features:?} failed");
    let built = target_dir.join("debug").join(library_file_name(package));
    let copies = target_dir.join("test-libraries");
    std::fs::create_dir_all(&copies).unwrap();
    // Written to a temporary name and renamed: a file that may be loaded is never overwritten
    // in place (that would change the code of a running generation under its feet).
    let copy = copies.join(format!("{}-{label}.so", std::process::id()));
    let partial = copies.join(format!("{}-{label}.so.partial", std::process::id()));
    std::fs::copy(&built, &partial)
        .unwrap_or_else(|error| panic!("copy {}: {error}", built.display()));
    std::fs::rename(&partial, &copy).unwrap();
    copy
}

/// Builds each key once per process. The lock is held while building: builds of the same crate
/// with other features write the same output file, so they must not overlap.
fn cached(key: String, build: impl FnOnce() -> PathBuf) -> PathBuf {
    static CACHE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut cache =
        CACHE.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cache.entry(key).or_insert_with(build).clone()
}

/// The library of an example crate (`hello`, `todo`), built once per test process.
pub fn example_library(name: &str) -> PathBuf {
    cached(format!("example-{name}"), || {
        build_library(
            &repository_root().join("examples/Cargo.toml"),
            name,
            &[],
            &format!("example-{name}"),
        )
    })
}

/// The fixture handler built with `features` (see `tests/fixtures/fixture/src/lib.rs`).
pub fn fixture_library(features: &[&str]) -> PathBuf {
    let label = if features.is_empty() {
        "fixture".to_owned()
    } else {
        format!("fixture-{}", features.join("+"))
    };
    cached(label.clone(), || {
        build_library(
            &repository_root().join("tests/fixtures/Cargo.toml"),
            "fixture",
            features,
            &label,
        )
    })
}

/// One of the other fixture crates (`no-export`, `wrong-abi`, `streams`).
pub fn fixture_crate_library(package: &str) -> PathBuf {
    fixture_crate_library_with(package, &[])
}

/// One of the other fixture crates, built with `features`.
pub fn fixture_crate_library_with(package: &str, features: &[&str]) -> PathBuf {
    let label = if features.is_empty() {
        package.to_owned()
    } else {
        format!("{package}-{}", features.join("+"))
    };
    cached(format!("crate-{label}"), || {
        build_library(
            &repository_root().join("tests/fixtures/Cargo.toml"),
            package,
            features,
            &label,
        )
    })
}
