#!/usr/bin/env bash
# Builds stackplumb as it was when issues 12 and 17 measured their targets (3952bd7, the
# last commit before that work; "today's 1.64 s / 1.82 s" and the 19 ms re-apply are its),
# from this clone's history into target/issue-code, and prints the binary's path.
# `testenv/bench.sh stackplumb` runs it beside ours on the same scene.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=3952bd779103be6683e65176169a1f2d971bf81d
out=$PWD/target/issue-code
bin=$out/release/stackplumb
if [ "$(cat "$out/commit" 2>/dev/null)" != "$commit" ] || [ ! -x "$bin" ]; then
    git cat-file -e "$commit^{commit}" 2>/dev/null || {
        echo "issue-code.sh: commit $commit is not in this clone's history (a shallow clone? git fetch --unshallow)" >&2
        exit 1
    }
    rm -rf "$out/src" "$out/commit"
    mkdir -p "$out/src"
    git archive "$commit" | tar -x -C "$out/src"
    CARGO_TARGET_DIR=$out cargo build --release --locked -q \
        --manifest-path "$out/src/Cargo.toml" --bin stackplumb >&2
    echo "$commit" > "$out/commit"
fi
echo "$bin"
