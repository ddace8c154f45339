"""An A2A agent written with the official Python SDK (`a2a-sdk` on PyPI,
with its http-server extra), for the agent's A2A client to call.

    python a2a_server.py PORT [REQUIRED_BEARER]

Serves on 127.0.0.1:PORT:

  GET  /.well-known/agent-card.json   the card of "shouter" (skill `shout`,
                                      streaming), with a JSON-RPC interface
                                      at http://127.0.0.1:PORT/ for protocol
                                      1.0 and one for 0.3
  POST /                              JSON-RPC: the 1.0 methods (SendMessage,
                                      SendStreamingMessage, GetTask, ListTasks,
                                      CancelTask, SubscribeToTask, ...) and the
                                      0.3 ones (message/send, message/stream,
                                      tasks/get, tasks/cancel, ...)
  GET  /calls                         {"messages": N, "authorizations": [...], "traceparents": [...]}

The agent answers a message's text in capitals with "!" appended ("hello"
-> "HELLO!"): it creates the task, reports it `working`, adds the answer
as an artifact, then completes it. `messages` counts the agent's runs;
`authorizations` lists the Authorization header (or "") of every request
but the card's and /calls'. With REQUIRED_BEARER, any such request without
`Authorization: Bearer REQUIRED_BEARER` is answered 401.

Environment: A2A_VERSIONS (default "1.0,0.3") says which interfaces the card
lists; A2A_STREAMING=false makes the card say it does not stream; A2A_DELAY (seconds, default 0.05) is how long the agent works between
its `working` update and its answer; A2A_WIRE_LOG=FILE appends every JSON-RPC request and response body
(each SSE chunk too) to FILE.
"""

import asyncio
import json
import logging
import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH

port = int(sys.argv[1])
required_bearer = sys.argv[2] if len(sys.argv) > 2 else None
versions = [v.strip() for v in os.environ.get("A2A_VERSIONS", "1.0,0.3").split(",") if v.strip()]
wire_log = os.environ.get("A2A_WIRE_LOG")
delay = float(os.environ.get("A2A_DELAY", "0.05"))
streaming = os.environ.get("A2A_STREAMING", "true") != "false"

logging.basicConfig(level=logging.WARNING)
logging.getLogger("a2a").setLevel(logging.WARNING)

calls = {"messages": 0, "authorizations": [], "traceparents": []}
base_url = f"http://127.0.0.1:{port}/"


class Shouter(AgentExecutor):
    """Shouts the user's text back, as a task that goes working -> completed."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        calls["messages"] += 1
        text = context.get_user_input()
        if context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work(
            new_text_message("Shouting...", context_id=context.context_id, task_id=context.task_id)
        )
        await asyncio.sleep(delay)  # so that a stream's events arrive one by one
        await updater.add_artifact([new_text_part(text.upper() + "!")], name="shout")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel()


card = AgentCard(
    name="shouter",
    description="Shouts a text back in capitals",
    version="1.0.0",
    supported_interfaces=[
        AgentInterface(url=base_url, protocol_binding="JSONRPC", protocol_version=v) for v in versions
    ],
    capabilities=AgentCapabilities(streaming=streaming, push_notifications=False),
    default_input_modes=["text/plain"],
    default_output_modes=["text/plain"],
    skills=[
        AgentSkill(
            id="shout",
            name="shout",
            description="Answers a text in capitals, with an exclamation mark",
            tags=["text"],
            examples=["hello -> HELLO!"],
        )
    ],
)
if required_bearer:
    card.security_schemes["bearer"].CopyFrom(
        SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer"))
    )
    card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList(list=[])}))

handler = DefaultRequestHandler(agent_executor=Shouter(), task_store=InMemoryTaskStore(), agent_card=card)


async def calls_route(request):
    return JSONResponse(calls)


app = Starlette(
    routes=[
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat="0.3" in versions),
        Route("/calls", calls_route, methods=["GET"]),
    ]
)


def log_wire(entry):
    with open(wire_log, "a") as out:
        out.write(json.dumps(entry) + "\n")


async def logged(scope, receive, send):
    """Passes the request on, writing its body and the response's to the wire log."""
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = bytearray()
    logged_request = False

    def log_request():
        nonlocal logged_request
        if not logged_request:
            logged_request = True
            log_wire({"dir": "request", "method": scope["method"], "path": scope["path"],
                      "headers": headers, "body": body.decode(errors="replace")})

    async def receive_logged():
        message = await receive()
        if message["type"] == "http.request":
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                log_request()
        return message

    async def send_logged(message):
        if message["type"] == "http.response.start":
            log_request()
            log_wire({"dir": "response-start", "status": message["status"],
                      "headers": {k.decode(): v.decode() for k, v in message.get("headers", [])}})
        elif message["type"] == "http.response.body" and message.get("body"):
            log_wire({"dir": "response", "body": message["body"].decode(errors="replace")})
        await send(message)

    await app(scope, receive_logged, send_logged)


async def main(scope, receive, send):
    inner = logged if wire_log and scope["type"] == "http" else app
    if scope["type"] == "http" and scope["path"] not in ("/calls", AGENT_CARD_WELL_KNOWN_PATH):
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
        calls["authorizations"].append(authorization)
        calls["traceparents"].append(dict(scope["headers"]).get(b"traceparent", b"").decode())
        if required_bearer and authorization != f"Bearer {required_bearer}":
            await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
            return
    await inner(scope, receive, send)


uvicorn.run(main, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
