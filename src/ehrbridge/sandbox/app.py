"""The sandbox as an ASGI app (Starlette): routes adapt HTTP to the core, faults wrap them.

::

    app = SandboxApp(db="sandbox.db")           # seeded with the sample clinic
    app.faults.set(errors=3)                     # the next 3 FHIR requests get 503
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app)) as http: ...

Under ``/fhir/R4`` the FHIR API (``/metadata`` its CapabilityStatement; ``POST [type]/_search``
with a form body), with Bulk Data ``$export`` (:mod:`.export`); outside it
``POST /$reset`` (empty the server, clear the faults and exports, seed again if seeding is on)
and ``/$faults`` (``GET`` the plan and counts, ``POST`` a new plan as JSON, ``DELETE`` to clear).
Dropped connections need a real socket (uvicorn): the app starts a response and closes it
unfinished, which an in-process transport cannot turn into a reset.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ehrbridge.sample import sample_bundles
from ehrbridge.sandbox.export import FILE_SIZE, NDJSON, ExportJobs
from ehrbridge.sandbox.faults import PASS, Decision, FaultPlan, Faults
from ehrbridge.sandbox.messages import FHIR_JSON, FhirRequest, FhirResponse
from ehrbridge.sandbox.outcome import OperationFailed, operation_outcome
from ehrbridge.sandbox.server import FhirServer
from ehrbridge.sandbox.store import ResourceStore

BASE_PATH = "/fhir/R4"
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_FORM = "application/x-www-form-urlencoded"
_FAULT_KEY = "ehrbridge.sandbox.fault"


def _respond(response: FhirResponse) -> Response:
    content = b"" if response.body is None else orjson.dumps(response.body)
    return Response(content, response.status, response.headers, media_type=FHIR_JSON)


def _failure(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    outcome = OperationFailed(status, text).outcome
    return _respond(FhirResponse(status=status, body=outcome, headers=headers or {}))


#: how long ago the sample clinic's records were last written, as the seeded sandbox serves them
SEED_AGE = timedelta(days=1)


class _Dropped(Response):
    """No answer: headers promising one byte, then nothing, and the server closes the
    connection (a reset, as the client sees it)."""

    def __init__(self) -> None:
        super().__init__(b"", 200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", FHIR_JSON.encode()), (b"content-length", b"1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})


class SandboxApp:
    """The sandbox EHR: a FHIR R4 server over SQLite with run-time fault injection."""

    def __init__(
        self,
        db: str | Path = ":memory:",
        *,
        seed: bool = True,
        store: ResourceStore | None = None,
        faults: Faults | None = None,
        export_file_size: int = FILE_SIZE,
    ) -> None:
        #: the resources
        self.store = store or ResourceStore(db)
        #: the FHIR interactions
        self.server = FhirServer(self.store)
        #: the fault plan; change it at any time (``app.faults.set(throttle=2)``)
        self.faults = faults or Faults()
        #: Bulk Data export jobs and their files (``exports.file_size``: resources per file)
        self.exports = ExportJobs(self.store, file_size=export_file_size)
        #: whether :meth:`reset` seeds the sample clinic again
        self.seeded = seed
        if seed and self.store.current("Patient", "pat-1001") is None:
            self.seed()
        self._router = Starlette(
            routes=[
                Route("/$reset", self._reset, methods=["POST"]),
                Route("/$faults", self._faults, methods=["GET", "POST", "DELETE"]),
                Route(BASE_PATH + "/$export", self._export, methods=["GET"]),
                Route(BASE_PATH + "/Patient/$export", self._export, methods=["GET"]),
                Route(
                    BASE_PATH + "/$export-poll/{job}", self._export_poll, methods=["GET", "DELETE"]
                ),
                Route(BASE_PATH + "/$export-file/{job}/{name}", self._export_file, methods=["GET"]),
                Route(BASE_PATH, self._fhir, methods=_METHODS),
                Route(BASE_PATH + "/{path:path}", self._fhir, methods=_METHODS),
            ]
        )

    def seed(self) -> list[dict[str, Any]]:
        """Load the sample clinic, each Bundle as the transaction it is, written as of
        :data:`SEED_AGE` ago (a clinic's records predate the call that a demo takes: a fact heard
        now is news, not a rival change made at the same moment); returns the responses."""
        answers = []
        with self.store.writing_as_of(datetime.now(UTC) - SEED_AGE):
            for path in sample_bundles():
                bundle = orjson.loads(path.read_bytes())
                response = self.server.handle(FhirRequest(method="POST", path="", body=bundle))
                if response.status != 200 or response.body is None:
                    raise RuntimeError(
                        f"the sample {path.name} did not load: HTTP {response.status}"
                    )
                answers.append(response.body)
        return answers

    def reset(self) -> None:
        """Forget every resource, fault and export; seed again if the app seeds."""
        self.exports.clear()
        self.store.clear()
        self.faults.clear()
        if self.seeded:
            self.seed()

    def close(self) -> None:
        """Stop the exports, remove their files and close the database."""
        self.exports.close()
        self.store.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == BASE_PATH or path.startswith(BASE_PATH + "/")):
            await self._router(scope, receive, send)
            return
        segments = [s for s in path[len(BASE_PATH) :].split("/") if s]
        # A read (instance read or search) may be served stale; operations ($export) may not.
        read = (
            scope["method"] == "GET"
            and len(segments) in (1, 2)
            and not any(s.startswith("$") for s in segments)
        )
        if not self.faults.enter():
            await _failure(503, "over capacity (injected fault)")(scope, receive, send)
            return
        try:
            await self._fhir_faults(scope, receive, send, read=read)
        finally:
            self.faults.leave()

    async def _fhir_faults(self, scope: Scope, receive: Receive, send: Send, *, read: bool) -> None:
        decision = self.faults.decide(scope["method"], read=read)
        if decision.latency:
            await asyncio.sleep(decision.latency)
        if decision.drop_connection:
            await _Dropped()(scope, receive, send)
            return
        if decision.status is not None:
            extra = (
                {} if decision.retry_after is None else {"Retry-After": str(decision.retry_after)}
            )
            response = _failure(decision.status, "injected fault", extra)
            await response(scope, receive, send)
            return
        scope[_FAULT_KEY] = decision
        await self._router(scope, receive, send)

    async def _fhir(self, request: Request) -> Response:
        decision: Decision = request.scope.get(_FAULT_KEY, PASS)
        raw = await request.body()
        body = None
        query = list(request.query_params.multi_items())
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        path = request.path_params.get("path", "")
        if request.method == "POST" and path.rstrip("/").endswith("/_search"):
            # https://hl7.org/fhir/R4/http.html#search: the form's parameters join the URL's.
            if raw and content_type != _FORM:
                return _failure(415, f"POST [type]/_search needs Content-Type: {_FORM}")
            try:
                query += parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw))
            except (UnicodeDecodeError, ValueError):
                return _failure(400, "the form body is not application/x-www-form-urlencoded")
            raw = b""
        if raw:
            if request.method == "PATCH":
                if content_type != "application/json-patch+json":
                    return _failure(415, "PATCH needs Content-Type: application/json-patch+json")
            elif content_type not in _JSON_TYPES:
                return _failure(415, "the body must be application/fhir+json")
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return _failure(400, "the body is not valid JSON")
        headers = {
            name: request.headers[name]
            for name in ("if-match", "if-none-exist", "if-none-match", "prefer", "content-type")
            if name in request.headers
        }
        base = str(request.base_url).rstrip("/") + BASE_PATH
        fhir_request = FhirRequest(
            method=request.method,
            path=path,
            query=tuple(query),
            headers=headers,
            body=body,
            base=base,
        )
        response = self.server.handle(fhir_request, stale=decision.stale, drop=decision.drop_write)
        if decision.reset_after_write:
            return _Dropped()  # stored; the answer is lost
        return _respond(response)

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + BASE_PATH

    async def _export(self, request: Request) -> Response:
        fhir_request = FhirRequest(
            method="GET",
            path=request.url.path.removeprefix(BASE_PATH + "/"),
            query=tuple(request.query_params.multi_items()),
            headers={k: request.headers[k] for k in ("prefer", "accept") if k in request.headers},
            base=self._base(request),
        )
        patient_level = request.url.path.endswith("/Patient/$export")
        try:
            return _respond(self.exports.kick_off(fhir_request, patient_level=patient_level))
        except OperationFailed as failed:
            return _respond(FhirResponse(status=failed.status, body=failed.outcome))

    async def _export_poll(self, request: Request) -> Response:
        job = request.path_params["job"]
        try:
            if request.method == "DELETE":
                return _respond(self.exports.cancel(job))
            return _respond(self.exports.status(job))
        except OperationFailed as failed:
            return _respond(FhirResponse(status=failed.status, body=failed.outcome))

    async def _export_file(self, request: Request) -> Response:
        try:
            path = self.exports.file(request.path_params["job"], request.path_params["name"])
        except OperationFailed as failed:
            return _respond(FhirResponse(status=failed.status, body=failed.outcome))
        return FileResponse(path, media_type=NDJSON)

    async def _reset(self, request: Request) -> Response:
        self.reset()
        ok = operation_outcome("reset", severity="information", code="informational")
        return _respond(FhirResponse(status=200, body=ok))

    async def _faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.set(FaultPlan.from_json(orjson.loads(await request.body() or b"{}")))
            except (ValueError, orjson.JSONDecodeError) as exc:
                return _failure(400, str(exc))
        elif request.method == "DELETE":
            self.faults.clear()
        return Response(orjson.dumps(self.faults.snapshot()), 200, media_type="application/json")
