"""The runner config's ``review:`` section: the judge the review loop asks and its policy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ehrbridge.errors import ConfigError
from ehrbridge.review.loop import ReviewPolicy
from ehrbridge.review.verdicts import Route
from ehrbridge.runner.configfile import parse_config

BASE = "workspace: clinic\ndatabase: sqlite:///x.db\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.problems


def test_a_review_section_names_the_judge_and_its_policy() -> None:
    config = parse_config(
        BASE
        + "review:\n  judge: policy\n  timezone: America/Chicago\n  contradicted: human\n"
        + "  llm: {base_url: 'http://127.0.0.1:8080/v1', model: m}\n"
        + "  human_types: [MedicationOrder]\n  human_fields: [Patient.name.family]\n"
        + "  catch_up: 2s\n"
    )
    assert config.review is not None and config.review.judge == "policy"
    policy = config.review.policy
    assert policy.timezone == "America/Chicago" and policy.contradicted is Route.HUMAN
    assert policy.human_types == frozenset({"MedicationOrder"})
    assert policy.human_fields == frozenset({"Patient.name.family"})
    assert policy.catch_up == timedelta(seconds=2)


def test_an_empty_review_section_takes_the_safe_defaults_and_none_runs_no_loop() -> None:
    config = parse_config(BASE + "review: {}\n")
    assert config.review is not None and config.review.judge == "grounding"
    assert config.review.policy == ReviewPolicy()
    assert "MedicationOrder" in config.review.policy.human_types
    assert parse_config(BASE).review is None


AT = "config.yaml:3: review."


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("review: {judge: oracle}\n", AT + "judge: expected one of grounding, llm, policy"),
        (
            "review: {timezone: Mars/Olympus}\n",
            AT + "timezone: expected an IANA time zone such as America/New_York",
        ),
        ("review: {contradicted: ignore}\n", AT + "contradicted: expected reject or human"),
        ("review: {human_types: MedicationOrder}\n", AT + "human_types: expected a list of names"),
        ("review: {human_fields: [name]}\n", AT + "human_fields[0]: not a name of that kind"),
        ("review: {catch_up: 10ms}\n", None),  # below 100ms
        ("review: {judges: [grounding]}\n", None),
    ],
)
def test_a_bad_review_section_names_key_and_line(section: str, expected: str | None) -> None:
    problems = errors_of(BASE + section)
    assert len(problems) == 1 and problems[0].startswith("config.yaml:3: review")
    if expected is not None:
        assert problems == [expected]


def test_the_llm_and_policy_judges_name_their_endpoint() -> None:
    config = parse_config(
        BASE
        + "review:\n  judge: policy\n  llm:\n    base_url: http://127.0.0.1:8080/v1\n"
        + "    model: smollm2\n    api_key: {env: LLM_KEY}\n    timeout: 10s\n"
        + "    response_format: json_object\n"
    )
    assert config.review is not None and config.review.llm is not None
    llm = config.review.llm
    assert (llm.base_url, llm.model, llm.response_format) == (
        "http://127.0.0.1:8080/v1",
        "smollm2",
        "json_object",
    )
    assert llm.api_key is not None and llm.api_key.env == "LLM_KEY"
    assert llm.timeout == timedelta(seconds=10)
    assert errors_of(BASE + "review: {judge: llm}\n") == [
        AT + "llm: the llm judge needs the LLM's base_url and model"
    ]
    assert errors_of(BASE + "review:\n  judge: llm\n  llm: {model: m}\n") == [
        "config.yaml:5: review.llm: missing key 'base_url'"
    ]
    assert errors_of(
        BASE + "review:\n  llm: {base_url: 'http://x/v1', model: m, api_key: sk-123}\n"
    )[0].startswith("config.yaml:4: review.llm.api_key: inline secrets are not allowed")
