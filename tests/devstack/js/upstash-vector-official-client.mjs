// Drives our Upstash-Vector-compatible endpoint with the official `@upstash/vector` client, as the
// gateway's semantic tier will use Upstash Vector: namespaces as hard boundaries, upsert and query
// of raw vectors (scores (1 + cos) / 2), upsert-data / query-data embedded by the real model,
// fetch, delete, range, info, namespaces, reset, and Upstash's errors (a bad token, a wrong
// dimension) raised as the client raises them.
// Run by tests/devstack/tests/upstash_vector_official_client.rs.
// Reads UPSTASH_VECTOR_REST_URL and UPSTASH_VECTOR_REST_TOKEN. Exits non-zero naming every mismatch.
// Must not: talk to anything but UPSTASH_VECTOR_REST_URL.

import { isDeepStrictEqual } from "node:util";
import { Index } from "@upstash/vector";

const url = process.env.UPSTASH_VECTOR_REST_URL;
const token = process.env.UPSTASH_VECTOR_REST_TOKEN;
if (!url || !token) {
  console.error("UPSTASH_VECTOR_REST_URL and UPSTASH_VECTOR_REST_TOKEN must be set");
  process.exit(2);
}
const index = new Index({ url, token, retry: false });
const failures = [];
let checks = 0;

function check(name, actual, expected) {
  checks += 1;
  if (!isDeepStrictEqual(actual, expected)) {
    failures.push(`${name}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}
function near(name, actual, expected, tolerance = 1e-5) {
  checks += 1;
  if (typeof actual !== "number" || Math.abs(actual - expected) > tolerance) {
    failures.push(`${name}: expected ${expected} ± ${tolerance}, got ${actual}`);
  }
}
async function rejects(name, promise, fragment) {
  checks += 1;
  try {
    await promise;
    failures.push(`${name}: expected an error containing ${JSON.stringify(fragment)}, got a result`);
  } catch (e) {
    if (e?.name !== "UpstashError" || !String(e.message).includes(fragment)) {
      failures.push(`${name}: expected an UpstashError containing ${JSON.stringify(fragment)}, got ${e?.name}: ${e?.message}`);
    }
  }
}

const DIM = 384;
const unit = (...weights) => {
  const v = new Array(DIM).fill(0);
  weights.forEach((w, i) => (v[i] = w));
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
};

try {
  check("reset all", await index.reset({ all: true }), "Success");
  const a = index.namespace("tenant-a");
  const b = index.namespace("tenant-b");
  check("upsert many", await a.upsert([
    { id: "x", vector: unit(1), metadata: { key: "kx" } },
    { id: "y", vector: unit(1, 1) },
    { id: "z", vector: unit(0, 0, 1) },
  ]), "Success");
  check("upsert one", await b.upsert({ id: "other", vector: unit(1), metadata: { key: "kb" } }), "Success");

  const found = await a.query({ vector: unit(1), topK: 2, includeMetadata: true });
  check("query ids in order", found.map((r) => r.id), ["x", "y"]);
  near("an identical vector scores 1", found[0].score, 1);
  near("cos 0.7071 scores (1 + cos) / 2", found[1].score, (1 + Math.SQRT1_2) / 2);
  check("metadata comes back", found[0].metadata, { key: "kx" });
  const opposite = await a.query({ vector: unit(-1), topK: 3 });
  check("the opposite ranks last", opposite.map((r) => r.id), ["z", "y", "x"]);
  near("an opposite vector scores 0", opposite[2].score, 0);
  const withVectors = await a.query({ vector: unit(0, 0, 1), topK: 1, includeVectors: true });
  check("vectors come back", withVectors[0].vector.length, DIM);
  const isolated = await b.query({ vector: unit(1), topK: 10 });
  check("a namespace sees only its own", isolated.map((r) => r.id), ["other"]);
  check("the default namespace is empty", await index.query({ vector: unit(1), topK: 10 }), []);
  const many = await index.queryMany([{ vector: unit(1), topK: 1 }, { vector: unit(0, 0, 1), topK: 1 }], { namespace: "tenant-a" });
  check("queryMany", many.map((rs) => rs.map((r) => r.id)), [["x"], ["z"]]);

  check("fetch", await a.fetch(["x", "nope"], { includeMetadata: true }), [{ id: "x", metadata: { key: "kx" } }, null]);
  check("fetch by prefix", (await a.fetch({ prefix: "y" })).map((r) => r.id), ["y"]);
  const page = await a.range({ cursor: 0, limit: 2 });
  check("range page", page.vectors.map((v) => v.id), ["x", "y"]);
  const rest = await a.range({ cursor: page.nextCursor, limit: 2 });
  check("range end", [rest.vectors.map((v) => v.id), rest.nextCursor], [["z"], ""]);

  const sem = index.namespace("sem");
  check("upsert-data", await sem.upsert([
    { id: "pw", data: "How can I reset my password?", metadata: { key: "k-pw" } },
    { id: "weather", data: "The weather is lovely today." },
  ]), "Success");
  const meaning = await sem.query({ data: "What are the steps to reset my password?", topK: 2, includeMetadata: true, includeData: true });
  check("query-data finds the paraphrase first", meaning.map((r) => r.id), ["pw", "weather"]);
  near("its score is (1 + 0.9400) / 2", meaning[0].score, (1 + 0.94) / 2, 0.001);
  check("data comes back", meaning[0].data, "How can I reset my password?");

  check("delete", await a.delete(["x", "nope"]), { deleted: 1 });
  check("delete by prefix", await a.delete({ prefix: "y" }), { deleted: 1 });
  const info = await index.info();
  check("info", [info.dimension, info.similarityFunction, info.vectorCount, info.namespaces["tenant-a"].vectorCount], [DIM, "COSINE", 4, 1]);
  check("namespaces", (await index.listNamespaces()).sort(), ["", "sem", "tenant-a", "tenant-b"]);
  check("delete a namespace", await index.deleteNamespace("tenant-b"), "Success");
  check("reset one namespace", await a.reset(), "Success");
  check("it is empty", await a.query({ vector: unit(1), topK: 5 }), []);

  await rejects("a wrong dimension", a.upsert({ id: "bad", vector: [1, 0] }), "Invalid vector dimension: 2, expected: 384");
  await rejects("a bad token", new Index({ url, token: "wrong", retry: false }).info(), "Unauthorized");
  await rejects("the default namespace cannot be deleted", index.deleteNamespace(""), "default namespace");
} catch (e) {
  failures.push(`unexpected: ${e?.stack ?? e}`);
}

if (failures.length > 0) {
  console.error(`${failures.length} of ${checks} checks failed:\n${failures.join("\n")}`);
  process.exit(1);
}
console.log(`@upstash/vector: all ${checks} checks passed`);
