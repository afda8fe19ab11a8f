"""A data source's request budget in the runner config: ``budget: {rate: 5/s, concurrency: 2}``."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehrbridge.budget import DEFAULT_BUDGET, MAX_CONCURRENCY, RequestBudget
from ehrbridge.errors import ConfigError
from ehrbridge.runner.configfile import parse_config

CONFIG = """\
workspace: clinic
database: sqlite:///ehrbridge.db
data_sources:
  - id: ehr
    kind: fhir
    base_url: https://ehr.example.org/fhir/R4
{budget}    resources:
      - {{type: Patient, every: 5m}}
"""


def config_with(budget: str) -> str:
    return CONFIG.format(budget=f"    budget: {budget}\n" if budget else "")


def test_a_budget_sets_rate_and_concurrency() -> None:
    (ehr,) = parse_config(config_with("{rate: 3/s, concurrency: 2}")).data_sources
    assert ehr.budget == RequestBudget(rate=3.0, concurrency=2)
    (ehr,) = parse_config(config_with("{rate: 120/min}")).data_sources
    assert ehr.budget == RequestBudget(rate=2.0, concurrency=DEFAULT_BUDGET.concurrency)


def test_a_source_without_a_budget_gets_the_default() -> None:
    (ehr,) = parse_config(config_with("")).data_sources
    assert ehr.budget == DEFAULT_BUDGET


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ("{rate: 5}", "7: data_sources[0].budget.rate: expected a rate such as 5/s"),
        ("{rate: 0/s}", "7: data_sources[0].budget.rate: a rate must be above zero"),
        ("{rate: 5000/s}", "7: data_sources[0].budget.rate: a rate must be at most 1000/s"),
        ("{concurrency: 0}", "7: data_sources[0].budget.concurrency: expected a whole number"),
        ("{concurrency: yes}", "7: data_sources[0].budget.concurrency: expected a whole number"),
        ("{burst: 3}", "7: data_sources[0].budget.burst: unknown key 'burst'"),
        ("5/s", "7: data_sources[0].budget: expected a mapping"),
    ],
)
def test_a_bad_budget_names_key_and_line(budget: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(budget))
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12),
    st.builds(
        lambda n, unit: f"{n}/{unit}",
        st.one_of(st.integers(-5, 10**20), st.floats(0, 1e6).map(str), st.just("")),
        st.sampled_from(["s", "sec", "min", "m", "h", "hour", "d", "", "s/s"]),
    ),
)


@given(
    rate=_VALUES,
    concurrency=st.one_of(_VALUES, st.integers(-3, 2 * MAX_CONCURRENCY)),
    extra=st.sampled_from(["", ", burst: 2", ", rate2: 1/s"]),
)
def test_any_budget_is_taken_or_refused_with_its_key_and_line(
    rate: object, concurrency: object, extra: str
) -> None:
    budget = f"{{rate: {_yaml(rate)}, concurrency: {_yaml(concurrency)}{extra}}}"
    try:
        config = parse_config(config_with(budget))
    except ConfigError as exc:
        for problem in exc.problems:
            # file:line: key path: what is wrong, never the value given
            assert re.match(r"config\.yaml:\d+: data_sources\[0\]\.budget(\.\w+)?: ", problem)
        return
    (ehr,) = config.data_sources
    assert 0 < ehr.budget.rate <= 1000 and 1 <= ehr.budget.concurrency <= MAX_CONCURRENCY
    assert not extra


def _yaml(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
