"""API keys as strings: their format, how one is made, hashed and checked (pure functions).

A key reads ``ehb_<key_id>_<secret>``: ``key_id`` is 12 lowercase hex digits, public (it appears
in listings and in the audit trail); ``secret`` is 32 random bytes from :mod:`secrets`, url-safe
base64 without padding (43 characters). Only the SHA-256 digest of the whole key is stored.

Why SHA-256 and not a slow password hash (bcrypt, scrypt, Argon2): a slow KDF protects *guessable*
secrets (passwords) against a stolen table by making each guess expensive. A key holds 256 bits
from the operating system's CSPRNG, so no guess has a chance whatever a guess costs, and a fast
hash keeps authentication, which runs on every request, at microseconds. The digest is compared
with :func:`hmac.compare_digest` so the comparison's time says nothing about the stored digest.

>>> key = new_key()
>>> parse_key(key.secret) == key.key_id
True
>>> verify(key.secret, key.secret_hash)
True
>>> parse_key("ehb_0123456789ab_short") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from ehrbridge.api.store import ROLES, Role
from ehrbridge.errors import InvalidInput

PREFIX = "ehb"
#: bytes of randomness in a key's secret part (256 bits)
SECRET_BYTES = 32
_KEY_ID = re.compile(r"[0-9a-f]{12}")
_KEY = re.compile(r"ehb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
#: what an entity type in a write scope looks like (``Patient``, ``MedicationRequest``)
_ENTITY_TYPE = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
_MAX_NAME = 200


@dataclass(frozen=True, kw_only=True, repr=False)
class IssuedKey:
    """A freshly made key: the secret to hand over once, and what is stored of it."""

    key_id: str
    #: the whole key, ``ehb_<key_id>_<secret>``; never stored, never logged
    secret: str
    #: hex SHA-256 of :attr:`secret`
    secret_hash: str

    def __repr__(self) -> str:
        # the secret must not leak through a log line or a traceback's locals
        return f"IssuedKey(key_id={self.key_id!r}, secret=<hidden>)"


def new_key() -> IssuedKey:
    """A new random key."""
    key_id = secrets.token_hex(6)
    secret = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return IssuedKey(key_id=key_id, secret=secret, secret_hash=hash_key(secret))


def hash_key(secret: str) -> str:
    """The stored form of a key: hex SHA-256 of the whole key string.

    >>> len(hash_key("ehb_0123456789ab_" + "A" * 43))
    64
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(secret: str) -> str | None:
    """The key id of a well-formed key, or None for anything else (no reason is given).

    >>> parse_key("ehb_0123456789ab_" + "A" * 43)
    '0123456789ab'
    >>> parse_key("Bearer ehb_0123456789ab_" + "A" * 43) is None
    True
    """
    match = _KEY.fullmatch(secret)
    return match.group(1) if match else None


def verify(secret: str, secret_hash: str) -> bool:
    """Whether ``secret`` is the key whose stored hash is ``secret_hash`` (constant time)."""
    return hmac.compare_digest(hash_key(secret), secret_hash)


def is_key_id(key_id: str) -> bool:
    """Whether ``key_id`` has the form of a key id (12 lowercase hex digits).

    >>> is_key_id("0123456789ab"), is_key_id("cli")
    (True, False)
    """
    return _KEY_ID.fullmatch(key_id) is not None


def check_role(role: str) -> Role:
    """``role`` when it is one of :data:`~ehrbridge.api.store.ROLES`; InvalidInput otherwise."""
    for known in ROLES:
        if role == known:
            return known
    raise InvalidInput(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def check_key_fields(workspace: str, name: str, write_types: frozenset[str]) -> None:
    """Refuse a key that could not be stored or shown sensibly (InvalidInput)."""
    if not workspace:
        raise InvalidInput("a key needs a workspace")
    if len(name) > _MAX_NAME or not name.isprintable():
        raise InvalidInput(f"a key's name must be printable and at most {_MAX_NAME} characters")
    for entity_type in write_types:
        if not _ENTITY_TYPE.fullmatch(entity_type):
            raise InvalidInput(
                f"write scope: {entity_type!r} is not an entity type name like 'Patient'"
            )


def parse_write_types(text: str) -> frozenset[str]:
    """A write scope from a comma-separated list (``Patient,Appointment``); empty for ``""``.

    >>> sorted(parse_write_types(" Patient, Appointment "))
    ['Appointment', 'Patient']
    """
    types = frozenset(part.strip() for part in text.split(",") if part.strip())
    check_key_fields("-", "", types)
    return types
