"""What a field's rules conclude before it becomes a :class:`~ehrbridge.review.verdicts.Verdict`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ehrbridge.review.grounding.dialogue import Mention
from ehrbridge.review.verdicts import Outcome


@dataclass(frozen=True, kw_only=True)
class Finding:
    """An outcome, its reason and the mentions it rests on."""

    outcome: Outcome
    reason: str
    mentions: Sequence[Mention] = field(default_factory=tuple)
    #: the value as the transcript gives it, normalised like the fact's
    value: Any = None


def unsure(reason: str, mentions: Sequence[Mention] = ()) -> Finding:
    """Send the fact to a human, saying why."""
    return Finding(outcome=Outcome.UNSURE, reason=reason, mentions=tuple(mentions))
