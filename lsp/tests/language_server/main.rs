//! Tests of `hotswap-lsp` against a stand-in daemon (no `hotswap` binary needed): the service
//! driven in-process over in-memory streams, and the real `hotswap-lsp` binary driven by real
//! editors (neovim 0.7.2 and 0.11.4, Emacs with eglot; `lsp/scripts/install-editors.sh` installs
//! them). With the feature `real-daemon-tests`, the same editor scenario also runs against the
//! real daemon named by `HOTSWAP_BIN`.

mod editors;
mod fake_editor;
mod in_process;
mod simulated_app;
mod stand_in_daemon;
mod test_workspace;

#[cfg(feature = "real-daemon-tests")]
mod real_daemon;
