// Streams one chat completion through draftgate with the official `openai` Node client and prints,
// as one JSON object on stdout, what the client read: the routing headers, every chunk object as the
// SDK yielded it (unknown fields such as `draftgate` included), the joined text and the final field.
//
// Usage: node stream.mjs <base_url> '<request body JSON>'
// The body is sent as given with `stream: true`; the test compares the output with the Python client.
// Exit status 0 when the stream was read to its end, 1 (with {"error": ...} printed) when the client threw.

import OpenAI from "openai";
import { VERSION } from "openai/version";

const ROUTING_HEADERS = [
  "x-routing-decision",
  "x-routing-tier",
  "x-draft-entropy",
  "x-speculation",
  "x-escalation-reason",
  "x-request-id",
];

/** The routing headers present on the response, lower-cased names; absent ones are left out. */
function routingHeaders(response) {
  const found = {};
  for (const name of ROUTING_HEADERS) {
    const value = response.headers.get(name);
    if (value !== null) found[name] = value;
  }
  return found;
}

/** Reads the whole stream the way an application would, keeping each chunk object untouched. */
async function readStream(client, body) {
  const { data: stream, response } = await client.chat.completions
    .create({ ...body, stream: true })
    .withResponse();
  const chunks = [];
  let text = "";
  for await (const chunk of stream) {
    chunks.push(chunk);
    for (const choice of chunk.choices ?? []) text += choice.delta?.content ?? "";
  }
  const last = chunks.at(-1);
  return {
    client_version: VERSION,
    status: response.status,
    headers: routingHeaders(response),
    text,
    chunks,
    ids: [...new Set(chunks.map((chunk) => chunk.id))],
    roles: chunks.flatMap((chunk) => (chunk.choices ?? []).map((c) => c.delta?.role).filter(Boolean)),
    finish_reasons: chunks.flatMap((chunk) => (chunk.choices ?? []).map((c) => c.finish_reason).filter(Boolean)),
    // Read the way an application reaches an extra field: a property of the parsed chunk object.
    draftgate: last?.draftgate ?? null,
    draftgate_chunks: chunks.flatMap((chunk, index) => ("draftgate" in chunk ? [index] : [])),
  };
}

async function main() {
  const [baseURL, bodyJson] = process.argv.slice(2);
  if (!baseURL || !bodyJson) {
    console.error("usage: node stream.mjs <base_url> '<request body JSON>'");
    process.exit(2);
  }
  const client = new OpenAI({ baseURL, apiKey: "test-key", maxRetries: 0, timeout: 120_000 });
  try {
    console.log(JSON.stringify(await readStream(client, JSON.parse(bodyJson))));
  } catch (error) {
    console.log(JSON.stringify({ error: String(error), status: error?.status ?? null }));
    process.exit(1);
  }
}

await main();
