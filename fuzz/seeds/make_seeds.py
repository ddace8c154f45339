#!/usr/bin/env python3
"""Writes the hand-made starting inputs of each fuzz target into
fuzz/corpus/<target>/ (the format of each is in fuzz/common/inputs.rs).
libFuzzer grows the corpus from these; `cargo fuzz cmin` keeps what adds
coverage. Re-run before a fresh campaign if the corpus was cleared."""
import base64, hashlib, json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(os.path.dirname(HERE), "corpus")
PUBSUB = "google.cloud.pubsub.topic.v1.messagePublished"


def write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


# calculator: the expressions of the calculator's own unit tests, and a few more.
src = open(os.path.join(ROOT, "shared/src/tools/calculator.rs"), encoding="utf-8").read()
exprs = set(re.findall(r'(?:eval|error|evaluate)\("((?:[^"\\]|\\.)*)"\)', src))
exprs |= {"2*(3+4)", "sqrt(2) + log(1000)", "-2^2", "2**10", "min(1,2,3)", "max(1, 2)", "log(8, 2)",
          "round(2.5)", "1e308*10", "(-8)^0.5", "1/0 + (2", "pi*e", "ln(0)", "tan(pi/2)", "7 % 0",
          ".5e-3", "((((1))))", "2pi", "abs(-3)", "floor(-1.5)+ceil(1.5)", "exp(710)"}
for e in sorted(exprs):
    write("calculator", e.encode().decode("unicode_escape").encode("utf-8", "surrogatepass"))


# delivery: a selector byte (fuzz/common/inputs.rs) and a body.
def b64(obj, alt=False):
    raw = json.dumps(obj).encode()
    return (base64.urlsafe_b64encode(raw).rstrip(b"=") if alt else base64.b64encode(raw)).decode()


push = {"message": {"attributes": {"origin": "api"}, "data": b64({"task_id": "task-1"}), "messageId": "4",
                    "message_id": "4", "publishTime": "2025-01-02T03:04:05.678Z"},
        "subscription": "projects/demo/subscriptions/tasks-push", "deliveryAttempt": 2}
bare = {"message": {"data": b64({"task_id": "t"}, alt=True)}}
structured = {"specversion": "1.0", "type": PUBSUB, "source": "//pubsub.googleapis.com/projects/p/topics/t",
              "id": "9001", "datacontenttype": "application/json", "data": push}
structured64 = {"specversion": "1.0", "type": PUBSUB, "id": "ce-1",
                "data_base64": base64.b64encode(json.dumps(bare).encode()).decode()}
for selector, body in [(0, push), (1, bare), (2, structured), (3, structured64), (4, push), (4, bare),
                       (6, push), (7, push), (2, push), (0, {"message": {"data": "", "messageId": "1"}})]:
    write("delivery", bytes([selector]) + json.dumps(body).encode())
write("delivery", bytes([5]) + b"id-77\n" + json.dumps(bare).encode())
write("delivery", bytes([0]) + b"[1,2]")

# request_body: selector (route in bits 0-1, content type in bits 2-3) and a body.
CHAT, AGENT, CALC, SEARCH = 0, 1, 2, 3
bodies = [
    (CHAT, {"message": "hello"}),
    (CHAT | 4, {"message": "what did I say?", "session_id": "fuzz-1", "system_instruction": "Be brief."}),
    (CHAT | 8, {"message": "stream it", "stream": True}),
    (CHAT, {"message": " ", "session_id": "__x__"}),
    (AGENT, {"task": "What is 2*(3+4)?"}),
    (AGENT | 4, {"task": "Remember that my name is Ada, then search for rate limits", "session_id": "fuzz-2",
                 "max_steps": 3}),
    (AGENT, {"task": "what is my name?", "session_id": "fuzz-2", "max_steps": 0}),
    (AGENT | 8, {"task": "compute sqrt(2)", "async": True}),
    (AGENT, {"task": "x", "async": True, "callback_url": "http://127.0.0.1:1/hook"}),
    (AGENT, {"task": "x", "callback_url": "https://example.com/hook", "system_instruction": "s"}),
    (CALC, {"expression": "2*(3+4)"}),
    (CALC | 4, {"expression": "1/0"}),
    (CALC, {"expression": 7}),
    (SEARCH, {"query": "rate limit", "max_results": 3}),
    (SEARCH | 12, {"query": "how do I deploy to Cloud Run?"}),
    (SEARCH, {"query": ""}),
]
for selector, body in bodies:
    write("request_body", bytes([selector]) + json.dumps(body).encode())
