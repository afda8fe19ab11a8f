"""Three scheduling APIs that know the same appointments, each shaped its own way.

``alpha``: an API key header, page numbers, ``data.items``, ``appointment_type`` codes, UTC times.
``beta``: OAuth2 client credentials, a cursor in the body, ``visit_category`` words, day-first
local times in America/New_York, the patient by phone.
``gamma``: a bearer token, the ``Link`` header (or, with ``?style=next_url``, a next URL in the
body), the bare list as the body, free-text descriptions, epoch times.

Alpha also serves the patients (``/api/v2/patients``) the appointments link to. A test changes
what a source serves through :class:`RestSources` (records, faults, tokens) and reads what was
asked of it (``requests``). The ``rest_sources`` fixture serves it on 127.0.0.1 with uvicorn in a
background thread; unit tests use the same app in-process through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

ALPHA_KEY = "alpha-key-123"
BETA_CLIENT, BETA_SECRET = "ehrbridge", "beta-secret-456"
GAMMA_TOKEN = "gamma-token-789"
NEW_YORK = ZoneInfo("America/New_York")

#: The patients, as canonical values (the world model's Patient fields).
PATIENTS = [
    {"mrn": "M100", "family": "Santos", "given": ["Ana", "M"], "phone": "+16175550101"},
    {"mrn": "M200", "family": "Okafor", "given": ["Chidi"], "phone": "+16175550102"},
]
#: The appointments, as canonical values; ``patient`` is an index into :data:`PATIENTS`.
APPOINTMENTS: list[dict[str, Any]] = [
    {"start": "2026-12-03T14:30:00Z", "end": "2026-12-03T15:00:00Z", "status": "booked",
     "appointment_type": "checkup", "patient": 0, "updated": "2026-11-19T10:00:00Z"},
    {"start": "2026-12-04T16:00:00Z", "end": "2026-12-04T16:20:00Z", "status": "cancelled",
     "appointment_type": "followup", "patient": 1, "updated": "2026-11-19T11:00:00Z"},
    {"start": "2026-12-05T13:15:00Z", "end": "2026-12-05T13:45:00Z", "status": "booked",
     "appointment_type": "walkin", "patient": 0, "updated": "2026-11-19T12:00:00Z"},
    {"start": "2026-12-07T15:00:00Z", "end": "2026-12-07T15:30:00Z", "status": "proposed",
     "appointment_type": "routine", "patient": 1, "updated": "2026-11-19T13:00:00Z"},
    {"start": "2026-12-08T19:45:00Z", "end": "2026-12-08T20:15:00Z", "status": "booked",
     "appointment_type": "checkup", "patient": 0, "updated": "2026-11-19T14:00:00Z"},
]  # fmt: skip

_ALPHA_TYPE = {"checkup": "CHK", "followup": "FU", "walkin": "WLK", "routine": "RTN"}
_ALPHA_STATE = {"booked": "booked", "cancelled": "cxl", "proposed": "tentative"}
_BETA_CATEGORY = {
    "checkup": "Wellness Visit",
    "followup": "Follow-Up",
    "walkin": "Walk In",
    "routine": "Standard",
}
_BETA_STATUS = {"booked": "Scheduled", "cancelled": "Canceled", "proposed": "Pending"}
_GAMMA_TEXT = {
    "checkup": "Annual physical exam",
    "followup": "Follow up: blood pressure review",
    "walkin": "Walk-in, sore throat",
    "routine": "Consultation",
}
_GAMMA_STATUS = {"booked": "active", "cancelled": "canceled", "proposed": "requested"}


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def alpha_record(i: int, appt: dict[str, Any]) -> dict[str, Any]:
    patient = PATIENTS[appt["patient"]]
    return {
        "appt_id": f"A-{1001 + i}",
        "etag": f'"{appt["updated"]}"',
        "start_time": appt["start"],
        "end_time": appt["end"],
        "state": _ALPHA_STATE[appt["status"]],
        "appointment_type": _ALPHA_TYPE[appt["appointment_type"]],
        "patient": {"mrn": patient["mrn"], "phone": "617-555-01" + patient["phone"][-2:]},
        "updated_at": appt["updated"],
    }


def beta_record(i: int, appt: dict[str, Any]) -> dict[str, Any]:
    patient = PATIENTS[appt["patient"]]

    def local(iso: str) -> str:
        return _when(iso).astimezone(NEW_YORK).strftime("%d/%m/%Y %H:%M")

    return {
        "visitId": 7001 + i,
        "when": {"start": local(appt["start"]), "end": local(appt["end"])},
        "status": _BETA_STATUS[appt["status"]],
        "visit_category": _BETA_CATEGORY[appt["appointment_type"]],
        "client": {"phone": "+1 (617) 555-01" + patient["phone"][-2:]},
        "modified": _when(appt["updated"]).astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M:%S"),
    }


def gamma_record(i: int, appt: dict[str, Any]) -> dict[str, Any]:
    patient = PATIENTS[appt["patient"]]
    return {
        "id": f"g{i + 1}",
        "starts": int(_when(appt["start"]).timestamp() * 1000),
        "ends": _when(appt["end"]).astimezone(NEW_YORK).isoformat(),
        "status": _GAMMA_STATUS[appt["status"]],
        "description": _GAMMA_TEXT[appt["appointment_type"]],
        "patient_phone": patient["phone"][2:],
        "updated": int(_when(appt["updated"]).timestamp()),
    }


def alpha_patient(patient: dict[str, Any]) -> dict[str, Any]:
    return {
        "mrn": patient["mrn"],
        "name": f"{patient['family']}, {' '.join(patient['given'])}",
        "dob": "03/12/1984",
        "phone": "(617) 555-01" + patient["phone"][-2:],
    }


@dataclass(kw_only=True)
class RestSources:
    """What the three sources serve, and what was asked of them."""

    alpha: list[dict[str, Any]] = field(default_factory=list)
    beta: list[dict[str, Any]] = field(default_factory=list)
    gamma: list[dict[str, Any]] = field(default_factory=list)
    patients: list[dict[str, Any]] = field(default_factory=list)
    #: per source, faults for its next data requests: ``503``, ``429``, ``html``, ``truncated``,
    #: ``not_list``, ``loop`` (a next link to the page itself), ``elsewhere`` (to another host)
    faults: dict[str, list[str]] = field(default_factory=dict)
    #: the beta access tokens still valid
    tokens: set[str] = field(default_factory=set)
    tokens_issued: int = 0
    #: (source, query parameters) of every data request that passed auth
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Every source serves the appointments again, with no faults."""
        self.alpha = [alpha_record(i, a) for i, a in enumerate(APPOINTMENTS)]
        self.beta = [beta_record(i, a) for i, a in enumerate(APPOINTMENTS)]
        self.gamma = [gamma_record(i, a) for i, a in enumerate(APPOINTMENTS)]
        self.patients = [alpha_patient(p) for p in PATIENTS]
        self.faults, self.requests = {}, []
        self.tokens, self.tokens_issued = set(), 0

    def asked(self, source: str) -> list[dict[str, str]]:
        """The query parameters of each data request to ``source``, in order."""
        return [params for name, params in self.requests if name == source]

    def _fault(self, source: str) -> str | None:
        with self.lock:
            queue = self.faults.get(source) or []
            return queue.pop(0) if queue else None

    def _faulty(self, fault: str | None) -> Response | None:
        if fault in ("503", "429", "500"):
            return PlainTextResponse("busy", status_code=int(fault), headers={"Retry-After": "0"})
        if fault == "html":
            return Response("<html><body>Maintenance</body></html>", media_type="text/html")
        if fault == "truncated":
            return Response('{"data": {"items": [{"appt', media_type="application/json")
        return None

    # --- alpha: API key, page numbers -------------------------------------------------------

    def _alpha_page(self, request: Request, rows: list[dict[str, Any]], source: str) -> Response:
        if request.headers.get("x-api-key") != ALPHA_KEY:
            return JSONResponse({"error": "bad key"}, status_code=401)
        params = dict(request.query_params)
        self.requests.append((source, params))
        fault = self._fault(source)
        if (bad := self._faulty(fault)) is not None:
            return bad
        if fault == "not_list":
            return JSONResponse({"data": {"items": {"appt_id": "A-1"}}})
        since = params.get("updated_since")
        if since:
            rows = [r for r in rows if _when(r.get("updated_at", since)) >= _when(since)]
        page, size = int(params.get("page", "1")), int(params.get("per_page", "2"))
        chunk = rows[(page - 1) * size : page * size]
        return JSONResponse({"data": {"items": chunk}, "meta": {"page": page}})

    async def alpha_appointments(self, request: Request) -> Response:
        return self._alpha_page(request, self.alpha, "alpha")

    async def alpha_patients(self, request: Request) -> Response:
        return self._alpha_page(request, self.patients, "alpha-patients")

    # --- beta: OAuth2 client credentials, cursor --------------------------------------------

    async def token(self, request: Request) -> Response:
        expected = base64.b64encode(f"{BETA_CLIENT}:{BETA_SECRET}".encode()).decode()
        form = dict(parse_qsl((await request.body()).decode()))
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        with self.lock:
            self.tokens_issued += 1
            token = f"beta-token-{self.tokens_issued}"
            self.tokens.add(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    async def beta_visits(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        params = dict(request.query_params)
        self.requests.append(("beta", params))
        if (bad := self._faulty(self._fault("beta"))) is not None:
            return bad
        rows = self.beta
        if since := params.get("modified_after"):
            cut = _when(since)
            rows = [
                r
                for r in rows
                if datetime.fromisoformat(r["modified"]).replace(tzinfo=NEW_YORK) >= cut
            ]
        start, size = int(params.get("cursor", "0") or 0), int(params.get("limit", "2"))
        chunk = rows[start : start + size]
        more = start + size < len(rows)
        return JSONResponse(
            {"results": chunk, "paging": {"next": str(start + size) if more else None}}
        )

    # --- gamma: bearer, Link header or next URL ---------------------------------------------

    async def gamma_feed(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {GAMMA_TOKEN}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        params = dict(request.query_params)
        self.requests.append(("gamma", params))
        fault = self._fault("gamma")
        if (bad := self._faulty(fault)) is not None:
            return bad
        rows = self.gamma
        if since := params.get("since"):
            rows = [r for r in rows if r.get("updated", 0) >= int(since)]
        offset = int(params.get("from", "0"))
        chunk = rows[offset : offset + 2]
        base = str(request.url.remove_query_params(["from"]))
        sep = "&" if "?" in base else "?"
        nxt = f"{base}{sep}from={offset + 2}" if offset + 2 < len(rows) else None
        if fault == "loop":
            nxt = str(request.url)
        elif fault == "elsewhere":
            nxt = "http://evil.example.com/feed/appointments?from=2"
        if params.get("style") == "next_url":
            return JSONResponse({"items": chunk, "next": nxt})
        headers = {"Link": f'<{nxt}>; rel="next"'} if nxt else {}
        return JSONResponse(chunk, headers=headers)

    def app(self) -> Starlette:
        """The three sources (and alpha's patients, beta's token endpoint) as one app."""
        return Starlette(
            routes=[
                Route("/alpha/api/v2/appointments", self.alpha_appointments),
                Route("/alpha/api/v2/patients", self.alpha_patients),
                Route("/beta/oauth/token", self.token, methods=["POST"]),
                Route("/beta/v1/visits", self.beta_visits),
                Route("/gamma/feed/appointments", self.gamma_feed),
            ]
        )


@dataclass(frozen=True, kw_only=True)
class RestServer:
    """The sources on a real socket."""

    #: ``http://127.0.0.1:PORT``
    origin: str
    sources: RestSources


@pytest.fixture(scope="session")
def rest_server() -> Iterator[RestServer]:
    """The three sources, served on 127.0.0.1 for the whole session; reset them per test."""
    sources = RestSources()
    sources.reset()
    config = uvicorn.Config(sources.app(), host="127.0.0.1", port=0, log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="rest-sources", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the REST test sources did not start")
        time.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield RestServer(origin=f"http://{host}:{port}", sources=sources)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def rest_sources(rest_server: RestServer) -> RestServer:
    """The running sources, reset: every appointment served, no faults, no tokens."""
    rest_server.sources.reset()
    return rest_server


#: The runner config of the three sources; ``{origin}`` and ``{database}`` to fill in, and the
#: environment variables ALPHA_KEY, BETA_SECRET and GAMMA_TOKEN to set.
CONFIG = """\
workspace: clinic
database: {database}
data_sources:
  - id: alpha
    kind: rest
    base_url: {origin}/alpha/api/v2
    auth: {{kind: api_key, header: X-Api-Key, key: {{env: ALPHA_KEY}}}}
    phone_region: US
    resources:
      - type: Patient
        every: 1m
        path: /patients
        records: data.items
        id: mrn
        pagination: {{style: page, param: page, size_param: per_page, size: 2}}
        fields:
          mrn: {{path: mrn, required: true}}
          name.family: {{path: name, transform: {{name: family}}}}
          name.given: {{path: name, transform: {{name: given}}}}
          birth_date: {{path: dob, transform: date}}
          phone.mobile: {{path: phone, transform: phone}}
      - type: Appointment
        every: 1m
        path: /appointments
        records: data.items
        id: appt_id
        version: etag
        pagination: {{style: page, param: page, size_param: per_page, size: 2}}
        incremental: {{param: updated_since, field: updated_at, format: iso}}
        fields:
          start: {{path: start_time, transform: datetime, required: true}}
          end: {{path: end_time, transform: datetime}}
          status:
            path: state
            transform: {{map: {{booked: booked, cxl: cancelled}}, default: proposed}}
          appointment_type:
            path: appointment_type
            transform: {{map: {{CHK: checkup, FU: followup, WLK: walkin, RTN: routine}}}}
          patient: {{path: patient.mrn, link: {{type: Patient, by: mrn}}}}
  - id: beta
    kind: rest
    base_url: {origin}/beta
    auth:
      kind: oauth2
      token_url: {origin}/beta/oauth/token
      client_id: ehrbridge
      client_secret: {{env: BETA_SECRET}}
      scope: visits.read
    timezone: America/New_York
    dayfirst: true
    resources:
      - type: Appointment
        every: 1m
        path: /v1/visits
        records: results
        id: visitId
        pagination: {{style: cursor, next: paging.next, param: cursor, size_param: limit, size: 2}}
        incremental: {{param: modified_after, field: modified}}
        fields:
          start: {{path: when.start, transform: datetime, required: true}}
          end: {{path: when.end, transform: datetime}}
          status:
            path: status
            transform:
              - lower
              - {{map: {{scheduled: booked, canceled: cancelled, pending: proposed}}}}
          appointment_type:
            path: visit_category
            transform:
              map: {{wellness visit: checkup, follow-up: followup, walk in: walkin}}
              default: routine
          patient: {{path: client.phone, link: {{type: Patient, by: phone}}}}
  - id: gamma
    kind: rest
    base_url: {origin}/gamma
    auth: {{kind: bearer, token: {{env: GAMMA_TOKEN}}}}
    resources:
      - type: Appointment
        every: 1m
        path: /feed/appointments
        pagination: {{style: link}}
        incremental: {{param: since, field: updated, format: epoch}}
        fields:
          start: {{path: starts, transform: datetime, required: true}}
          end: {{path: ends, transform: datetime}}
          status:
            path: status
            transform: {{map: {{active: booked, canceled: cancelled}}, default: proposed}}
          appointment_type:
            path: description
            transform:
              keywords:
                checkup: [physical, wellness, annual]
                followup: ["follow[- ]?up", review]
                walkin: ["walk[- ]?in"]
              default: routine
          description: description
          patient: {{path: patient_phone, link: {{type: Patient, by: phone}}}}
"""
#: The secrets :data:`CONFIG` refers to.
SECRETS = {"ALPHA_KEY": ALPHA_KEY, "BETA_SECRET": BETA_SECRET, "GAMMA_TOKEN": GAMMA_TOKEN}
