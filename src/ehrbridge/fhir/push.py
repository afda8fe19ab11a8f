"""Pushing FHIR files to a FHIR server, as transactions or batches in chunks (docs/design.md §6).

A transaction Bundle is sent whole, as it is: all or nothing at the server. Every other unit
(batch, collection and searchset Bundles, NDJSON) is sent in Bundles of ``chunk`` entries, as
``batch`` (each entry on its own, the default) or ``transaction`` (each chunk all or nothing).
Entries that carry no request of their own become ``PUT Type/id`` (an update that creates the
resource with its own id, so pushing the same files twice leaves one copy of each) or, without an
id, ``POST Type``. References to ``urn:uuid`` full URLs of entries that have ids are rewritten to
``Type/id``, so they hold across chunks.

Writes are never retried: a chunk that fails counts all its entries as failed, with the server's
reason, and the push goes on with the next chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from ehrbridge.errors import FhirError, InvalidInput
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.reader import CHUNK, Entry, Unit, expand, read_units
from ehrbridge.fhir.report import EntryError, ImportReport, Status

Mode = Literal["batch", "transaction"]
#: Entries per Bundle sent for non-transaction input.
PUSH_CHUNK = 100


class Pusher:
    """Sends FHIR files to one server through a :class:`FhirClient`."""

    def __init__(
        self, client: FhirClient, *, mode: Mode = "batch", chunk: int = PUSH_CHUNK
    ) -> None:
        if chunk < 1:
            raise InvalidInput("chunk: expected a positive number of entries")
        self.client = client
        self.mode: Mode = mode
        self.chunk = chunk

    async def push_paths(
        self,
        paths: Iterable[Path],
        *,
        on_unit: Callable[[Unit, ImportReport], None] | None = None,
    ) -> ImportReport:
        """Push every Bundle and NDJSON file under ``paths``; the report counts per resource type
        what the server created, updated, or refused (``failed``)."""
        report = ImportReport()
        files = expand(paths)
        report.files = len(files)
        for unit in read_units(files, chunk=max(self.chunk, CHUNK)):
            await self.push_unit(unit, report)
            if on_unit is not None:
                on_unit(unit, report)
        return report

    async def push_unit(self, unit: Unit, report: ImportReport) -> None:
        """Send one unit (in as many Bundles as it takes)."""
        if unit.error is not None:
            report.errors.append(
                EntryError(file=unit.file, position="file", resource_type="", reason=unit.error)
            )
            report.count("(file)", "failed")
            return
        good: list[Entry] = []
        for entry in unit.entries:
            if entry.resource is None:
                report.errors.append(
                    EntryError(
                        file=unit.file,
                        position=entry.position,
                        resource_type="",
                        reason=entry.error or "no resource",
                    )
                )
                report.count("(unreadable)", "failed")
            else:
                good.append(entry)
        if unit.atomic:
            if len(good) < len(unit.entries):
                _fail_all(unit, good, "not sent: the transaction has unreadable entries", report)
            else:
                await self._send(unit, "transaction", good, report, keep_requests=True)
            return
        for start in range(0, len(good), self.chunk):
            await self._send(unit, self.mode, good[start : start + self.chunk], report)

    async def _send(
        self,
        unit: Unit,
        kind: Mode,
        entries: list[Entry],
        report: ImportReport,
        *,
        keep_requests: bool = False,
    ) -> None:
        if not entries:
            return
        bundle = {
            "resourceType": "Bundle",
            "type": kind,
            "entry": [_bundle_entry(unit, e, keep_requests) for e in entries],
        }
        try:
            if kind == "transaction":
                response = await self.client.transaction(bundle)
            else:
                response = await self.client.batch(bundle)
        except FhirError as exc:
            _fail_all(unit, entries, str(exc), report)
            return
        answers = response.get("entry")
        if not isinstance(answers, list) or len(answers) != len(entries):
            _fail_all(
                unit,
                entries,
                f"the server answered {len(answers) if isinstance(answers, list) else 'no'} "
                f"entries for {len(entries)} sent: outcome unknown",
                report,
            )
            return
        for entry, answer in zip(entries, answers, strict=True):
            status, reason = _outcome(answer)
            resource_type = str(entry.resource["resourceType"]) if entry.resource else ""
            report.count(resource_type, status)
            if status == "failed":
                report.errors.append(
                    EntryError(
                        file=unit.file,
                        position=entry.position,
                        resource_type=resource_type,
                        reason=reason,
                    )
                )


def _bundle_entry(unit: Unit, entry: Entry, keep_request: bool) -> dict[str, Any]:
    assert entry.resource is not None
    resource_type = str(entry.resource["resourceType"])
    rid = entry.resource.get("id")
    out: dict[str, Any]
    if keep_request and entry.request is not None:
        out = {"resource": entry.resource, "request": entry.request}
    elif isinstance(rid, str) and rid:
        resource = _rewrite_urns(entry.resource, unit.full_urls)
        out = {"resource": resource, "request": {"method": "PUT", "url": f"{resource_type}/{rid}"}}
    else:
        out = {"resource": entry.resource, "request": {"method": "POST", "url": resource_type}}
    if entry.full_url:
        out["fullUrl"] = entry.full_url
    return out


def _rewrite_urns(node: Any, full_urls: Mapping[str, tuple[str, str]]) -> Any:
    """``urn:…`` references to entries that have ids, as ``Type/id``."""
    if not full_urls:
        return node
    if isinstance(node, list):
        return [_rewrite_urns(v, full_urls) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for name, value in node.items():
        if name == "reference" and isinstance(value, str) and value in full_urls:
            resource_type, rid = full_urls[value]
            out[name] = f"{resource_type}/{rid}" if rid else value
        else:
            out[name] = _rewrite_urns(value, full_urls)
    return out


def _outcome(answer: Any) -> tuple[Status, str]:
    """``(created | updated | failed, reason)`` of one ``*-response`` entry."""
    response = answer.get("response") if isinstance(answer, dict) else None
    status = str(response.get("status", "")) if isinstance(response, dict) else ""
    code = status.split(" ", 1)[0]
    if code == "201":
        return "created", ""
    if code.startswith("2"):
        return "updated", ""
    outcome = response.get("outcome") if isinstance(response, dict) else None
    details = []
    for issue in (outcome or {}).get("issue") or []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
        where = ", ".join(issue.get("expression") or issue.get("location") or [])
        details.append(f"{text}{f' at {where}' if where else ''}" if text else "")
    reason = "; ".join(d for d in details if d) or "no reason given"
    return "failed", f"HTTP {status or '(none)'}: {reason}"


def _fail_all(unit: Unit, entries: list[Entry], reason: str, report: ImportReport) -> None:
    for entry in entries:
        resource_type = str(entry.resource["resourceType"]) if entry.resource else ""
        report.count(resource_type, "failed")
    report.errors.append(
        EntryError(
            file=unit.file,
            position=f"{entries[0].position}..{entries[-1].position}" if entries else "file",
            resource_type="Bundle",
            reason=reason,
        )
    )
