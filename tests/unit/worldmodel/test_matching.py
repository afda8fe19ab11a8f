"""Tests for identity matching: normalisation, lookup keys, scoring and decisions."""

from __future__ import annotations

import doctest
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehrbridge.worldmodel import matching
from ehrbridge.worldmodel.matching import (
    MatchDecision,
    decide,
    lookup_keys,
    normalize_email,
    normalize_phone,
    score_demographics,
)

Fields = dict[str, object]

MARIA: Fields = {
    "name.family": "Hernandez",
    "name.given": ["Maria", "Luisa"],
    "birth_date": "1984-03-12",
    "gender": "female",
    "phone.mobile": "+16175550142",
    "email": "maria@example.org",
    "address.line": ["12 Oak Street", "Apt 4"],
    "address.city": "Boston",
    "address.state": "MA",
    "address.postal_code": "02118",
    "address.country": "US",
}

#: Shares only a birth date with MARIA.
STRANGER: Fields = {
    "name.family": "Okafor",
    "name.given": ["Chidi"],
    "birth_date": "1984-03-12",
    "gender": "female",
    "address.line": ["9 Elm Rd"],
    "address.city": "Chicago",
    "address.postal_code": "60614",
}


def with_(base: Mapping[str, object], **changes: object) -> Fields:
    """``base`` with ``name__family=...`` style changes (``__`` stands for ``.``)."""
    fields = dict(base)
    fields.update({key.replace("__", "."): value for key, value in changes.items()})
    return fields


def without(base: Mapping[str, object], *prefixes: str) -> Fields:
    return {k: v for k, v in base.items() if not k.startswith(prefixes)}


# --- normalisation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "(617) 555-0142",
        "617.555.0142",
        "617-555-0142",
        "6175550142",
        "1-617-555-0142",
        "+1 617 555 0142",
        "+1 (617) 555-0142",
        "+16175550142",
        "011 1 617 555 0142",
        "tel:+1-617-555-0142",
        "617-555-0142 ext. 12",
        "  617 555 0142  ",
    ],
)
def test_phone_dialled_forms_normalise_to_one_e164(raw: str) -> None:
    assert normalize_phone(raw) == "+16175550142"


def test_phone_international_prefix_of_the_default_region() -> None:
    assert normalize_phone("001 617 555 0142", default_region="GB") == "+16175550142"
    assert normalize_phone("020 7946 0958", default_region="GB") == "+442079460958"


@pytest.mark.parametrize("raw", ["", "   ", "abc", "12", "555-01", "+1 617 555 0142 999 999", "@"])
def test_invalid_phone_is_none(raw: str) -> None:
    assert normalize_phone(raw) is None


def test_phone_never_raises_on_odd_input() -> None:
    assert normalize_phone("x" * 1000) is None
    assert normalize_phone(None) is None  # lru_cache widens the signature; still None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane.Doe@Example.ORG ", "jane.doe@example.org"),
        ("a@b.co", "a@b.co"),
        ("no-at.example.org", None),
        ("two@@example.org", None),
        ("a@b@example.org", None),
        ("a@localhost", None),
        ("a@.org", None),
        ("a@example.", None),
        ("@example.org", None),
        ("a b@example.org", None),
        ("", None),
    ],
)
def test_normalize_email(raw: str, expected: str | None) -> None:
    assert normalize_email(raw) == expected


# --- lookup keys ---------------------------------------------------------------------------------


def test_lookup_keys_for_a_patient() -> None:
    fields = with_(
        MARIA,
        name__family="Hernández-López",
        phone__home="(617) 555-0199",
        phone__work="not a phone",
        email=" Maria@Example.org ",
        mrn="M-00042",
        identifiers=["http://hospital.example.org/mrn|M-00042", "urn:ssn|x"],
    )
    assert lookup_keys("Patient", fields) == {
        "phone:+16175550142",
        "phone:+16175550199",
        "email:maria@example.org",
        "id:http://hospital.example.org/mrn|M-00042",
        "id:urn:ssn|x",
        "mrn:M-00042",
        "dob:1984-03-12",
        "name:hernandezlopez",
        "given:maria",
        "given:luisa",
    }


