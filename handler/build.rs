//! Records the target triple, which the ABI header carries so the daemon can refuse a library
//! built for another target.

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=HOTSWAP_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
