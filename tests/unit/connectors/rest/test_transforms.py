"""REST field transforms: each one, its options, and errors that never show the value."""

from __future__ import annotations

from typing import Any

import pytest

from ehrbridge.connectors.rest.spec import Transform, fold_key
from ehrbridge.connectors.rest.transforms import Context, apply, split_name
from ehrbridge.errors import TransformError

UTC_CTX = Context()
NY = Context(timezone="America/New_York")


def run(step: Transform | str, value: Any, ctx: Context = UTC_CTX) -> Any:
    return apply([Transform(name=step) if isinstance(step, str) else step], value, ctx)


@pytest.mark.parametrize(
    ("value", "ctx", "expected"),
    [
        ("2026-12-03T14:30:00Z", UTC_CTX, "2026-12-03T14:30:00Z"),
        ("2026-12-03T09:30:00-05:00", UTC_CTX, "2026-12-03T14:30:00Z"),
        ("2026-12-03 09:30", NY, "2026-12-03T14:30:00Z"),
        ("Dec 3, 2026 9:30 AM", NY, "2026-12-03T14:30:00Z"),
        ("12/03/2026 09:30", NY, "2026-12-03T14:30:00Z"),
        ("03/12/2026 09:30", Context(timezone="America/New_York", dayfirst=True),
         "2026-12-03T14:30:00Z"),
        ("2026-07-01 09:30", NY, "2026-07-01T13:30:00Z"),  # daylight saving time
        (1796308200, UTC_CTX, "2026-12-03T14:30:00Z"),
        (1796308200000, UTC_CTX, "2026-12-03T14:30:00Z"),
        ("1796308200", UTC_CTX, "2026-12-03T14:30:00Z"),
    ],
)  # fmt: skip
def test_datetime_reads_common_forms_into_utc(value: Any, ctx: Context, expected: str) -> None:
    assert run("datetime", value, ctx) == expected


def test_datetime_options_override_the_source() -> None:
    step = Transform(name="datetime", format="%d.%m.%Y %H:%M", timezone="Europe/Berlin")
    assert run(step, "03.12.2026 15:30", NY) == "2026-12-03T14:30:00Z"
    dayfirst = Transform(name="datetime", dayfirst=True)
    assert run(dayfirst, "03/12/2026 14:30") == "2026-12-03T14:30:00Z"


@pytest.mark.parametrize(
    ("value", "ctx", "expected"),
    [
        ("1984-03-12", UTC_CTX, "1984-03-12"),
        ("03/12/1984", UTC_CTX, "1984-03-12"),
        ("12/03/1984", Context(dayfirst=True), "1984-03-12"),
        ("March 12, 1984", UTC_CTX, "1984-03-12"),
        ("1984-03-12T23:30:00", UTC_CTX, "1984-03-12"),
        ("1984", UTC_CTX, "1984"),
        ("1984-03", UTC_CTX, "1984-03"),
    ],
)
def test_date(value: str, ctx: Context, expected: str) -> None:
    assert run("date", value, ctx) == expected


@pytest.mark.parametrize("step", ["datetime", "date"])
@pytest.mark.parametrize("value", ["the fifth at noonish", "", "2026-13-45", True, {"a": 1}])
def test_a_date_that_cannot_be_read_fails_without_showing_it(step: str, value: Any) -> None:
    with pytest.raises(TransformError) as caught:
        run(step, value)
    assert "noonish" not in str(caught.value) and str(caught.value).startswith(step)


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [
        ("(617) 555-0142", Transform(name="phone"), "+16175550142"),
        ("617.555.0142 ext. 3", Transform(name="phone"), "+16175550142"),
        ("+44 20 7946 0958", Transform(name="phone"), "+442079460958"),
        ("020 7946 0958", Transform(name="phone", arg="GB"), "+442079460958"),
        (6175550142, Transform(name="phone"), "+16175550142"),
    ],
)
def test_phone_to_e164(value: Any, step: Transform, expected: str) -> None:
    assert run(step, value) == expected


def test_a_phone_that_is_not_one_fails() -> None:
    with pytest.raises(TransformError, match=r"^phone: not a possible phone number$"):
        run("phone", "12")


