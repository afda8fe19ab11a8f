"""The versioned schema: numbered ``.sql`` files in each backend's ``schema/`` folder, applied in
order, once each; a database records the versions it has in ``schema_version``."""

from __future__ import annotations

from importlib import resources

from ehrbridge.errors import SchemaError


def migrations(backend: str) -> list[tuple[int, str]]:
    """(version, SQL) for every migration of ``backend`` (``sqlite`` or ``postgres``), in order."""
    folder = resources.files(f"ehrbridge.storage.{backend}") / "schema"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest(backend: str) -> int:
    """The schema version this code expects."""
    return migrations(backend)[-1][0]


def pending(backend: str, current: int) -> list[tuple[int, str]]:
    """The migrations to apply to a database at ``current``; refuses a newer database."""
    if current > latest(backend):
        raise SchemaError(
            f"the database schema is version {current}, newer than this ehrbridge's "
            f"{latest(backend)}: upgrade ehrbridge"
        )
    return [(version, sql) for version, sql in migrations(backend) if version > current]
