"""An MCP tool server written with the official Python SDK (`mcp` on PyPI),
for the agent's MCP client to call (local/tests/mcp.rs).

    python mcp_server.py PORT [stateful|stateless] [REQUIRED_KEY]

Serves Streamable HTTP at http://127.0.0.1:PORT/mcp. Its tools: `shout`
(upper-cases a text, and counts its calls in /calls) and `fail` (always
a tool error). With REQUIRED_KEY, a request without
`Authorization: Bearer REQUIRED_KEY` is answered 401. /calls also lists the
Authorization and traceparent headers (or "") of every request.
"""

import logging
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.responses import JSONResponse, PlainTextResponse

port = int(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "stateful"
required_key = sys.argv[3] if len(sys.argv) > 3 else None

logging.getLogger("mcp").setLevel(logging.WARNING)
server = MCPServer("peer")
calls = {"shout": 0, "authorizations": [], "traceparents": []}


@server.tool(description="Shouts a text back: the text in capitals, with an exclamation mark.")
def shout(text: str) -> str:
    calls["shout"] += 1
    return text.upper() + "!"


@server.tool(description="Always fails, to show how a tool's failure reaches the caller.")
def fail(reason: str) -> str:
    raise ToolError(f"failed on purpose: {reason}")


app = server.streamable_http_app(stateless_http=(mode == "stateless"), json_response=(mode == "stateless"))


async def main(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/calls":
        await JSONResponse(calls)(scope, receive, send)
        return
    if scope["type"] == "http":
        headers = dict(scope["headers"])
        calls["authorizations"].append(headers.get(b"authorization", b"").decode())
        calls["traceparents"].append(headers.get(b"traceparent", b"").decode())
        if required_key and headers.get(b"authorization", b"").decode() != f"Bearer {required_key}":
            await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
            return
    await app(scope, receive, send)


uvicorn.run(main, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