for selector, raw in [(CHAT, b""), (CHAT, b"{"), (AGENT, b"[1]"), (CALC, b"null"), (SEARCH, b"message=hi")]:
    write("request_body", bytes([selector]) + raw)

# mcp: selector (content type in bits 0-1, a protocol version header in bit 2) and a body.
def rpc(method, params=None, id=1):
    message = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        message["id"] = id
    if params is not None:
        message["params"] = params
    return message


mcp_bodies = [
    (0, rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "f", "version": "1"}})),
    (4, rpc("tools/list")),
    (4, rpc("tools/list", {"cursor": "x"}, id="a")),
    (4, rpc("tools/call", {"name": "calculate", "arguments": {"expression": "15 * 23"}})),
    (4, rpc("tools/call", {"name": "calculate", "arguments": {"expression": "1/0"}})),
    (4, rpc("tools/call", {"name": "search_web", "arguments": {"query": "Firestore", "max_results": 2}})),
    (4, rpc("tools/call", {"name": "store_memory", "arguments": {"key": "k", "value": "v"}})),
    (4, rpc("tools/call", {"arguments": 5})),
    (4, rpc("tools/call", {"name": "calculate", "arguments": "2+2"})),
    (4, rpc("ping")),
    (4, rpc("notifications/initialized", id=None)),
    (4, rpc("resources/list")),
    (4, rpc("server/discover", {})),
    (4, {"jsonrpc": "2.0", "id": 3, "result": {}}),
    (0, {"jsonrpc": "1.0", "id": 1, "method": "tools/list"}),
    (4, [rpc("tools/list"), rpc("ping", id=2)]),
    (1, rpc("tools/list")),
    (2, rpc("tools/list")),
    (7, rpc("tools/list")),
    (4, {"hello": "world"}),
]
for selector, body in mcp_bodies:
    write("mcp", bytes([selector]) + json.dumps(body).encode())
for raw in [b"{not json", b"", b"null", b"[]", b"\xff\xfe", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"calculate","arguments":{"expression":"' + b"1+" * 300 + b'1"}}}']:
    write("mcp", bytes([4]) + raw)

# a2a: selector (bit 0: protocol 1.0, else 0.3) and a body.
V1_MESSAGE = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "Calcula 15 * 23"}], "contextId": "ctx"}
V03_MESSAGE = {"kind": "message", "messageId": "m-1", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}
a2a_bodies = [
    (1, rpc("SendMessage", {"message": V1_MESSAGE})),
    (1, rpc("SendMessage", {"message": V1_MESSAGE, "configuration": {"returnImmediately": True, "historyLength": 0}})),
    (1, rpc("SendStreamingMessage", {"message": dict(V1_MESSAGE, parts=[{"data": {"a": 1}}])})),
    (1, rpc("SendMessage", {"message": dict(V1_MESSAGE, parts=[{"url": "https://x/a.png"}])})),
    (1, rpc("SendMessage", {"message": dict(V1_MESSAGE, role="ROLE_AGENT")})),
    (1, rpc("SendMessage", {"message": {"role": "ROLE_USER", "parts": []}})),
    (1, rpc("GetTask", {"id": "a2a-0123", "historyLength": 1})),
    (1, rpc("ListTasks", {"contextId": "ctx", "pageSize": 10, "status": "TASK_STATE_COMPLETED"})),
    (1, rpc("CancelTask", {"id": ""})),
    (0, rpc("message/send", {"message": V03_MESSAGE, "configuration": {"blocking": True}})),
    (0, rpc("message/stream", {"message": V03_MESSAGE})),
    (0, rpc("message/send", {"message": dict(V03_MESSAGE, parts=[{"kind": "file", "file": {"uri": "x"}}])})),
    (0, rpc("message/send", {"message": V03_MESSAGE,
                             "configuration": {"pushNotificationConfig": {"url": "https://hooks.example/a2a"}}})),
    (0, rpc("tasks/get", {"id": 7})),
    (0, rpc("tasks/resubscribe", None)),
    (0, {"jsonrpc": "2.0", "id": [1], "method": "tasks/get"}),
    (0, {"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": [1]}),
    (1, [rpc("GetTask", {"id": "x"})]),
    (1, {"jsonrpc": "2.0", "id": 1}),
    (0, "just a string"),
]
for selector, body in a2a_bodies:
    write("a2a", bytes([selector]) + json.dumps(body).encode())
for raw in [b"{oops", b"", b"\xff\xfe{}"]:
    write("a2a", bytes([1]) + raw)
