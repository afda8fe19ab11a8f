"""Version tokens: what identifies the version of a record a FHIR source sent, so a poll or a
backfill skips a record whose version is already stored, before mapping it.

A token is ``meta.versionId`` with ``meta.lastUpdated``, or a digest of the resource when it has
no version (:func:`version_token`). A version older than the one remembered (a lagging replica's
stale read) is skipped too (:func:`is_newer`). Tokens are remembered through the
:class:`~ehrbridge.connectors.source.RecordVersions` port only after the import committed, and
never for an entry that failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import orjson

from ehrbridge.connectors.source import RecordVersions

#: an entry read: (unit name, position in it)
EntryKey = tuple[str, str]
#: what is remembered of an entry read: (resource type, id, version token)
Versioned = tuple[str, str, str]


def version_token(resource: Mapping[str, Any]) -> str:
    """What identifies this version of a resource: ``v:<versionId>@<lastUpdated>`` (a server
    reset that starts versions again still changes it), else a digest of the whole resource.

    >>> version_token({"id": "1", "meta": {"versionId": "3", "lastUpdated": "2026-11-20"}})
    'v:3@2026-11-20'
    >>> version_token({"id": "1"}) == version_token({"id": "1"}) != version_token({"id": "2"})
    True
    """
    meta = resource.get("meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("versionId"), str):
        return f"v:{meta['versionId']}@{meta.get('lastUpdated')}"
    body = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    return "sha:" + hashlib.blake2b(body, digest_size=16).hexdigest()


def is_newer(token: str, known: str | None) -> bool:
    """Whether a version with ``token`` should be stored over the ``known`` one: it differs, and
    when both carry a ``lastUpdated`` it is not older.

    >>> is_newer("v:2@2026-11-20T10:00:00Z", "v:1@2026-11-20T09:00:00Z"), is_newer("sha:a", None)
    (True, True)
    >>> is_newer("v:1@2026-11-20T09:00:00Z", "v:2@2026-11-20T10:00:00Z")  # a stale read
    False
    """
    if known is None:
        return True
    if token == known:
        return False
    mine, theirs = _token_instant(token), _token_instant(known)
    return mine is None or theirs is None or mine >= theirs


def _token_instant(token: str) -> datetime | None:
    if not token.startswith("v:") or "@" not in token:
        return None
    try:
        when = datetime.fromisoformat(token.rsplit("@", 1)[1])
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def versioned(resource: Mapping[str, Any]) -> Versioned | None:
    """The resource's type, id and :func:`version_token`; None without a type or id."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str):
        return rtype, rid, version_token(resource)
    return None


async def unchanged(
    state: RecordVersions, workspace: str, source: str, read: Mapping[EntryKey, Versioned]
) -> set[EntryKey]:
    """The entries read whose version is the one remembered as stored, or older than it (a stale
    read from a lagging replica)."""
    by_type: dict[str, set[str]] = {}
    for rtype, rid, _ in read.values():
        by_type.setdefault(rtype, set()).add(rid)
    known = {
        (rtype, rid): token
        for rtype, ids in by_type.items()
        for rid, token in (await state.known_versions(workspace, source, rtype, ids)).items()
    }
    return {
        key
        for key, (rtype, rid, token) in read.items()
        if not is_newer(token, known.get((rtype, rid)))
    }


async def remember(
    state: RecordVersions,
    workspace: str,
    source: str,
    read: Mapping[EntryKey, Versioned],
    skip: Collection[EntryKey],
) -> None:
    """Remember the versions of the entries read and stored (``skip``: those that failed or
    were not newer than the one remembered)."""
    by_type: dict[str, dict[str, str]] = {}
    for key, (rtype, rid, token) in read.items():
        if key not in skip:
            by_type.setdefault(rtype, {})[rid] = token
    for rtype, tokens in by_type.items():
        await state.remember_versions(workspace, source, rtype, tokens)
