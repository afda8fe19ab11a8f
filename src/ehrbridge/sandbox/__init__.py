"""The sandbox EHR: a FHIR R4 server persisted in SQLite, with fault injection (docs/design.md §7).

The demo and the connector's fault tests run against it, in-process or as ``ehrbridge sandbox``.

::

    store.py        resource versions in SQLite (WAL): read, vread, history, write, delete
    search.py       search parameters, matching, keyset paging sorted by _lastUpdated then id
    validation.py   the structural checks a real server makes (required elements, codes, dates)
    patch.py        JSON Patch (RFC 6902)
    outcome.py      OperationFailed -> OperationOutcome, the one error of the core
    server.py       the FHIR interactions, framework-free: FhirRequest -> FhirResponse
    bundles.py      batch and transaction (atomic, urn:uuid references resolved)
    faults.py       the fault plan and its deterministic counters
    export.py       Bulk Data $export: kick-off, status polling, NDJSON files, a consistent snapshot
    capabilities.py the CapabilityStatement, built from the tables above
    app.py          the ASGI app (Starlette): routes adapt requests, faults wrap them

The FHIR base is ``/fhir/R4``; outside it, ``POST /$reset`` empties the server (and re-seeds it
when seeding is on) and ``GET/POST/DELETE /$faults`` reads, sets and clears the fault plan.

Differences from a full server, on purpose: unknown search parameters and modifiers are refused
with 400 and an OperationOutcome (a silent "match nothing" would hide connector bugs); validation
covers the elements the connector writes, not whole profiles; stale reads serve instance reads
and searches one version behind (a lagging replica). Not served: ``_include``, ``_revinclude``,
``_summary``, ``_elements``, XML (each refused with an OperationOutcome). What is served, exactly:
``GET [base]/metadata`` and docs/sandbox.md.
"""
