"""Named confidence levels and buckets (docs/design.md §5.2).

>>> Level.VOICE_CONFIRMED.value
0.5
>>> Level.named("voice-mentioned") is Level.VOICE_MENTIONED
True
>>> DEFAULT_THRESHOLDS.bucket(0.95)
'authoritative'
>>> DEFAULT_THRESHOLDS.bucket(0.8)
'trusted'
>>> DEFAULT_THRESHOLDS.bucket(0.5)
'raw'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

Bucket = Literal["authoritative", "trusted", "raw"]


class Level(float, Enum):
    """The named confidence levels; the value is the confidence."""

    AUTHORITATIVE = 1.0  #: EHR or authoritative API data; an operator's correction
    HUMAN_APPROVED = 0.95  #: an operator approved it in the review queue
    CLINICIAN = 0.9  #: a clinician entered or approved it
    VERIFIED = 0.8  #: the judge verified it against the transcript
    VOICE_CONFIRMED = 0.5  #: the caller confirmed it
    VOICE_MENTIONED = 0.3  #: mentioned, not confirmed
    VOICE_INFERRED = 0.2  #: inferred by the agent
    REJECTED = 0.0  #: rejected; excluded from projections, never synced

    @classmethod
    def named(cls, name: str) -> Level:
        """The level called ``name`` (any case, ``-`` or ``_``), e.g. ``voice-confirmed``."""
        try:
            return cls[name.strip().upper().replace("-", "_").replace(" ", "_")]
        except KeyError:
            names = ", ".join(level.name.lower() for level in cls)
            raise ValueError(f"unknown confidence level {name!r}; one of {names}") from None


#: The levels a voice agent may write at.
VOICE_LEVELS = frozenset({Level.VOICE_CONFIRMED, Level.VOICE_MENTIONED, Level.VOICE_INFERRED})


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Where the buckets start; configuration, not constants."""

    authoritative: float = 0.95  #: at or above: authoritative
    trusted: float = 0.8  #: at or above: trusted (and it competes by recency in projections)

    def bucket(self, confidence: float) -> Bucket:
        """The bucket a confidence falls in."""
        if confidence >= self.authoritative:
            return "authoritative"
        if confidence >= self.trusted:
            return "trusted"
        return "raw"


DEFAULT_THRESHOLDS = Thresholds()
