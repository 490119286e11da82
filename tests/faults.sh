#!/usr/bin/env bash
# Faults that need privileges: a full disk under `score --out` and `train --models`.
#
# Mounts two small tmpfs (root: `mount -t tmpfs`), runs the integration tests marked
# `#[ignore = "needs tests/faults.sh"]` against them (each fills its filesystem to leave
# less room than its next write needs), and unmounts them whatever happens. Without these
# mounts those tests fail (they check /proc/mounts), so a plain `-- --ignored` run cannot
# pass them by accident. Run by .ci/run; by hand: `sudo bash tests/faults.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

root=$(mktemp -d /tmp/churnguard-faults.XXXXXX)
cleanup() {
    for m in "$root/out" "$root/models"; do
        if mountpoint -q "$m"; then umount "$m"; fi
    done
    rm -rf "$root"
}
trap cleanup EXIT

mkdir -p "$root/out" "$root/models"
for m in "$root/out" "$root/models"; do
    if ! mount -t tmpfs -o size=16m,mode=0700 tmpfs "$m"; then
        echo "tests/faults.sh: cannot mount a tmpfs at $m (needs root or CAP_SYS_ADMIN)" >&2
        exit 1
    fi
done

CHURNGUARD_FAULTS_TMPFS="$root" cargo test --release --locked --test it faults::full_disk \
    -- --ignored --test-threads=1
