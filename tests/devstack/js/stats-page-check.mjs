// Loads the stats page (/admin/stats) from a running gateway in Debian's chromium, driven by
// npm `playwright-core` (no browser download), as an operator would: enters the admin key, waits
// for the charts, and checks that they were drawn with data (the series hold values and their
// stroke colour is on the canvas, not just canvases), that the targets table is filled and that
// the console stayed free of errors. Saves a screenshot to SCREENSHOT.
// Reads GATEWAY_URL, ADMIN_KEY, SCREENSHOT. Exits non-zero naming every failure.
// Must not: talk to anything but GATEWAY_URL.

import { chromium } from "playwright-core";

const url = process.env.GATEWAY_URL;
const key = process.env.ADMIN_KEY;
const shot = process.env.SCREENSHOT;
if (!url || !key || !shot) {
  console.error("GATEWAY_URL, ADMIN_KEY and SCREENSHOT must be set");
  process.exit(2);
}

const failures = [];
const consoleErrors = [];
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless=new", "--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1150 } });
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("request", (r) => { if (!r.url().startsWith(url)) failures.push(`request to another origin: ${r.url()}`); });
  const response = await page.goto(`${url}/admin/stats`);
  if (response.status() !== 200) failures.push(`page status ${response.status()}`);
  await page.fill("#key", key);
  await page.click("#login button");
  await page.waitForFunction(() => window.__charts && window.__charts.length >= 5 && document.querySelector("#status").textContent.startsWith("Updated"), null, { timeout: 15000 });
  const charts = await page.evaluate(() => window.__charts.map((u) => {
    // Series values (index 0 is time) and how many canvas pixels have a series' stroke colour.
    const values = u.data.slice(1).flat().filter((v) => v != null && v > 0).length;
    const colours = u.series.slice(1).map((s) => s.stroke().match(/[0-9a-f]{2}/gi).map((h) => parseInt(h, 16)));
    const { width, height } = u.ctx.canvas;
    const pixels = u.ctx.getImageData(0, 0, width, height).data;
    let stroke = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const near = ([r, g, b]) => Math.abs(pixels[i] - r) < 40 && Math.abs(pixels[i + 1] - g) < 40 && Math.abs(pixels[i + 2] - b) < 40;
      if (pixels[i + 3] > 128 && colours.some(near)) stroke += 1;
    }
    return { title: u.__title, series: u.series.length - 1, values, stroke };
  }));
  for (const c of charts) {
    if (c.values === 0) failures.push(`${c.title}: no values`);
    if (c.stroke < 10) failures.push(`${c.title}: its series are not drawn (${c.stroke} pixels)`);
  }
  for (const title of ["Requests by outcome", "Hit rate by tier", "Latency by tier (ms)", "Cost saved by the cache (USD)"]) {
    if (!charts.some((c) => c.title === title)) failures.push(`no chart "${title}"`);
  }
  const rows = await page.$$eval("#targets tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  if (rows.length === 0) failures.push("the targets table is empty");
  for (const r of rows) if (r[3] !== "in rotation") failures.push(`target ${r[0]} shows "${r[3]}", not "in rotation"`);
  const stored = await page.evaluate(() => location.href);
  if (stored.includes(key)) failures.push("the admin key is in the URL");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ charts, rows }));
} finally {
  await browser.close();
}
for (const e of consoleErrors) failures.push(`console error: ${e}`);
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("stats page checks passed");
