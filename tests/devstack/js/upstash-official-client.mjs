// Checks the devstack Upstash REST endpoint with the official client (@upstash/redis).
// Run by tests/devstack/tests/upstash_official_client.rs; reads UPSTASH_REDIS_REST_URL,
// UPSTASH_REDIS_REST_TOKEN and DEVSTACK_KEY_PREFIX. Exits non-zero, naming every
// mismatch, if any result is not exactly what real Upstash returns.
// It must only touch keys under DEVSTACK_KEY_PREFIX.

import { isDeepStrictEqual } from "node:util";
import { Redis } from "@upstash/redis";

const url = process.env.UPSTASH_REDIS_REST_URL;
const token = process.env.UPSTASH_REDIS_REST_TOKEN;
const prefix = process.env.DEVSTACK_KEY_PREFIX ?? `devstack-js-${process.pid}`;
if (!url || !token) {
  console.error("UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set");
  process.exit(2);
}

const failures = [];
let checks = 0;

function check(name, actual, expected) {
  checks += 1;
  if (!isDeepStrictEqual(actual, expected)) {
    failures.push(`${name}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

async function expectReject(name, promise, pattern) {
  checks += 1;
  try {
    const value = await promise;
    failures.push(`${name}: expected a rejection matching ${pattern}, got ${JSON.stringify(value)}`);
  } catch (error) {
    const message = String(error?.message ?? error);
    if (!pattern.test(message)) {
      failures.push(`${name}: rejection ${JSON.stringify(message)} does not match ${pattern}`);
    }
  }
}

async function scenario(label, redis) {
  const k = (name) => `${prefix}:${label}:${name}`;

  // set with expiry, ttl, get
  check(`${label} set ex`, await redis.set(k("greeting"), "hello world", { ex: 60 }), "OK");
  const ttl = await redis.ttl(k("greeting"));
  check(`${label} ttl is 59 or 60`, ttl === 59 || ttl === 60, true);
  check(`${label} get plain string`, await redis.get(k("greeting")), "hello world");

  // JSON object value (the client serializes and parses it)
  const object = { model: "gpt-x", n: 3, nested: { ok: true, list: [1, "two", null] } };
  check(`${label} set object`, await redis.set(k("object"), object), "OK");
  check(`${label} get object`, await redis.get(k("object")), object);

  // non-ASCII survives the base64 response encoding
  const unicode = "héllo wörld ✓ 🚀 \u0000 end";
  check(`${label} set unicode`, await redis.set(k("unicode"), unicode), "OK");
  check(`${label} get unicode`, await redis.get(k("unicode")), unicode);

  // missing key, del
  check(`${label} get missing`, await redis.get(k("missing")), null);
  check(`${label} del two`, await redis.del(k("greeting"), k("object")), 2);
  check(`${label} get after del`, await redis.get(k("greeting")), null);
  check(`${label} del none`, await redis.del(k("greeting")), 0);

  // incr twice
  check(`${label} incr 1`, await redis.incr(k("counter")), 1);
  check(`${label} incr 2`, await redis.incr(k("counter")), 2);

  // a Redis error on one command
  await redis.set(k("text"), "not a number");
  await expectReject(`${label} incr on text`, redis.incr(k("text")), /ERR value is not an integer or out of range/);

  // pipeline (not atomic)
  const piped = await redis.pipeline().set(k("p"), "pv").get(k("p")).incr(k("pc")).exec();
  check(`${label} pipeline`, piped, ["OK", "pv", 1]);

  // pipeline with one failing command: the others still ran
  const kept = await redis
    .pipeline()
    .set(k("p2"), "x")
    .incr(k("p2"))
    .get(k("p2"))
    .exec({ keepErrors: true });
  check(`${label} pipeline keepErrors results`, kept.map((r) => r.result), ["OK", undefined, "x"]);
  check(`${label} pipeline keepErrors error`, /ERR value is not an integer/.test(String(kept[1].error)), true);
  await expectReject(
    `${label} pipeline failing command rejects`,
    redis.pipeline().set(k("p3"), "x").incr(k("p3")).exec(),
    /Command 2 \[ incr \] failed: ERR value is not an integer/,
  );

  // transaction
  const tx = await redis.multi().set(k("m"), "mv").get(k("m")).incr(k("mc")).incr(k("mc")).exec();
  check(`${label} multi`, tx, ["OK", "mv", 1, 2]);
  check(`${label} after multi`, await redis.get(k("m")), "mv");
}

const modes = [
  ["auto", new Redis({ url, token })],
  ["direct", new Redis({ url, token, enableAutoPipelining: false })],
  ["plain", new Redis({ url, token, enableAutoPipelining: false, responseEncoding: false })],
];
for (const [label, client] of modes) {
  try {
    await scenario(label, client);
  } catch (error) {
    failures.push(`${label}: unexpected exception: ${error?.stack ?? error}`);
  }
}

// wrong token: must reject with Upstash's auth error, not succeed or hang
const wrong = new Redis({ url, token: `${token}-wrong`, retry: false, enableAutoPipelining: false });
await expectReject("wrong token get", wrong.get(`${prefix}:any`), /^WRONGPASS invalid or missing auth token/);
await expectReject("wrong token set", wrong.set(`${prefix}:any`, "v"), /WRONGPASS/);

if (failures.length > 0) {
  console.error(`upstash official client: ${failures.length} failure(s) in ${checks} checks:`);
  for (const failure of failures) console.error(`  - ${failure}`);
  process.exit(1);
}
console.log(`upstash official client: all ${checks} checks passed`);
