#!/usr/bin/env bash
# Browser smoke test: serves the built web viewer (web/build.sh) on localhost, loads it in headless
# Chromium with the example bundle (?url=example.zip), takes a screenshot, and checks that the page
# reports no panic, that the bundle was read, and that the screenshot is not blank. Then
# web/browser-test/picker.mjs (playwright-core driving the same Chromium) opens the example .zip
# through the page's file picker, downloads the shown figure as SVG and PNG, and drops the example
# folder (shared/fixtures, the files example.zip holds) on the page.
#
# Needs: Debian's `chromium` package, python3, node and npm (playwright-core is installed from the
# npm registry into web/browser-test/node_modules on the first run).
# Usage: web/smoke.sh [DIST] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIST="${1:-web/dist}"
OUT="${2:-target/web-smoke}"
PORT="${PORT:-8765}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser)}"
mkdir -p "$OUT"

python3 -m http.server --bind 127.0.0.1 --directory "$DIST" "$PORT" > "$OUT/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/index.html')" 2>/dev/null && break
  sleep 0.2
done

url="http://127.0.0.1:$PORT/index.html?url=example.zip"
flags=(--headless --no-sandbox --disable-gpu --enable-unsafe-swiftshader --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --user-data-dir="$(mktemp -d)" --window-size=1400,900 --virtual-time-budget=20000)
"$CHROMIUM" "${flags[@]}" --screenshot="$OUT/screenshot.png" "$url" > "$OUT/chromium-screenshot.log" 2>&1
"$CHROMIUM" "${flags[@]}" --dump-dom "$url" > "$OUT/dom.html" 2> "$OUT/chromium-dom.log"
# One more screenshot per figure kind, for people to look at (checked for non-blank below too).
for view in training layers pair_layers head_patching exchange seed_alignment logit_lens magnitude token_effects add_place; do
  "$CHROMIUM" "${flags[@]}" --screenshot="$OUT/screenshot-$view.png" "$url&view=$view" > "$OUT/chromium-$view.log" 2>&1
done

python3 - "$OUT/dom.html" "$OUT/screenshot.png" <<'PY'
import re, struct, sys, zlib

dom = open(sys.argv[1], encoding="utf-8", errors="replace").read()
m = re.search(r'data-viewer-status="([^"]*)"', dom)
status = m.group(1) if m else "(no status attribute)"
print("viewer status:", status)
if not status.startswith("running:"):
    sys.exit(f"FAIL: the viewer did not run: {status}")
if "panicked" in status:
    sys.exit("FAIL: panic")
if "9 experiments" not in status:
    sys.exit(f"FAIL: the example bundle was not read: {status}")

def decode_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), f"unsupported PNG {depth} {ctype}"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, prev, rows, i = zlib.decompress(idat), w * bpp, bytearray(w * bpp), [], 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line)); prev = line
    return w, h, bpp, rows

import glob, os
shots = [sys.argv[2]] + sorted(glob.glob(os.path.join(os.path.dirname(sys.argv[2]), "screenshot-*.png")))
for shot in shots:
    w, h, bpp, rows = decode_png(shot)
    colours = set()
    for r in rows[::4]:
        for x in range(0, len(r), bpp * 4):
            colours.add(r[x:x + 3])
    print(f"{os.path.basename(shot)}: {w}x{h}, {len(colours)} distinct colours (sampled)")
    if len(colours) < 20:
        sys.exit(f"FAIL: {shot} looks blank")
print("OK")
PY

if [ ! -d web/browser-test/node_modules/playwright-core ]; then
  npm ci --prefix web/browser-test --no-audit --no-fund >/dev/null
fi
CHROMIUM="$CHROMIUM" node web/browser-test/picker.mjs "http://127.0.0.1:$PORT" "$DIST/example.zip" "$OUT" \
  shared/fixtures
