// Minting a browser token for the gateway, as an app's backend does for its signed-in user: a
// compact JWT with node:crypto alone (no dependency), HS256 with the shared secret
// (BROWSER_TOKEN_SECRET) or EdDSA with an Ed25519 private key (its public key in
// BROWSER_TOKEN_PUBLIC_KEY). README.md shows these lines.
// Must not: log a secret or a token.

import { createHmac, createPrivateKey, sign } from "node:crypto";

const b64url = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");

/// Claims for `tenant`'s end user `sub`, valid for `seconds`, with optional tighter limits.
export function claims(tenant, sub, seconds = 300, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { tenant, sub, aud: "llm-edge-cache", iat: now, exp: now + seconds, ...extra };
}

export function mintHs256(secret, payload) {
  const body = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(payload)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

export function mintEdDsa(privateKeyPem, payload) {
  const body = `${b64url({ alg: "EdDSA", typ: "JWT" })}.${b64url(payload)}`;
  return `${body}.${sign(null, Buffer.from(body), createPrivateKey(privateKeyPem)).toString("base64url")}`;
}
