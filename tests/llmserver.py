"""A scripted OpenAI-compatible chat-completions server on a real loopback socket, for the LLM
judge's tests.

``POST /v1/chat/completions`` answers with the next scripted :class:`Reply` (FIFO; an empty
script answers HTTP 500), and records every request body and its ``Authorization`` header;
``GET /v1/models`` lists one model. It is a bare ASGI app under uvicorn, so a reply can do what a
framework would tidy away: promise a body and drop the connection halfway, or trickle it.

The session-scoped ``llm_server`` fixture serves it from a background thread; the ``llm``
fixture hands it to a test, reset.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Kind = Literal["answer", "raw", "body", "refusal", "truncated", "status", "drop", "trickle"]


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted reply."""

    kind: Kind = "answer"
    #: ``answer``: the answer object, sent as the message's JSON content
    answer: dict[str, Any] | None = None
    #: ``raw``: the message content as given (malformed JSON, prose, ...); ``body``: the whole
    #: HTTP response body as given
    content: str | None = None
    #: ``status``: the HTTP status
    status: int = 200
    #: seconds to wait before the response starts
    delay: float = 0.0
    #: ``answer``: the choice's finish_reason
    finish_reason: str | None = "stop"


def answer(**fields: Any) -> Reply:
    """An ``answer`` reply: the schema's four keys, defaults filled."""
    body = {"verdict": "unsupported", "evidence": [], "value": "", "reason": "scripted"} | fields
    return Reply(kind="answer", answer=body)


def _completion(model: str, content: str | None, finish: str | None, refusal: str | None) -> bytes:
    message = {"role": "assistant", "content": content, "refusal": refusal}
    return json.dumps(
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


@dataclass
class ScriptedLlm:
    """The app: a reply script and the requests it received."""

    model: str = "scripted-judge"
    replies: list[Reply] = field(default_factory=list)
    #: every chat-completion request body, in order
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: the ``Authorization`` header of each request (None when absent)
    authorizations: list[str | None] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *replies: Reply) -> None:
        """Queue ``replies`` for the next requests."""
        with self._lock:
            self.replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.replies.clear()
            self.requests.clear()
            self.authorizations.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            await _send(send, 200, json.dumps(models).encode())
        elif method == "POST" and path == "/v1/chat/completions":
            await self._complete(scope, receive, send)
        else:
            await _send(send, 404, b'{"error": {"message": "not found"}}')

    async def _complete(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        with self._lock:
            self.requests.append(json.loads(body))
            auth = headers.get(b"authorization")
            self.authorizations.append(auth.decode() if auth is not None else None)
            reply = self.replies.pop(0) if self.replies else Reply(kind="status", status=500)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        await self._reply(reply, send)

    async def _reply(self, reply: Reply, send: Send) -> None:
        if reply.kind == "status":
            error = {"error": {"message": "scripted failure", "code": reply.status}}
            await _send(send, reply.status, json.dumps(error).encode())
            return
        if reply.kind == "body":
            await _send(send, 200, (reply.content or "").encode())
            return
        if reply.kind == "refusal":
            await _send(send, 200, _completion(self.model, None, "stop", "I can't help with that."))
            return
        content = reply.content if reply.kind == "raw" else json.dumps(reply.answer or {})
        if reply.kind == "truncated":
            content = json.dumps(reply.answer or {})[:25]
        finish = "length" if reply.kind == "truncated" else reply.finish_reason
        payload = _completion(self.model, content, finish, None)
        if reply.kind == "drop":
            # Headers promising the whole body, half of it, then the connection closes.
            await _start(send, 200, len(payload))
            await send({"type": "http.response.body", "body": payload[:20], "more_body": True})
            return
        if reply.kind == "trickle":
            # Each byte well inside a per-read timeout, the whole far outside the judge's.
            await _start(send, 200, len(payload))
            for i in range(len(payload)):
                chunk = payload[i : i + 1]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b""})
            return
        await _send(send, 200, payload)


async def _start(send: Send, status: int, length: int) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _send(send: Send, status: int, body: bytes) -> None:
    await _start(send, status, len(body))
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True, kw_only=True)
class LlmServer:
    """A running scripted server."""

    #: the OpenAI-style base, e.g. ``http://127.0.0.1:41234/v1``
    base_url: str
    app: ScriptedLlm


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LlmServer]:
    """The scripted server, one for the whole session."""
    app = ScriptedLlm()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", access_log=False, http="h11",
        lifespan="off", loop="asyncio", timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="scripted-llm", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the scripted LLM server did not start")
        time.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield LlmServer(base_url=f"http://{host}:{port}/v1", app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def llm(llm_server: LlmServer) -> LlmServer:
    """The scripted server, its script and records empty."""
    llm_server.app.reset()
    return llm_server
