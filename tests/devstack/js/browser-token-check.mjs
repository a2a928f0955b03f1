// Browser callers end to end: tokens minted with node:crypto (mint-token.mjs) as an app's backend
// does, sent by node (HS256, EdDSA, and a tampered one), then a real browser (Debian chromium
// driven by npm playwright-core) opening a page served from a loopback origin that calls the
// gateway cross-origin with a token from its backend and with a publishable key.
// Run by the end-to-end suite (tests/e2e/browser.rs) against each host.
// Reads GATEWAY_URL, HS_SECRET, ED_PRIVATE_PEM, PUBLISHABLE_KEY, PAGE_PORT, MARKER. Prints one
// JSON line per check; exits non-zero on a mismatch.
// Must not: talk to anything but GATEWAY_URL and its own page server; print a secret.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { chromium } from "playwright-core";
import { claims, mintEdDsa, mintHs256 } from "./mint-token.mjs";

const { GATEWAY_URL: gateway, HS_SECRET: secret, ED_PRIVATE_PEM: edKey, PUBLISHABLE_KEY: pk, PAGE_PORT, MARKER: marker } = process.env;
if (!gateway || !secret || !edKey || !pk || !PAGE_PORT || !marker) {
  console.error("GATEWAY_URL, HS_SECRET, ED_PRIVATE_PEM, PUBLISHABLE_KEY, PAGE_PORT and MARKER must be set");
  process.exit(2);
}
const failures = [];
function check(name, ok, detail) {
  console.log(JSON.stringify({ check: name, ok, detail }));
  if (!ok) failures.push(name);
}
async function ask(key, question) {
  const r = await fetch(`${gateway}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: question }] }),
  });
  const body = await r.json();
  return { status: r.status, code: body.error?.code ?? null, content: body.choices?.[0]?.message?.content ?? null };
}

// From a backend: both algorithms, and a token whose claims were changed after signing.
const hs = await ask(mintHs256(secret, claims("tenant-a", "user-hs", 300, { rpm: 50 })), `${marker} hs`);
check("hs256 token answered", hs.status === 200 && hs.content?.includes(marker), hs);
const ed = await ask(mintEdDsa(edKey, claims("tenant-a", "user-ed")), `${marker} ed`);
check("eddsa token answered", ed.status === 200, ed);
const good = mintHs256(secret, claims("tenant-a", "user-x"));
const [h, , s] = good.split(".");
const forged = `${h}.${Buffer.from(JSON.stringify(claims("tenant-b", "user-x"))).toString("base64url")}.${s}`;
const bad = await ask(forged, `${marker} forged`);
check("a forged token is refused", bad.status === 401 && bad.code === "invalid_token", bad);

// From a real browser, cross-origin.
const page = readFileSync(new URL("./browser-page.html", import.meta.url));
const server = createServer((req, res) => {
  if (req.url === "/token") {
    // The app's backend, for its signed-in user.
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token: mintHs256(secret, claims("tenant-a", "browser-user", 120, { rpm: 10 })) }));
  } else if (req.url.startsWith("/?")) {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(page);
  } else {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((done) => server.listen(Number(PAGE_PORT), "127.0.0.1", done));
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless=new", "--no-sandbox"] });
try {
  const tab = await browser.newPage();
  const query = new URLSearchParams({ gateway, pk, q: `${marker} browser` });
  await tab.goto(`http://127.0.0.1:${PAGE_PORT}/?${query}`);
  await tab.waitForFunction(() => document.getElementById("out").textContent !== "running", null, { timeout: 30000 });
  const out = JSON.parse(await tab.textContent("#out"));
  check("the page's token call answered", out.token?.status === 200 && out.token.content?.includes(marker), out);
  check("the page's publishable-key call answered", out.publishable?.status === 200, out);
} finally {
  await browser.close();
  server.close();
}
// The publishable key from elsewhere (node sends no Origin).
const elsewhere = await ask(pk, `${marker} elsewhere`);
check("a publishable key without its origin is refused", elsewhere.status === 403 && elsewhere.code === "origin_not_allowed", elsewhere);

if (failures.length) {
  console.error(`failed: ${failures.join(", ")}`);
  process.exit(1);
}
console.log("browser checks passed");