def test_lookup_keys_skip_missing_and_none() -> None:
    fields: Fields = {"name.family": None, "birth_date": None, "email": "broken", "mrn": ""}
    assert lookup_keys("Patient", fields) == frozenset()
    assert lookup_keys("Patient", {}) == frozenset()


def test_lookup_keys_for_a_practitioner() -> None:
    fields: Fields = {"npi": "1234567893", "phone.work": "617 555 0100", "name.family": "Ng"}
    assert lookup_keys("Practitioner", fields) == {
        "npi:1234567893",
        "phone:+16175550100",
        "name:ng",
    }


def test_lookup_keys_stay_short_and_stable() -> None:
    long_identifier = "urn:oid:" + "1." * 200 + "|value"
    keys = lookup_keys("Location", {"identifiers": [long_identifier]})
    (key,) = keys
    assert key.startswith("id:#")
    assert len(key) <= matching.MAX_KEY_LENGTH
    assert lookup_keys("Location", {"identifiers": [long_identifier]}) == keys


def test_doctests_pass() -> None:
    result = doctest.testmod(matching)
    assert result.attempted > 0
    assert result.failed == 0


# --- demographic scoring -------------------------------------------------------------------------


def test_identical_demographics_score_high() -> None:
    assert score_demographics(MARIA, MARIA).score >= 0.95
    minimal = without(MARIA, "address", "phone", "email")
    assert score_demographics(minimal, dict(minimal)).score >= 0.95


@pytest.mark.parametrize("family", ["Hernandes", "Hernadnez", "Hernndez", "Hernanddez"])
def test_family_name_typo_same_dob_and_gender_scores_high(family: str) -> None:
    assert score_demographics(MARIA, with_(MARIA, name__family=family)).score >= 0.85
    no_address = without(MARIA, "address")
    assert score_demographics(no_address, with_(no_address, name__family=family)).score >= 0.85


@pytest.mark.parametrize("given_name", [["Ana"], ["Elena"], ["Sofia", "Luisa"], ["Isabel"]])
def test_twins_with_different_given_names_score_below_candidate(given_name: list[str]) -> None:
    twin = with_(MARIA, name__given=given_name)
    assert score_demographics(MARIA, twin).score < 0.85


def test_strangers_sharing_only_a_birth_date_score_low() -> None:
    assert score_demographics(MARIA, STRANGER).score < 0.5
    assert score_demographics(without(MARIA, "address"), without(STRANGER, "address")).score < 0.5


def test_gender_conflict_is_a_strong_penalty() -> None:
    result = score_demographics(MARIA, with_(MARIA, gender="male"))
    assert result.score < 0.8
    assert "gender differs" in result.reasons


def test_unknown_gender_is_neither_agreement_nor_conflict() -> None:
    result = score_demographics(MARIA, with_(MARIA, gender="unknown"))
    assert result.score >= 0.95
    assert "gender missing" in result.reasons


def test_birth_date_transposed_is_partial() -> None:
    transposed = score_demographics(MARIA, with_(MARIA, birth_date="1984-12-03"))
    different = score_demographics(MARIA, with_(MARIA, birth_date="1991-07-25"))
    assert "birth date day/month transposed" in transposed.reasons
    assert different.score < transposed.score < score_demographics(MARIA, MARIA).score


def test_address_counts_postal_code_and_line() -> None:
    moved = with_(MARIA, address__line=["400 Main St"], address__postal_code="10001")
    abbreviated = with_(MARIA, address__line=["12 Oak St", "Apartment 4"])
    assert score_demographics(MARIA, abbreviated).score > score_demographics(MARIA, moved).score
    assert score_demographics(MARIA, abbreviated).score >= 0.95


def test_name_alone_is_not_a_strong_match() -> None:
    name_only: Fields = {"name.family": "Hernandez", "name.given": ["Maria"]}
    assert score_demographics(name_only, dict(name_only)).score < 0.8


def test_nothing_in_common_scores_zero() -> None:
    assert score_demographics({}, MARIA).score == 0.0


