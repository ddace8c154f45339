"""The official A2A Python SDK (`a2a-sdk` on PyPI) as a client of an A2A
agent.

    python a2a_client.py BASE_URL VERSION [API_KEY]

Fetches the card from BASE_URL/.well-known/agent-card.json, keeps only its
JSON-RPC interfaces of protocol VERSION (`1.0` or `0.3`) and lets the SDK's
ClientFactory build the client for them: JsonRpcTransport for 1.0,
CompatJsonRpcTransport (the v0.3 methods, `A2A-Version: 0.3`) for 0.3. Then:

  a. sends a message (text: env A2A_TEXT, default "Calcula 15 * 23") without
     streaming, polling the task until it is terminal (or interrupted);
  b. sends it again, streaming, noting every event's kind;
  c. gets the task of (a) by its id;
  d. lists the tasks (1.0 only; 0.3 has no such method);
  e. cancels the task of (a), already terminal: the server's error is noted;
  f. gets a task that does not exist: the server's error is noted.

With API_KEY, every request (the card's too) carries `X-API-Key: API_KEY`.
Prints one JSON line of what it saw; exits 1 with the reason on stderr on
anything it did not expect. A2A_WIRE_LOG=FILE appends every request and
non-streamed response to FILE.
"""

import asyncio
import json
import os
import sys
import uuid

import httpx
from packaging.version import Version

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import get_artifact_text, get_message_text
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.errors import A2AError

base_url, version = sys.argv[1], sys.argv[2]
api_key = sys.argv[3] if len(sys.argv) > 3 else None
text = os.environ.get("A2A_TEXT", "Calcula 15 * 23")
wire_log = os.environ.get("A2A_WIRE_LOG")

# States after which the task will not move on its own.
SETTLED = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
    TaskState.TASK_STATE_INPUT_REQUIRED,
    TaskState.TASK_STATE_AUTH_REQUIRED,
}
# StreamResponse's payload field -> the name it has on the 1.0 wire.
KINDS = {"task": "task", "message": "message", "status_update": "statusUpdate", "artifact_update": "artifactUpdate"}


class Unexpected(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Unexpected(message)


def major_minor(v):
    parsed = Version(v)
    return (parsed.major, parsed.minor)


def state_name(state):
    return TaskState.Name(state)


def task_text(task):
    """The answer a task carries: its artifacts' text, else its status message's."""
    texts = [t for t in (get_artifact_text(a) for a in task.artifacts) if t]
    if texts:
        return "\n".join(texts)
    if task.status.HasField("message"):
        return get_message_text(task.status.message)
    return ""


def user_message():
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])


last_response = {}


async def on_request(request):
    if wire_log:
        with open(wire_log, "a") as out:
            out.write(json.dumps({"dir": "request", "method": request.method, "url": str(request.url),
                                  "headers": dict(request.headers),
                                  "body": request.content.decode(errors="replace")}) + "\n")


async def on_response(response):
    """Keeps the last non-streamed response's JSON, to read a JSON-RPC error exactly."""
    last_response.clear()
    last_response["status"] = response.status_code
    if "text/event-stream" in response.headers.get("content-type", ""):
        return
    await response.aread()
    try:
        last_response["json"] = response.json()
    except ValueError:
        last_response["json"] = None
    if wire_log:
        with open(wire_log, "a") as out:
            out.write(json.dumps({"dir": "response", "status": response.status_code,
                                  "headers": dict(response.headers),
                                  "body": response.text}) + "\n")


async def expect_error(step, call):
    """Runs a call the server should refuse; returns the JSON-RPC error it gave, or None
    when the call succeeded (with what it returned)."""
    try:
        result = await call
    except A2AError as error:
        body = last_response.get("json")
        check(isinstance(body, dict) and isinstance(body.get("error"), dict),
              f"{step}: not a JSON-RPC error (HTTP {last_response.get('status')}): {error!r}")
        return {"code": body["error"].get("code"), "message": body["error"].get("message")}, None
    return None, result


