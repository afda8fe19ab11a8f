"""The dialogue rules, through the judge: who said it, acceptance, finality, negation,
hypotheticals and third parties (written from the call-facts label rules)."""

from __future__ import annotations

from ehrbridge.review.verdicts import Case, Outcome, Speaker
from tests.unit.review.cases import A, C, case, outcome

CELL = "+14155550162"
SAID = "four one five, five five five, oh one six two"


def test_the_callers_own_words_support() -> None:
    c = case("phone.mobile", CELL, (A, "What's your cell number?"), (C, f"It's {SAID}."))
    assert outcome(c) is Outcome.SUPPORTED


def test_the_agent_alone_never_supports() -> None:
    c = case(
        "phone.mobile",
        CELL,
        (A, f"I have your cell as {SAID}."),
        (C, "Can you also tell me when my appointment is?"),
    )
    assert outcome(c) is Outcome.UNSURE


def test_an_accepted_read_back_supports_and_a_goodbye_is_not_acceptance() -> None:
    accepted = case(
        "phone.mobile",
        CELL,
        (A, f"Your new cell is {SAID}, correct?"),
        (C, "Yes, that's correct."),
    )
    assert outcome(accepted) is Outcome.SUPPORTED
    goodbye = case(
        "phone.mobile",
        CELL,
        (A, f"I'll put your cell as {SAID}. Have a good day."),
        (C, "Thanks, bye."),
    )
    assert outcome(goodbye) is Outcome.UNSURE


def test_a_turned_down_read_back_is_contradicted() -> None:
    c = case(
        "phone.mobile",
        CELL,
        (A, f"Is your cell still {SAID}?"),
        (C, "No, not anymore, I'll call back with the new one."),
    )
    assert outcome(c) is Outcome.CONTRADICTED


def test_the_last_correction_wins() -> None:
    fixed = "four one five, five five five, oh one two six"
    said = f"My cell is {SAID} - no wait, sorry, it's {fixed}."
    first = case("phone.mobile", CELL, (A, "Your cell?"), (C, said))
    assert outcome(first) is Outcome.CONTRADICTED
    last = case("phone.mobile", "+14155550126", (A, "Your cell?"), (C, said))
    assert outcome(last) is Outcome.SUPPORTED


