//! The `hotswap-lsp` binary: the hotswap language server on stdin/stdout.
//!
//! Editors start it as `hotswap-lsp` (some add `--stdio`, which is accepted). Its own log goes to
//! stderr (the editor's LSP log); `HOTSWAP_LSP_LOG=debug` shows more. stdout carries the protocol.

use std::io::Write;

use anyhow::Context;
use tracing::Level;

const USAGE: &str = "\
hotswap-lsp: the hotswap language server. Your editor starts it and talks LSP on stdin/stdout.

Usage: hotswap-lsp [--stdio]
       hotswap-lsp --version | --help

Settings come from the editor's initializationOptions (see docs/editors.md):
  autoStart    start `hotswap serve` when no daemon runs (default false)
  hotswapPath  the hotswap command for autoStart (default \"hotswap\")
  diagnostics  publish compiler diagnostics (default true)
  messages     \"showMessage\" (default) or \"logMessage\" for swaps and failures

Environment: HOTSWAP_LSP_LOG=error|warn|info|debug|trace (stderr log level, default warn).";

fn main() -> anyhow::Result<()> {
    for argument in std::env::args().skip(1) {
        match argument.as_str() {
            "--stdio" => {}
            "--version" | "-V" => {
                println!("hotswap-lsp {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let level = match std::env::var("HOTSWAP_LSP_LOG") {
        Ok(level) => level
            .parse::<Level>()
            .with_context(|| format!("HOTSWAP_LSP_LOG={level:?} is not a log level"))?,
        Err(_) => Level::WARN,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false)
        .init();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let end = runtime.block_on(hotswap_lsp::serve(
        tokio::io::stdin(),
        tokio::io::stdout(),
        hotswap_lsp::ServerEnvironment::current(),
    ));
    tracing::debug!("stopping: {end:?}");
    let _ = std::io::stdout().flush();
    // Tokio reads stdin on a blocking thread that cannot be interrupted, so dropping the runtime
    // could hang until the editor closes the pipe: exit instead.
    std::process::exit(end.exit_code());
}
