// The gateway's rate-limit headers and 429, as the official OpenAI SDK (npm `openai`) reads them.
// Sends LIMIT + 1 distinct requests (each a cache miss) with the SDK, retries off: each answer's
// `x-ratelimit-*-requests` headers through `.withResponse()`, then the refusal as the SDK raises
// it (`RateLimitError`, status 429, code `rate_limit_exceeded`, type `requests`, `retry-after`).
// Run by the end-to-end suite (tests/e2e/guard.rs) against each host.
// Reads GATEWAY_URL, GATEWAY_KEY, LIMIT and MARKER (unique to the run). Prints one JSON line per
// check; exits non-zero on a mismatch.
// Must not: talk to anything but GATEWAY_URL.

import OpenAI from "openai";

const url = process.env.GATEWAY_URL;
const key = process.env.GATEWAY_KEY;
const limit = Number(process.env.LIMIT);
const marker = process.env.MARKER;
if (!url || !key || !limit || !marker) {
  console.error("GATEWAY_URL, GATEWAY_KEY, LIMIT and MARKER must be set");
  process.exit(2);
}

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
const failures = [];
function check(name, ok, detail) {
  console.log(JSON.stringify({ check: name, ok, detail }));
  if (!ok) failures.push(`${name}: ${JSON.stringify(detail)}`);
}

const ask = (i) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content: `${marker} ${i}` }] });

for (let i = 0; i < limit; i += 1) {
  const { data, response } = await client.chat.completions.create(ask(i)).withResponse();
  const h = (name) => response.headers.get(name);
  check(`answer ${i}`, data.object === "chat.completion", data.object);
  check(`limit header ${i}`, h("x-ratelimit-limit-requests") === String(limit), h("x-ratelimit-limit-requests"));
  check(
    `remaining header ${i}`,
    h("x-ratelimit-remaining-requests") === String(limit - 1 - i),
    h("x-ratelimit-remaining-requests"),
  );
  check(`reset header ${i}`, /^(\d+h)?(\d+m)?\d+(\.\d+)?s$|^\d+ms$/.test(h("x-ratelimit-reset-requests") ?? ""), h("x-ratelimit-reset-requests"));
}

try {
  await client.chat.completions.create(ask(limit));
  check("refused", false, "the request over the limit was answered");
} catch (e) {
  check("refused as RateLimitError", e instanceof OpenAI.RateLimitError, e?.constructor?.name);
  check("status", e.status === 429, e.status);
  check("code", e.code === "rate_limit_exceeded", e.code);
  check("type", e.type === "requests", e.type);
  const retryAfter = e.headers?.get ? e.headers.get("retry-after") : e.headers?.["retry-after"];
  check("retry-after", Number(retryAfter) >= 1, retryAfter);
  const remaining = e.headers?.get ? e.headers.get("x-ratelimit-remaining-requests") : e.headers?.["x-ratelimit-remaining-requests"];
  check("remaining on the 429", remaining === "0", remaining);
}

if (failures.length > 0) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("rate limit checks passed");
