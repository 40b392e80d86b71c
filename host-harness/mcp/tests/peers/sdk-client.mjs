// An official MCP client not written here (the TypeScript SDK's `Client` over its stdio
// transport) driving a server command given on the command line, for kosmo-mcp's
// interoperability test. Prints one JSON object on stdout.
//
//   node sdk-client.mjs [--elicit] -- COMMAND [ARGS...]
//
// With --elicit the client declares form elicitation and accepts every question.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const sep = process.argv.indexOf("--");
const flags = process.argv.slice(2, sep);
const [command, ...args] = process.argv.slice(sep + 1);
const elicit = flags.includes("--elicit");

const client = new Client(
  { name: "sdk-interop-test", version: "1.0.0" },
  { capabilities: elicit ? { elicitation: { form: {} } } : {} },
);
const questions = [];
if (elicit) {
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    questions.push(request.params.message);
    return { action: "accept", content: { allow_for_session: false } };
  });
}

const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
const out = {};
try {
  await client.connect(transport);
  out.server = client.getServerVersion();
  out.capabilities = client.getServerCapabilities();
  out.instructions = client.getInstructions();
  const { tools } = await client.listTools();
  out.tools = tools;
  const email = `interop-${Date.now()}@example.com`;
  out.create = await client.callTool({
    name: "klaviyo_create_profile",
    arguments: { email, first_name: "Ada", properties: { plan: "pro" } },
  });
  const id = out.create.structuredContent?.id;
  out.get = await client.callTool({ name: "klaviyo_get_profile", arguments: { profile_id: id } });
  out.not_found = await client.callTool({
    name: "klaviyo_get_profile",
    arguments: { profile_id: "01JZZZZZZZZZZZZZZZZZZZZZZZ" },
  });
  out.bad_argument = await client.callTool({
    name: "klaviyo_create_profile",
    arguments: { email: 42 },
  });
  out.questions = questions;
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (error) {
  process.stderr.write(`sdk-client: ${error?.stack ?? error}\n`);
  process.exit(1);
}
