"""The LLM judge against the scripted OpenAI-compatible server on loopback (``tests/llmserver.py``):
the request it sends, the checks on the answer, and every failure into *unsure*."""

from __future__ import annotations

import logging
import socket
from typing import Any

import httpx
import pytest

from ehrbridge.review.llm import LlmJudge, LlmSettings
from ehrbridge.review.prompt import ANSWER_SCHEMA, RULES, render_transcript
from ehrbridge.review.verdicts import Evidence, Outcome, Route, Verdict, route
from tests.integration.review.llm_cases import BIRTH_CALL, PHONE_CALL, case
from tests.llmserver import LlmServer, Reply, answer

KEY = "sk-test-not-a-real-key"

CONFIRMED: list[dict[str, Any]] = [
    {"turn": 3, "quote": "six one seven, five five five, oh one three eight"},
    {"turn": 5, "quote": "Yes, that's right."},
]


def judge(llm: LlmServer, **settings: Any) -> LlmJudge:
    fields: dict[str, Any] = {"base_url": llm.base_url, "model": "judge-1", "api_key": KEY}
    return LlmJudge(LlmSettings(**(fields | {"timeout": 5.0} | settings)))


def assert_unsure(verdict: Verdict, reason: str) -> None:
    """Unsure, to a human, with a reason that names the failure and no patient data or key."""
    assert verdict.outcome is Outcome.UNSURE
    assert route(verdict) is Route.HUMAN
    assert reason in verdict.reason
    assert verdict.evidence == ()
    for spoken in (t.text for t in PHONE_CALL + BIRTH_CALL):
        assert spoken not in verdict.reason
    assert "0138" not in verdict.reason and "five five five" not in verdict.reason
    assert KEY not in verdict.reason


# The request


async def test_the_request_is_one_chat_completion_at_temperature_0_with_a_strict_schema(
    llm: LlmServer,
) -> None:
    llm.app.script(answer(verdict="supported", evidence=CONFIRMED, value="+16175550138"))
    await judge(llm).judge(case())
    [body] = llm.app.requests
    assert body["model"] == "judge-1"
    assert body["temperature"] == 0
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "strict": True, "schema": ANSWER_SCHEMA},
    }
    system, user = body["messages"]
    assert system == {"role": "system", "content": RULES}
    assert user["role"] == "user"
    content = user["content"]
    assert 'Patient.phone.mobile = "+16175550138"' in content
    assert "2026-11-16T09:12:00-05:00" in content and "America/New_York" in content
    assert "[3] caller: I have a new cell, it's six one seven" in content
    assert "cites (a hint only, may be wrong or empty): 3, 4, 5" in content
    assert llm.app.authorizations == [f"Bearer {KEY}"]


async def test_without_a_key_no_authorization_is_sent(llm: LlmServer) -> None:
    llm.app.script(answer())
    await judge(llm, api_key=None).judge(case())
    assert llm.app.authorizations == [None]


async def test_the_json_object_form_carries_the_schema_for_llama_cpp(llm: LlmServer) -> None:
    llm.app.script(answer())
    await judge(llm, response_format="json_object").judge(case())
    [body] = llm.app.requests
    assert body["response_format"] == {"type": "json_object", "schema": ANSWER_SCHEMA}


def test_the_api_key_is_not_in_the_settings_repr() -> None:
    assert KEY not in repr(LlmSettings(base_url="http://x", model="m", api_key=KEY))


# Answers that hold up


async def test_a_supported_answer_with_verbatim_quotes_and_the_same_value_is_supported(
    llm: LlmServer,
) -> None:
    llm.app.script(answer(verdict="supported", evidence=CONFIRMED, value="(617) 555-0138"))
    verdict = await judge(llm).judge(case())
    assert verdict.outcome is Outcome.SUPPORTED
    assert verdict.judge == "llm" and verdict.version.endswith("/judge-1")
    spoken = PHONE_CALL[3].text
    start = spoken.index("six one seven")
    assert verdict.evidence == (
        Evidence(turn=3, start=start, end=len(spoken) - 1, text=CONFIRMED[0]["quote"]),
        Evidence(turn=5, start=0, end=18, text="Yes, that's right."),
    )
    assert "turns 3, 5" in verdict.reason
    assert verdict.value == "+16175550138"
    assert route(verdict) is Route.VERIFIED


