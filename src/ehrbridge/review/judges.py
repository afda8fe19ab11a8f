"""The judges a ``review:`` section or ``ehrbridge review eval --judge`` names."""

from __future__ import annotations

from ehrbridge.errors import ConfigError
from ehrbridge.review.grounding.judge import GroundingJudge
from ehrbridge.review.verdicts import Judge


def judge_named(name: str) -> Judge:
    """The judge called ``name`` (``grounding``; ``llm`` and ``policy`` need the LLM judge's
    settings)."""
    if name == "grounding":
        return GroundingJudge()
    raise ConfigError([f"review.judge: the {name} judge is not available yet"])
