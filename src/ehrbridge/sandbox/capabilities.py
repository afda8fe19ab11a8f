"""The sandbox's CapabilityStatement (``GET [base]/metadata``), built from the tables the server
uses, so it cannot say more or less than the server does.

https://hl7.org/fhir/R4/capabilitystatement.html. Resource types from :data:`.params.TYPES`,
search parameters from :func:`.params.search_params`, ``_sort`` keys from
:func:`.search.sort_keys`, the parameters each interaction takes from :data:`.server.QUERY`
(imported lazily: the server imports this module), Bulk Data ``$export`` as the export module
serves it. A test checks that every advertised search parameter and sort key works and that an
unadvertised one is refused.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ehrbridge.sandbox import search
from ehrbridge.sandbox.params import FHIR_TYPES, TYPES, search_params

#: The interactions on every resource type (https://hl7.org/fhir/R4/valueset-type-restful-interaction.html).
TYPE_INTERACTIONS = (
    "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
    "search-type",
)  # fmt: skip
#: The interactions on the whole system.
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
#: The formats served and taken (XML is not).
FORMATS = ("json", "application/fhir+json")
PATCH_FORMATS = ("application/json-patch+json",)
_BULK = "http://hl7.org/fhir/uv/bulkdata"
#: ``_id`` and ``_lastUpdated``, which every type has.
BASE_PARAMS = (
    ("_id", "token", "the logical id; comma-separated ids are alternatives"),
    ("_lastUpdated", "date", "meta.lastUpdated, prefixes eq gt ge lt le sa eb"),
)


def _version() -> str:
    try:
        return version("ehrbridge")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _resource(resource_type: str) -> dict[str, Any]:
    params = [{"name": name, "type": kind, "documentation": doc} for name, kind, doc in BASE_PARAMS]
    for name, param in search_params(resource_type).items():
        entry = {"name": name, "type": FHIR_TYPES[param.kind]}
        if param.doc:
            entry["documentation"] = param.doc
        params.append(entry)
    sorts = ", ".join(search.sort_keys(resource_type))
    resource: dict[str, Any] = {
        "type": resource_type,
        "documentation": (
            f"_sort keys (each also descending with a leading -): {sorts}. Default: "
            "_lastUpdated then id, keyset-paged; any other sort is paged by offset."
        ),
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-match",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal"],
        "searchParam": params,
    }
    if resource_type == "Patient":
        resource["operation"] = [
            {"name": "export", "definition": f"{_BULK}/OperationDefinition/patient-export"}
        ]
    return resource


def statement(base: str) -> dict[str, Any]:
    """The CapabilityStatement of the sandbox served at ``base``."""
    from ehrbridge.sandbox.server import QUERY

    history = ", ".join(QUERY["history"])
    return {
        "resourceType": "CapabilityStatement",
        "id": "ehrbridge-sandbox",
        "name": "EhrbridgeSandbox",
        "title": "ehrbridge sandbox EHR",
        "status": "active",
        "experimental": True,
        "date": "2026-12-02",
        "publisher": "ehrbridge",
        "description": "A FHIR R4 test server over SQLite with fault injection (docs/sandbox.md).",
        "kind": "instance",
        "instantiates": [f"{_BULK}/CapabilityStatement/bulk-data"],
        "software": {"name": "ehrbridge sandbox", "version": _version()},
        "implementation": {"description": "ehrbridge sandbox EHR", "url": base or "/"},
        "fhirVersion": "4.0.1",
        "format": list(FORMATS),
        "patchFormat": list(PATCH_FORMATS),
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Unknown search parameters, modifiers and _sort keys are refused with 400 "
                    "(Prefer: handling=strict, the default); with Prefer: handling=lenient they "
                    "are ignored and named in an OperationOutcome entry of the searchset. "
                    f"Result parameters: {', '.join(sorted(search.RESULT_PARAMS))}. "
                    f"History (instance, type, system) takes {history}. Search also answers "
                    "POST [type]/_search with a form body (merged with the URL's parameters). "
                    "Conditional create takes If-None-Exist; query parameters on a create are "
                    "refused."
                ),
                "resource": [_resource(t) for t in TYPES],
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
                "operation": [
                    {"name": "export", "definition": f"{_BULK}/OperationDefinition/export"}
                ],
            }
        ],
    }
