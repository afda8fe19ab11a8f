"""A rest sink's templates: parsing, URL and body rendering, and where a body places each field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehrbridge.outbound.sinks.restwrites import TemplateError, parse_body, parse_text, render_url

VALUES: dict[str, Any] = {
    "name.family": "Santos",
    "name.given": ["Ana", "M"],
    "deceased": False,
    "minutes_duration": 30,
    "phone.home": None,
    "key": "ob-ehr-1",
    "id": "P/1",
}


def test_a_whole_leaf_keeps_the_json_type_and_text_around_names_is_text() -> None:
    # a removed field (None) is null; a value the item does not have is left out
    body = parse_body(
        {
            "given": "{name.given}",
            "dead": "{deceased}",
            "minutes": "{minutes_duration}",
            "home": "{phone.home}",
            "missing": "{email}",
            "missing in text": "mail {email}",
            "note": "{name.family}, {name.given} ({minutes_duration} min) {phone.home}",
            "literal": "{{not a name}}",
            "list": ["{name.family}", 1, None, True, "{email}"],
            "nested": {"id": "{id}"},
        }
    )
    assert body.render(VALUES) == {
        "given": ["Ana", "M"],
        "dead": False,
        "minutes": 30,
        "home": None,
        "note": 'Santos, ["Ana","M"] (30 min) ',
        "literal": "{not a name}",
        "list": ["Santos", 1, None, True, None],
        "nested": {"id": "P/1"},
    }


def test_positions_are_the_whole_leaves_outside_lists() -> None:
    body = parse_body(
        {
            "a": {"b": "{name.family}"},
            "c": "x {deceased}",
            "d": ["{minutes_duration}"],
            "e": "{name.family}",
        }
    )
    assert body.positions() == {"name.family": ("a", "b")}
    assert body.names == {"name.family", "deceased", "minutes_duration"}


def test_url_values_are_encoded_whole() -> None:
    url = parse_text("/p/{id}/n?family={name.family}&dead={deceased}&k={key}")
    assert render_url(url, VALUES) == "/p/P%2F1/n?family=Santos&dead=false&k=ob-ehr-1"


@pytest.mark.parametrize("value", [None, ["a"], {"a": 1}, ".", ".."])
def test_a_url_value_that_cannot_be_placed_is_named(value: Any) -> None:
    with pytest.raises(KeyError) as caught:
        render_url(parse_text("/p/{id}"), {"id": value})
    assert caught.value.args == ("id",)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{a", "an unmatched"),
        ("a}", "an unmatched"),
        ("{}", "empty braces"),
        ("{a!r}", "no format or conversion"),
        ("{a:>9}", "no format or conversion"),
    ],
)
def test_a_malformed_template_is_refused(template: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=problem):
        parse_text(template)


def test_a_malformed_body_leaf_is_named_by_its_path() -> None:
    with pytest.raises(TemplateError, match=r"^a\.b\[1\]: an unmatched"):
        parse_body({"a": {"b": ["ok", "{x"]}})
    with pytest.raises(TemplateError, match="expected JSON values"):
        parse_body({"a": object()})


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_and_plain_text_renders_as_itself(text: str) -> None:
    try:
        parsed = parse_text(text)
    except TemplateError:
        return
    if not parsed.names:
        assert parse_body({"a": text}).render({}) == {
            "a": text.replace("{{", "{").replace("}}", "}")
        }
