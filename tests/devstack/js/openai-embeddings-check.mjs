// Cached embeddings as the official OpenAI SDK (npm `openai`) sees them. For each model: the SDK's
// default request (it asks for base64 on the wire and decodes it) is a MISS, then, once written,
// an exact HIT with the same vectors; an explicit `encoding_format: "float"` is an entry of its
// own (MISS, then HIT) whose numbers equal the decoded base64 ones; an explicit "base64" request is
// the default's entry (a HIT at once) and comes back as strings that decode to the same vectors.
// Run by the end-to-end suite (tests/e2e/embeddings.rs) against each host.
// Reads GATEWAY_URL, GATEWAY_KEY, MODELS (a JSON list of model names) and RUN_ID (unique per run).
// Prints one line per model; exits non-zero naming every mismatch.
// Must not: talk to anything but GATEWAY_URL.

import OpenAI from "openai";
import { VERSION } from "openai/version";

const url = process.env.GATEWAY_URL;
const key = process.env.GATEWAY_KEY;
const models = JSON.parse(process.env.MODELS ?? "[]");
const runId = process.env.RUN_ID;
if (!url || !key || models.length === 0 || !runId) {
  console.error("GATEWAY_URL, GATEWAY_KEY, MODELS and RUN_ID must be set");
  process.exit(2);
}

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
const failures = [];
let checks = 0;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function check(name, ok, detail) {
  checks += 1;
  if (!ok) failures.push(`${name}: ${detail}`);
}

const vectors = (page) => page.data.map((d) => Array.from(d.embedding));
const decode = (b64) => Array.from(new Float32Array(Uint8Array.from(Buffer.from(b64, "base64")).buffer));
const close = (a, b) => a.length === b.length && a.every((v, i) => v.length === b[i].length && v.every((x, j) => Math.abs(x - b[i][j]) < 1e-6));

/** One call, with its cache headers. */
async function call(params) {
  const { data, response } = await client.embeddings.create(params).withResponse();
  return { data, cache: response.headers.get("x-cache"), tier: response.headers.get("x-cache-tier") };
}

/** Repeats `params` until it is a HIT (the write happens after the response). */
async function hit(params) {
  const started = Date.now();
  while (Date.now() - started < 10_000) {
    const r = await call(params);
    if (r.cache === "HIT") return r;
    await sleep(200);
  }
  throw new Error(`no HIT within 10 s for ${JSON.stringify(params)}`);
}

for (const model of models) {
  const input = [`${runId} ${model} the first sentence`, `${runId} ${model} another sentence`];
  try {
    const miss = await call({ model, input });
    check(`${model} default: MISS`, miss.cache === "MISS", `x-cache ${miss.cache}`);
    const shape = miss.data.object === "list" && miss.data.data.length === 2 && miss.data.data.every((d, i) => d.index === i && d.embedding.length > 0);
    check(`${model} default: a list of two vectors`, shape, JSON.stringify(miss.data).slice(0, 300));
    const again = await hit({ model, input });
    check(`${model} default: the HIT has the same vectors`, close(vectors(again.data), vectors(miss.data)), "vectors differ");

    const floatMiss = await call({ model, input, encoding_format: "float" });
    check(`${model} float: an entry of its own`, floatMiss.cache === "MISS", `x-cache ${floatMiss.cache}`);
    check(`${model} float: the numbers of the base64 answer`, close(vectors(floatMiss.data), vectors(miss.data)), "vectors differ");
    const floatHit = await hit({ model, input, encoding_format: "float" });
    check(`${model} float: the HIT`, close(vectors(floatHit.data), vectors(miss.data)), "vectors differ");

    const b64 = await call({ model, input, encoding_format: "base64" });
    check(`${model} base64: the default's entry`, b64.cache === "HIT", `x-cache ${b64.cache}`);
    const strings = b64.data.data.every((d) => typeof d.embedding === "string");
    check(`${model} base64: strings`, strings, typeof b64.data.data[0]?.embedding);
    if (strings) {
      check(`${model} base64: decodes to the vectors`, close(b64.data.data.map((d) => decode(d.embedding)), vectors(miss.data)), "vectors differ");
    }
    console.log(JSON.stringify({ model, miss: miss.cache, hit: again.cache, tier: again.tier, dims: miss.data.data[0].embedding.length }));
  } catch (e) {
    failures.push(`${model}: ${e instanceof OpenAI.APIError ? `${e.status} ${e.code} ${e.message}` : String(e?.stack ?? e)}`);
  }
}

if (failures.length > 0) {
  console.error(`openai ${VERSION}: ${failures.length} of ${checks} checks failed:\n${failures.join("\n")}`);
  process.exit(1);
}
console.log(`openai ${VERSION}: embeddings checks passed (${checks})`);
