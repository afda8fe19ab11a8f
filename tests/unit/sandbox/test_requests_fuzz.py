"""Property: whatever a client sends the sandbox core (valid interactions mutated: paths, query
parameters, sort keys, Prefer, If-* headers, bodies), it answers without a 5xx or a traceback;
a refusal is an OperationOutcome that never quotes a submitted value; a refused request or a read
writes nothing; and no query parameter is silently ignored: an answered request used each one
(a search's ``self`` link, a conditional write's criteria, an interaction's own parameters) or,
when lenient, names it as ignored."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.messages import FhirRequest
from ehrbridge.sandbox.params import search_params

BASE = "http://sandbox.test/fhir/R4"
#: Planted in every submitted value: it must never come back in an error.
MARKER = "Zq7Marker"
IDS = ["p1", "p2", "p3"]

_types = st.sampled_from(["Patient", "Observation", "Slot", "Foo", "patient", "Bundle"])
_ids = st.sampled_from([*IDS, "nope", "a/b", "x" * 65, "_search", "$x"])
_paths = st.one_of(
    st.tuples(_types).map(list),
    st.tuples(_types, _ids).map(list),
    st.tuples(_types, _ids, st.just("_history")).map(list),
    st.tuples(_types, _ids, st.just("_history"), st.sampled_from(["1", "2", "0", "x"])).map(list),
    st.tuples(_types, st.sampled_from(["_search", "_history", "metadata"])).map(list),
    st.sampled_from([[], ["metadata"], ["_history"], ["_history", "x"], ["metadata", "x"]]),
)
_names = st.sampled_from(
    [
        *search_params("Patient"), "_id", "_lastUpdated", "_count", "_sort", "_cursor", "_total",
        "_format", "_since", "_at", "mode", "family:exact", "family:contains", "gender:not",
        "birthdate:missing", "shoe-size", "_elements", "identifier:of-type", "",
    ]
)  # fmt: skip
_sort_values = st.lists(
    st.sampled_from(["family", "-family", "birthdate", "-_lastUpdated", "_id", "shoe", "-", ""]),
    max_size=3,
).map(",".join)
_plain_values = st.sampled_from(
    ["s|1", "|1", "s|", "ge2026", "lt1990-01-01", "2026-13-45", "eq", "@5", "@x", "a|b",
     "5", "0", "-1", "99999999999999999999", "json", "xml", "full", "Patient/p1", ""]
)  # fmt: skip
_values = st.one_of(_plain_values, _sort_values, st.text(max_size=12).map(lambda t: f"{MARKER}{t}"))
# A _sort value is a list of parameter names, which a refusal names as it names an unknown
# parameter; every other value may be patient data and is never repeated back (the MARKER).
_query = st.lists(
    st.one_of(
        st.tuples(_names.filter(lambda n: n != "_sort"), _values),
        st.tuples(st.just("_sort"), st.one_of(_plain_values, _sort_values)),
    ),
    max_size=4,
)


def _patient(id: str | None, family: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "identifier": [{"system": "s", "value": "1"}],
    }
    if id is not None:
        body["id"] = id
    return body


_mutations = st.sampled_from(
    [
        ("gender", f"{MARKER}-gender"),
        ("birthDate", f"{MARKER}-date"),
        ("resourceType", "Observation"),
        ("resourceType", 5),
        ("id", f"{MARKER}/bad"),
        ("meta", "not an object"),
        ("name", None),
    ]
)
_resources = st.builds(
    lambda id, mutations: {**_patient(id, f"{MARKER}family"), **dict(mutations)},
    st.sampled_from([None, *IDS]),
    st.lists(_mutations, max_size=2),
)
_patch = st.lists(
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["add", "replace", "remove", "test", "move", "bogus"]),
            "path": st.sampled_from(["/active", "/name/0/family", "/id", "", "nope", "/a/9"]),
        },
        optional={"value": st.just(f"{MARKER}v"), "from": st.sampled_from(["/name", "/x"])},
    ),
    max_size=3,
)
_entries = st.lists(
    st.fixed_dictionaries(
        {
            "request": st.fixed_dictionaries(
                {
                    "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
                    "url": st.sampled_from(
                        ["Patient", "Patient/p1", "Patient?identifier=s|1", "Foo", "Patient?x=1",
                         "metadata", "Patient/_history", f"Patient?family={MARKER}"]
                    ),
                }
            )
        },
        optional={"resource": _resources, "fullUrl": st.just("urn:uuid:1")},
    ),
    max_size=3,
)  # fmt: skip
_bundles = st.builds(
    lambda kind, entries: {"resourceType": "Bundle", "type": kind, "entry": entries},
    st.sampled_from(["transaction", "batch", "collection"]),
    _entries,
)
_bodies = st.one_of(st.none(), _resources, _patch, _bundles, st.just([1, 2]), st.just("x"))
_headers = st.fixed_dictionaries(
    {},
    optional={
        "prefer": st.sampled_from(
            ["handling=lenient", "handling=strict", "return=minimal", "handling=lenient;x"]
        ),
        "if-match": st.sampled_from(['W/"1"', '"2"', f"{MARKER}", "*"]),
        "if-none-match": st.sampled_from(['W/"1"', "1", "*", f"{MARKER}", ""]),
        "if-none-exist": st.sampled_from(
            ["identifier=s|1", f"family={MARKER}", "_count=1", "shoe=1", ""]
        ),
        "content-type": st.sampled_from(["application/json-patch+json", "text/plain"]),
    },
)


def _written(app: SandboxApp) -> int:
    return app.store.count_changes()


#: The query parameters an answered request may carry, by what answered it.
_TAKEN = {
    "history": {"_since", "_count", "_cursor", "_format", "_pretty"},
    "CapabilityStatement": {"mode", "_format", "_pretty"},
    "other": {"_format", "_pretty"},
}


def _accounted(
    method: str, path: list[str], query: list[tuple[str, str]], body: dict[str, Any] | None
) -> None:
    """Every query parameter of an answered request was used, or named as ignored."""
    names = {n for n, _ in query}
    kind = (body or {}).get("type") or (body or {}).get("resourceType")
    if kind == "searchset":
        assert body is not None
        self_link = next(link["url"] for link in body["link"] if link["relation"] == "self")
        used = {n for n, _ in parse_qsl(urlsplit(self_link).query, keep_blank_values=True)}
        ignored = " ".join(
            e["resource"]["issue"][0]["details"]["text"]
            for e in body.get("entry", [])
            if e["search"]["mode"] == "outcome"
        )
        for name, value in query:
            accounted = name in used or name == "_cursor" or f" {name}" in ignored
            if name == "_sort":
                keys = [k.removeprefix("-") for k in value.split(",") if k.removeprefix("-")]
                accounted = accounted or all(f"_sort={k}" in ignored for k in keys)
            assert accounted, f"{name} was neither used nor reported as ignored"
    elif method in ("PUT", "PATCH", "DELETE") and len(path) == 1:
        assert names, "a conditional write without criteria"
    else:
        taken = _TAKEN.get(kind or "", _TAKEN["other"])
        assert names <= taken, f"{sorted(names - taken)} ignored"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=_paths,
    query=_query,
    headers=_headers,
    body=_bodies,
)
def test_any_request_is_answered_cleanly(
    method: str,
    path: list[str],
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: Any,
) -> None:
    app = SandboxApp(seed=False)
    try:
        for id in IDS:
            identifier = [{"system": "s", "value": id}]
            app.store.put("Patient", id, {**_patient(id, "Okafor"), "identifier": identifier})
        before = _written(app)
        request = FhirRequest(
            method=method,
            path="/".join(path),
            query=tuple(query),
            headers=headers,
            body=body,
            base=BASE,
        )
        response = app.server.handle(request)
        assert 200 <= response.status < 500, (response.status, response.body)
        if response.status >= 400:
            assert response.body is not None
            assert response.body["resourceType"] == "OperationOutcome"
            issues = response.body["issue"]
            assert issues and all(i["severity"] == "error" for i in issues)
            assert all(i.get("details", {}).get("text") for i in issues)
            assert MARKER not in orjson.dumps(response.body).decode()
            assert _written(app) == before, "a refused request wrote"
        if method == "GET":
            assert _written(app) == before, "a read wrote"
        if response.status == 304:
            assert response.body is None
        if response.status < 400:
            _accounted(method, path, query, response.body)
        orjson.dumps(response.body)  # the app can always serialise it
    finally:
        app.close()