@pytest.mark.parametrize(
    ("text", "given", "family"),
    [
        ("Santos, Ana M", ["Ana", "M"], "Santos"),
        ("Santos, Ana M.", ["Ana", "M"], "Santos"),
        ("Ana M Santos", ["Ana", "M"], "Santos"),
        ("Dr. Ana Santos Jr.", ["Ana"], "Santos"),
        ("  Okafor ,  Chidi  ", ["Chidi"], "Okafor"),
        ("Cher", None, "Cher"),
    ],
)
def test_name_splitting(text: str, given: list[str] | None, family: str) -> None:
    assert run(Transform(name="name", arg="given"), text) == given
    assert run(Transform(name="name", arg="family"), text) == family


def test_split_name_of_nothing() -> None:
    assert split_name("  ") == ([], None)


def test_code_map_ignores_case_and_spaces_and_falls_back_to_the_default() -> None:
    table = ((fold_key("CXL"), "cancelled"), (fold_key("Booked "), "booked"))
    strict = Transform(name="map", table=table)
    loose = Transform(name="map", table=table, default="proposed", has_default=True)
    assert run(strict, " cxl ") == "cancelled" and run(strict, "BOOKED") == "booked"
    assert run(loose, "tentative") == "proposed"
    with pytest.raises(TransformError, match="not in the map and there is no default"):
        run(strict, "tentative")


def test_a_map_can_map_to_any_value_numbers_included() -> None:
    step = Transform(name="map", table=(("y", True), ("n", False)))
    assert run(step, "Y") is True


def test_keywords_categorise_free_text_first_match_wins() -> None:
    step = Transform(
        name="keywords",
        patterns=(
            ("checkup", ("physical", "wellness", "annual")),
            ("followup", ("follow[- ]?up", "review")),
            ("walkin", ("walk[- ]?in",)),
        ),
        default="routine",
        has_default=True,
    )
    assert run(step, "Annual physical exam") == "checkup"
    assert run(step, "FOLLOW-UP: blood pressure review") == "followup"
    assert run(step, "Walk in, sore throat") == "walkin"
    assert run(step, "Consultation") == "routine"
    # whole words only: "reviewer" is not "review"
    assert run(step, "Meet the reviewer") == "routine"
    strict = Transform(name="keywords", patterns=step.patterns)
    with pytest.raises(TransformError, match="no keyword matches"):
        run(strict, "Consultation")


@pytest.mark.parametrize(
    ("step", "value", "expected"),
    [
        (Transform(name="strip"), "  a b  ", "a b"),
        (Transform(name="strip"), "   ", None),
        (Transform(name="strip"), [" a ", " "], ["a"]),
        (Transform(name="lower"), "MiXed", "mixed"),
        (Transform(name="upper"), "ma", "MA"),
        (Transform(name="string"), 1234.0, "1234"),
        (Transform(name="string"), 42, "42"),
        (Transform(name="number"), "1,234.5", 1234.5),
        (Transform(name="number"), "30", 30),
        (Transform(name="integer"), "30.0", 30),
        (Transform(name="boolean"), "Yes", True),
        (Transform(name="boolean"), 0, False),
        (Transform(name="list"), "Ana", ["Ana"]),
        (Transform(name="list"), ["Ana"], ["Ana"]),
        (Transform(name="join", arg=" "), ["Ana", None, "Maria"], "Ana Maria"),
        (Transform(name="join", arg=", "), [], None),
        (Transform(name="split", arg=";"), "a; b;;c", ["a", "b", "c"]),
        (Transform(name="prefix", arg="urn:oid:1.2.3|"), "M100", "urn:oid:1.2.3|M100"),
    ],
)
def test_text_and_number_transforms(step: Transform, value: Any, expected: Any) -> None:
    assert run(step, value) == expected


@pytest.mark.parametrize(
    ("step", "value", "message"),
    [
        ("number", "twelve", "number: expected a number"),
        ("number", "nan", "number: expected a finite number"),
        ("integer", "2.5", "integer: expected a whole number"),
        ("boolean", "maybe", "boolean: expected true/false, yes/no or 1/0"),
        ("lower", {"a": 1}, "lower: expected text"),
    ],
)
def test_transform_errors_name_the_transform(step: str, value: Any, message: str) -> None:
    with pytest.raises(TransformError) as caught:
        run(step, value)
    assert str(caught.value) == message


def test_a_chain_runs_in_order_and_none_passes_through() -> None:
    chain = [
        Transform(name="strip"),
        Transform(name="lower"),
        Transform(name="map", table=(("cxl", "cancelled"),)),
    ]
    assert apply(chain, "  CXL ", UTC_CTX) == "cancelled"
    assert apply(chain, None, UTC_CTX) is None
    assert apply(chain, "   ", UTC_CTX) is None  # strip leaves nothing: the rest is skipped
