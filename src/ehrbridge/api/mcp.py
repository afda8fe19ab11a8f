"""The agent API's MCP tools over streamable HTTP and stdio (docs/design.md §10-11).

The tools themselves (one per :class:`~ehrbridge.api.service.AgentService` operation, schemas
from the request and response models, errors as tool errors) are :mod:`ehrbridge.api.mcptools`'s;
this module serves them and decides who is asking:

- **streamable HTTP** (:func:`streamable_http_app`): every HTTP request carries
  ``Authorization: Bearer <api key>`` (or ``X-API-Key``, as on the HTTP API); :class:`McpHttpApp`
  authenticates it before the SDK sees the request (401 problem+json otherwise) and puts the
  :class:`Principal` and the request id in the ASGI scope, where the tool handler finds them
  through the SDK's request context (a tool call's audit entries carry the HTTP request's id).
  Stateless, JSON responses: any replica can answer any request.
- **stdio** (:func:`run_stdio`): the key comes from the environment; it is checked once before
  serving (refused: :class:`~ehrbridge.errors.Unauthenticated`) and again on every call through
  the key cache, so a revoked key stops working within the cache's lifetime.

The SDK logs frames at DEBUG (its client: every message, tool arguments included) and exception
text at ERROR; tool arguments are patient data. :func:`quiet_sdk_logging` keeps the ``mcp``
loggers at WARNING and strips their records down to the message template (no arguments, no
exception text).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final
from uuid import uuid4

import orjson
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ehrbridge.api.mcptools import CHANNEL, REQUEST_ID_META_KEY, TOOLS, mcp_server
from ehrbridge.api.service import AgentService
from ehrbridge.api.store import ApiKeys, Principal
from ehrbridge.errors import StorageError, Unauthenticated

__all__ = [
    "CHANNEL",
    "REQUEST_ID_META_KEY",
    "TOOLS",
    "McpHttpApp",
    "quiet_sdk_logging",
    "run_stdio",
    "stdio_mcp_server",
    "streamable_http_app",
]

#: the detail of a 401 (as the HTTP API's)
UNAUTHENTICATED_DETAIL: Final = (
    "a valid API key is required: Authorization: Bearer <api key> (or X-API-Key)"
)
#: where :class:`McpHttpApp` puts the authenticated principal in the ASGI scope
PRINCIPAL_SCOPE_KEY: Final = "ehrbridge.principal"
#: where the request id is in the ASGI scope: set by a parent app (the HTTP API's edge, which
#: also logs it) or by :class:`McpHttpApp`; a tool call's audit entries carry it
REQUEST_ID_SCOPE_KEY: Final = "ehrbridge.request_id"

_OPAQUE_ID = re.compile(
    r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)


# --- logging ---------------------------------------------------------------------------------


class _TemplateOnly(logging.Filter):
    """Keeps a record's message template and exception class, drops its arguments and text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.msg} [{type(record.exc_info[1]).__name__}]"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_FILTER = _TemplateOnly()


def quiet_sdk_logging() -> None:
    """Keep the MCP SDK's loggers from writing patient data (idempotent).

    Sets ``mcp`` to WARNING (its DEBUG records carry frames and arguments) and puts
    :class:`_TemplateOnly` on it and on every ``mcp.*`` logger there is (a logger's filters
    apply to its own records only, so each one needs it).
    """
    root = logging.getLogger("mcp")
    root.setLevel(logging.WARNING)
    names = [n for n in logging.Logger.manager.loggerDict if n == "mcp" or n.startswith("mcp.")]
    for name in names:
        sdk_logger = logging.getLogger(name)
        if _FILTER not in sdk_logger.filters:
            sdk_logger.addFilter(_FILTER)


# --- streamable HTTP -------------------------------------------------------------------------


def _scope_of(ctx: ServerRequestContext[Any, Any]) -> Scope | None:
    request = ctx.request
    return request.scope if isinstance(request, Request) else None


async def _principal_in_scope(ctx: ServerRequestContext[Any, Any]) -> Principal | None:
    scope = _scope_of(ctx)
    principal = scope.get(PRINCIPAL_SCOPE_KEY) if scope is not None else None
    return principal if isinstance(principal, Principal) else None


def _request_id_in_scope(ctx: ServerRequestContext[Any, Any]) -> str | None:
    scope = _scope_of(ctx)
    request_id = scope.get(REQUEST_ID_SCOPE_KEY) if scope is not None else None
    return request_id if isinstance(request_id, str) else None


def _request_id(scope: Scope, headers: dict[bytes, bytes]) -> str:
    """The parent app's request id, else the client's opaque ``X-Request-Id``, else a new one."""
    given = scope.get(REQUEST_ID_SCOPE_KEY)
    if isinstance(given, str) and given:
        return given
    header = headers.get(b"x-request-id", b"").decode("latin-1")
    return header if _OPAQUE_ID.match(header) else uuid4().hex