async def test_a_corrected_birth_date_is_supported_by_its_iso_value(llm: LlmServer) -> None:
    evidence = [{"turn": 3, "quote": "No, the ninth."}, {"turn": 1, "quote": "April ninth"}]
    llm.app.script(answer(verdict="supported", evidence=evidence, value="1982-04-09"))
    fact = case(BIRTH_CALL, field="birth_date", value="1982-04-09", evidence_turns=(1, 3))
    verdict = await judge(llm).judge(fact)
    assert verdict.outcome is Outcome.SUPPORTED
    assert [e.turn for e in verdict.evidence] == [3, 1]


async def test_a_contradicted_answer_with_quotes_is_contradicted(llm: LlmServer) -> None:
    evidence = [{"turn": 3, "quote": "No, the ninth. Nine."}]
    llm.app.script(answer(verdict="contradicted", evidence=evidence, value="1982-04-09"))
    fact = case(BIRTH_CALL, field="birth_date", value="1982-04-19", evidence_turns=(2,))
    verdict = await judge(llm).judge(fact)
    assert verdict.outcome is Outcome.CONTRADICTED
    assert verdict.value == "1982-04-09"


@pytest.mark.parametrize("said", ["unsupported", "unsure"])
async def test_unsupported_means_unsure(llm: LlmServer, said: str) -> None:
    llm.app.script(answer(verdict=said, reason="only the agent says it"))
    verdict = await judge(llm).judge(case())
    assert verdict.outcome is Outcome.UNSURE
    assert "only the agent says it" in verdict.reason


# Answers the checks turn down


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        pytest.param(
            [{"turn": 3, "quote": "six one seven, five five five, zero one three eight"}],
            "quote 1 is not verbatim in turn 3",
            id="paraphrased",
        ),
        pytest.param(
            [{"turn": 4, "quote": "Yes, that's right."}],
            "quote 1 is not verbatim in turn 4",
            id="wrong-turn",
        ),
        pytest.param(
            [CONFIRMED[0], {"turn": 41, "quote": "Yes"}],
            "quote 2 names turn 41, which is not in the call",
            id="no-such-turn",
        ),
        pytest.param([{"turn": 5, "quote": ""}], "quote 1 is not verbatim", id="empty"),
        pytest.param([], "says supported but quotes no turn", id="no-quotes"),
    ],
)
async def test_quotes_must_be_verbatim_in_their_turn(
    llm: LlmServer, evidence: list[dict[str, Any]], reason: str
) -> None:
    llm.app.script(answer(verdict="supported", evidence=evidence, value="+16175550138"))
    assert_unsure(await judge(llm).judge(case()), reason)


async def test_a_supported_value_that_differs_from_the_facts_is_unsure(llm: LlmServer) -> None:
    llm.app.script(answer(verdict="supported", evidence=CONFIRMED, value="+16175550183"))
    assert_unsure(await judge(llm).judge(case()), "the stated value differs from the fact's")


async def test_contradicted_without_quotes_is_unsure(llm: LlmServer) -> None:
    llm.app.script(answer(verdict="contradicted", evidence=[]))
    assert_unsure(await judge(llm).judge(case()), "says contradicted but quotes no turn")


# Answers out of schema


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param('{"verdict": "supported", "evidence": [', "not valid JSON", id="cut-json"),
        pytest.param("Sure! The fact is supported.", "not valid JSON", id="prose"),
        pytest.param(
            '{"verdict": "true", "evidence": [], "value": "", "reason": ""}',
            "does not match the schema (at verdict)",
            id="bad-verdict",
        ),
        pytest.param(
            '{"verdict": "supported", "evidence": [], "value": ""}',
            "does not match the schema (at reason)",
            id="missing-key",
        ),
        pytest.param(
            '{"verdict": "supported", "evidence": [{"turn": "3", "quote": "x"}],'
            ' "value": "", "reason": "", "confidence": 0.9}',
            "does not match the schema (at confidence, evidence.0.turn)",
            id="extra-key-and-string-turn",
        ),
        pytest.param("[1, 2]", "does not match the schema", id="not-an-object"),
    ],
)
async def test_an_answer_out_of_schema_is_unsure(llm: LlmServer, content: str, reason: str) -> None:
    llm.app.script(Reply(kind="raw", content=content))
    assert_unsure(await judge(llm).judge(case()), reason)


