"""The LLM judge: one fact, one chat completion on any OpenAI-compatible endpoint
(docs/llm-judge.md).

The judge sends the rules, the fact and the numbered transcript at temperature 0 with a strict
JSON-schema answer format, then checks the answer in code (:mod:`ehrbridge.review.answer`).
Whatever goes wrong, whether the endpoint, the answer or the checks, becomes *unsure* with a
reason naming what failed, so the fact goes to a human, never through. Reasons and log lines name
the failure (a status code, an exception class, a check), never the transcript's text or the key.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ehrbridge.review.answer import Checked, Failure, check, parse
from ehrbridge.review.prompt import ANSWER_SCHEMA, PROMPT_VERSION, messages, render_transcript
from ehrbridge.review.verdicts import Case, Outcome, Verdict

log = logging.getLogger(__name__)

#: the judge's own logic; its :attr:`LlmJudge.version` adds the prompt's and the model's
JUDGE_VERSION = "1"
#: how much of the model's own reason a verdict keeps
MAX_REASON = 300


@dataclass(frozen=True, kw_only=True)
class LlmSettings:
    """Where and how the LLM judge asks."""

    #: the API base, e.g. ``https://api.example.com/v1``; ``/chat/completions`` is appended
    base_url: str
    model: str
    #: the bearer token, already resolved from its secret reference by the caller; None: none sent
    api_key: str | None = field(default=None, repr=False)
    #: seconds for the whole request, connection to last byte
    timeout: float = 30.0
    #: the longest rendered transcript (``[N] speaker: text`` lines) the judge sends; a longer
    #: one goes to a human (docs/llm-judge.md, "Long transcripts")
    max_transcript_chars: int = 12_000
    #: the answer's token budget; an answer cut at it is truncated, hence unsure
    max_tokens: int = 512
    #: ``json_schema``: OpenAI's ``response_format`` (``{"type": "json_schema", "json_schema":
    #: {"name", "strict", "schema"}}``); ``json_object``: the older ``{"type": "json_object",
    #: "schema": ...}`` form that llama-cpp-python's server takes instead
    response_format: Literal["json_schema", "json_object"] = "json_schema"


class _Unsure(Exception):
    """Internal: the request or its answer failed; carries the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LlmJudge:
    """The :class:`~ehrbridge.review.verdicts.Judge` that asks an LLM; never raises for a case."""

    name = "llm"

    def __init__(self, settings: LlmSettings, *, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        #: reproducible only for the same logic, prompt and model
        self.version = f"{JUDGE_VERSION}.{PROMPT_VERSION}/{settings.model}"
        self._client = client

    def request(self, case: Case, transcript: str) -> dict[str, Any]:
        """The chat-completion request body for ``case``."""
        s = self.settings
        schema: dict[str, Any]
        if s.response_format == "json_schema":
            schema = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "strict": True, "schema": ANSWER_SCHEMA},
            }
        else:
            schema = {"type": "json_object", "schema": ANSWER_SCHEMA}
        return {
            "model": s.model,
            "messages": messages(case, transcript),
            "temperature": 0,
            "max_tokens": s.max_tokens,
            "response_format": schema,
        }

    async def judge(self, case: Case) -> Verdict:
        """Ask, check, answer; *unsure* with the reason for every failure."""
        transcript = render_transcript(case.transcript)
        budget = self.settings.max_transcript_chars
        if len(transcript) > budget:
            return self._unsure(
                f"transcript too long for the LLM judge ({len(transcript)} characters, "
                f"budget {budget}): a human reads it"
            )
        try:
            content = await self._complete(self.request(case, transcript))
        except _Unsure as failed:
            return self._unsure(failed.reason)
        except Exception as exc:  # the Judge contract: a bug here still sends the fact to a human
            # the class only: an exception's message may carry the case's text
            log.error("llm judge failed unexpectedly (%s)", type(exc).__name__)
            return self._unsure(f"the LLM judge failed ({type(exc).__name__})")
        answer = parse(content)
        checked = answer if isinstance(answer, Failure) else check(case, answer)
        if isinstance(checked, Failure):
            return self._unsure(checked.reason)
        return self._verdict(checked)

    def _verdict(self, checked: Checked) -> Verdict:
        turns = ", ".join(str(t) for t in sorted({e.turn for e in checked.evidence})) or "none"
        said = " ".join(checked.reason.split())[:MAX_REASON]
        return Verdict(
            outcome=checked.outcome,
            judge=self.name,
            version=self.version,
            reason=f"{checked.outcome.value} (quotes checked in turns {turns}): {said}",
            evidence=checked.evidence,
            value=checked.value,
        )

    def _unsure(self, reason: str) -> Verdict:
        log.warning("llm judge unsure: %s", reason)
        return Verdict(outcome=Outcome.UNSURE, judge=self.name, version=self.version, reason=reason)

    async def _complete(self, body: dict[str, Any]) -> str:
        """The answer's content, or :class:`_Unsure`."""
        s = self.settings
        headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
        url = f"{s.base_url.rstrip('/')}/chat/completions"
        try:
            # httpx's timeout bounds each read; the outer one bounds the whole exchange, so a
            # server that trickles bytes cannot hold the fact past it.
            async with asyncio.timeout(s.timeout):
                if self._client is not None:
                    response = await self._client.post(url, json=body, headers=headers)
                else:
                    async with httpx.AsyncClient(timeout=s.timeout) as client:
                        response = await client.post(url, json=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _Unsure(f"the LLM endpoint timed out after {s.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise _Unsure(f"the LLM endpoint failed ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise _Unsure(f"the LLM endpoint answered HTTP {response.status_code}")
        return _content(response)


def _content(response: httpx.Response) -> str:
    """The first choice's message content, if the completion finished normally."""
    try:
        choice = response.json()["choices"][0]
        message, finish = choice["message"], choice.get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise _Unsure("the LLM endpoint's response is not a chat completion") from exc
    if not isinstance(message, dict):
        raise _Unsure("the LLM endpoint's response is not a chat completion")
    if message.get("refusal"):
        raise _Unsure("the model refused to answer")
    if finish == "length":
        raise _Unsure("the answer was truncated (finish_reason length)")
    if finish != "stop":
        raise _Unsure(f"the answer did not finish normally (finish_reason {finish!s:.40})")
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        raise _Unsure("the answer is empty")
    return content


__all__ = ["JUDGE_VERSION", "LlmJudge", "LlmSettings"]
