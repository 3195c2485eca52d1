#!/usr/bin/env bash
# Regenerates tracer-ebpf/src/bpf/vmlinux.h, the kernel type definitions the CO-RE
# kernel programs compile against, from the running kernel's BTF.
#
# Usage: scripts/gen-vmlinux.sh [OUTPUT]
#   OUTPUT defaults to tracer-ebpf/src/bpf/vmlinux.h; pass another path to compare
#   without touching the checked-in header.
#
# Installs bpftool with apt-get when it is missing (needs root for that).
# `cargo xtask vmlinux` runs this script.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="${1:-$repo_root/tracer-ebpf/src/bpf/vmlinux.h}"
btf=/sys/kernel/btf/vmlinux

if [[ ! -r $btf ]]; then
    echo "gen-vmlinux: cannot read $btf: this kernel has no BTF (needs CONFIG_DEBUG_INFO_BTF=y)" >&2
    exit 1
fi

# bpftool lives in /usr/sbin, which is not on an ordinary user's PATH.
find_bpftool() {
    if command -v bpftool; then
        return
    fi
    if [[ -x /usr/sbin/bpftool ]]; then
        echo /usr/sbin/bpftool
    fi
}

bpftool="$(find_bpftool)"
if [[ -z $bpftool ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "gen-vmlinux: bpftool is missing and installing it needs root: run as root, or apt-get install bpftool" >&2
        exit 1
    fi
    echo "gen-vmlinux: installing bpftool" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y bpftool
    bpftool="$(find_bpftool)"
    if [[ -z $bpftool ]]; then
        echo "gen-vmlinux: bpftool still not found after apt-get install bpftool" >&2
        exit 1
    fi
fi

# Write beside the target and rename, so a failed dump never leaves a truncated
# header for the next build to choke on.
tmp="$(mktemp "$output.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$bpftool" btf dump file "$btf" format c >"$tmp"
# mktemp creates 0600; the header should be readable like any source file.
chmod 644 "$tmp"
mv "$tmp" "$output"
trap - EXIT
echo "gen-vmlinux: wrote $output ($(wc -l <"$output") lines) from $btf"
