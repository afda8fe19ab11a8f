"""The judges a ``review:`` section or ``ehrbridge review eval --judge`` names."""

from __future__ import annotations

from ehrbridge.errors import ConfigError
from ehrbridge.review.grounding.judge import GroundingJudge
from ehrbridge.review.llm import LlmJudge, LlmSettings
from ehrbridge.review.policy import PolicyJudge
from ehrbridge.review.verdicts import Judge


def judge_named(name: str, llm: LlmSettings | None = None) -> Judge:
    """The judge called ``name``: ``grounding``, ``llm`` or ``policy`` (grounding, then the LLM
    for what it leaves unsure); the last two ask the endpoint of ``llm``."""
    if name == "grounding":
        return GroundingJudge()
    if name not in ("llm", "policy"):
        raise ConfigError([f"review.judge: no judge called {name}"])
    if llm is None:
        raise ConfigError([f"review.llm: the {name} judge needs the LLM's settings"])
    if name == "llm":
        return LlmJudge(llm)
    return PolicyJudge(GroundingJudge(), LlmJudge(llm))
