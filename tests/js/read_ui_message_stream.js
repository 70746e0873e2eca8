// Reads a UI message stream (SSE bytes on stdin) with the `ai` package's own parser
// (parseJsonEventStream + uiMessageChunkSchema) and assembles it with
// readUIMessageStream, as useChat does. Prints JSON: the chunk types, the final
// message's text, the data parts and any error text.
const { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } = require("ai");

async function main() {
  const input = await new Promise((resolve) => {
    const parts = [];
    process.stdin.on("data", (d) => parts.push(d));
    process.stdin.on("end", () => resolve(Buffer.concat(parts)));
  });
  const bytes = new ReadableStream({
    start(controller) {
      controller.enqueue(new Uint8Array(input));
      controller.close();
    },
  });
  const types = [];
  const errors = [];
  const data = [];
  const chunks = parseJsonEventStream({ stream: bytes, schema: uiMessageChunkSchema }).pipeThrough(
    new TransformStream({
      transform(result, controller) {
        if (!result.success) {
          errors.push(String(result.error && result.error.message));
          return;
        }
        types.push(result.value.type);
        if (result.value.type === "error") errors.push(result.value.errorText);
        if (result.value.type.startsWith("data-")) data.push(result.value.data);
        controller.enqueue(result.value);
      },
    }),
  );
  let last = null;
  try {
    for await (const message of readUIMessageStream({ stream: chunks })) last = message;
  } catch (e) {
    errors.push(String(e && e.message));
  }
  const text = last ? last.parts.filter((p) => p.type === "text").map((p) => p.text).join("") : null;
  process.stdout.write(JSON.stringify({ types, text, data, errors, id: last && last.id }));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack));
  process.exit(1);
});