async def test_too_many_quotes_is_unsure(llm: LlmServer) -> None:
    llm.app.script(answer(verdict="supported", evidence=CONFIRMED * 4, value="+16175550138"))
    assert_unsure(await judge(llm).judge(case()), "more than 6 quotes")


# The endpoint failing


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        pytest.param(Reply(kind="status", status=500), "answered HTTP 500", id="500"),
        pytest.param(Reply(kind="status", status=429), "answered HTTP 429", id="429"),
        pytest.param(Reply(kind="status", status=401), "answered HTTP 401", id="401"),
        pytest.param(Reply(kind="refusal"), "the model refused", id="refusal"),
        pytest.param(
            Reply(kind="truncated", answer={"verdict": "supported"}),
            "truncated (finish_reason length)",
            id="truncated",
        ),
        pytest.param(
            Reply(kind="answer", answer={}, finish_reason="content_filter"),
            "did not finish normally (finish_reason content_filter)",
            id="filtered",
        ),
        pytest.param(Reply(kind="raw", content=""), "the answer is empty", id="empty"),
        pytest.param(
            Reply(kind="body", content="<html>bad gateway</html>"),
            "response is not a chat completion",
            id="html-body",
        ),
        pytest.param(
            Reply(kind="body", content='{"choices": []}'),
            "response is not a chat completion",
            id="no-choices",
        ),
        pytest.param(
            Reply(kind="body", content='{"choices": [{"message": "hi", "finish_reason": "stop"}]}'),
            "response is not a chat completion",
            id="message-not-an-object",
        ),
        pytest.param(
            Reply(kind="drop"), "the LLM endpoint failed (RemoteProtocolError)", id="drop"
        ),
    ],
)
async def test_a_failing_endpoint_sends_the_fact_to_a_human(
    llm: LlmServer, reply: Reply, reason: str
) -> None:
    llm.app.script(reply)
    assert_unsure(await judge(llm).judge(case()), reason)


SUPPORTED = answer(verdict="supported", evidence=CONFIRMED, value="+16175550138").answer


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(kind="answer", answer=SUPPORTED, delay=2.0), id="late"),
        # a byte every 50 ms: no single read waits past the timeout, the whole exchange does
        pytest.param(Reply(kind="trickle", answer=SUPPORTED), id="trickle"),
    ],
)
async def test_a_slow_answer_times_out_into_unsure(llm: LlmServer, reply: Reply) -> None:
    llm.app.script(reply)
    assert_unsure(await judge(llm, timeout=0.5).judge(case()), "timed out after 0.5 s")


async def test_a_closed_port_is_unsure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = LlmSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2.0)
    verdict = await LlmJudge(settings).judge(case())
    assert_unsure(verdict, "the LLM endpoint failed (ConnectError)")


async def test_an_unexpected_error_in_the_judge_is_unsure_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("Rosa Lindqvist six one seven")

    settings = LlmSettings(base_url="http://llm.invalid/v1", model="m")
    async with httpx.AsyncClient(transport=httpx.MockTransport(broken)) as client:
        verdict = await LlmJudge(settings, client=client).judge(case())
    assert_unsure(verdict, "the LLM judge failed (RuntimeError)")
    assert "Rosa" not in caplog.text


async def test_logs_name_the_failure_not_the_transcript_or_key(
    llm: LlmServer, caplog: pytest.LogCaptureFixture
) -> None:
    llm.app.script(answer(verdict="supported", evidence=CONFIRMED, value="+16175550183"))
    with caplog.at_level(logging.DEBUG):
        await judge(llm).judge(case())
    assert "the stated value differs" in caplog.text
    assert "five five five" not in caplog.text and KEY not in caplog.text


# Long transcripts


async def test_a_transcript_over_the_budget_goes_to_a_human_unasked(llm: LlmServer) -> None:
    verdict = await judge(llm, max_transcript_chars=200).judge(case())
    assert_unsure(verdict, "transcript too long for the LLM judge (")
    assert "budget 200" in verdict.reason
    assert llm.app.requests == []


async def test_a_transcript_at_the_budget_is_sent_whole(llm: LlmServer) -> None:
    llm.app.script(answer())
    size = len(render_transcript(PHONE_CALL))
    await judge(llm, max_transcript_chars=size).judge(case())
    [body] = llm.app.requests
    assert render_transcript(PHONE_CALL) in body["messages"][1]["content"]
