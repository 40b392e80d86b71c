// A deliberately misbehaving MCP server (stdio) for kosmo-mcp's failure tests. It answers
// `initialize` and `tools/list`, then: tool `ping` answers "pong", tool `hang` never answers,
// tool `crash` writes to stderr and exits with status 7.
import readline from "node:readline";

const send = (message) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n");
const tool = (name) => ({ name, inputSchema: { type: "object" }, annotations: { readOnlyHint: true } });

process.stderr.write("fake-server: started\n");
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const message = JSON.parse(line);
  if (message.method === "initialize") {
    send({
      id: message.id,
      result: {
        protocolVersion: "2025-11-25",
        capabilities: { tools: {} },
        serverInfo: { name: "fake-server", version: "0.0.0" },
      },
    });
  } else if (message.method === "tools/list") {
    send({ id: message.id, result: { tools: [tool("ping"), tool("hang"), tool("crash")] } });
  } else if (message.method === "tools/call") {
    const name = message.params.name;
    if (name === "ping") {
      send({ id: message.id, result: { content: [{ type: "text", text: "pong" }] } });
    } else if (name === "crash") {
      process.stderr.write("fake-server: crashing on purpose\n");
      process.exit(7);
    }
    // `hang`: no answer, ever.
  } else if (message.id !== undefined && message.method) {
    send({ id: message.id, error: { code: -32601, message: `no method ${message.method}` } });
  }
});
