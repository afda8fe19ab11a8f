"""The HTTP API's edge: what happens to every request before FastAPI parses anything.

:class:`Edge` is a plain ASGI middleware, outermost, that does for every request:

- the request id: a client's ``X-Request-Id`` when it is an opaque id (32 hex digits or a UUID;
  anything else could carry data and is replaced), otherwise a new one; echoed in the response;
- the body limit: a ``Content-Length`` over ``max_body_bytes``, or a body that streams past it,
  gets 413 before a byte is parsed (the body is buffered up to the limit, then handed on);
- authentication of every ``/v1/`` request (``Authorization: Bearer <key>`` or ``X-API-Key``):
  401 with ``WWW-Authenticate`` before routing, so an unauthenticated client learns nothing,
  not even which routes exist; the :class:`~ehrbridge.api.store.Principal` goes in the scope;
- 415 for a ``/v1/`` body that is not JSON;
- ``Cache-Control: no-store`` on every ``/v1/`` response (patient data);
- one log line per request: method, route *template*, status, duration, request id. Never the
  path (ids, call ids), the query (``as_of``) or a body; uvicorn's access log must stay off;
- anything unexpected: 500 problem with a generic detail, logged as its class, the request id
  and the code locations of its traceback (never its message, which may quote data).

>>> is_json("application/merge-patch+json; charset=utf-8"), is_json("text/plain")
(True, False)
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Sequence
from typing import Final
from uuid import uuid4

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ehrbridge.api import problems
from ehrbridge.api.store import ApiKeys

#: where :class:`Edge` puts the request id and the principal in the ASGI scope
REQUEST_ID_KEY: Final = "ehrbridge.request_id"
PRINCIPAL_KEY: Final = "ehrbridge.principal"
#: the prefix of every route that needs a key
DATA_PREFIX: Final = "/v1/"

_OPAQUE_ID = re.compile(
    r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: the HTTP API's logger: the edge writes its request lines
logger = logging.getLogger("ehrbridge.api.http")


def request_id_of(headers: Headers) -> str:
    """The client's ``X-Request-Id`` if it is an opaque id, else a new one."""
    given = headers.get("x-request-id", "")
    return given if _OPAQUE_ID.match(given) else uuid4().hex


def presented_key(headers: Headers) -> str | None:
    """The API key of a request: ``Authorization: Bearer <key>``, else ``X-API-Key``."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, secret = authorization.partition(" ")
        return secret.strip() or None if scheme.lower() == "bearer" else None
    return headers.get("x-api-key", "").strip() or None


def is_json(content_type: str) -> bool:
    """``application/json`` or ``application/<anything>+json``, with any parameters."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def route_template(scope: Scope, fixed: Sequence[str] = ()) -> str:
    """What the log line names instead of the path: the matched route's template
    (``/v1/entities/{entity_type}/{entity_id}``), else the ``fixed`` path or mount prefix the
    path is (``/openapi.json``, ``/mcp``), else ``-``."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str) and template:
        return template
    path = scope.get("path", "")
    for prefix in fixed:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return prefix
    return "-"


class _Refused(Exception):
    """The edge answers the request itself."""

    def __init__(self, kind: problems.Kind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Edge:
    """Request id, body limit, authentication, media type, logging and the last-resort 500."""

    def __init__(
        self, app: ASGIApp, *, keys: ApiKeys, max_body_bytes: int, fixed: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        #: paths and mount prefixes that are not routes of their own (see route_template)
        self.fixed = tuple(fixed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = request_id_of(headers)
        scope[REQUEST_ID_KEY] = request_id
        data = scope["path"].startswith(DATA_PREFIX)
        status = 0

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out = MutableHeaders(scope=message)
                out["X-Request-Id"] = request_id
                if data:
                    out["Cache-Control"] = "no-store"
            await send(message)

        try:
            await self._admit(scope, receive, tagged_send, headers, data)
        except _Refused as refusal:
            if status == 0:
                await send_problem(tagged_send, refusal.kind, refusal.detail, request_id)
        except Exception as exc:
            log_failure(scope, exc, request_id)
            if status == 0:
                kind = problems.classify(exc)
                await send_problem(tagged_send, kind, problems.detail_of(exc, kind), request_id)
        finally:
            logger.info(
                "%s %s %d %.1fms request=%s",
                scope["method"],
                route_template(scope, self.fixed),
                status,
                (time.perf_counter() - began) * 1000,
                request_id,
            )

    async def _admit(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, data: bool
    ) -> None:
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            raise _Refused(problems.TOO_LARGE, self._too_large())
        if data:
            secret = presented_key(headers)
            principal = await self.keys.authenticate(secret) if secret else None
            if principal is None:
                raise _Refused(problems.UNAUTHENTICATED, problems.UNAUTHENTICATED_DETAIL)
            scope[PRINCIPAL_KEY] = principal
            if scope["method"] in _BODY_METHODS and not _json_or_empty(headers):
                raise _Refused(
                    problems.UNSUPPORTED_MEDIA, "send the request body as application/json"
                )
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                raise _Refused(problems.TOO_LARGE, self._too_large())
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body_bytes} bytes"


def _json_or_empty(headers: Headers) -> bool:
    content_type = headers.get("content-type")
    if content_type is not None:
        return is_json(content_type)
    return headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers


async def send_problem(send: Send, kind: problems.Kind, detail: str, request_id: str) -> None:
    body = problems.problem_body(kind, detail, request_id)
    headers = [
        (b"content-type", problems.PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in problems.problem_headers(kind).items()),
    ]
    await send({"type": "http.response.start", "status": kind.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def log_failure(scope: Scope, exc: BaseException, request_id: str) -> None:
    # the class and where it was raised; never str(exc), which may quote patient data
    where = "".join(
        f"\n  {frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
    )
    logger.error(
        "%s %s failed: %s (request %s)%s",
        scope.get("method", "-"),
        route_template(scope),
        type(exc).__name__,
        request_id,
        where,
    )
