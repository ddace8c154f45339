"""The official Python MCP SDK (`mcp` on PyPI) as a client of one of our
functions' /mcp (local/tests/mcp.rs).

    python mcp_client.py URL MODE KIND [API_KEY]

MODE: `legacy` (the initialize handshake) or `auto` (the stateless
revision, server/discover). KIND: `calculator`, `search` or `agent`, which
says what the tools are. Prints one JSON line of what it saw; exits 1 with
the reason when the server does not behave.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

url, mode, kind = sys.argv[1], sys.argv[2], sys.argv[3]
api_key = sys.argv[4] if len(sys.argv) > 4 else None


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def text(result):
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def main():
    headers = {"X-API-Key": api_key} if api_key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:
            listed = await client.list_tools()
            names = sorted(tool.name for tool in listed.tools)
            seen = {"mode": mode, "tools": names}
            if kind in ("calculator", "agent"):
                check("calculate" in names, f"calculate not listed: {names}")
                tool = next(t for t in listed.tools if t.name == "calculate")
                check("expression" in tool.input_schema["properties"], f"schema: {tool.input_schema}")
                result = await client.call_tool("calculate", {"expression": "15 * 23"})
                check(not result.is_error, f"15 * 23 failed: {result}")
                check(result.structured_content["result"] == 345, f"15 * 23: {result.structured_content}")
                check("345" in text(result), f"text: {text(result)}")
                seen["product"] = result.structured_content["result"]
                bad = await client.call_tool("calculate", {"expression": "1 / 0"})
                check(bad.is_error, f"1 / 0 is not an error result: {bad}")
                seen["division_by_zero"] = text(bad)
            if kind in ("search", "agent"):
                check("search_web" in names, f"search_web not listed: {names}")
                result = await client.call_tool("search_web", {"query": "Firestore sessions"})
                check(not result.is_error, f"search failed: {result}")
                check(len(result.structured_content["results"]) > 0, f"no results: {result.structured_content}")
                seen["results"] = len(result.structured_content["results"])
            if kind == "agent":
                check(not any("memory" in n for n in names), f"memory tools are a run's, not MCP's: {names}")
            try:
                await client.call_tool("no_such_tool", {})
                check(False, "an unknown tool was not a protocol error")
            except Exception as error:  # the SDK raises the JSON-RPC error
                seen["unknown_tool"] = str(error)
    print(json.dumps(seen))


asyncio.run(main())