def test_reasons_never_contain_input_values() -> None:
    planted: Fields = {
        "name.family": "Quixtarbly",
        "name.given": ["Zebulonia", "Marigoldette"],
        "birth_date": "1967-08-23",
        "gender": "female",
        "address.line": ["4471 Wexcombe Crescent"],
        "address.city": "Ulverthorpe",
        "address.postal_code": "97531",
        "phone.mobile": "+16175550177",
        "email": "zebulonia@quixtarbly.example",
        "mrn": "MRN-778899",
        "identifiers": ["urn:planted|ID-445566"],
    }
    other = with_(
        planted,
        name__family="Quixtarbli",
        name__given=["Zebulonio"],
        birth_date="1967-23-08",
        gender="male",
        address__line=["4471 Wexcombe Cres"],
    )
    values = [
        "Quixtar",
        "quixtar",
        "Zebulon",
        "zebulon",
        "Marigold",
        "1967",
        "08-23",
        "23-08",
        "Wexcombe",
        "wexcombe",
        "4471",
        "Ulverthorpe",
        "ulverthorpe",
        "97531",
        "5550177",
        "778899",
        "445566",
        "female",
        "male",
    ]
    reasons = [
        *score_demographics(planted, other).reasons,
        *(r for d in decide(planted, [("e1", other)]) for r in d.reasons),
        *(r for d in decide(planted, [("e1", planted), ("e2", dict(planted))]) for r in d.reasons),
    ]
    assert reasons
    for reason in reasons:
        for value in values:
            # "gender differs" names the field, not the value; guard the words themselves.
            if value in {"female", "male"}:
                assert value not in reason.split()
            else:
                assert value not in reason


names = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
people = st.fixed_dictionaries(
    {},
    optional={
        "name.family": st.one_of(st.none(), names, st.sampled_from(["Smith", "Smyth", "Núñez"])),
        "name.given": st.one_of(st.none(), st.lists(names, max_size=3), names),
        "birth_date": st.one_of(
            st.none(),
            st.dates().map(lambda d: d.isoformat()),
            st.sampled_from(["1984-03-12", "1984-12-03", "1984-03-13", "garbage"]),
        ),
        "gender": st.one_of(st.none(), st.sampled_from(["male", "female", "other", "unknown", ""])),
        "address.line": st.lists(names, max_size=2),
        "address.city": st.one_of(st.none(), names),
        "address.postal_code": st.one_of(st.none(), st.sampled_from(["02118", "02118-1234", "x"])),
    },
)


@given(people, people)
def test_score_is_symmetric_and_bounded(a: dict[str, object], b: dict[str, object]) -> None:
    forward, backward = score_demographics(a, b), score_demographics(b, a)
    assert forward.score == backward.score
    assert 0.0 <= forward.score <= 1.0


# --- decisions -----------------------------------------------------------------------------------


def kinds(decisions: list[MatchDecision]) -> list[tuple[str, str | None]]:
    return [(d.kind, d.entity_id) for d in decisions]


CONTACTLESS = without(MARIA, "phone", "email")


def test_shared_identifier_is_certain_even_with_weak_demographics() -> None:
    new: Fields = {"identifiers": ["urn:mrn|1"], "name.family": "Hernandez"}
    entity = with_(STRANGER, identifiers=["urn:other|9", "urn:mrn|1"])
    (decision,) = decide(new, [("e1", entity)])
    assert (decision.kind, decision.entity_id, decision.score) == ("certain", "e1", 1.0)
    assert "shared identifier" in decision.reasons


@pytest.mark.parametrize("path", ["mrn", "npi"])
def test_shared_mrn_or_npi_is_certain(path: str) -> None:
    (decision,) = decide(with_(CONTACTLESS, **{path: "X1"}), [("e1", with_(MARIA, **{path: "X1"}))])
    assert decision.kind == "certain"
    assert f"shared {path}" in decision.reasons


@pytest.mark.parametrize(
    "conflict", [{"birth_date": "1990-01-01"}, {"gender": "male"}, {"birth_date": "1984-12-03"}]
)
def test_shared_identifier_with_conflicting_demographics_is_a_candidate(
    conflict: dict[str, object],
) -> None:
    new = with_(CONTACTLESS, mrn="M1")
    entity = with_(MARIA, mrn="M1", **conflict)
    (decision,) = decide(new, [("e1", entity)])
    assert decision.kind == "candidate"
    assert "demographics conflict" in decision.reasons