def _api_key(headers: dict[bytes, bytes]) -> str | None:
    """The key presented: ``Authorization: Bearer <key>``, else ``X-API-Key`` (as the HTTP
    API reads it: an ``Authorization`` header of another scheme presents no key)."""
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, secret = authorization.decode("latin-1").partition(" ")
        return (secret.strip() or None) if scheme.lower() == "bearer" else None
    return headers.get(b"x-api-key", b"").decode("latin-1").strip() or None


def _tagged(send: Send, request_id: str) -> Send:
    """``send`` adding ``X-Request-Id`` to the response (unless it has one)."""

    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if all(name.lower() != b"x-request-id" for name, _ in headers):
                headers.append((b"x-request-id", request_id.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return tagged


async def _problem(
    send: Send, request_id: str, status: int, slug: str, title: str, detail: str
) -> None:
    """A problem+json answer shaped as the HTTP API's (:mod:`ehrbridge.api.problems`)."""
    body = orjson.dumps(
        {
            "type": f"urn:ehrbridge:problem:{slug}" if slug else "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": f"urn:ehrbridge:request:{request_id}",
            "request_id": request_id,
        }
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="ehrbridge"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class McpHttpApp:
    """The MCP endpoint over streamable HTTP, behind API-key authentication (an ASGI app).

    It answers MCP at whatever path it is served or mounted on. The SDK's session manager needs
    a running task group: :meth:`start` runs it, called by the ASGI lifespan when this app is
    served on its own, and otherwise by the first request (a parent app does not pass its
    lifespan to a mounted app); :meth:`stop` ends it.
    """

    def __init__(self, service: AgentService, keys: ApiKeys) -> None:
        self.keys = keys
        self.server = mcp_server(service, _principal_in_scope, _request_id_in_scope)
        self._manager = StreamableHTTPSessionManager(
            app=self.server, json_response=True, stateless=True
        )
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None
        quiet_sdk_logging()

    async def start(self) -> None:
        """Start the SDK's session manager (once; later calls wait for the first)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mcp-session-manager")
        await self._ready.wait()
        if self._failure is not None:
            raise RuntimeError("the MCP session manager did not start") from self._failure

    async def stop(self) -> None:
        """Stop the session manager and wait for it."""
        if self._task is not None:
            self._stopping.set()
            await self._task

    async def _run(self) -> None:
        try:
            async with self._manager.run():
                self._ready.set()
                await self._stopping.wait()
        except Exception as exc:  # reported to whoever awaits start()
            self._failure = exc
        finally:
            self._ready.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers: dict[bytes, bytes] = dict(scope.get("headers", []))
        request_id = _request_id(scope, headers)
        send = _tagged(send, request_id)
        secret = _api_key(headers)
        try:
            principal = await self.keys.authenticate(secret) if secret else None
        except StorageError:
            detail = "the database is unavailable; retry later"
            await _problem(send, request_id, 503, "", "Service Unavailable", detail)
            return
        if principal is None:
            await _problem(
                send, request_id, 401, "unauthenticated", "Unauthenticated", UNAUTHENTICATED_DETAIL
            )
            return
        await self.start()
        scope = {**scope, PRINCIPAL_SCOPE_KEY: principal, REQUEST_ID_SCOPE_KEY: request_id}
        await self._manager.handle_request(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except RuntimeError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def streamable_http_app(service: AgentService, keys: ApiKeys) -> ASGIApp:
    """The MCP endpoint as an ASGI app: mount it (``/mcp``) or serve it on its own."""
    return McpHttpApp(service, keys)


# --- stdio -----------------------------------------------------------------------------------


async def stdio_mcp_server(service: AgentService, keys: ApiKeys, secret: str) -> Server[Any]:
    """The server :func:`run_stdio` serves, acting as the key ``secret``'s principal.

    Raises :class:`~ehrbridge.errors.Unauthenticated` if the key is not valid now; later, each
    call authenticates it again through the key cache (one hash per call), so a key revoked
    while the server runs stops working within the cache's lifetime.
    """
    if await keys.authenticate(secret) is None:
        raise Unauthenticated("the API key is missing, unknown or revoked")

    async def principal_of(ctx: ServerRequestContext[Any, Any]) -> Principal | None:
        return await keys.authenticate(secret)

    return mcp_server(service, principal_of)


async def run_stdio(service: AgentService, keys: ApiKeys, secret: str) -> None:
    """Serve the tools over stdin/stdout as the key ``secret``'s principal until stdin closes.

    Raises :class:`~ehrbridge.errors.Unauthenticated` before serving if the key is not valid.
    """
    server = await stdio_mcp_server(service, keys, secret)
    quiet_sdk_logging()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
