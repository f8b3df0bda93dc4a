#!/usr/bin/env bash
# Prepare what the QEMU guest tests need, once per machine:
#   - qemu-system-x86, xz-utils (apt-get install when missing; needs root);
#   - the newest Debian 6.12 kernel image package apt offers
#     (linux-image-6.12.N+debX-amd64), downloaded and unpacked into the cache
#     directory, where later runs find it without apt.
# Usage: setup.sh CACHE_DIR
# Prints on stdout, one per line: `qemu=PATH`, `kernel=PATH` (vmlinuz),
# `modules=DIR` (lib/modules/VERSION), `version=VERSION`.
# Exit status 0 on success, 1 when something cannot be had (the reason on
# stderr, starting with "unavailable:").
set -euo pipefail

cache=${1:?usage: setup.sh CACHE_DIR}
mkdir -p "$cache"

unavailable() {
    echo "unavailable: $*" >&2
    exit 1
}

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        unavailable "$* not installed and not root to apt-get install it"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@" >&2; then
        apt-get update >&2 || true
        apt-get install -y --no-install-recommends "$@" >&2 || unavailable "apt-get install $* failed"
    fi
}

command -v qemu-system-x86_64 >/dev/null || apt_install qemu-system-x86
command -v xz >/dev/null || apt_install xz-utils
qemu=$(command -v qemu-system-x86_64) || unavailable "qemu-system-x86_64 not found after install"

# A kernel already unpacked in the cache wins: runs work offline.
current="$cache/current"
if [ ! -f "$current" ] || [ ! -f "$(sed -n 1p "$current")" ]; then
    pick() {
        apt-cache pkgnames linux-image-6.12. 2>/dev/null \
            | grep -E '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64$' | sort -V | tail -n 1
    }
    pkg=$(pick || true)
    if [ -z "$pkg" ]; then
        [ "$(id -u)" = 0 ] && apt-get update >&2 || true
        pkg=$(pick || true)
    fi
    [ -n "$pkg" ] || unavailable "apt offers no linux-image-6.12.*+deb*-amd64 package (Debian bookworm-security or trixie sources needed)"
    version=${pkg#linux-image-}
    work="$cache/dl.$$"
    rm -rf "$work"
    mkdir -p "$work"
    # apt-get download writes into the current directory; _apt may not read $cache.
    (cd "$work" && apt-get download "$pkg" >&2) || unavailable "apt-get download $pkg failed"
    deb=$(ls "$work"/*.deb)
    dest="$cache/$version"
    rm -rf "$dest"
    mkdir -p "$dest"
    dpkg -x "$deb" "$dest" || unavailable "dpkg -x $deb failed"
    rm -rf "$work"
    [ -f "$dest/boot/vmlinuz-$version" ] || unavailable "$pkg has no boot/vmlinuz-$version"
    printf '%s\n%s\n%s\n' "$dest/boot/vmlinuz-$version" "$dest/lib/modules/$version" "$version" >"$current.tmp"
    mv "$current.tmp" "$current"
fi

echo "qemu=$qemu"
echo "kernel=$(sed -n 1p "$current")"
echo "modules=$(sed -n 2p "$current")"
echo "version=$(sed -n 3p "$current")"
