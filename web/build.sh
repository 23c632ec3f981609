#!/usr/bin/env bash
# Builds the browser viewer into a static folder (default web/dist): index.html, viewer.js,
# viewer_bg.wasm, and example.zip (the `shared` fixtures, for `?url=example.zip`).
#
# Needs: `rustup target add wasm32-unknown-unknown` and a wasm-bindgen CLI whose version equals the
# wasm-bindgen crate in Cargo.lock (`cargo install wasm-bindgen-cli --version 0.2.130`), python3.
# Serve the folder with any static server, e.g. `python3 -m http.server -d web/dist 8080`, and
# open http://127.0.0.1:8080/ (or …/?url=example.zip, or …/?url=<your results>.zip).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-web/dist}"
PROFILE="${PROFILE:-release}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
JOBS="${JOBS:-2}"

lock_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
cli_version=$(wasm-bindgen --version | awk '{ print $2 }')
if [ "$lock_version" != "$cli_version" ]; then
  echo "wasm-bindgen CLI $cli_version does not match the crate $lock_version in Cargo.lock:" >&2
  echo "  cargo install wasm-bindgen-cli --version $lock_version" >&2
  exit 1
fi

cargo build -j "$JOBS" --profile "$PROFILE" --target wasm32-unknown-unknown -p steerlab-viewer --lib
rm -rf "$OUT"
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$OUT" --out-name viewer \
  "$TARGET_DIR/wasm32-unknown-unknown/$PROFILE/viewer.wasm"
cp web/index.html "$OUT/"
python3 - "$OUT/example.zip" <<'PY'
import os, sys, zipfile
root = "shared/fixtures"
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for dirpath, _, names in sorted(os.walk(root)):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            z.write(p, os.path.relpath(p, root))
PY
echo "built $OUT ($(du -sh "$OUT" | cut -f1))"
