// One cache entry serves streamed and whole requests, as the official OpenAI SDK (npm `openai`)
// sees it. For each case: a whole answer, then the same request streamed (a replayed HIT) read
// with the SDK's ChatCompletionStream; and a streamed miss read with `chat.completions.stream()`,
// then the same request whole (a HIT of the entry the stream stored). The final completions must
// carry the same message (content, tool calls, finish reason) as the whole answers.
// Run by the end-to-end suite (tests/e2e/streams.rs) against each host.
// Reads GATEWAY_URL, GATEWAY_KEY and CASES: a JSON list of {"model", "content", "tools"?}, where
// each content is unique to the run. Prints one JSON line per check; exits non-zero on a mismatch.
// Must not: talk to anything but GATEWAY_URL.

import { isDeepStrictEqual } from "node:util";
import OpenAI from "openai";
import { ChatCompletionStream } from "openai/lib/ChatCompletionStream";
import { VERSION } from "openai/version";

const url = process.env.GATEWAY_URL;
const key = process.env.GATEWAY_KEY;
const cases = JSON.parse(process.env.CASES ?? "[]");
if (!url || !key || cases.length === 0) {
  console.error("GATEWAY_URL, GATEWAY_KEY and CASES must be set");
  process.exit(2);
}

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
const failures = [];
let checks = 0;

function check(name, actual, expected) {
  checks += 1;
  if (!isDeepStrictEqual(actual, expected)) {
    failures.push(`${name}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

/** What both forms must agree on. "No text" may be `null` or `""`: a live translated stream starts
 * with `content: ""` before it knows a tool call follows; the stored completion says `null`. */
function essence(completion) {
  const choice = completion.choices?.[0] ?? {};
  const message = choice.message ?? {};
  const calls = (message.tool_calls ?? []).map((c) => ({
    id: c.id,
    type: c.type,
    name: c.function?.name,
    arguments: c.function?.arguments,
  }));
  return {
    role: message.role,
    content: message.content === "" ? null : (message.content ?? null),
    tool_calls: calls,
    finish_reason: choice.finish_reason,
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the whole request is a cache hit (the write happens after the response). */
async function cached(params) {
  const started = Date.now();
  while (Date.now() - started < 10_000) {
    try {
      const hit = await client.chat.completions
        .create(params, { headers: { "cache-control": "only-if-cached" } })
        .withResponse();
      return hit;
    } catch (error) {
      if (!(error instanceof OpenAI.APIError) || error.status !== 504) throw error;
      await sleep(200);
    }
  }
  throw new Error(`no HIT within 10 s for ${params.messages[0].content}`);
}

for (const c of cases) {
  const params = (suffix) => {
    const p = { model: c.model, messages: [{ role: "user", content: `${c.content} ${suffix}` }] };
    if (c.tools) p.tools = c.tools;
    return p;
  };

  // Whole first, then a replayed stream.
  const whole = await client.chat.completions.create(params("whole-first")).withResponse();
  check(`${c.model} whole x-cache`, whole.response.headers.get("x-cache"), "MISS");
  await cached(params("whole-first"));
  const { data: stream, response } = await client.chat.completions
    .create({ ...params("whole-first"), stream: true, stream_options: { include_usage: true } })
    .withResponse();
  check(`${c.model} replay x-cache`, response.headers.get("x-cache"), "HIT");
  check(`${c.model} replay content-type`, (response.headers.get("content-type") ?? "").split(";")[0], "text/event-stream");
  const replayed = await ChatCompletionStream.fromReadableStream(stream.toReadableStream()).finalChatCompletion();
  check(`${c.model} replayed message`, essence(replayed), essence(whole.data));
  check(`${c.model} replayed id`, replayed.id, whole.data.id);
  check(`${c.model} replayed usage`, replayed.usage?.total_tokens, whole.data.usage?.total_tokens);
  console.log(JSON.stringify({ case: c.model, direction: "whole->stream", message: essence(replayed) }));

  // A streamed miss first, then the whole request served from what it stored.
  const runner = client.chat.completions.stream(params("stream-first"));
  const streamed = await runner.finalChatCompletion();
  await cached(params("stream-first"));
  const hit = await client.chat.completions.create(params("stream-first")).withResponse();
  check(`${c.model} stored stream x-cache`, hit.response.headers.get("x-cache"), "HIT");
  check(`${c.model} stored stream message`, essence(hit.data), essence(streamed));
  check(`${c.model} stored stream has usage`, typeof hit.data.usage?.total_tokens, "number");
  console.log(JSON.stringify({ case: c.model, direction: "stream->whole", message: essence(hit.data) }));
}

if (failures.length > 0) {
  console.error(`openai SDK ${VERSION} stream replay checks: ${failures.length} of ${checks} failed:`);
  for (const failure of failures) console.error(`  - ${failure}`);
  process.exit(1);
}
console.log(`openai SDK ${VERSION}: all ${checks} stream replay checks passed`);
