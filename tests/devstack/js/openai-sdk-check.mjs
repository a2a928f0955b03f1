// Drives the gateway with the official OpenAI SDK (npm `openai`), as a client application would.
// Run by tests/devstack/tests/openai_sdk.rs against a local stack with the fake upstream.
// Reads GATEWAY_URL (e.g. http://127.0.0.1:PORT), GATEWAY_KEY, SDK_RUN_ID (a unique prefix for
// every message, so the Rust side can count the upstream calls) and UPSTREAM_500_MARKER (a
// message the fake upstream answers with 500). Exits non-zero, naming every mismatch.
// Must not: talk to anything but GATEWAY_URL.

import { isDeepStrictEqual } from "node:util";
import OpenAI from "openai";
import { VERSION } from "openai/version";

const url = process.env.GATEWAY_URL;
const key = process.env.GATEWAY_KEY;
const runId = process.env.SDK_RUN_ID ?? `sdk-${process.pid}-${Date.now()}`;
const marker500 = process.env.UPSTREAM_500_MARKER;
if (!url || !key || !marker500) {
  console.error("GATEWAY_URL, GATEWAY_KEY and UPSTREAM_500_MARKER must be set");
  process.exit(2);
}

const MODEL = "gpt-4o-mini";
const POLL_INTERVAL_MS = 250;
const POLL_LIMIT_MS = 10_000;

const failures = [];
let checks = 0;

