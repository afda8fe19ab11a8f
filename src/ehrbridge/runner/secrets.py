"""Secret references: a config names where a secret lives, never the secret itself
(docs/design.md §11).

A reference is ``{env: NAME}`` (an environment variable) or ``{file: PATH}`` (a file, read when
the secret is needed). The value is read at use and never kept on the reference, so no repr, log
line or error can show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ehrbridge.errors import InvalidInput


@dataclass(frozen=True, kw_only=True)
class SecretRef:
    """Where a secret is: an environment variable or a file.

    >>> SecretRef(env="EHR_TOKEN", where="config.yaml:9: data_sources[0].auth.token")
    SecretRef(env='EHR_TOKEN')
    """

    env: str | None = None
    file: Path | None = None
    #: ``config.yaml:14: data_sources[1].auth.token``, for errors
    where: str = ""

    def __repr__(self) -> str:
        return f"SecretRef(env={self.env!r})" if self.env else f"SecretRef(file={self.file!r})"

    def resolve(self) -> str:
        """The secret's value now; an :class:`InvalidInput` naming the reference if missing."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise InvalidInput(f"{self.where}: environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            return self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInput(
                f"{self.where}: cannot read secret file {self.file}: {exc.strerror}"
            ) from None
