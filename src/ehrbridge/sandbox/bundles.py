"""Batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is one savepoint: the first failing entry rolls every entry back and its status and
OperationOutcome become the response. Before anything runs, each POST entry is given its id and
each ``fullUrl`` (``urn:uuid:...`` or absolute) is mapped to ``Type/id``, so references between
entries resolve; entries then run in the spec's order (DELETE, POST, PUT/PATCH, GET) and answer
in the Bundle's order. A batch runs each entry on its own, each in its own savepoint.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit
from uuid import uuid4

from ehrbridge.sandbox.messages import FhirRequest, FhirResponse
from ehrbridge.sandbox.outcome import OperationFailed, status_line

if TYPE_CHECKING:
    from ehrbridge.sandbox.server import FhirServer

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def _entry_request(entry: Any, index: int, base: str) -> FhirRequest:
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise OperationFailed(
            400, f"entry {index} has no request", expression=(f"Bundle.entry[{index}]",)
        )
    spec = entry["request"]
    method, url = spec.get("method"), spec.get("url")
    if method not in _ORDER or not isinstance(url, str):
        raise OperationFailed(400, f"entry {index} needs a request method and url")
    parts = urlsplit(url)
    path = parts.path
    if base and path.startswith(urlsplit(base).path):
        path = path[len(urlsplit(base).path) :]
    headers = {}
    for field, header in (
        ("ifMatch", "if-match"),
        ("ifNoneExist", "if-none-exist"),
        ("ifNoneMatch", "if-none-match"),
    ):
        if isinstance(spec.get(field), str):
            headers[header] = spec[field]
    body = entry.get("resource")
    if method == "PATCH" and isinstance(body, dict) and body.get("resourceType") == "Binary":
        raise OperationFailed(400, "PATCH entries with a Binary body are not supported")
    return FhirRequest(
        method=method,
        path=path.strip("/"),
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        headers={"prefer": "return=representation", **headers},
        body=body,
        base=base,
    )


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    """``node`` with every reference to a mapped ``fullUrl`` pointing at ``Type/id``."""
    if isinstance(node, dict):
        out = {k: _rewrite(v, ids) for k, v in node.items()}
        reference = out.get("reference")
        if isinstance(reference, str) and reference in ids:
            out["reference"] = ids[reference]
        return out
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


def _entry_response(response: FhirResponse) -> dict[str, Any]:
    result: dict[str, Any] = {"status": status_line(response.status)}
    location = response.headers.get("Location") or response.headers.get("Content-Location")
    if location:
        result["location"] = location
    if "ETag" in response.headers:
        result["etag"] = response.headers["ETag"]
    body = response.body
    if body is not None and isinstance(body.get("meta"), dict) and "lastUpdated" in body["meta"]:
        result["lastModified"] = body["meta"]["lastUpdated"]
    entry: dict[str, Any] = {}
    if body is not None and body.get("resourceType") == "OperationOutcome":
        result["outcome"] = body
    elif body is not None:
        entry["resource"] = body
    entry["response"] = result
    return entry


def process(server: FhirServer, request: FhirRequest) -> FhirResponse:
    """Run a batch or transaction Bundle; returns its ``-response`` Bundle."""
    bundle = request.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise OperationFailed(400, "POST to the base needs a Bundle")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise OperationFailed(400, "the Bundle must be of type batch or transaction")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise OperationFailed(400, "Bundle.entry must be a list")
    if kind == "batch":
        return _bundle(
            "batch-response",
            [_batch_entry(server, e, i, request.base) for i, e in enumerate(entries)],
        )
    return _transaction(server, entries, request.base)


def _batch_entry(server: FhirServer, entry: Any, index: int, base: str) -> dict[str, Any]:
    try:
        with server.store.atomic():
            return _entry_response(server.dispatch(_entry_request(entry, index, base)))
    except OperationFailed as failed:
        return _entry_response(FhirResponse(status=failed.status, body=failed.outcome))


def _transaction(server: FhirServer, entries: list[Any], base: str) -> FhirResponse:
    requests = [_entry_request(entry, i, base) for i, entry in enumerate(entries)]
    ids: dict[str, str] = {}
    assigned: dict[int, str] = {}
    for i, (entry, req) in enumerate(zip(entries, requests, strict=True)):
        full_url = entry.get("fullUrl")
        segments = req.path.split("/")
        if req.method == "POST" and len(segments) == 1:
            assigned[i] = str(uuid4())
            target = f"{segments[0]}/{assigned[i]}"
            criteria = req.headers.get("if-none-exist")
            if criteria:
                found = server.find(segments[0], criteria)
                if len(found) == 1:
                    target = f"{segments[0]}/{found[0].id}"
        elif req.method == "PUT" and len(segments) == 2:
            target = req.path
        elif req.method == "PUT" and len(segments) == 1 and isinstance(req.body, dict):
            # A conditional update: its fullUrl is the match, or the id it will create.
            found = server.find(segments[0], req.query) if req.query else []
            given = req.body.get("id")
            if len(found) == 1:
                target = f"{segments[0]}/{found[0].id}"
            elif not found and given is None:
                given = str(uuid4())
                requests[i] = replace(req, body={**req.body, "id": given})
                target = f"{segments[0]}/{given}"
            elif not found and isinstance(given, str):
                target = f"{segments[0]}/{given}"
            else:
                continue
        else:
            continue
        if isinstance(full_url, str) and full_url:
            ids[full_url] = target
    results: list[dict[str, Any] | None] = [None] * len(entries)
    order = sorted(range(len(entries)), key=lambda i: _ORDER[requests[i].method])
    with server.store.atomic():
        for i in order:
            req = requests[i]
            if ids and req.body is not None:
                req = replace(req, body=_rewrite(req.body, ids))
            try:
                if i in assigned:
                    response = server.create_entry(req, assigned[i])
                else:
                    response = server.dispatch(req)
            except OperationFailed as failed:
                failed.outcome["issue"][0].setdefault("expression", [f"Bundle.entry[{i}]"])
                raise
            results[i] = _entry_response(response)
    return _bundle("transaction-response", [r for r in results if r is not None])


def _bundle(kind: str, entries: list[dict[str, Any]]) -> FhirResponse:
    body = {"resourceType": "Bundle", "type": kind, "entry": entries}
    return FhirResponse(status=200, body=body)