function check(name, actual, expected) {
  checks += 1;
  if (!isDeepStrictEqual(actual, expected)) {
    failures.push(`${name}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

function describe(error) {
  if (error instanceof OpenAI.APIError) {
    return `${error.constructor.name}(status=${error.status}, code=${error.code}, message=${JSON.stringify(error.message)})`;
  }
  return String(error?.stack ?? error);
}

/** Awaits `promise`, which must reject with an instance of `klass`; returns the error or null. */
async function expectReject(name, promise, klass) {
  checks += 1;
  try {
    const value = await promise;
    failures.push(`${name}: expected ${klass.name}, but the call succeeded with ${JSON.stringify(value)}`);
    return null;
  } catch (error) {
    if (!(error instanceof klass)) {
      failures.push(`${name}: expected ${klass.name}, got ${describe(error)}`);
      return null;
    }
    return error;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const ask = (content) => ({ model: MODEL, messages: [{ role: "user", content }] });

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key });
const noRetry = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });

async function cacheRoundTrip() {
  const message = `${runId}-cache: what is the capital of France?`;
  const first = await client.chat.completions.create(ask(message)).withResponse();
  check("first call x-cache", first.response.headers.get("x-cache"), "MISS");
  check("first call x-cache-tier", first.response.headers.get("x-cache-tier"), "origin");
  const answer = first.data.choices?.[0]?.message?.content;
  checks += 1;
  if (typeof answer !== "string" || !/^fake reply #\d+: /.test(answer) || !answer.endsWith(message)) {
    failures.push(`first call content: expected "fake reply #<n>: ${message}", got ${JSON.stringify(answer)}`);
  }

  // The MISS is written in the background after the response: poll without ever calling the
  // provider again (only-if-cached answers 504 cache_miss until the entry is there).
  const started = Date.now();
  let hit = null;
  let misses = 0;
  while (Date.now() - started < POLL_LIMIT_MS) {
    try {
      hit = await noRetry.chat.completions
        .create(ask(message), { headers: { "cache-control": "only-if-cached" } })
        .withResponse();
      break;
    } catch (error) {
      if (!(error instanceof OpenAI.APIError) || error.status !== 504 || error.code !== "cache_miss") {
        failures.push(`only-if-cached poll: expected a HIT or a 504 cache_miss, got ${describe(error)}`);
        return;
      }
      misses += 1;
      await sleep(POLL_INTERVAL_MS);
    }
  }
  checks += 1;
  if (!hit) {
    failures.push(`no HIT within ${POLL_LIMIT_MS} ms after the MISS (${misses} only-if-cached polls missed)`);
    return;
  }
  check("only-if-cached poll x-cache", hit.response.headers.get("x-cache"), "HIT");

  // And a plain second call, exactly as an application makes it.
  const second = await client.chat.completions.create(ask(message)).withResponse();
  check("second call x-cache", second.response.headers.get("x-cache"), "HIT");
  check("second call x-cache-tier", second.response.headers.get("x-cache-tier"), "edge-kv");
  check("second call content equals the MISS's", second.data.choices?.[0]?.message?.content, answer);
  check("second call id equals the MISS's", second.data.id, first.data.id);
  checks += 1;
  if (!/^\d+$/.test(second.response.headers.get("age") ?? "")) {
    failures.push(`second call age header: expected whole seconds, got ${second.response.headers.get("age")}`);
  }
}

async function models() {
  const page = await client.models.list();
  const ids = [];
  for await (const model of page) {
    ids.push(model.id);
  }
  check("models.list ids", ids, ["gpt-4o-mini", "gpt-4o"]);
}

async function streaming() {
  const message = `${runId}-stream: count to three`;
  const { data: stream, response } = await client.chat.completions
    .create({ ...ask(message), stream: true })
    .withResponse();
  check("stream x-cache", response.headers.get("x-cache"), "MISS");
  check("stream content-type", (response.headers.get("content-type") ?? "").split(";")[0], "text/event-stream");
  let text = "";
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    check(`stream chunk ${chunks} object`, chunk.object, "chat.completion.chunk");
    const choice = chunk.choices?.[0];
    text += choice?.delta?.content ?? "";
    if (choice?.finish_reason) {
      finish = choice.finish_reason;
    }
  }
  checks += 1;
  const match = /^fake reply #(\d+): (.*)$/s.exec(text);
  if (!match || match[2] !== message) {
    failures.push(`stream text: expected "fake reply #<n>: ${message}", got ${JSON.stringify(text)}`);
  }
  check("stream finish_reason", finish, "stop");
  checks += 1;
  if (chunks < 3) {
    failures.push(`stream: expected several chunks, got ${chunks}`);
  }
}

async function errors() {
  const bad = await expectReject(
    "messages: [] rejects",
    noRetry.chat.completions.create({ model: MODEL, messages: [] }),
    OpenAI.BadRequestError,
  );
  if (bad) {
    check("messages: [] status", bad.status, 400);
    check("messages: [] code", bad.code, "invalid_value");
    check("messages: [] error.code", bad.error?.code, "invalid_value");
    check("messages: [] param", bad.param, "messages");
    check("messages: [] type", bad.type, "invalid_request_error");
  }

  const wrongKey = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-not-a-gateway-key", maxRetries: 0 });
  const auth = await expectReject(
    "wrong api key rejects",
    wrongKey.chat.completions.create(ask(`${runId}-auth: hello`)),
    OpenAI.AuthenticationError,
  );
  if (auth) {
    check("wrong api key status", auth.status, 401);
    check("wrong api key code", auth.code, "invalid_api_key");
    check("wrong api key message does not echo the key", auth.message.includes("sk-not-a-gateway-key"), false);
  }
  const authModels = await expectReject("wrong api key models.list", wrongKey.models.list(), OpenAI.AuthenticationError);
  if (authModels) {
    check("wrong api key models.list code", authModels.code, "invalid_api_key");
  }

  const upstream = await expectReject(
    "upstream 500 rejects",
    noRetry.chat.completions.create(ask(`${marker500}: this upstream fails`)),
    OpenAI.APIError,
  );
  if (upstream) {
    check("upstream 500 status", upstream.status, 502);
    check("upstream 500 class", upstream instanceof OpenAI.InternalServerError, true);
    check("upstream 500 code", upstream.code, "upstream_server_error");
    const text = `${upstream.message} ${JSON.stringify(upstream.error)}`;
    const leaks = [];
    if (/https?:\/\//i.test(text) || /127\.0\.0\.1|localhost/i.test(text)) leaks.push("a URL");
    if (text.includes(key)) leaks.push("the gateway key");
    if (/sk-[A-Za-z0-9-]{6,}/.test(text)) leaks.push("an API key");
    if (leaks.length > 0) {
      failures.push(`upstream 500 error leaks ${leaks.join(" and ")}: ${text}`);
    }
    checks += 1;
  }
}

const scenarios = { cacheRoundTrip, models, streaming, errors };
for (const [name, run] of Object.entries(scenarios)) {
  try {
    await run();
  } catch (error) {
    checks += 1;
    failures.push(`${name} threw: ${describe(error)}`);
  }
}

if (failures.length > 0) {
  console.error(`openai SDK ${VERSION} checks: ${failures.length} of ${checks} failed:`);
  for (const failure of failures) {
    console.error(`  - ${failure}`);
  }
  process.exit(1);
}
console.log(`openai SDK ${VERSION}: all ${checks} checks passed`);