def test_a_late_partial_correction_leaves_it_unsure() -> None:
    c = case(
        "phone.mobile",
        CELL,
        (A, "Your cell?"),
        (C, f"It's {SAID}."),
        (A, "Thank you."),
        (C, "Actually, wait, the last one is a three, not a two."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_someone_elses_number_is_not_the_patients() -> None:
    daughter = case(
        "phone.mobile",
        CELL,
        (A, "Who should we call?"),
        (C, f"My daughter's cell, {SAID}."),
    )
    assert outcome(daughter) is Outcome.UNSURE
    said_after = case(
        "phone.mobile",
        CELL,
        (A, "What number?"),
        (C, f"Cell is {SAID}. That's my son's, he handles my calls."),
    )
    assert outcome(said_after) is Outcome.UNSURE


def test_someone_elses_number_against_the_patients_reconfirmed_one() -> None:
    c = case(
        "phone.mobile",
        CELL,
        (A, "Is your cell still four one five, five five five, oh one nine nine?"),
        (C, "Yes, that's still mine."),
        (A, "And your husband's?"),
        (C, f"His cell is {SAID}."),
    )
    assert outcome(c) is Outcome.CONTRADICTED


def test_hypothetical_and_planned_values_are_not_current() -> None:
    c = case(
        "address.line",
        "77 Birch Rd",
        (A, "Is your address changing?"),
        (C, "We might move to seventy-seven Birch Road next spring, if the sale goes through."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_an_old_value_is_not_the_current_one() -> None:
    c = case(
        "address.line",
        "77 Birch Rd",
        (A, "What's your address?"),
        (C, "My old address was seventy-seven Birch Road."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_hedged_and_cut_off_values_stay_unsure() -> None:
    hedged = case(
        "phone.mobile",
        CELL,
        (A, "Your cell?"),
        (C, f"I think it's {SAID}? Or is it oh one two six, I never remember."),
    )
    assert outcome(hedged) is Outcome.UNSURE
    cut = case(
        "phone.mobile",
        CELL,
        (A, "Your cell?"),
        (C, "It's four one five, five five five, oh one [inaudible]"),
    )
    assert outcome(cut) is Outcome.UNSURE


def test_a_type_the_caller_denies_is_not_established() -> None:
    c = case(
        "phone.mobile",
        CELL,
        (A, "What's the best number?"),
        (C, f"{SAID}."),
        (A, "Is that your cell phone?"),
        (C, "No, no. That's the house."),
    )
    assert outcome(c) is not Outcome.SUPPORTED


def test_spelled_names_and_a_spelling_corrected() -> None:
    c = case(
        "name.family",
        "Nguyen",
        (A, "And your last name?"),
        (C, "Nguyen, N-G-U-Y-E-N."),
    )
    assert outcome(c) is Outcome.SUPPORTED
    wrong = case("name.family", "Nguyan", (A, "And your last name?"), (C, "N-G-U-Y-E-N."))
    assert outcome(wrong) is Outcome.CONTRADICTED
    unspelled = case("name.family", "Nguyen", (A, "Your last name?"), (C, "It's Nguyen."))
    assert outcome(unspelled) is Outcome.UNSURE


def test_spoken_email_with_a_spelling_that_disagrees() -> None:
    c = case(
        "email",
        "jon.baker@example.com",
        (A, "Your email?"),
        (C, "jon dot baker at example dot com. That's J-O-H-N."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_member_id_letter_o_is_not_zero() -> None:
    said = "O as in Oscar, K, then four four one, two oh nine"
    ok = case("member_id", "OK441209", (A, "Member ID?"), (C, said), entity="InsurancePlan")
    assert outcome(ok) is Outcome.SUPPORTED
    zero = case("member_id", "0K441209", (A, "Member ID?"), (C, said), entity="InsurancePlan")
    assert outcome(zero) is Outcome.CONTRADICTED


def test_appointment_resolved_in_the_clinic_zone_across_dst() -> None:
    # Friday 30 October 2026 in Denver; "next Wednesday" is 4 November, after DST ends
    lines = (
        (C, "Can I come in next Wednesday afternoon?"),
        (A, "I have two p.m. next Wednesday. Does that work?"),
        (C, "Yes, two works."),
        (A, "You're booked for next Wednesday at two p.m."),
        (C, "Thanks."),
    )

    def booked(value: str) -> Case:
        return case(
            "start",
            value,
            *lines,
            entity="Appointment",
            started="2026-10-30T22:00:00Z",
            zone="America/Denver",
        )

    right = booked("2026-11-04T14:00:00-07:00")
    assert outcome(right) is Outcome.SUPPORTED
    same_instant = booked("2026-11-04T21:00:00Z")
    assert outcome(same_instant) is Outcome.SUPPORTED
    wrong_offset = booked("2026-11-04T14:00:00-06:00")
    assert outcome(wrong_offset) is Outcome.CONTRADICTED


def test_a_slot_only_offered_or_changed_after_booking_is_not_booked() -> None:
    offered = case(
        "status",
        "booked",
        (A, "I can offer Monday, December seventh at nine a.m."),
        (C, "Let me think about it and call back."),
        entity="Appointment",
    )
    assert outcome(offered) is Outcome.UNSURE
    changed = case(
        "start",
        "2026-12-07T09:00:00-05:00",
        (A, "Monday, December seventh at nine a.m.?"),
        (C, "Yes."),
        (A, "You're booked for Monday, December seventh at nine a.m."),
        (C, "Actually, can we make it later in the day?"),
        entity="Appointment",
    )
    assert outcome(changed) is Outcome.UNSURE


def test_medication_denied_someone_elses_or_possible() -> None:
    def med(value: str, said: str) -> Outcome:
        return outcome(
            case(
                "medication.display",
                value,
                (A, "What medicines do you take?"),
                (C, said),
                entity="MedicationOrder",
            )
        )

    assert med("metoprolol 25 mg", "Metoprolol, twenty-five milligrams.") is Outcome.SUPPORTED
    assert med("Coumadin 5 mg", "Warfarin, five milligrams.") is Outcome.SUPPORTED
    assert med("warfarin 5 mg", "Warfarin, two point five milligrams.") is Outcome.CONTRADICTED
    assert med("simvastatin", "I'm not taking simvastatin anymore.") is Outcome.CONTRADICTED
    assert med("insulin", "My wife is the one on insulin.") is Outcome.UNSURE
    assert med("Jardiance", "My doctor may put me on Jardiance.") is Outcome.UNSURE
    assert (
        med("metoprolol 25 mg", "Metoprolol twenty-five milligrams, then he upped it to fifty.")
        is Outcome.UNSURE
    )


def test_allergy_denied_or_someone_elses() -> None:
    def allergy(field: str, value: str, *lines: tuple[Speaker, str]) -> Outcome:
        return outcome(case(field, value, *lines, entity="AllergyIntolerance"))

    assert allergy("substance", "latex", (C, "I'm allergic to latex.")) is Outcome.SUPPORTED
    assert allergy("substance", "latex", (C, "I'm not allergic to latex.")) is Outcome.CONTRADICTED
    assert allergy("substance", "latex", (C, "My son is allergic to latex.")) is Outcome.UNSURE
    assert (
        allergy("reaction", "swelling", (A, "Any swelling?"), (C, "No, never."))
        is Outcome.CONTRADICTED
    )


def test_language_must_be_asked_for() -> None:
    asked = case("language", "fr", (A, "Which language?"), (C, "I prefer French, please."))
    assert outcome(asked) is Outcome.SUPPORTED
    courtesy = case("language", "es", (A, "Anything else?"), (C, "No, gracias, adiós."))
    assert outcome(courtesy) is Outcome.UNSURE


def test_a_payer_only_considered_is_not_the_current_one() -> None:
    c = case(
        "payer",
        "Aetna",
        (C, "I used to have Aetna, but I'm on Medicare now."),
        entity="InsurancePlan",
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_background_voice_counts_only_if_the_caller_adopts_it() -> None:
    c = case(
        "phone.mobile",
        CELL,
        (A, "What's your cell number?"),
        (C, f"Hang on. [background] It's {SAID}."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_pharmacys_number_is_not_the_patients() -> None:
    c = case(
        "phone.work",
        CELL,
        (A, "Anything else?"),
        (C, f"The pharmacy's number is {SAID}, for my work refills."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_read_back_answered_with_other_digits_is_not_accepted() -> None:
    c = case(
        "phone.mobile",
        CELL,
        (A, "Your cell?"),
        (C, f"{SAID}."),
        (A, f"That's {SAID}?"),
        (C, "Oh one six three."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_value_the_caller_goes_to_check_is_not_final() -> None:
    c = case(
        "phone.mobile",
        CELL,
        (A, "Your cell?"),
        (C, f"It's {SAID}. Hold on, let me check, it's a new phone."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_booking_that_names_only_a_weekday() -> None:
    # Thursday 19 November 2026 in Chicago
    def booked(value: str, *lines: tuple[Speaker, str]) -> Outcome:
        return outcome(
            case(
                "start",
                value,
                *lines,
                entity="Appointment",
                started="2026-11-19T10:00:00-06:00",
                zone="America/Chicago",
            )
        )

    offered_later_week = (
        (A, "I have Tuesday, December first at two p.m."),
        (C, "That works."),
        (A, "You're booked for Tuesday at two p.m."),
    )
    assert booked("2026-12-01T14:00:00-06:00", *offered_later_week) is Outcome.SUPPORTED
    assert booked("2026-11-24T14:00:00-06:00", *offered_later_week) is Outcome.CONTRADICTED
    coming = ((C, "Monday at nine a.m.?"), (A, "You're booked for Monday at nine a.m."))
    assert booked("2026-11-23T09:00:00-06:00", *coming) is Outcome.SUPPORTED
    same_weekday = ((C, "Thursday at nine a.m.?"), (A, "You're booked for Thursday at nine a.m."))
    assert booked("2026-11-26T09:00:00-06:00", *same_weekday) is Outcome.UNSURE


def test_a_yes_that_adds_characters_is_a_fix() -> None:
    c = case(
        "member_id",
        "XK4821",
        (A, "Member ID X K four eight two one?"),
        (C, "Yes, and then a seven."),
        entity="InsurancePlan",
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_value_from_the_address_moved_away_from() -> None:
    c = case(
        "address.postal_code",
        "02144",
        (A, "What's the new address?"),
        (
            C,
            "We moved from fifty-seven Elm Street, oh two one four four, new one later.",
        ),
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_reaction_is_about_its_allergys_substance() -> None:
    c = case(
        "reaction",
        "hives",
        (A, "What happens when you take penicillin?"),
        (C, "Nothing really. With sulfa I get hives."),
        entity="AllergyIntolerance",
        known={"AllergyIntolerance.substance": "penicillin"},
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_replaced_pharmacy_is_not_the_chosen_one() -> None:
    c = case(
        "preferred_pharmacy",
        "CVS, Main St",
        (A, "Which pharmacy?"),
        (C, "I used the CVS on Main Street before, now the Walgreens on Elm."),
    )
    assert outcome(c) is Outcome.UNSURE


def test_a_name_said_exactly_in_an_introduction() -> None:
    intro = (A, "Who am I speaking with?"), (C, "Hi, this is Dolores Whitcomb.")
    assert outcome(case("name.given", "Dolores", *intro)) is Outcome.SUPPORTED
    assert outcome(case("name.family", "Whitcomb", *intro)) is Outcome.SUPPORTED
    # a name that sounds alike is never a contradiction, only unsure
    assert outcome(case("name.family", "Witcomb", *intro)) is Outcome.UNSURE
    nickname = (
        (C, "This is Bill Tanaka."),
        (A, "Is Bill your legal name?"),
        (C, "No, the legal one is William."),
    )
    assert outcome(case("name.given", "Bill", *nickname)) is Outcome.UNSURE


def test_a_change_of_mind_rebooked_ends_on_the_new_slot() -> None:
    lines = (
        (A, "Monday, November twenty-third at nine a.m.?"),
        (C, "Yes."),
        (A, "You're booked for Monday, November twenty-third at nine a.m."),
        (C, "Oh wait, can we do Tuesday instead?"),
        (A, "Sure, I've moved you to Tuesday, November twenty-fourth at nine a.m."),
        (C, "Great, thanks."),
    )
    first = case("start", "2026-11-23T09:00:00-05:00", *lines, entity="Appointment")
    assert outcome(first) is Outcome.CONTRADICTED
    last = case("start", "2026-11-24T09:00:00-05:00", *lines, entity="Appointment")
    assert outcome(last) is Outcome.SUPPORTED
