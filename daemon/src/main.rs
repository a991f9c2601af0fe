//! `hotswap`: the daemon (`hotswap serve`) and the commands that talk to it.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Save a file, and the running server answers with the new code: no restart, no dropped
/// request, no lost state.
#[derive(Debug, Parser)]
#[command(name = "hotswap", version, propagate_version = true)]
struct Arguments {
    /// The workspace (the directory with hotswap.toml, or any directory inside it).
    /// Default: the current directory.
    #[arg(long, short = 'w', global = true, value_name = "DIR")]
    workspace: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground: build the handler, serve HTTP, swap on every save.
    Serve {
        /// The HTTP address to listen on, instead of `listen` in hotswap.toml
        /// (port 0 picks a free port).
        #[arg(long, value_name = "ADDRESS")]
        listen: Option<SocketAddr>,
        /// Build in this directory instead of the one hotswap.toml names.
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
        /// Start with the app's default state, not the one the last `hotswap serve` left.
        #[arg(long)]
        fresh_state: bool,
        /// Log more: `-v` debug, `-vv` trace, for the daemon and the handler's `tracing` (overrides
        /// `[log] filter`; `RUST_LOG` overrides both).
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
    },
    /// Build and swap now; wait and say how it went.
    Reload {
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// Start the new generation with the app's default state: drop the current state on
        /// purpose (`hotswap rollback` brings it back).
        #[arg(long)]
        fresh_state: bool,
    },
    /// Print the current state as JSON, or load one (through the same checks as a swap).
    State {
        /// Write it to FILE instead of printing it.
        #[arg(long, short = 'o', value_name = "FILE", conflicts_with = "load")]
        output: Option<PathBuf>,
        /// Serve the current code again with the state in FILE (JSON, as printed).
        #[arg(long, value_name = "FILE")]
        load: Option<PathBuf>,
        /// With --load: print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Tell the daemon these files were saved (for shell hooks and editors without a plugin).
    Save {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Show what the daemon serves: generations, requests, the last build and swap.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the artifact that served before the current one again.
    Rollback {
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the daemon's events (builds, swaps, panics, logs) until Ctrl-C.
    Events {
        /// One JSON-RPC notification per line, as the daemon sends them.
        #[arg(long)]
        json: bool,
    },
    /// Stop the daemon (in-flight requests finish first).
    Stop,
    /// Create a handler crate with hotswap.toml in DIR, ready for `hotswap serve`.
    New {
        /// The directory to create.
        #[arg(value_name = "DIR")]
        directory: PathBuf,
        /// The package name (default: from the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Use the hotswap-handler crate at this path (default: the checkout hotswap was built
        /// from, when there is one).
        #[arg(long, value_name = "PATH", conflicts_with = "sdk_version")]
        sdk_path: Option<PathBuf>,
        /// Use this version of hotswap-handler from the registry.
        #[arg(long, value_name = "VERSION")]
        sdk_version: Option<String>,
        /// Build in this directory, shared with other apps (default from a checkout:
        /// <checkout>/target/hotswap-apps).
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
        /// The HTTP address the app will be served on.
        #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
    },
    /// Set up an existing crate (an axum app, say) for `hotswap serve`: the library target, the
    /// dependencies, hotswap.toml, .gitignore; then say how to move the router into src/lib.rs.
    Init {
        /// The crate's directory (default: the current one).
        #[arg(value_name = "DIR")]
        directory: Option<PathBuf>,
        /// Use the hotswap-handler crate at this path (default: the checkout hotswap was built
        /// from, when there is one).
        #[arg(long, value_name = "PATH", conflicts_with = "sdk_version")]
        sdk_path: Option<PathBuf>,
        /// Use this version of hotswap-handler from the registry.
        #[arg(long, value_name = "VERSION")]
        sdk_version: Option<String>,
        /// The HTTP address the app will be served on.
        #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
    },
    /// Print the path of the daemon's socket for this workspace (for raw-socket clients).
    Endpoint,
}

fn main() -> ExitCode {
    // `hotswap host` runs one generation for a daemon (it never returns); it is not a command
    // for people, so it is not among the subcommands below.
    hotswap_host::run_if_requested();
    // Cargo runs `hotswap` as its rustc wrapper for the daemon's builds, to record the handler's
    // rustc command line (the fast path); it then becomes rustc.
    hotswap_daemon::builder::rustc_wrapper::run_if_requested();
    let arguments = Arguments::parse();
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("error: cannot start: {error}");
                return ExitCode::FAILURE;
            }
        };
    let result = runtime.block_on(cli::run(arguments.workspace, arguments.command));
    // Stop at once: background tasks of a client command have nothing left to do.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