async def main():
    headers = {"X-API-Key": api_key} if api_key else {}
    http = httpx.AsyncClient(headers=headers, timeout=30,
                             event_hooks={"request": [on_request], "response": [on_response]})
    async with http:
        card = await A2ACardResolver(http, base_url).get_agent_card()
        check(card.name, "the card has no name")
        wanted = major_minor(version)
        ours = [i for i in card.supported_interfaces
                if i.protocol_binding == "JSONRPC" and major_minor(i.protocol_version or "1.0") == wanted]
        listed = [(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces]
        check(ours, f"no JSON-RPC interface of version {version} in the card: {listed}")
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(ours)

        plain = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
        streaming = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card)
        seen = {"version": version, "card_name": card.name}

        # (a) send, then poll until the task settles
        responses = [r async for r in plain.send_message(SendMessageRequest(message=user_message()))]
        check(len(responses) == 1, f"send: {len(responses)} results")
        task = None
        if responses[0].HasField("message"):
            seen["answer"], seen["state"] = get_message_text(responses[0].message), None
        else:
            task = responses[0].task
            check(task.id, f"send: a task without an id: {task}")
            for _ in range(150):
                if task.status.state in SETTLED:
                    break
                await asyncio.sleep(0.2)
                task = await plain.get_task(GetTaskRequest(id=task.id))
            check(task.status.state in SETTLED, f"send: the task never settled: {state_name(task.status.state)}")
            seen["answer"], seen["state"] = task_text(task), state_name(task.status.state)

        # (b) send, streaming
        kinds, states, artifacts = [], [], {}
        stream_task = stream_message = None
        last_status_text = ""
        async for event in streaming.send_message(SendMessageRequest(message=user_message())):
            kind = event.WhichOneof("payload")
            check(kind, f"stream: an event that is no task, message, statusUpdate or artifactUpdate: {event}")
            kinds.append(KINDS[kind])
            if kind == "task":
                stream_task = event.task
                states.append(state_name(event.task.status.state))
                for artifact in event.task.artifacts:
                    artifacts[artifact.artifact_id] = get_artifact_text(artifact)
                if event.task.status.HasField("message"):
                    last_status_text = get_message_text(event.task.status.message)
            elif kind == "status_update":
                states.append(state_name(event.status_update.status.state))
                if event.status_update.status.HasField("message"):
                    last_status_text = get_message_text(event.status_update.status.message)
                else:
                    last_status_text = ""
            elif kind == "artifact_update":
                update = event.artifact_update
                chunk = get_artifact_text(update.artifact)
                key = update.artifact.artifact_id
                artifacts[key] = artifacts.get(key, "") + chunk if update.append else chunk
            elif kind == "message":
                stream_message = event.message
        check(kinds, "stream: no events")
        seen["stream_events"] = kinds
        seen["stream_states"] = states
        if stream_message is not None:
            seen["stream_answer"] = get_message_text(stream_message)
        else:
            seen["stream_answer"] = "\n".join(t for t in artifacts.values() if t) or last_status_text
        seen["stream_task_id"] = stream_task.id if stream_task is not None else None

        # (c) get, (d) list, (e) cancel the settled task
        seen["task_id"] = task.id if task else None
        seen["context_id"] = task.context_id if task else None
        seen["got_state"] = seen["listed"] = seen["cancel_error"] = None
        if task is not None:
            got = await plain.get_task(GetTaskRequest(id=task.id))
            check(got.id == task.id, f"get: another task: {got.id}")
            seen["got_state"] = state_name(got.status.state)
            seen["got_answer"] = task_text(got)
            seen["got_history"] = len(got.history)
        if major_minor(version) >= (1, 0):
            listing = await plain.list_tasks(ListTasksRequest())
            seen["listed"] = len(listing.tasks)
        if task is not None:
            error, cancelled = await expect_error("cancel", plain.cancel_task(CancelTaskRequest(id=task.id)))
            seen["cancel_error"] = error
            if cancelled is not None:
                seen["cancel_state"] = state_name(cancelled.status.state)

        # (f) an unknown task
        error, got = await expect_error("unknown", plain.get_task(GetTaskRequest(id=f"no-such-task-{uuid.uuid4()}")))
        seen["unknown_error"] = error
        if got is not None:
            seen["unknown_state"] = state_name(got.status.state)
    first = ["version", "card_name", "answer", "state", "stream_events", "stream_answer", "task_id",
             "context_id", "got_state", "listed", "cancel_error", "unknown_error"]
    out = {key: seen.get(key) for key in first}
    out.update((key, value) for key, value in seen.items() if key not in out)
    print(json.dumps(out))


try:
    asyncio.run(main())
except Exception as error:  # anything unexpected: the reason, and exit 1
    print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(1)