def test_shared_identifier_with_missing_demographics_is_certain() -> None:
    (decision,) = decide({"mrn": "M1"}, [("e1", with_(MARIA, mrn="M1"))])
    assert decision.kind == "certain"


def test_shared_phone_with_good_demographics_is_certain() -> None:
    new = with_(CONTACTLESS, name__family="Hernandes", phone__home="(617) 555-0142")
    (decision,) = decide(new, [("e1", MARIA)])
    assert decision.kind == "certain"
    assert "shared phone" in decision.reasons
    assert 0.8 <= decision.score < 0.97


def test_shared_email_with_good_demographics_is_certain() -> None:
    new = with_(CONTACTLESS, name__family="Hernandes", email="MARIA@example.org")
    (decision,) = decide(new, [("e1", MARIA)])
    assert decision.kind == "certain"
    assert "shared email" in decision.reasons


def test_shared_phone_with_middling_demographics_is_a_candidate() -> None:
    twin = with_(MARIA, name__given=["Ana"])  # scores ~0.75: below candidate, above 0.5
    (decision,) = decide(twin, [("e1", MARIA)])
    assert decision.kind == "candidate"
    assert 0.5 <= decision.score < 0.8


def test_shared_phone_alone_is_not_a_match() -> None:
    spouse: Fields = {
        "name.family": "Okafor",
        "name.given": ["Chidi"],
        "birth_date": "1980-06-30",
        "gender": "male",
        "phone.mobile": "617 555 0142",
    }
    assert decide(spouse, [("e1", MARIA)]) == []


def test_demographics_alone_certain_candidate_or_nothing() -> None:
    assert kinds(decide(CONTACTLESS, [("e1", MARIA)])) == [("certain", "e1")]
    typo = with_(CONTACTLESS, name__family="Hernandes")
    assert kinds(decide(typo, [("e1", MARIA)])) == [("candidate", "e1")]
    assert decide(with_(CONTACTLESS, name__given=["Ana"]), [("e1", MARIA)]) == []
    assert decide(STRANGER, [("e1", MARIA)]) == []


def test_thresholds_are_parameters() -> None:
    typo = with_(CONTACTLESS, name__family="Hernandes")
    assert kinds(decide(typo, [("e1", MARIA)], certain=0.9)) == [("certain", "e1")]
    assert decide(typo, [("e1", MARIA)], candidate=0.99, certain=0.995) == []


def test_two_certain_matches_are_both_downgraded() -> None:
    duplicate = dict(MARIA)
    decisions = decide(CONTACTLESS, [("e1", MARIA), ("e2", duplicate)])
    assert sorted(kinds(decisions)) == [("candidate", "e1"), ("candidate", "e2")]
    assert all("ambiguous: several certain" in d.reasons for d in decisions)


def test_two_identifier_matches_are_both_downgraded() -> None:
    new = with_(CONTACTLESS, mrn="M1")
    decisions = decide(new, [("e1", with_(MARIA, mrn="M1")), ("e2", with_(STRANGER, mrn="M1"))])
    assert [d.kind for d in decisions] == ["candidate", "candidate"]


def test_decisions_are_sorted_best_first() -> None:
    typo = with_(MARIA, name__family="Hernandes", phone__mobile=None, email=None)
    moved = with_(MARIA, address__line=["400 Main St"], address__postal_code="10001")
    candidates = [
        ("stranger", STRANGER),
        ("typo", typo),
        ("moved", without(moved, "phone", "email")),
        ("same", MARIA),
    ]
    decisions = decide(CONTACTLESS, candidates)
    assert [d.entity_id for d in decisions] == ["same", "typo", "moved"]
    assert [d.kind for d in decisions] == ["certain", "candidate", "candidate"]
    assert decisions[1].score > decisions[2].score


def test_an_entity_listed_twice_is_not_ambiguous() -> None:
    decisions = decide(CONTACTLESS, [("e1", MARIA), ("e1", MARIA)])
    assert kinds(decisions) == [("certain", "e1")]


def test_no_candidates_no_decisions() -> None:
    assert decide(MARIA, []) == []
