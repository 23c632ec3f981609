// Browser test of the web viewer (run by web/smoke.sh): opens the page without data, clicks
// "Open .zip / files…" on the canvas, answers the browser's file chooser with a results .zip,
// waits until the bundle is read, then downloads the shown figure as SVG and as PNG and checks both.
// Then it drops the results folder FOLDER on the canvas (a real drag of a directory, through the
// Chrome DevTools Protocol) and checks that its files are read with their relative paths.
//
// Usage: node picker.mjs BASE_URL ZIP OUT_DIR FOLDER   (CHROMIUM overrides /usr/bin/chromium)
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const [base, zipPath, outDir, folder] = process.argv.slice(2);
if (!base || !zipPath || !outDir || !folder) {
  console.error("usage: node picker.mjs BASE_URL ZIP OUT_DIR FOLDER");
  process.exit(2);
}

const fail = (msg) => {
  console.error(`FAIL: ${msg}`);
  process.exitCode = 1;
  throw new Error(msg);
};

const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "viewer-")), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  acceptDownloads: true,
  viewport: { width: 1400, height: 900 },
  deviceScaleFactor: 1,
  args: [
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
try {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const status = () => page.evaluate(() => window.__viewer_status || "");
  const waitStatus = async (what, test) => {
    try {
      await page.waitForFunction(test, null, { timeout: 60000, polling: 100 });
    } catch {
      fail(`${what}; the viewer says: ${await status()}`);
    }
  };
  const click = async (label) => {
    const handle = await page.waitForFunction(
      (l) => {
        const c = window.__viewer_handle && window.__viewer_handle.button_center(l);
        return c && c.length === 2 ? Array.from(c) : null;
      },
      label,
      { timeout: 30000, polling: 100 },
    );
    const [x, y] = await handle.jsonValue();
    await page.mouse.click(x, y);
  };

  await page.goto(`${base}/index.html`);
  await waitStatus("the viewer did not start", () =>
    (window.__viewer_status || "").startsWith("running:"),
  );

  // 1. the file picker: a click on the canvas button opens the browser's chooser
  const chooser = page.waitForEvent("filechooser", { timeout: 30000 });
  await click("Open .zip / files…");
  await (await chooser).setFiles(zipPath);
  await waitStatus("the picked .zip was not read", () =>
    /picked files: .* 9 experiments/.test(window.__viewer_status || ""),
  );
  const picked = await status();
  console.log("picked:", picked);
  await page.screenshot({ path: join(outDir, "picked.png") });

  // 2. the figure of the shown view (the accuracy table) as SVG, then as PNG at scale 2
  const save = async (label) => {
    const download = page.waitForEvent("download", { timeout: 30000 });
    await click(label);
    const d = await download;
    const path = join(outDir, d.suggestedFilename());
    await d.saveAs(path);
    return [d.suggestedFilename(), readFileSync(path)];
  };
  const [svgName, svg] = await save("SVG");
  const text = svg.toString("utf8");
  if (!svgName.endsWith(".svg") || !text.includes("<svg") || !text.trimEnd().endsWith("</svg>")) {
    fail(`${svgName} is not an SVG document`);
  }
  const texts = (text.match(/<text/g) || []).length;
  if (texts < 50) fail(`${svgName} has ${texts} text elements; the table has hundreds of cells`);
  const width = Number((text.match(/<svg[^>]*width="(\d+)"/) || [])[1]);
  console.log(`${svgName}: ${svg.length} bytes, ${texts} text elements, width ${width}`);

  const [pngName, png] = await save("PNG");
  if (!pngName.endsWith(".png") || png.subarray(1, 4).toString() !== "PNG") {
    fail(`${pngName} is not a PNG`);
  }
  const pngWidth = png.readUInt32BE(16);
  if (pngWidth !== 2 * width) fail(`${pngName} is ${pngWidth} px wide, expected 2 × ${width}`);
  console.log(`${pngName}: ${png.length} bytes, ${pngWidth} px wide`);

  // 3. a folder dropped on the canvas: the same results as the .zip, read with their paths
  const counts = (s) => s.replace(/^running: [^:]*: /, "");
  const cdp = await context.newCDPSession(page);
  const data = { items: [], files: [resolve(folder)], dragOperationsMask: 1 };
  for (const type of ["dragEnter", "dragOver", "drop"]) {
    await cdp.send("Input.dispatchDragEvent", { type, x: 700, y: 450, data });
  }
  await waitStatus("the dropped folder was not read", () =>
    /^running: dropped folder: .* 9 experiments/.test(window.__viewer_status || ""),
  );
  const dropped = await status();
  console.log("dropped:", dropped);
  if (counts(dropped) !== counts(picked)) {
    fail(`the dropped folder gave "${counts(dropped)}", the .zip of it "${counts(picked)}"`);
  }
  await page.screenshot({ path: join(outDir, "dropped.png") });

  const final = await status();
  if (final.includes("panicked") || errors.length) fail(`panic or page error: ${final} ${errors}`);
  writeFileSync(join(outDir, "picker-status.txt"), final + "\n");
  console.log("OK");
} finally {
  await context.close();
}
