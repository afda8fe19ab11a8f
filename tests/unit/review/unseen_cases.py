"""Labelled cases the grounding judge was not built on, in the call-facts format.

Each case is a dev-set JSON object (``shared/data/call-facts/README.md``: call, transcript, known,
fact, label, why) built by :func:`_case` and parsed by the same
:func:`~ehrbridge.review.evaluation.parse_case` the evaluation command uses. They were written
from the label rules, one or more per phenomenon of real calls (interpreters, digits across turns,
derivations, self-repairs, Spanish numbers and dates, ordinals, quarter-hours, spelled emails,
third parties, hypotheticals, negations, unconfirmed read-backs), with both a value that must be
verified and values that must not. All data is fictional: phones 555-01xx, example.* emails.

They came in seventeen batches, each written before the judge was run on it, so the first run of a
batch says how the rules did on cases they had never seen:

- ``u-0xx``/``u-1xx`` (111 cases): 38 of 60 supported verified, 2 unsafe passes (a quarter past
  three read as three; "pasado mañana" read as tomorrow);
- ``u-2xx`` (57), after the judge handled the first: 26 of 41 verified, 2 unsafe passes (an
  email domain corrected in the same breath; a birth year corrected in the same breath);
- ``u-3xx`` (35, mostly traps for the rules the first two prompted): 12 of 16 verified, 1 unsafe
  pass (a member id the caller could read only the start of);
- ``u-5xx`` (38, rarer fields and phrasings): 22 of 25 verified, no unsafe pass;
- ``u-6xx`` (32, zones, daylight saving time, rarer fields): 20 of 22 verified, no unsafe pass;
- ``u-7xx`` (12, traps for acceptance and bookings): 3 of 3 verified, 4 unsafe passes (a "yes" to
  another question; a "yes" to a read-back that differs from what the caller said; the agent
  correcting itself in the booking, twice);
- ``u-8xx`` (12, traps for medications, allergies and worded fields): 1 of 3 verified, 2 unsafe
  passes (directions with two frequencies; a dependant's id suffix after "and then");
- ``u-9xx`` (12, traps for phones, names, dates and zones): 3 of 3 verified, 2 unsafe passes (a
  time zone named in the booking; a hyphenated name after its spelling);
- ``u-axx`` (12, more traps across fields): 5 of 5 verified, 1 unsafe pass (a drug the caller is
  "supposed to take" but has not been taking);
- ``u-bxx`` (10, background voices, alternatives, corrections in worded fields): 1 of 2 verified,
  3 unsafe passes (a "yes" a background voice disputes; an email offered with an alternative;
  a pharmacy corrected in the same breath);
- ``u-cxx`` (10, several values in one call): 6 of 6 verified, no unsafe pass;
- ``u-dxx`` (11, speech-to-text spellings of numbers and times): 8 of 10 verified, no unsafe
  pass;
- ``u-exx`` (6, traps for the newest rules): 2 of 2 verified, no unsafe pass;
- ``u-fxx`` (7, whole calls in the dev set's style): 3 of 4 verified, 1 unsafe pass (an
  "apartamento dos" the reader did not know, the unit confirmed later on its own); a second,
  a mother's own cell taken for her son's, was hidden by a wrong label (fixed) and prompted the
  caregiver rule that ``u-gxx`` hold;
- ``u-hxx`` (7, traps for the caregiver rule): 2 of 3 verified, 1 unsafe pass (the caller's own
  "mine is ..." after the patient's);
- ``u-ixx`` (11, whole calls in the dev set's style): 7 of 9 verified, no unsafe pass;
- ``u-jxx`` (9, whole calls in the dev set's style): 6 of 7 verified, no unsafe pass.

Each run's misses were then fixed as phenomena, not as cases; ``u-4xx`` hold the last fixes, and
``test_grounding_unseen.py`` holds the judge to all of them.
"""

from __future__ import annotations

from typing import Any

from ehrbridge.review.evaluation import LabelledCase, parse_case

A = "agent"
C = "caller"
NY = ("2026-12-04T10:15:00-05:00", "America/New_York")


def _case(
    cid: str,
    label: str,
    field: str,
    value: Any,
    lines: list[tuple[str, str]],
    *,
    entity: str = "Patient",
    call: tuple[str, str] = NY,
    known: dict[str, Any] | None = None,
    why: str = "",
) -> dict[str, Any]:
    return {
        "id": cid,
        "call": {"id": f"call-{cid}", "started_at": call[0], "clinic_timezone": call[1]},
        "transcript": [
            {"turn": i, "speaker": speaker, "text": text} for i, (speaker, text) in enumerate(lines)
        ],
        "known": known or {},
        "fact": {
            "entity_type": entity,
            "field": field,
            "value": value,
            "level": "confirmed",
            "evidence_turns": [],
        },
        "label": label,
        "why": why,
    }


_INTERPRETER = [
    (A, "Hello, this is the assistant at Harbor Clinic. How can I help?"),
    (C, "[Interpreter] Hello, I am the interpreter for Mrs. Tran. She wants to update her phone."),
    (A, "Of course. What is the new cell phone number?"),
    (C, "[Interpreter] She says her cell is two zero six, five five five, oh one three one."),
    (A, "Two zero six, five five five, zero one three one. Is that right?"),
    (C, "[Interpreter] Yes, she says that is correct."),
]
_INTERPRETER_DAUGHTER = [
    (A, "What number should we use to reach her?"),
    (
        C,
        "[Interpreter] She says to call her daughter, her daughter's cell is two zero six, five "
        "five five, oh one seven seven.",
    ),
    (A, "Thank you. Does she have a cell phone of her own?"),
    (C, "[Interpreter] She says she will ask her son and call back."),
]
_ACROSS = [
    (A, "What's the best cell number for you?"),
    (C, "Okay, it's six one seven"),
    (A, "Uh huh"),
    (C, "five five five"),
    (A, "Mm-hm"),
    (C, "oh one four eight."),
    (A, "Thank you, I've saved that."),
]
_DERIVED = [
    (A, "Do you have a new phone number for us?"),
    (
        C,
        "Yes, my cell changed. It's the same as my old one, but ending in four two instead of "
        "one seven.",
    ),
    (A, "Got it, thanks."),
]
_REPAIR = [
    (A, "What's your cell phone number?"),
    (C, "Four one five, five five — sorry, five six five, oh one seven three."),
    (A, "Thank you."),
]
_READBACK_FIX = [
    (A, "What's your cell?"),
    (C, "Six one seven, five five five, oh one one nine."),
    (A, "Six one seven, five five five, zero one nine one?"),
    (C, "No, oh one one nine."),
    (A, "Okay, thank you, I've corrected it."),
]
_NOT_ANYMORE = [
    (A, "I have your cell as six one seven, five five five, oh one four two. Is that still good?"),
    (C, "No, that's not my number anymore. I'll have to call back with the new one."),
]
_HUSBAND = [
    (A, "What's a good mobile number?"),
    (C, "You can use my husband's mobile, it's nine one seven, five five five, oh one two one."),
]
_SPANISH_HOME = [
    (A, "¿Cuál es su teléfono de casa?"),
    (C, "El teléfono de casa es tres uno dos, cinco cinco cinco, cero uno cuatro cuatro."),
]
_WORK_EXT = [
    (A, "And a work number?"),
    (
        C,
        "My work number is eight four seven, five five five, oh one two two, extension three "
        "one five.",
    ),
    (A, "Thanks."),
]
_FUTURE_WORK = [
    (A, "Do you have a work number?"),
    (
        C,
        "I'm getting a work phone next month, it'll be three one two, five five five, oh one "
        "eight eight.",
    ),
]
_LANDLINE = [
    (A, "What's your cell phone number?"),
    (
        C,
        "I don't have a cell. The home landline is four one zero, five five five, oh one six zero.",
    ),
]
_TRIPLE = [
    (A, "Your cell number, please?"),
    (C, "Six one seven, triple five, oh one six six."),
]
_DOUBLE_OH = [
    (A, "Best number to reach you?"),
    (C, "My cell is three one two, five five five, double oh one nine."),
]
_HANGUP = [
    (A, "What's your mobile number?"),
    (C, "Hmm, hold on."),
    (
        A,
        "I have five zero three, five five five, zero one five two from caller ID. Is that "
        "your cell?",
    ),
    (C, "Sorry, I have to go — [call disconnected]"),
]
_ECHO = [
    (A, "What's your cell?"),
    (C, "Two one two"),
    (A, "Two one two, yes"),
    (C, "five five five, oh one three three."),
    (A, "Thank you."),
]
_EMAIL_UNDERSCORE = [
    (A, "What's your email address?"),
    (C, "It's j underscore reyes at example dot com."),
]
_EMAIL_DASH = [
    (A, "And your email?"),
    (C, "Ana dash lucia dot ortiz at example dot org."),
]
_EMAIL_AS_IN = [
    (A, "Could you spell your email for me?"),
    (
        C,
        "Sure. It's T as in Tom, O as in Oscar, R as in Robert, R as in Robert, E as in echo, "
        "S as in Sam, at example dot com.",
    ),
    (A, "Thank you."),
]
_EMAIL_HYPHEN_SPELL = [
    (A, "What email should we use?"),
    (C, "K-W-A-M-E dot boateng at example dot net."),
]
_EMAIL_WORK_DONT = [
    (A, "What's your email?"),
    (
        C,
        "My work email is d dot kim at example dot com, but don't use that one, I'll give you my "
        "personal one later.",
    ),
]
_EMAIL_WIFE = [
    (A, "What email can we send reminders to?"),
    (C, "Just send them to my wife, hers is lena dot park at example dot com."),
]
_EMAIL_READBACK = [
    (A, "Your email?"),
    (C, "Raj dot patel seventy at example dot com."),
    (A, "Raj dot patel seven zero at example dot com?"),
    (C, "Yes."),
]
_MEMBER = [
    (A, "What's the member ID on your insurance card?"),
    (C, "It's W as in William, Z as in zebra, H, four four seven, double two, nine one."),
]
_MEMBER_O = [
    (A, "Can you read me the member ID?"),
    (C, "Sure, K, P, O as in Oscar, three three one, eight five two."),
]
_MEMBER_SON = [
    (A, "What's the member ID?"),
    (
        C,
        "My son's member ID is R, T, K, five five two, eight one, zero one. Mine I'd have to "
        "look up.",
    ),
]
_MEMBER_ACROSS = [
    (A, "What's your member ID?"),
    (C, "It's M, H, P"),
    (A, "Mm-hm"),
    (C, "three three zero, eight one two."),
    (A, "Thanks."),
]
_MEMBER_FIX = [
    (A, "Your member ID?"),
    (C, "M as in Mary, N as in Nancy, G, four one two eight."),
    (A, "I have M E G four one two eight, is that correct?"),
    (C, "No, M as in Mary, N as in Nancy, G, four one two eight."),
    (A, "Thank you, M N G four one two eight."),
    (C, "That's right."),
]
_GROUP = [
    (A, "And the group number?"),
    (C, "The group number is seven seven zero four one."),
]
_SZABO = [
    (A, "Can I get your last name?"),
    (C, "Szabo. S as in Sam, Z as in zebra"),
    (A, "Okay"),
    (C, "A, B as in boy, O."),
    (A, "Thank you."),
]
_SIOBHAN = [
    (A, "And your first name?"),
    (C, "Siobhan, S-I-O-B-H-A-N."),
]
_BILL = [
    (A, "What's your first name?"),
    (C, "Everyone calls me Bill, but my legal name is William, W-I-L-L-I-A-M."),
]
_DOB_ORDINAL = [
    (A, "Can you confirm your date of birth?"),
    (C, "April the twenty-first, nineteen eighty-two."),
]
_DOB_SPANISH = [
    (A, "¿Cuál es su fecha de nacimiento?"),
    (C, "El treinta y uno de marzo de mil novecientos setenta y cinco."),
]
_DOB_OH_YEAR = [
    (A, "Date of birth for the patient?"),
    (C, "Nine, twenty-one, oh four. She's my daughter, she's the patient."),
]
_DOB_DAY_FIRST = [
    (A, "What's your date of birth?"),
    (C, "I'll give you the day first, I'm from Colombia: five, eleven, ninety."),
]
_DOB_2010 = [
    (A, "And the date of birth?"),
    (C, "March third, two thousand ten."),
]
_ADDR_UNIT = [
    (A, "What's your new address?"),
    (C, "Forty-two Maple Avenue, apartment two C."),
]
_ADDR_PLAIN = [
    (A, "What's your street address?"),
    (C, "Eighteen Birch Lane."),
]
_ADDR_IF = [
    (A, "Is your address still current?"),
    (C, "For now, yes. If we move, it would be sixty Pine Street, but that's not decided."),
]
_ADDR_WEST = [
    (A, "What address should we have on file?"),
    (C, "One twenty-five West Elm Street, in Quincy, oh two one six nine."),
]
_ADDR_NEXT_MONTH = [
    (A, "Any change to your address?"),
    (C, "Starting next month we'll be at nine Cedar Court."),
]
_ZIP = [
    (A, "What's the zip code?"),
    (C, "The zip is oh two one three eight."),
]

_DEC4 = ("2026-12-04T10:15:00-07:00", "America/Denver")
_QUARTER = [
    (
        A,
        "I have Thursday, December tenth at a quarter past three in the afternoon. Does that work?",
    ),
    (C, "Yes, that works."),
    (A, "You're booked for Thursday, December tenth, at quarter past three p.m."),
    (C, "Thank you."),
]
_ORDINAL_DAY = [
    (A, "The first opening is Monday the twenty-first at nine a.m. Would you like it?"),
    (C, "Yes please."),
    (A, "You're all set for Monday the twenty-first at nine a.m."),
    (C, "Great, thanks."),
]
_PASADO = [
    (A, "Tengo un espacio pasado mañana a las diez de la mañana. ¿Le sirve?"),
    (C, "Sí, perfecto."),
    (A, "Listo, te agendé para pasado mañana a las diez de la mañana."),
    (C, "Gracias."),
]
_PROXIMO = [
    (A, "¿Le sirve el próximo martes a las tres y media de la tarde?"),
    (C, "Sí, está bien."),
    (A, "Listo, te agendé para el próximo martes a las tres y media de la tarde."),
    (C, "Muchas gracias."),
]
_NINE_AM = [
    (A, "I can do Tuesday, December eighth at nine a.m."),
    (C, "Yes, that's fine."),
    (A, "You're booked for Tuesday, December eighth at nine a.m."),
    (C, "Thanks."),
]
_DST = [
    (A, "How about Monday, November second at ten a.m.?"),
    (C, "Sure."),
    (A, "You're booked for Monday, November second at ten a.m."),
    (C, "Thank you."),
]
_UTC_CALL = ("2026-12-04T02:30:00Z", "America/Los_Angeles")
_TOMORROW = [
    (A, "I can see you tomorrow at eleven a.m. Does that work?"),
    (C, "Yes."),
    (A, "You're booked for tomorrow at eleven a.m."),
    (C, "Perfect."),
]
_OFFER_ONLY = [
    (A, "I can offer Tuesday, December fifteenth at two p.m."),
    (C, "Let me check with my work and call you back."),
    (A, "Of course. Goodbye."),
]
_HALF_PAST = [
    (A, "Would Wednesday, December ninth at half past ten in the morning work?"),
    (C, "Yes."),
    (A, "You're booked for Wednesday, December ninth at half past ten a.m."),
    (C, "Thanks."),
]
_QUARTER_TO = [
    (A, "I have Friday, December eleventh at a quarter to two p.m."),
    (C, "That's fine."),
    (A, "You're booked for Friday, December eleventh at a quarter to two p.m."),
    (C, "Thank you."),
]
_NP = [
    (C, "I'd like to see Dr. Helen Huang."),
    (
        A,
        "Dr. Huang is not available this month. I can book Priya Nair, NP on Tuesday, December "
        "eighth at two p.m.",
    ),
    (C, "Okay, that's fine."),
    (A, "You're booked with Priya Nair, NP for Tuesday, December eighth at two p.m."),
    (C, "Thanks."),
]
_VIDEO = [
    (A, "Would you like a video visit on Tuesday, December eighth at four p.m.?"),
    (C, "Yes, video is better for me."),
    (A, "You're booked for a video visit on Tuesday, December eighth at four p.m."),
    (C, "Thank you."),
]
_CANCEL = [
    (C, "I need to cancel my appointment on Tuesday."),
    (A, "I've cancelled your appointment on Tuesday, December eighth."),
    (C, "Thank you."),
]
_LISINOPRIL = [
    (A, "What medications are you taking?"),
    (C, "I take lisinopril, ten milligrams, once a day."),
]
_METOPROLOL = [
    (A, "What dose of metoprolol are you on?"),
    (C, "Metoprolol, fifty milligrams — wait, no, sorry, twenty-five."),
]
_HUSBAND_LIPITOR = [
    (A, "Any medications?"),
    (C, "Not me, but my husband takes Lipitor, twenty milligrams."),
]
_ZOLOFT = [
    (A, "Are you still taking Zoloft fifty milligrams?"),
    (C, "No, I stopped the Zoloft last month."),
]
_COUMADIN = [
    (A, "Are you still taking the Coumadin?"),
    (C, "I'm holding off on the Coumadin until after my procedure, doctor's orders."),
]
_JARDIANCE = [
    (A, "Any new medications?"),
    (C, "My doctor might put me on Jardiance, ten milligrams, next visit."),
]
_METFORMINA = [
    (A, "¿Qué medicamentos toma?"),
    (C, "Tomo metformina, quinientos miligramos."),
]
_DOSE = [
    (A, "How do you take the metformin?"),
    (C, "One tablet twice a day, with meals."),
]
_SULFA = [
    (A, "Do you have any allergies?"),
    (C, "Yes, I'm allergic to sulfa drugs."),
]
_PEANUT = [
    (A, "Any allergies?"),
    (C, "Not me. My son is allergic to peanuts."),
]
_LATEX = [
    (A, "I see a latex allergy on your chart. Is that right?"),
    (C, "No, I'm not allergic to latex, that was a mix-up."),
]
_HIVES = [
    (A, "What happens when you take penicillin?"),
    (C, "Penicillin gives me hives, all over."),
]
_VIET = [
    (A, "What language does she prefer for her visits?"),
    (C, "[Interpreter] She says she prefers Vietnamese, please."),
]
_CREOLE = [
    (A, "Do you need an interpreter?"),
    (C, "No, I'm fine in English. My mom only speaks Haitian Creole, though."),
]
_ESPANOL = [
    (A, "What language would you like for your visits?"),
    (C, "Español, por favor."),
]
_BCBS = [
    (A, "Who is your insurance with?"),
    (C, "I have Blue Cross Blue Shield through my job."),
]
_AETNA = [
    (A, "Who is your insurance with?"),
    (C, "Right now I have Cigna, but next year I'm switching to Aetna."),
]
_CVS = [
    (A, "Which pharmacy should we send prescriptions to?"),
    (C, "Please send it to the CVS on Elm Street."),
]
_FIVE_FIVE = [
    (A, "What's the callback number?"),
    (
        C,
        "It's six four six, five five five, oh one oh one, or five five five, oh one oh two, I "
        "always mix them up.",
    ),
]
_YEAR_APPT = [
    (A, "The next opening is Tuesday, January fifth, twenty twenty-seven at ten thirty a.m."),
    (C, "Okay, let's do it."),
    (A, "You're booked for Tuesday, January fifth, twenty twenty-seven at ten thirty a.m."),
    (C, "Thanks."),
]
_SPANISH_CELL = [
    (A, "¿Y su celular?"),
    (C, "Mi celular es siete uno ocho, cinco cinco cinco, cero uno treinta y dos."),
]
_INAUDIBLE = [
    (A, "What's your cell number?"),
    (C, "It's three zero five, five five five, oh one [inaudible] seven."),
]
_SPANISH_HORA = [
    (A, "¿Le sirve mañana a la una y cuarto de la tarde?"),
    (C, "Sí."),
    (A, "Listo, te agendé para mañana a la una y cuarto de la tarde."),
    (C, "Gracias."),
]

_RAW: list[dict[str, Any]] = [
    # interpreter relays: the interpreter speaks for the patient, but not for her daughter
    _case("u-001", "supported", "phone.mobile", "+12065550131", _INTERPRETER),
    _case(
        "u-002",
        "contradicted",
        "phone.mobile",
        "+12065550113",
        _INTERPRETER,
        why="the relayed number ends 0131",
    ),
    _case(
        "u-003",
        "unsupported",
        "phone.mobile",
        "+12065550177",
        _INTERPRETER_DAUGHTER,
        why="the daughter's cell, the patient's own never comes up",
    ),
    _case("u-004", "supported", "language", "vi", _VIET),
    # digit runs across turns with backchannels
    _case("u-005", "supported", "phone.mobile", "+16175550148", _ACROSS),
    _case(
        "u-006",
        "contradicted",
        "phone.mobile",
        "+16175550184",
        _ACROSS,
        why="the last group is oh one four eight",
    ),
    _case("u-007", "supported", "phone.mobile", "+12125550133", _ECHO),
    _case("u-008", "supported", "member_id", "MHP330812", _MEMBER_ACROSS, entity="InsurancePlan"),
    _case(
        "u-009", "contradicted", "member_id", "MHP330821", _MEMBER_ACROSS, entity="InsurancePlan"
    ),
    # derived from the known value
    _case(
        "u-010",
        "supported",
        "phone.mobile",
        "+13125550142",
        _DERIVED,
        known={"Patient.phone.mobile": "+13125550117"},
    ),
    _case(
        "u-011",
        "unsupported",
        "phone.mobile",
        "+13125550142",
        _DERIVED,
        why="no old number on file to derive from",
    ),
    _case(
        "u-012",
        "contradicted",
        "phone.mobile",
        "+13125550117",
        _DERIVED,
        known={"Patient.phone.mobile": "+13125550117"},
        why="the old number changed",
    ),
    # self-repair mid-number
    _case("u-013", "supported", "phone.mobile", "+14155650173", _REPAIR),
    _case(
        "u-014",
        "contradicted",
        "phone.mobile",
        "+14155550173",
        _REPAIR,
        why="five five was repaired to five six five",
    ),
    # a read-back the caller corrects in part
    _case("u-015", "supported", "phone.mobile", "+16175550119", _READBACK_FIX),
    _case("u-016", "contradicted", "phone.mobile", "+16175550191", _READBACK_FIX),
    # negation of a known value
    _case(
        "u-017",
        "contradicted",
        "phone.mobile",
        "+16175550142",
        _NOT_ANYMORE,
        known={"Patient.phone.mobile": "+16175550142"},
    ),
    # third parties
    _case("u-018", "unsupported", "phone.mobile", "+19175550121", _HUSBAND),
    # Spanish digits, home line
    _case("u-019", "supported", "phone.home", "+13125550144", _SPANISH_HOME),
    _case(
        "u-020",
        "unsupported",
        "phone.mobile",
        "+13125550144",
        _SPANISH_HOME,
        why="a home line, no cell said",
    ),
    # extension
    _case("u-021", "supported", "phone.work", "+18475550122;ext=315", _WORK_EXT),
    _case(
        "u-022",
        "contradicted",
        "phone.work",
        "+18475550122",
        _WORK_EXT,
        why="the extension is missing",
    ),
    # planned value
    _case("u-023", "unsupported", "phone.work", "+13125550188", _FUTURE_WORK),
    # a landline is not a mobile, and there is no cell
    _case(
        "u-024",
        "contradicted",
        "phone.mobile",
        "+14105550160",
        _LANDLINE,
        why="the caller has no cell",
    ),
    _case("u-025", "supported", "phone.home", "+14105550160", _LANDLINE),
    # triple / double oh
    _case("u-026", "supported", "phone.mobile", "+16175550166", _TRIPLE),
    _case("u-027", "supported", "phone.mobile", "+13125550019", _DOUBLE_OH),
    _case("u-028", "contradicted", "phone.mobile", "+13125550190", _DOUBLE_OH),
    # a read-back nobody confirms
    _case("u-029", "unsupported", "phone.mobile", "+15035550152", _HANGUP),
    # two candidates left open
    _case("u-030", "unsupported", "phone.mobile", "+16465550101", _FIVE_FIVE),
    # Spanish "treinta y dos" in a digit run
    _case("u-031", "supported", "phone.mobile", "+17185550132", _SPANISH_CELL),
    _case("u-032", "contradicted", "phone.mobile", "+17185550123", _SPANISH_CELL),
    _case("u-033", "unsupported", "phone.mobile", "+13055550157", _INAUDIBLE),
    # emails
    _case("u-034", "supported", "email", "j_reyes@example.com", _EMAIL_UNDERSCORE),
    _case("u-035", "contradicted", "email", "j.reyes@example.com", _EMAIL_UNDERSCORE),
    _case("u-036", "supported", "email", "ana-lucia.ortiz@example.org", _EMAIL_DASH),
    _case("u-037", "contradicted", "email", "ana.lucia.ortiz@example.org", _EMAIL_DASH),
    _case("u-038", "supported", "email", "torres@example.com", _EMAIL_AS_IN),
    _case("u-039", "contradicted", "email", "tores@example.com", _EMAIL_AS_IN),
    _case("u-040", "supported", "email", "kwame.boateng@example.net", _EMAIL_HYPHEN_SPELL),
    _case("u-041", "contradicted", "email", "d.kim@example.com", _EMAIL_WORK_DONT),
    _case("u-042", "unsupported", "email", "lena.park@example.com", _EMAIL_WIFE),
    _case("u-043", "supported", "email", "raj.patel70@example.com", _EMAIL_READBACK),
    # member and group ids
    _case("u-044", "supported", "member_id", "WZH4472291", _MEMBER, entity="InsurancePlan"),
    _case(
        "u-045",
        "contradicted",
        "member_id",
        "WZH447291",
        _MEMBER,
        entity="InsurancePlan",
        why="a digit of double two dropped",
    ),
    _case("u-046", "supported", "member_id", "KPO331852", _MEMBER_O, entity="InsurancePlan"),
    _case(
        "u-047",
        "contradicted",
        "member_id",
        "KP0331852",
        _MEMBER_O,
        entity="InsurancePlan",
        why="the letter O, not zero",
    ),
    _case("u-048", "unsupported", "member_id", "RTK5528101", _MEMBER_SON, entity="InsurancePlan"),
    _case("u-049", "supported", "member_id", "MNG4128", _MEMBER_FIX, entity="InsurancePlan"),
    _case("u-050", "contradicted", "member_id", "MEG4128", _MEMBER_FIX, entity="InsurancePlan"),
    _case("u-051", "supported", "group_number", "77041", _GROUP, entity="InsurancePlan"),
    # names
    _case("u-052", "supported", "name.family", "Szabo", _SZABO),
    _case("u-053", "contradicted", "name.family", "Sabo", _SZABO),
    _case("u-054", "supported", "name.given", "Siobhan", _SIOBHAN),
    _case("u-055", "contradicted", "name.given", "Bill", _BILL),
    _case("u-056", "supported", "name.given", "William", _BILL),
    # birth dates
    _case("u-057", "supported", "birth_date", "1982-04-21", _DOB_ORDINAL),
    _case("u-058", "supported", "birth_date", "1975-03-31", _DOB_SPANISH),
    _case("u-059", "supported", "birth_date", "2004-09-21", _DOB_OH_YEAR),
    _case("u-060", "supported", "birth_date", "1990-11-05", _DOB_DAY_FIRST),
    _case("u-061", "contradicted", "birth_date", "1990-05-11", _DOB_DAY_FIRST),
    _case("u-062", "supported", "birth_date", "2010-03-03", _DOB_2010),
    # addresses
    _case("u-063", "supported", "address.line", "42 Maple Ave Apt 2C", _ADDR_UNIT),
    _case(
        "u-064",
        "contradicted",
        "address.line",
        "18 Birch Ln Apt 4",
        _ADDR_PLAIN,
        why="a unit never said",
    ),
    _case("u-065", "supported", "address.line", "18 Birch Ln", _ADDR_PLAIN),
    _case("u-066", "unsupported", "address.line", "60 Pine St", _ADDR_IF),
    _case("u-067", "supported", "address.line", "125 W Elm St", _ADDR_WEST),
    _case("u-068", "supported", "address.city", "Quincy", _ADDR_WEST),
    _case("u-069", "supported", "address.postal_code", "02169", _ADDR_WEST),
    _case("u-070", "unsupported", "address.line", "9 Cedar Ct", _ADDR_NEXT_MONTH),
    _case("u-071", "supported", "address.postal_code", "02138", _ZIP),
    _case("u-072", "contradicted", "address.postal_code", "02183", _ZIP),
    # appointments: quarter hours, ordinals, Spanish relative dates, zones, DST
    _case(
        "u-073",
        "supported",
        "start",
        "2026-12-10T15:15:00-07:00",
        _QUARTER,
        entity="Appointment",
        call=_DEC4,
    ),
    _case(
        "u-074",
        "contradicted",
        "start",
        "2026-12-10T15:00:00-07:00",
        _QUARTER,
        entity="Appointment",
        call=_DEC4,
    ),
    _case(
        "u-075",
        "supported",
        "start",
        "2026-12-21T09:00:00-05:00",
        _ORDINAL_DAY,
        entity="Appointment",
    ),
    _case(
        "u-076", "supported", "start", "2026-12-06T10:00:00-05:00", _PASADO, entity="Appointment"
    ),
    _case(
        "u-077",
        "contradicted",
        "start",
        "2026-12-05T10:00:00-05:00",
        _PASADO,
        entity="Appointment",
        why="pasado mañana is two days on",
    ),
    _case(
        "u-078", "supported", "start", "2026-12-08T15:30:00-05:00", _PROXIMO, entity="Appointment"
    ),
    _case(
        "u-079",
        "contradicted",
        "start",
        "2026-12-08T21:00:00-05:00",
        _NINE_AM,
        entity="Appointment",
        why="a.m., not p.m.",
    ),
    _case(
        "u-080",
        "contradicted",
        "start",
        "2026-11-02T10:00:00-04:00",
        _DST,
        entity="Appointment",
        call=("2026-10-28T09:00:00-04:00", "America/New_York"),
        why="on November 2 New York is at -05:00",
    ),
    _case(
        "u-081",
        "supported",
        "start",
        "2026-11-02T10:00:00-05:00",
        _DST,
        entity="Appointment",
        call=("2026-10-28T09:00:00-04:00", "America/New_York"),
    ),
    _case(
        "u-082",
        "supported",
        "start",
        "2026-12-04T11:00:00-08:00",
        _TOMORROW,
        entity="Appointment",
        call=_UTC_CALL,
        why="the call starts on December 3 in Los Angeles",
    ),
    _case(
        "u-083",
        "contradicted",
        "start",
        "2026-12-05T11:00:00-08:00",
        _TOMORROW,
        entity="Appointment",
        call=_UTC_CALL,
    ),
    _case(
        "u-084",
        "unsupported",
        "start",
        "2026-12-15T14:00:00-05:00",
        _OFFER_ONLY,
        entity="Appointment",
    ),
    _case(
        "u-085", "supported", "start", "2026-12-09T10:30:00-05:00", _HALF_PAST, entity="Appointment"
    ),
    _case(
        "u-086",
        "supported",
        "start",
        "2026-12-11T13:45:00-05:00",
        _QUARTER_TO,
        entity="Appointment",
    ),
    _case(
        "u-087", "supported", "start", "2027-01-05T10:30:00-05:00", _YEAR_APPT, entity="Appointment"
    ),
    _case(
        "u-088",
        "supported",
        "start",
        "2026-12-05T13:15:00-05:00",
        _SPANISH_HORA,
        entity="Appointment",
    ),
    _case("u-089", "contradicted", "practitioner", "Dr. Helen Huang", _NP, entity="Appointment"),
    _case("u-090", "supported", "practitioner", "Priya Nair, NP", _NP, entity="Appointment"),
    _case("u-091", "supported", "appointment_type", "telehealth", _VIDEO, entity="Appointment"),
    _case(
        "u-092",
        "supported",
        "status",
        "cancelled",
        _CANCEL,
        entity="Appointment",
        known={"Appointment.start": "2026-12-08T09:00:00-05:00", "Appointment.status": "booked"},
    ),
    # medications and allergies
    _case(
        "u-093",
        "supported",
        "medication.display",
        "lisinopril 10 mg",
        _LISINOPRIL,
        entity="MedicationOrder",
    ),
    _case(
        "u-094",
        "supported",
        "medication.display",
        "metoprolol 25 mg",
        _METOPROLOL,
        entity="MedicationOrder",
    ),
    _case(
        "u-095",
        "contradicted",
        "medication.display",
        "metoprolol 50 mg",
        _METOPROLOL,
        entity="MedicationOrder",
    ),
    _case(
        "u-096",
        "unsupported",
        "medication.display",
        "atorvastatin 20 mg",
        _HUSBAND_LIPITOR,
        entity="MedicationOrder",
    ),
    _case(
        "u-097",
        "contradicted",
        "status",
        "active",
        _ZOLOFT,
        entity="MedicationOrder",
        known={
            "MedicationOrder.medication.display": "sertraline 50 mg",
            "MedicationOrder.status": "active",
        },
    ),
    _case(
        "u-098",
        "supported",
        "status",
        "on-hold",
        _COUMADIN,
        entity="MedicationOrder",
        known={
            "MedicationOrder.medication.display": "warfarin 5 mg",
            "MedicationOrder.status": "active",
        },
    ),
    _case(
        "u-099",
        "unsupported",
        "medication.display",
        "empagliflozin 10 mg",
        _JARDIANCE,
        entity="MedicationOrder",
    ),
    _case(
        "u-100",
        "supported",
        "medication.display",
        "metformin 500 mg",
        _METFORMINA,
        entity="MedicationOrder",
    ),
    _case(
        "u-101",
        "supported",
        "dosage.text",
        "1 tablet twice daily with meals",
        _DOSE,
        entity="MedicationOrder",
        known={"MedicationOrder.medication.display": "metformin 500 mg"},
    ),
    _case(
        "u-102", "supported", "substance", "sulfa antibiotics", _SULFA, entity="AllergyIntolerance"
    ),
    _case("u-103", "unsupported", "substance", "peanuts", _PEANUT, entity="AllergyIntolerance"),
    _case(
        "u-104",
        "contradicted",
        "substance",
        "latex",
        _LATEX,
        entity="AllergyIntolerance",
        known={"AllergyIntolerance.substance": "latex"},
    ),
    _case(
        "u-105",
        "supported",
        "reaction",
        "hives",
        _HIVES,
        entity="AllergyIntolerance",
        known={"AllergyIntolerance.substance": "penicillin"},
    ),
    # languages, payers, pharmacies
    _case(
        "u-106",
        "contradicted",
        "language",
        "ht",
        _CREOLE,
        why="the caller is fine in English; Creole is the mother's language",
    ),
    _case("u-107", "contradicted", "language", "es", _CREOLE, why="English is fine"),
    _case("u-108", "supported", "language", "es", _ESPANOL),
    _case("u-109", "supported", "payer", "Blue Cross Blue Shield", _BCBS, entity="InsurancePlan"),
    _case("u-110", "unsupported", "payer", "Aetna", _AETNA, entity="InsurancePlan"),
    _case("u-111", "supported", "preferred_pharmacy", "CVS, Elm St", _CVS),
]


# A second batch, written after the judge handled the first and run once before any change it
# prompted: the check that the rules generalise rather than fit the cases above.
def _two(a: str, c: str) -> list[tuple[str, str]]:
    return [(A, a), (C, c)]


_BOOK = "2026-12-04T10:15:00-05:00", "America/New_York"
_B2: list[dict[str, Any]] = [
    _case("u-201", "supported", "phone.mobile", "+17735550186",
          _two("Your cell?", "My cell? Sure. Area code seven seven three, then five five five, "
               "zero one eight six.")),
    _case("u-202", "supported", "phone.mobile", "+19495550123",
          _two("What's the cell number?", "It's nine four nine... five five five... zero one two "
               "three. That's my cell.")),
    _case("u-203", "supported", "phone.mobile", "+16175550155",
          _two("What's your cell number?", "I'm calling from my sister's phone. My own cell is "
               "six one seven, five five five, oh one five five.")),
    _case("u-204", "supported", "phone.mobile", "+14155550190",
          _two("What's your cell?", "My cell is the same as my home number, four one five, five "
               "five five, oh one nine zero.")),
    _case("u-205", "supported", "phone.mobile", "+18185550177",
          _two("Cell phone?", "Eight one eight, double five five, oh one double seven.")),
    _case("u-206", "contradicted", "phone.mobile", "+16175550148",
          [(A, "What's your cell?"), (C, "Six one seven, five five five, oh one four nine."),
           (A, "Six one seven, five five five, zero one four eight?"),
           (C, "That's not right, it's oh one four nine.")]),
    _case("u-207", "supported", "phone.mobile", "+12125550108",
          _two("And your cell?", "Two won two, five five five, oh won oh eight.")),
    _case("u-208", "supported", "phone.mobile", "+13055550167",
          _two("¿Su número de celular?", "Es el tres cero cinco, cinco cinco cinco, cero uno "
               "sesenta y siete.")),
    _case("u-209", "contradicted", "phone.mobile", "+13125550171",
          [(A, "What's your cell?"), (C, "Three one two, five five five, oh one seven one."),
           (A, "Is that your cell phone?"),
           (C, "No, that's my work line. My cell is different, I'll text it to you.")]),
    _case("u-210", "supported", "email", "m.gonzalez_81@example.net",
          _two("Email?", "It's m dot gonzalez underscore eighty-one at example dot net.")),
    _case("u-211", "supported", "email", "ray.lee@example.org",
          _two("Your email?", "Ray dot lee at example dot com — no, sorry, example dot org.")),
    _case("u-212", "contradicted", "email", "ray.lee@example.com",
          _two("Your email?", "Ray dot lee at example dot com — no, sorry, example dot org.")),
    _case("u-213", "unsupported", "email", "jen.ho@example.com",
          _two("Email address?", "I think it's jen dot ho at example dot com, but I'm not sure, "
               "I'll check.")),
    _case("u-214", "supported", "email", "samuelokafor@example.com",
          _two("Email?", "It's samuelokafor, all one word, at example dot com.")),
    _case("u-215", "supported", "member_id", "ZXB771204",
          _two("Member ID?", "Z, X, B, dash, seven seven one, two oh four."),
          entity="InsurancePlan"),
    _case("u-216", "supported", "group_number", "44821",
          _two("¿Y el número de grupo?", "El número de grupo es cuatro cuatro ocho dos uno."),
          entity="InsurancePlan"),
    _case("u-217", "contradicted", "member_id", "NQ441726",
          [(A, "Your member ID?"), (C, "M, Q, four four one, seven two six."),
           (A, "I have N, Q, four four one, seven two six. Correct?"),
           (C, "Almost, the first letter is M as in Mike, not N.")],
          entity="InsurancePlan"),
    _case("u-218", "supported", "name.family", "Nguyen",
          _two("Last name?", "My last name is Nguyen, N-G-U-Y-E-N.")),
    _case("u-219", "contradicted", "name.family", "Kowalczik",
          _two("And your last name?", "Kowalczyk, K-O-W-A-L-C-Z-Y-K.")),
    _case("u-220", "contradicted", "name.given", "John",
          _two("First name?", "Jon, J-O-N, no H.")),
    _case("u-221", "supported", "name.family", "Read",
          _two("Can you spell your last name?", "R-E-I-D, sorry, R-E-A-D.")),
    _case("u-222", "supported", "birth_date", "1988-06-15",
          _two("Date of birth?", "Oh-six, fifteen, eighty-eight.")),
    _case("u-223", "supported", "birth_date", "1992-08-15",
          _two("¿Su fecha de nacimiento?", "El quince de agosto del noventa y dos.")),
    _case("u-224", "supported", "birth_date", "2018-12-02",
          _two("What's the patient's date of birth?", "His birthday is December second, twenty "
               "eighteen. He's my son, he's the patient.")),
    _case("u-225", "supported", "birth_date", "1970-03-09",
          _two("Date of birth, please.", "March ninth, nineteen sixty — no, sorry, nineteen "
               "seventy.")),
    _case("u-226", "contradicted", "birth_date", "1960-03-09",
          _two("Date of birth, please.", "March ninth, nineteen sixty — no, sorry, nineteen "
               "seventy.")),
    _case("u-227", "supported", "address.line", "220 Elm Ct Apt 11",
          _two("Your address?", "Two twenty Elm Court, apartment eleven.")),
    _case("u-228", "supported", "address.line", "700 Lincoln Rd",
          _two("Has your address changed?", "Yes, I moved. The new address is seven hundred "
               "Lincoln Road.")),
    _case("u-229", "contradicted", "address.line", "12 Park Pl",
          _two("What's your address?", "My old address was twelve Park Place, the new one is "
               "thirty Park Place.")),
    _case("u-230", "supported", "address.line", "88 Willow St",
          _two("Any change to your address?", "Same street, just a different house number: "
               "eighty-eight instead of eighty-six."),
          known={"Patient.address.line": "86 Willow St"}),
    _case("u-231", "supported", "start", "2026-12-07T12:00:00-05:00",
          [(A, "Monday, December seventh at noon works?"), (C, "Yes."),
           (A, "You're booked for Monday, December seventh at noon."), (C, "Thanks.")],
          entity="Appointment"),
    _case("u-232", "supported", "start", "2026-12-05T08:15:00-06:00",
          [(A, "I have tomorrow at eight fifteen a.m."), (C, "That works."),
           (A, "You're booked for tomorrow at eight fifteen a.m."), (C, "Great.")],
          entity="Appointment", call=("2026-12-05T04:30:00Z", "America/Chicago")),
    _case("u-233", "supported", "practitioner", "Dr. Samuel Osei",
          [(A, "I can book you with Dr. Samuel Osei on Tuesday, December eighth at ten a.m."),
           (C, "Yes, please."),
           (A, "You're booked with Dr. Samuel Osei on Tuesday, December eighth at ten a.m."),
           (C, "Thank you.")], entity="Appointment"),
    _case("u-234", "contradicted", "start", "2026-12-08T10:00:00-05:00",
          [(A, "I have Tuesday, December eighth at ten a.m."), (C, "Okay."),
           (A, "You're booked for Tuesday, December eighth at ten a.m."),
           (C, "Actually, can we do Thursday instead? Same time."),
           (A, "Sure. You're now booked for Thursday, December tenth at ten a.m."),
           (C, "Perfect, thanks.")], entity="Appointment"),
    _case("u-235", "supported", "start", "2026-12-10T10:00:00-05:00",
          [(A, "I have Tuesday, December eighth at ten a.m."), (C, "Okay."),
           (A, "You're booked for Tuesday, December eighth at ten a.m."),
           (C, "Actually, can we do Thursday instead? Same time."),
           (A, "Sure. You're now booked for Thursday, December tenth at ten a.m."),
           (C, "Perfect, thanks.")], entity="Appointment"),
    _case("u-236", "supported", "start", "2026-12-10T16:00:00-05:00",
          [(A, "¿Le sirve el jueves diez de diciembre a las cuatro de la tarde?"), (C, "Sí."),
           (A, "Listo, te agendé para el jueves diez de diciembre a las cuatro de la tarde."),
           (C, "Gracias.")], entity="Appointment"),
    _case("u-237", "supported", "start", "2026-07-06T09:00:00-07:00",
          [(A, "How about Monday, July sixth at nine a.m.?"), (C, "Sure."),
           (A, "You're booked for Monday, July sixth at nine a.m."), (C, "Thanks.")],
          entity="Appointment", call=("2026-07-01T11:00:00-07:00", "America/Phoenix")),
    _case("u-238", "contradicted", "start", "2026-07-06T09:00:00-06:00",
          [(A, "How about Monday, July sixth at nine a.m.?"), (C, "Sure."),
           (A, "You're booked for Monday, July sixth at nine a.m."), (C, "Thanks.")],
          entity="Appointment", call=("2026-07-01T11:00:00-07:00", "America/Phoenix"),
          why="Phoenix keeps -07:00 all year"),
    _case("u-239", "contradicted", "status", "booked",
          [(C, "I need to see a cardiologist."),
           (A, "I've sent a referral request to the cardiology office. They will call you to "
               "schedule."), (C, "Okay, thanks.")], entity="Appointment"),
    _case("u-240", "supported", "appointment_type", "annual-physical",
          [(A, "I have Tuesday, December fifteenth at nine a.m. for your annual physical."),
           (C, "Yes, that's good."),
           (A, "You're booked for your annual physical on Tuesday, December fifteenth at nine "
               "a.m."), (C, "Thank you.")], entity="Appointment"),
    _case("u-241", "supported", "start", "2026-12-15T14:00:00-05:00",
          [(A, "The next opening is on the fifteenth at two p.m."), (C, "Okay, I'll take it."),
           (A, "You're booked for the fifteenth at two p.m."), (C, "Thanks.")],
          entity="Appointment"),
    _case("u-242", "supported", "start", "2026-12-09T14:30:00-05:00",
          [(A, "Would Wednesday, December ninth at two thirty in the afternoon work?"),
           (C, "Yes."),
           (A, "You're booked for Wednesday, December ninth at two thirty in the afternoon."),
           (C, "Thanks.")], entity="Appointment"),
    _case("u-243", "supported", "medication.display", "levothyroxine 75 mcg",
          _two("What do you take?", "I take Synthroid, seventy-five micrograms, every morning."),
          entity="MedicationOrder"),
    _case("u-244", "supported", "medication.display", "lorazepam 0.5 mg",
          _two("What's the dose?", "Lorazepam, point five milligrams, when I need it."),
          entity="MedicationOrder"),
    _case("u-245", "supported", "status", "stopped",
          _two("Are you still on the Lipitor?", "I quit the Lipitor in October, it made my legs "
               "ache."), entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "atorvastatin 20 mg"}),
    _case("u-246", "supported", "status", "active",
          _two("Are you still taking lisinopril?", "Yes, I'm still taking the lisinopril every "
               "day."), entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "lisinopril 10 mg"}),
    _case("u-247", "supported", "status", "completed",
          _two("Did you finish the antibiotic?", "Yes, I finished the amoxicillin last week."),
          entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "amoxicillin 500 mg"}),
    _case("u-248", "supported", "substance", "codeine",
          _two("Any allergies?", "I'm allergic to codeine, it makes me throw up."),
          entity="AllergyIntolerance"),
    _case("u-249", "supported", "reaction", "vomiting",
          _two("Any allergies?", "I'm allergic to codeine, it makes me throw up."),
          entity="AllergyIntolerance", known={"AllergyIntolerance.substance": "codeine"}),
    _case("u-250", "unsupported", "substance", "shellfish",
          _two("Any allergies?", "I don't think I'm allergic to anything... maybe shellfish?"),
          entity="AllergyIntolerance"),
    _case("u-251", "contradicted", "substance", "penicillin",
          _two("Any drug allergies, like penicillin?", "No, no known allergies."),
          entity="AllergyIntolerance"),
    _case("u-252", "supported", "language", "es",
          _two("What language do you prefer?", "Can we do this in Spanish? Prefiero español.")),
    _case("u-253", "supported", "payer", "UnitedHealthcare",
          _two("Who's your insurance?", "I have United Healthcare."), entity="InsurancePlan"),
    _case("u-254", "contradicted", "preferred_pharmacy", "Walgreens, Maple Ave",
          _two("Which pharmacy?", "The Walgreens on Main Street, please."),
          why="Main Street, not Maple Avenue"),
    _case("u-255", "supported", "plan_name", "Gold PPO",
          _two("What's the plan name?", "It's the Gold PPO plan."), entity="InsurancePlan"),
    _case("u-256", "supported", "birth_date", "1950-06-04",
          _two("What is his date of birth?", "[Interpreter] He says his date of birth is June "
               "fourth, nineteen fifty.")),
    _case("u-257", "contradicted", "phone.mobile", "+12065550162",
          [(A, "I have her cell as two zero six, five five five, zero one six two. Is that "
               "right?"), (C, "[Interpreter] She says no, that number is wrong.")]),
]  # fmt: skip


# A third batch, written after the second was handled and, again, run once before any change:
# mostly traps for the rules added for the first two (pieces that turn out to be someone else's,
# a hedged first piece, derivations that do not fit, relays of someone else's number).
_B3: list[dict[str, Any]] = [
    _case("u-301", "unsupported", "phone.mobile", "+12025550144",
          [(A, "Cell number?"), (C, "Two zero two"), (A, "Mm-hm"),
           (C, "five five five, oh one four four. Actually no, that's my husband's cell.")]),
    _case("u-302", "unsupported", "phone.mobile", "+16175550198",
          [(A, "Cell number?"), (C, "I think it's six one seven"), (A, "Uh huh"),
           (C, "five five five, oh one nine eight.")]),
    _case("u-303", "unsupported", "phone.mobile", "+13125550166",
          [(A, "Your cell?"), (C, "Three one two"), (A, "Okay"),
           (C, "[inaudible] five five, oh one six six.")]),
    _case("u-304", "unsupported", "phone.mobile", "+13125550142",
          _two("Did your number change?", "Yes, it's the same as my old one but the last digits "
               "changed, I forget them, I'll call back."),
          known={"Patient.phone.mobile": "+13125550117"}),
    _case("u-305", "contradicted", "phone.mobile", "+13125550124",
          _two("Did your number change?", "It's the same as my old number, but ending in four "
               "two."), known={"Patient.phone.mobile": "+13125550117"}),
    _case("u-306", "unsupported", "phone.mobile", "+14155550100",
          _two("Your cell?", "Four one five, five five five, oh one — no wait, that's not it, I'll "
               "need to check.")),
    _case("u-307", "unsupported", "phone.mobile", "+12065550151",
          _two("What's her cell number?", "[Interpreter] She says her son's number is two zero "
               "six, five five five, oh one five one.")),
    _case("u-308", "unsupported", "phone.mobile", "+12065550188",
          _two("Does she have a cell?", "[Interpreter] She is asking if you can use her husband's "
               "phone, two zero six, five five five, oh one eight eight.")),
    _case("u-309", "unsupported", "phone.mobile", "+12065550139",
          [(A, "Her cell is two zero six, five five five, zero one three nine. Is that right?"),
           (C, "[Interpreter] She says maybe, she is not sure.")]),
    _case("u-310", "supported", "start", "2026-12-08T15:25:00-05:00",
          [(A, "Tuesday, December eighth at twenty-five past three p.m.?"), (C, "Yes."),
           (A, "You're booked for Tuesday, December eighth at twenty-five past three p.m."),
           (C, "Thanks.")], entity="Appointment"),
    _case("u-311", "supported", "start", "2026-12-08T15:50:00-05:00",
          [(A, "Tuesday, December eighth at ten to four p.m.?"), (C, "Sure."),
           (A, "You're booked for Tuesday, December eighth at ten to four p.m."),
           (C, "Thanks.")], entity="Appointment"),
    _case("u-312", "supported", "start", "2026-12-14T11:30:00-05:00",
          [(A, "¿El lunes catorce de diciembre a las once y media de la mañana?"), (C, "Sí."),
           (A, "Listo, te agendé para el lunes catorce de diciembre a las once y media de la "
               "mañana."), (C, "Gracias.")], entity="Appointment"),
    _case("u-313", "supported", "start", "2026-12-05T09:00:00-05:00",
          [(A, "¿Mañana a las nueve por la mañana?"), (C, "Sí, perfecto."),
           (A, "Listo, te agendé para mañana a las nueve por la mañana."), (C, "Gracias.")],
          entity="Appointment"),
    _case("u-314", "supported", "start", "2026-12-07T10:00:00-05:00",
          [(A, "How about next Monday at ten a.m.?"), (C, "Yes."),
           (A, "You're booked for next Monday at ten a.m."), (C, "Thanks.")],
          entity="Appointment"),
    _case("u-315", "unsupported", "email", "lopez.maria@example.com",
          _two("Email?", "It's lopez dot maria at example dot com, or maybe maria dot lopez, I "
               "always forget the order.")),
    _case("u-316", "supported", "email", "j.smith@example.com",
          _two("Email?", "J dot smith at example dot com, that's J as in John.")),
    _case("u-317", "contradicted", "email", "tnguyen@example.org",
          _two("Email?", "Use my personal one, tam dot nguyen at example dot net. The work one, "
               "tnguyen at example dot org, I don't check, so don't use that.")),
    _case("u-318", "supported", "email", "tam.nguyen@example.net",
          _two("Email?", "Use my personal one, tam dot nguyen at example dot net. The work one, "
               "tnguyen at example dot org, I don't check, so don't use that.")),
    _case("u-319", "unsupported", "member_id", "XYZ12",
          _two("Member ID?", "It starts with X, Y, Z, one two... and then I can't read the rest."),
          entity="InsurancePlan"),
    _case("u-320", "supported", "name.family", "Haller",
          _two("Last name?", "Haller, H-A-double L-E-R.")),
    _case("u-321", "contradicted", "birth_date", "1980-05-05",
          [(A, "Is your date of birth May fifth, nineteen eighty?"),
           (C, "No, May fifteenth, nineteen eighty.")]),
    _case("u-322", "supported", "birth_date", "1980-05-15",
          [(A, "Is your date of birth May fifth, nineteen eighty?"),
           (C, "No, May fifteenth, nineteen eighty.")]),
    _case("u-323", "unsupported", "medication.display", "apixaban 5 mg",
          _two("What do you take?", "I take Eliquis, but I don't remember the dose, maybe five?"),
          entity="MedicationOrder"),
    _case("u-324", "supported", "medication.display", "rosuvastatin 10 mg",
          _two("Medications?", "I used to take Zocor, now I'm on Crestor, ten milligrams."),
          entity="MedicationOrder"),
    _case("u-325", "unsupported", "medication.display", "simvastatin 40 mg",
          _two("Medications?", "I used to take Zocor forty, now I'm on Crestor, ten milligrams."),
          entity="MedicationOrder", why="a past drug; no current simvastatin"),
    _case("u-326", "supported", "substance", "sulfa antibiotics",
          _two("Any allergies?", "Sulfa gives me a rash."), entity="AllergyIntolerance"),
    _case("u-327", "unsupported", "substance", "ibuprofen",
          _two("Any allergies?", "I'm not sure if I'm allergic to ibuprofen, it upset my stomach "
               "once."), entity="AllergyIntolerance"),
    _case("u-328", "supported", "address.line", "1522 Ocean Ave Unit 4",
          _two("Address?", "Fifteen twenty-two Ocean Avenue, unit four.")),
    _case("u-329", "contradicted", "address.line", "42 Maple Ave",
          _two("Is it still forty-two Maple Avenue?", "No, we moved to ninety Oak Street.")),
    _case("u-330", "supported", "phone.mobile", "+16175550142",
          _two("Is your cell still six one seven, five five five, oh one four two?",
               "Yes, still the same."), known={"Patient.phone.mobile": "+16175550142"}),
    _case("u-331", "supported", "phone.mobile", "+16175550199",
          _two("Cell number?", "It's 617-555-0199.")),
    _case("u-332", "supported", "payer", "Medicare",
          _two("Insurance?", "It's Medicare."), entity="InsurancePlan"),
    _case("u-333", "unsupported", "payer", "Humana",
          _two("Insurance?", "It was Humana, but I think that ended."), entity="InsurancePlan"),
    _case("u-334", "supported", "status", "booked",
          [(A, "I have Monday, December seventh at two p.m."), (C, "Yes, book it."),
           (A, "Done, I've booked you for Monday, December seventh at two p.m."),
           (C, "Thank you.")], entity="Appointment"),
    _case("u-335", "unsupported", "phone.work", "+13125550175",
          _two("Work number?", "My boss's line is three one two, five five five, oh one seven "
               "five, I don't have my own.")),
]  # fmt: skip


# Written with the fixes the third batch prompted, to hold them (not a held-out batch).
_B4: list[dict[str, Any]] = [
    _case("u-401", "unsupported", "phone.mobile", "+16175550123",
          [(A, "Cell?"), (C, "It's six one seven, five five five, oh one two three."),
           (A, "Thanks."), (C, "Oh wait, that's my old number. The new one I don't know yet.")]),
    _case("u-402", "unsupported", "phone.home", "+13125550142",
          _two("Did anything change?", "My cell is the same as my home number, but ending in "
               "four two."), known={"Patient.phone.home": "+13125550117"}),
    _case("u-403", "supported", "appointment_type", "lab-work",
          [(A, "I have Tuesday, December eighth at eight a.m. for a blood draw."), (C, "Yes."),
           (A, "You're booked for a blood draw on Tuesday, December eighth at eight a.m."),
           (C, "Thanks.")], entity="Appointment"),
    _case("u-404", "supported", "appointment_type", "telehealth",
          [(A, "Would a phone appointment on Tuesday, December eighth at noon work?"),
           (C, "Yes, that's easier."),
           (A, "You're booked for a phone appointment on Tuesday, December eighth at noon."),
           (C, "Thank you.")], entity="Appointment"),
    _case("u-405", "unsupported", "phone.mobile", "+12065550100",
          _two("What's the best cell number?", "[Interpreter] This is the interpreter, my direct "
               "line is two zero six, five five five, oh one hundred.")),
    _case("u-407", "unsupported", "phone.mobile", "+12065550144",
          _two("What is her cell?", "[Interpreter] She says to use his number, two zero six, "
               "five five five, oh one four four.")),
    _case("u-408", "contradicted", "start", "2026-12-08T10:50:00-05:00",
          [(A, "Tuesday, December eighth from ten to eleven a.m.?"), (C, "Yes."),
           (A, "You're booked for Tuesday, December eighth from ten to eleven a.m."),
           (C, "Thanks.")], entity="Appointment", why="it starts at ten"),
    _case("u-409", "unsupported", "phone.mobile", "+16175550147",
          [(A, "New cell?"), (C, "Six one seven, five five five, oh one four seven."),
           (A, "Six one seven, five five five, zero one seven four?"),
           (C, "Mm, okay, thanks, bye.")],
          why="the agent reads back another number and nobody settles which"),
    _case("u-410", "supported", "phone.mobile", "+16175550147",
          [(A, "New cell?"), (C, "Six one seven, five five five, oh one four seven."),
           (A, "Great, I'll replace your old number, six one seven, five five five, zero one "
               "four one, with six one seven, five five five, zero one four seven."),
           (C, "Thanks.")]),
    _case("u-406", "supported", "start", "2026-12-08T12:00:00-05:00",
          [(A, "Would a phone appointment on Tuesday, December eighth at noon work?"),
           (C, "Yes, that's easier."),
           (A, "You're booked for a phone appointment on Tuesday, December eighth at noon."),
           (C, "Thank you.")], entity="Appointment"),
]  # fmt: skip


# A fourth batch, written after the fixes above and run once before any change it prompted.
_LA = ("2026-12-04T09:00:00-08:00", "America/Los_Angeles")
_B5: list[dict[str, Any]] = [
    _case("u-501", "supported", "phone.mobile", "+18575550104",
          _two("Best number?", "You can reach me on my mobile, which is eight five seven, five "
               "five five, zero one zero four.")),
    _case("u-502", "supported", "phone.work", "+12125550161;ext=45",
          _two("Work number?", "My office number is two one two, five five five, oh one six one, "
               "and my extension is four five.")),
    _case("u-503", "contradicted", "phone.mobile", "+13125550129",
          _two("Your number?", "It's three one two, five five five, oh one two nine. That's my "
               "home number, not my cell.")),
    _case("u-504", "supported", "phone.mobile", "+12065550147",
          _two("¿Cuál es su celular?", "[Interpreter] Dice que su celular es dos cero seis, cinco "
               "cinco cinco, cero uno cuatro siete.")),
    _case("u-505", "unsupported", "phone.mobile", "+16175550100",
          _two("Cell?", "My number is six one seven, five five five, oh one... hold on, let me "
               "find it.")),
    _case("u-506", "supported", "email", "k.lin@example.com",
          _two("Email?", "It's k period lin at example dot com.")),
    _case("u-507", "contradicted", "email", "kevin@example.com",
          _two("Email?", "It's kevin at example dot com. No wait, kevin two at example dot com.")),
    _case("u-508", "supported", "email", "maria-santos@example.com",
          _two("¿Su correo?", "Es maria guion santos arroba example punto com.")),
    _case("u-509", "supported", "name.given", "Zoe",
          _two("First name?", "Zoe, Z-O-E.")),
    _case("u-510", "contradicted", "name.given", "Catherine",
          _two("First name?", "It's Katherine with a K, K-A-T-H-E-R-I-N-E.")),
    _case("u-511", "supported", "name.family", "Vega Rosario",
          _two("Last name?", "Vega Rosario, V-E-G-A, R-O-S-A-R-I-O.")),
    _case("u-512", "supported", "birth_date", "1976-07-04",
          _two("Date of birth?", "Born on the fourth of July, nineteen seventy-six.")),
    _case("u-513", "supported", "birth_date", "2001-10-02",
          _two("Date of birth?", "Ten, oh two, two thousand and one.")),
    _case("u-514", "contradicted", "birth_date", "1985-09-01",
          _two("Date of birth?", "Nineteen eighty-five, January ninth.")),
    _case("u-515", "supported", "address.line", "99 Harbor View Dr",
          _two("Address?", "Ninety-nine Harbor View Drive.")),
    _case("u-516", "supported", "address.line", "450 Main St Ste 200",
          _two("Address?", "Four fifty Main Street, suite two hundred.")),
    _case("u-517", "unsupported", "address.line", "20 Elm St",
          _two("New address?", "We're looking at a place on Elm, maybe twenty Elm Street, not "
               "sure yet.")),
    _case("u-518", "supported", "address.postal_code", "94110",
          _two("And the zip code?", "The zip code is nine four one one oh.")),
    _case("u-519", "supported", "address.city", "Somerville",
          _two("Address?", "Two ten Pine Road, Somerville.")),
    _case("u-520", "supported", "start", "2026-12-10T13:45:00-08:00",
          [(A, "Thursday, December tenth at one forty-five p.m.?"), (C, "Yes."),
           (A, "You're booked for Thursday, December tenth at one forty-five p.m."),
           (C, "Thanks.")], entity="Appointment", call=_LA),
    _case("u-521", "supported", "start", "2026-12-04T09:00:00-05:00",
          [(A, "I can do this Friday at nine a.m."), (C, "Yes please."),
           (A, "You're booked for this Friday at nine a.m."), (C, "Thanks.")],
          entity="Appointment", call=("2026-12-02T10:00:00-05:00", "America/New_York")),
    _case("u-522", "contradicted", "status", "booked",
          [(A, "I have Monday, December seventh at two p.m."), (C, "Okay."),
           (A, "You're booked for Monday, December seventh at two p.m."),
           (C, "Actually, please cancel it, I'll call back when I know my schedule."),
           (A, "No problem, I've cancelled that appointment."), (C, "Thanks.")],
          entity="Appointment"),
    _case("u-523", "supported", "status", "cancelled",
          [(A, "I have Monday, December seventh at two p.m."), (C, "Okay."),
           (A, "You're booked for Monday, December seventh at two p.m."),
           (C, "Actually, please cancel it, I'll call back when I know my schedule."),
           (A, "No problem, I've cancelled that appointment."), (C, "Thanks.")],
          entity="Appointment"),
    _case("u-524", "contradicted", "practitioner", "Dr. Daniel Kim",
          [(C, "Can I see Dr. Kim?"),
           (A, "Dr. Kim has nothing this month. I can book Dr. Rachel Adams on Monday, December "
               "seventh at two p.m."), (C, "That's fine."),
           (A, "You're booked with Dr. Rachel Adams on Monday, December seventh at two p.m."),
           (C, "Thanks.")], entity="Appointment"),
    _case("u-525", "supported", "appointment_type", "follow-up",
          [(A, "For the follow-up, I have Monday, December seventh at two p.m."), (C, "Yes."),
           (A, "You're booked for your follow-up on Monday, December seventh at two p.m."),
           (C, "Thanks.")], entity="Appointment"),
    _case("u-526", "unsupported", "start", "2026-12-08T15:00:00-05:00",
          [(A, "I've put a hold on Tuesday, December eighth at three p.m. You'll need to call "
               "back to confirm it."), (C, "Okay, I'll call back.")], entity="Appointment"),
    _case("u-527", "supported", "medication.display", "amlodipine 5 mg",
          _two("Medications?", "I'm on amlodipine, five milligrams, once a day."),
          entity="MedicationOrder"),
    _case("u-528", "contradicted", "medication.display", "atorvastatin 20 mg",
          _two("Are you on atorvastatin twenty milligrams?", "Atorvastatin, yes, but it's forty "
               "milligrams now, not twenty."), entity="MedicationOrder"),
    _case("u-529", "supported", "dosage.text", "2 puffs twice daily",
          _two("How do you use the albuterol?", "Two puffs, twice a day."),
          entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "albuterol 90 mcg"}),
    _case("u-530", "supported", "status", "on-hold",
          _two("Are you taking metformin?", "The doctor paused my metformin for now."),
          entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "metformin 500 mg"}),
    _case("u-531", "supported", "substance", "penicillin",
          _two("Any allergies?", "Penicillin. I get hives."), entity="AllergyIntolerance"),
    _case("u-532", "contradicted", "reaction", "hives",
          _two("What happens with penicillin?", "Penicillin makes me break out in a rash, not "
               "hives."), entity="AllergyIntolerance",
          known={"AllergyIntolerance.substance": "penicillin"}),
    _case("u-533", "contradicted", "substance", "amoxicillin",
          _two("Any allergies?", "My daughter is allergic to amoxicillin. I'm not allergic to "
               "anything."), entity="AllergyIntolerance"),
    _case("u-534", "supported", "language", "pt",
          _two("What language would you like?", "Portuguese, please.")),
    _case("u-535", "supported", "payer", "Aetna",
          _two("Insurance?", "My insurance is Aetna."), entity="InsurancePlan"),
    _case("u-536", "unsupported", "preferred_pharmacy", "CVS, Broadway",
          _two("Pharmacy?", "Maybe the CVS on Broadway? Or the Walgreens, I'm not sure.")),
    _case("u-537", "supported", "plan_name", "Blue Choice HMO",
          _two("Plan name?", "It's the Blue Choice HMO."), entity="InsurancePlan"),
    _case("u-538", "supported", "group_number", "G7712",
          _two("Group number?", "Group number G as in George, seven seven one two."),
          entity="InsurancePlan"),
]  # fmt: skip


# A fifth batch (zones, daylight saving time, rarer fields), run once before any change.
_B6: list[dict[str, Any]] = [
    _case("u-601", "supported", "start", "2027-03-15T09:00:00-05:00",
          [(A, "Monday, March fifteenth at nine a.m.?"), (C, "Yes."),
           (A, "You're booked for Monday, March fifteenth at nine a.m."), (C, "Thanks.")],
          entity="Appointment", call=("2027-03-10T09:00:00-06:00", "America/Chicago")),
    _case("u-602", "contradicted", "start", "2027-03-15T09:00:00-06:00",
          [(A, "Monday, March fifteenth at nine a.m.?"), (C, "Yes."),
           (A, "You're booked for Monday, March fifteenth at nine a.m."), (C, "Thanks.")],
          entity="Appointment", call=("2027-03-10T09:00:00-06:00", "America/Chicago"),
          why="daylight saving time starts March 14"),
    _case("u-603", "supported", "start", "2026-12-05T14:00:00-10:00",
          [(A, "Tomorrow at two p.m.?"), (C, "Yes, please."),
           (A, "You're booked for tomorrow at two p.m."), (C, "Mahalo.")],
          entity="Appointment", call=("2026-12-04T08:00:00-10:00", "Pacific/Honolulu")),
    _case("u-604", "supported", "start", "2026-12-05T20:00:00Z",
          [(A, "Tomorrow at three p.m.?"), (C, "Sure."),
           (A, "You're booked for tomorrow at three p.m."), (C, "Thanks.")],
          entity="Appointment", why="the same instant as 15:00 in New York"),
    _case("u-605", "supported", "start", "2026-12-08T10:00:00-04:00",
          [(A, "¿El martes ocho de diciembre a las diez de la mañana?"), (C, "Sí."),
           (A, "Te agendé para el martes ocho de diciembre a las diez de la mañana."),
           (C, "Gracias.")], entity="Appointment",
          call=("2026-12-04T10:00:00-04:00", "America/Puerto_Rico")),
    _case("u-606", "supported", "birth_date", "1991-02-02",
          _two("Can you verify your date of birth?", "My date of birth is the second of February, "
               "nineteen ninety-one.")),
    _case("u-607", "supported", "birth_date", "1960-12-25",
          _two("Date of birth?", "Twelve, twenty-five, sixty.")),
    _case("u-608", "contradicted", "birth_date", "2000-03-10",
          _two("Date of birth?", "October third, two thousand.")),
    _case("u-609", "supported", "payer", "Blue Cross Blue Shield",
          _two("Who is your insurance with?", "I have BCBS."), entity="InsurancePlan",
          why="BCBS is Blue Cross Blue Shield"),
    _case("u-610", "supported", "preferred_pharmacy", "Walgreens, Clark St at Diversey",
          _two("Which pharmacy?", "The Walgreens on Clark and Diversey, please.")),
    _case("u-611", "supported", "status", "completed",
          _two("Are you still on prednisone?", "No, I finished the prednisone taper on Monday."),
          entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "prednisone 10 mg"}),
    _case("u-612", "supported", "reaction", "swelling",
          _two("What happens with ibuprofen?", "Ibuprofen makes my lips swell up."),
          entity="AllergyIntolerance", known={"AllergyIntolerance.substance": "ibuprofen"}),
    _case("u-613", "supported", "language", "tl",
          _two("Which language do you prefer?", "I'd prefer Tagalog.")),
    _case("u-614", "unsupported", "language", "fr",
          _two("Do you need an interpreter?", "I speak a little French, but let me think about "
               "it.")),
    _case("u-615", "supported", "language", "ht",
          _two("What language for your visits?", "Kreyòl, please.")),
    _case("u-616", "supported", "phone.mobile", "+14155550120",
          _two("Cell?", "My cell phone number is area code four one five, five five five, zero "
               "one two zero.")),
    _case("u-617", "contradicted", "phone.mobile", "+14155550210",
          _two("Cell?", "My cell phone number is area code four one five, five five five, zero "
               "one two zero.")),
    _case("u-618", "supported", "phone.home", "+19785550181",
          _two("Home phone?", "Home phone: nine seven eight, five five five, oh one eight one.")),
    _case("u-619", "contradicted", "phone.mobile", "+16175550142",
          _two("Is the cell we have still good?", "No, you have my old cell on file. I'll call "
               "back with the new one."), known={"Patient.phone.mobile": "+16175550142"}),
    _case("u-620", "supported", "email", "patel_a@example.org",
          _two("Email?", "Patel underscore a at example dot org.")),
    _case("u-621", "contradicted", "email", "sam.ito@example.com",
          _two("Email?", "It's sam dot ito at example dot net. Not dot com, dot net.")),
    _case("u-622", "supported", "member_id", "HQZ9904412",
          _two("Member ID?", "It's H, Q, Z, nine nine zero, four four one, two."),
          entity="InsurancePlan"),
    _case("u-623", "unsupported", "member_id", "HQZ9904412",
          _two("Member ID?", "The card is in the car, I'll call back with the ID."),
          entity="InsurancePlan"),
    _case("u-624", "supported", "group_number", "00788",
          _two("Group number?", "Group is zero zero seven eight eight."), entity="InsurancePlan"),
    _case("u-625", "supported", "address.line", "333 Elm St Apt 4B",
          _two("Address?", "Three thirty-three Elm Street, apartment four B, Cambridge.")),
    _case("u-626", "supported", "address.city", "Cambridge",
          _two("Address?", "Three thirty-three Elm Street, apartment four B, Cambridge.")),
    _case("u-627", "contradicted", "address.line", "333 Elm St Apt 4D",
          _two("Address?", "Three thirty-three Elm Street, apartment four B, Cambridge.")),
    _case("u-628", "supported", "status", "booked",
          [(A, "¿Le sirve el martes ocho de diciembre a las dos de la tarde?"), (C, "Sí."),
           (A, "Listo, te agendé para el martes ocho de diciembre a las dos de la tarde."),
           (C, "Gracias.")], entity="Appointment"),
    _case("u-629", "supported", "medication.display", "atorvastatin 40 mg",
          _two("Cholesterol medicine?", "Lipitor, forty milligrams."), entity="MedicationOrder"),
    _case("u-630", "contradicted", "medication.display", "atorvastatin 80 mg",
          _two("Cholesterol medicine?", "Lipitor, forty milligrams."), entity="MedicationOrder"),
    _case("u-631", "unsupported", "substance", "latex",
          _two("Allergies?", "I think I might be allergic to latex, not sure."),
          entity="AllergyIntolerance"),
    _case("u-632", "supported", "practitioner", "Karen Lowe, NP",
          [(A, "I can book Karen Lowe, NP on Tuesday, December eighth at two p.m."), (C, "Yes."),
           (A, "You're booked with Karen Lowe, NP on Tuesday, December eighth at two p.m."),
           (C, "Thanks.")], entity="Appointment"),
]  # fmt: skip


# A sixth batch: traps for acceptance and bookings (a "yes" to another question, a "yes" that
# calls it old, a read-back that differs from what the caller said, an agent correcting itself
# in the booking), run once before any change.
_CELL_Q = "I have your cell as six one seven, five five five, zero one two two."
_B7: list[dict[str, Any]] = [
    _case("u-701", "unsupported", "phone.mobile", "+16175550168",
          [(A, "Your cell?"), (C, "Six one seven, five five five, oh one eight six."),
           (A, "Six one seven, five five five, zero one six eight?"), (C, "Yes.")],
          why="the caller said 0186 and then accepted 0168: which one?"),
    _case("u-702", "unsupported", "phone.mobile", "+16175550122",
          _two(_CELL_Q + " Do you also want text reminders?", "Yes, please."),
          why="the yes answers the reminders question"),
    _case("u-703", "supported", "phone.mobile", "+16175550122",
          _two(_CELL_Q + " Is that right? And do you want text reminders?", "Yes to both.")),
    _case("u-704", "contradicted", "phone.mobile", "+16175550122",
          _two(_CELL_Q + " Is that right?", "Yes, that's my old one, I have a new one now."),
          why="the caller says the number on file is old"),
    _case("u-705", "unsupported", "birth_date", "1997-03-04",
          [(A, "Your date of birth?"), (C, "March fourth, nineteen seventy-nine."),
           (A, "March fourth, nineteen ninety-seven?"), (C, "Yes.")]),
    _case("u-706", "contradicted", "practitioner", "Dr. Lee",
          [(A, "I can book you with Dr. Li on Tuesday, December eighth at ten a.m."),
           (C, "Okay."),
           (A, "You're booked with Dr. Lee — sorry, Dr. Li, L-I — on Tuesday, December eighth at "
               "ten a.m."), (C, "Thanks.")], entity="Appointment"),
    _case("u-707", "contradicted", "start", "2026-12-08T15:00:00-05:00",
          [(A, "Tuesday, December eighth at three thirty p.m.?"), (C, "Yes."),
           (A, "You're booked for Tuesday, December eighth at three p.m. — sorry, three thirty."),
           (C, "Thanks.")], entity="Appointment"),
    _case("u-708", "supported", "start", "2026-12-08T15:30:00-05:00",
          [(A, "Tuesday, December eighth at three thirty p.m.?"), (C, "Yes."),
           (A, "You're booked for Tuesday, December eighth at three thirty p.m."),
           (C, "Thanks.")], entity="Appointment"),
    _case("u-709", "supported", "phone.mobile", "+16175550122",
          _two("Your new cell is six one seven, five five five, zero one two two, correct?",
               "Yes.")),
    _case("u-710", "unsupported", "phone.mobile", "+16175550122",
          _two(_CELL_Q + " Is that right?", "Yes, that's my husband's, actually.")),
    _case("u-711", "contradicted", "language", "es",
          _two("Which language?", "Spanish, please. Actually, English is fine.")),
    _case("u-712", "unsupported", "member_id", "QHP44120",
          _two("I see member ID Q, H, P, four four one, two zero on file. Is that still current?",
               "I think so."), entity="InsurancePlan"),
]  # fmt: skip


# A seventh batch: traps for medications, allergies and the worded fields, run once first.
_B8: list[dict[str, Any]] = [
    _case("u-801", "unsupported", "medication.display", "metformin 1000 mg",
          _two("What do you take?", "I take metformin, five hundred milligrams, and my wife takes "
               "the one thousand milligram one."), entity="MedicationOrder"),
    _case("u-802", "supported", "medication.display", "metformin 500 mg",
          _two("What do you take?", "I take metformin, five hundred milligrams, and my wife takes "
               "the one thousand milligram one."), entity="MedicationOrder"),
    _case("u-803", "unsupported", "dosage.text", "1 tablet twice daily",
          _two("How do you take the lisinopril?", "The doctor said one tablet twice a day, but I "
               "only take it once a day."), entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "lisinopril 10 mg"}),
    _case("u-804", "unsupported", "reaction", "breathing problems",
          _two("What happens with penicillin?", "With penicillin I got hives, and with sulfa I "
               "had trouble breathing."), entity="AllergyIntolerance",
          known={"AllergyIntolerance.substance": "penicillin"}),
    _case("u-805", "contradicted", "language", "es",
          _two("Which language?", "My husband prefers Spanish, I prefer English.")),
    _case("u-806", "unsupported", "payer", "Aetna",
          _two("Insurance?", "My husband has Aetna through work; I'm not on his plan."),
          entity="InsurancePlan"),
    _case("u-807", "contradicted", "preferred_pharmacy", "CVS, Main St",
          _two("Which pharmacy?", "Not the CVS, the Walgreens on Main.")),
    _case("u-808", "contradicted", "member_id", "WZH4472291",
          _two("Member ID?", "W, Z, H, four four seven, two two nine one, and then zero two for "
               "me."), entity="InsurancePlan", why="the patient's own id has the 02 suffix"),
    _case("u-809", "supported", "member_id", "WZH447229102",
          _two("Member ID?", "W, Z, H, four four seven, two two nine one, and then zero two for "
               "me."), entity="InsurancePlan"),
    _case("u-810", "supported", "address.line", "12 Oak St",
          _two("Your home address?", "Mail goes to my P.O. box, but I live at twelve Oak Street.")),
    _case("u-811", "unsupported", "address.postal_code", "02139",
          _two("Zip code?", "The zip is zero two one three nine, or is it one three eight?")),
    _case("u-812", "contradicted", "status", "active",
          _two("Still taking the atorvastatin?", "Not since March, the doctor took me off it."),
          entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "atorvastatin 20 mg"}),
]  # fmt: skip


# An eighth batch: traps for phones, names, dates and zones, run once before any change.
_CHI = ("2026-12-04T09:00:00-06:00", "America/Chicago")
_B9: list[dict[str, Any]] = [
    _case("u-901", "contradicted", "phone.mobile", "+16175550123",
          _two("Cell?", "My cell is six one seven, five five five, oh one two two. My husband's is "
               "six one seven, five five five, oh one two three.")),
    _case("u-902", "supported", "phone.mobile", "+16175550122",
          _two("Cell?", "My cell is six one seven, five five five, oh one two two. My husband's is "
               "six one seven, five five five, oh one two three.")),
    _case("u-903", "unsupported", "phone.mobile", "+16175550122",
          _two("Cell?", "Six one seven, five five [static] five, oh one two two.")),
    _case("u-904", "unsupported", "birth_date", "1976-07-04",
          _two("Date of birth?", "The fourth of July, but the year I'd rather not say.")),
    _case("u-905", "contradicted", "birth_date", "2010-06-09",
          _two("Date of birth?", "I'm March third, eighty-one; my son is June ninth, twenty ten.")),
    _case("u-906", "supported", "birth_date", "1981-03-03",
          _two("Date of birth?", "I'm March third, eighty-one; my son is June ninth, twenty ten.")),
    _case("u-907", "contradicted", "start", "2026-12-08T14:00:00-06:00",
          [(A, "Tuesday, December eighth at two p.m. Eastern, is that okay?"), (C, "Yes."),
           (A, "You're booked for Tuesday, December eighth at two p.m. Eastern."),
           (C, "Thanks.")], entity="Appointment", call=_CHI,
          why="two p.m. Eastern is one p.m. in Chicago"),
    _case("u-908", "unsupported", "phone.mobile", "+16175550122",
          [(A, "Cell?"), (C, "Six one seven, five five five, oh one two two."), (A, "Thanks."),
           (C, "Actually, that's my landline, not my cell.")]),
    _case("u-909", "contradicted", "name.family", "Smith",
          _two("Last name?", "Smith, S-M-I-T-H, but it's hyphenated, Smith-Jones.")),
    _case("u-910", "unsupported", "birth_date", "1981-03-03",
          [(A, "I have your birthday as March third, nineteen eighty-one. And what's your "
               "address?"), (C, "Forty Elm Street.")]),
    _case("u-911", "unsupported", "member_id", "WZH4472202",
          _two("Member ID?", "It's the same as my husband's, but ending in zero two instead of "
               "zero one."), entity="InsurancePlan"),
    _case("u-912", "supported", "email", "lee.ann@example.com",
          [(A, "Email?"), (C, "Lee dot ann at example dot com."),
           (A, "L-E-E dot A-N-N at example dot com?"), (C, "Yes, that's it.")]),
]  # fmt: skip


# A ninth batch: more traps across fields, run once before any change.
_B10: list[dict[str, Any]] = [
    _case("u-a01", "supported", "address.line", "12 Oak St",
          _two("Address?", "Twelve Oak Street, but we're moving to forty Pine Street next month.")),
    _case("u-a02", "contradicted", "address.line", "40 Pine St",
          _two("Address?", "Twelve Oak Street, but we're moving to forty Pine Street next month.")),
    _case("u-a03", "supported", "email", "jsmith@example.com",
          _two("Email?", "My email is jsmith at example dot com, that's J, S, M, I, T, H.")),
    _case("u-a04", "contradicted", "email", "j.smith@example.com",
          _two("Email?", "My email is jsmith at example dot com, that's J, S, M, I, T, H.")),
    _case("u-a05", "contradicted", "status", "booked",
          [(C, "Can I get in on Tuesday?"),
           (A, "I'm not able to book Tuesday, but I've put you on the waitlist."),
           (C, "Okay.")], entity="Appointment"),
    _case("u-a06", "unsupported", "reaction", "hives",
          _two("What happens with codeine?", "Codeine makes me nauseous. My mom gets hives from "
               "it."), entity="AllergyIntolerance",
          known={"AllergyIntolerance.substance": "codeine"}),
    _case("u-a07", "contradicted", "language", "es",
          _two("Language?", "Spanish is fine for my mom, but I prefer English.")),
    _case("u-a08", "supported", "start", "2026-12-05T09:00:00-05:00",
          [(A, "Tomorrow at nine in the morning?"), (C, "Yes."),
           (A, "You're booked for tomorrow at nine in the morning."), (C, "Thanks.")],
          entity="Appointment"),
    _case("u-a09", "supported", "medication.display", "acetaminophen",
          _two("Anything else you take?", "I take Tylenol as needed."), entity="MedicationOrder"),
    _case("u-a10", "contradicted", "medication.display", "atorvastatin",
          _two("Any cholesterol medicine?", "I'm supposed to take Lipitor, but I haven't been "
               "taking it for months."), entity="MedicationOrder"),
    _case("u-a11", "supported", "medication.display", "aspirin 81 mg",
          _two("Medications?", "Just baby aspirin, eighty-one milligrams."),
          entity="MedicationOrder"),
    _case("u-a12", "unsupported", "start", "2026-12-08T10:00:00-05:00",
          [(A, "You're booked for Tuesday, December eighth at ten a.m. for your labs and "
               "Thursday, December tenth at two p.m. with Dr. Osei."), (C, "Great, thanks.")],
          entity="Appointment", why="two visits; which one the fact is about is unclear"),
]  # fmt: skip


# A tenth batch: traps for background voices, alternatives and corrections in worded fields.
_B11: list[dict[str, Any]] = [
    _case("u-b01", "unsupported", "phone.mobile", "+16175550122",
          _two(_CELL_Q + " Is that right?", "Yes. [background] No, that's the old number!"),
          why="a background voice disputes it and the caller does not settle it"),
    _case("u-b02", "unsupported", "email", "ana@example.com",
          _two("Email?", "It's ana at example dot com, or ana two, one of those.")),
    _case("u-b03", "unsupported", "member_id", "XYZ12345",
          _two("Member ID?", "It's X, Y, Z, one two three four five. That's the group number, "
               "actually."), entity="InsurancePlan"),
    _case("u-b04", "contradicted", "birth_date", "1990-01-05",
          _two("Date of birth?", "January fifth, nineteen ninety — no wait, that's my husband's. "
               "Mine is May second, nineteen ninety-two.")),
    _case("u-b05", "supported", "birth_date", "1992-05-02",
          _two("Date of birth?", "January fifth, nineteen ninety — no wait, that's my husband's. "
               "Mine is May second, nineteen ninety-two.")),
    _case("u-b06", "contradicted", "language", "es",
          _two("Language?", "English, please, for me. My mother needs Spanish.")),
    _case("u-b07", "unsupported", "substance", "latex",
          _two("Allergies?", "No allergies that I know of, except maybe latex."),
          entity="AllergyIntolerance"),
    _case("u-b08", "contradicted", "preferred_pharmacy", "CVS, Elm St",
          _two("Pharmacy?", "Use the CVS on Elm — actually no, the one on Maple.")),
    _case("u-b09", "contradicted", "payer", "Cigna",
          _two("Insurance?", "I had Cigna until last month; now it's Aetna."),
          entity="InsurancePlan"),
    _case("u-b10", "supported", "payer", "Aetna",
          _two("Insurance?", "I had Cigna until last month; now it's Aetna."),
          entity="InsurancePlan"),
]  # fmt: skip


# An eleventh batch: several values in one call, run once before any change.
_TWO_PHONES = (
    "Call my cell, six one seven, five five five, oh one four one, but text my work "
    "phone, six one seven, five five five, oh one four two."
)
_WRONG_ONE = (
    "The number you have, six one seven, five five five, oh one four one, is wrong; it "
    "should be six one seven, five five five, oh one four seven."
)
_B12: list[dict[str, Any]] = [
    _case("u-c01", "contradicted", "phone.mobile", "+16175550141",
          _two("Is your cell still good?", "My old cell was six one seven, five five five, oh "
               "one four one; I don't have a cell anymore.")),
    _case("u-c02", "supported", "phone.mobile", "+16175550141", _two("Numbers?", _TWO_PHONES)),
    _case("u-c03", "supported", "phone.work", "+16175550142", _two("Numbers?", _TWO_PHONES)),
    _case("u-c04", "contradicted", "phone.mobile", "+16175550141",
          _two("Your cell?", _WRONG_ONE)),
    _case("u-c05", "supported", "phone.mobile", "+16175550147",
          _two("Your cell?", _WRONG_ONE)),
    _case("u-c06", "supported", "birth_date", "1980-03-02",
          _two("Date of birth?", "I was born in nineteen eighty, in Ohio, March second.")),
    _case("u-c07", "supported", "start", "2026-12-09T14:00:00-05:00",
          [(A, "I have Tuesday at ten a.m. or Wednesday at two p.m."), (C, "Wednesday, please."),
           (A, "You're booked for Wednesday, December ninth at two p.m."), (C, "Thanks.")],
          entity="Appointment"),
    _case("u-c08", "unsupported", "start", "2026-12-09T14:00:00-05:00",
          [(A, "I have Tuesday at ten a.m. or Wednesday at two p.m."), (C, "Wednesday, please."),
           (A, "You're booked for Wednesday, December ninth at two p.m."),
           (C, "Wait, I said Thursday.")], entity="Appointment"),
    _case("u-c09", "contradicted", "practitioner", "Dr. Kwame Osei",
          [(C, "Can I see Dr. Osei?"),
           (A, "You're booked with Dr. Osei's nurse practitioner, Jane Park, on Wednesday, "
               "December ninth at two p.m."), (C, "Okay, thanks.")], entity="Appointment"),
    _case("u-c10", "supported", "birth_date", "1980-05-02",
          _two("¿Fecha de nacimiento?", "Nací el dos de mayo de mil novecientos ochenta.")),
]  # fmt: skip


# A twelfth batch: speech-to-text spellings of numbers and times, run once before any change.
def _booked(when: str) -> list[tuple[str, str]]:
    return [
        (A, f"Tuesday, December eighth at {when}?"),
        (C, "Yes."),
        (A, f"You're booked for Tuesday, December eighth at {when}."),
        (C, "Thanks."),
    ]


_B13: list[dict[str, Any]] = [
    _case("u-d01", "supported", "phone.mobile", "+16175550142",
          _two("Cell?", "Six one seven, five five five, oh one for two.")),
    _case("u-d02", "supported", "phone.mobile", "+18185550112",
          _two("Cell?", "It's ate one ate, five five five, oh one won two.")),
    _case("u-d03", "supported", "phone.mobile", "+15085550155",
          _two("Cell?", "Fife oh eight, five five five, oh one fife fife.")),
    _case("u-d04", "supported", "name.family", "Nguyen",
          _two("Last name?", "My last name is Nguyen, spelled N, G, U, Y, E, N.")),
    _case("u-d05", "supported", "birth_date", "1979-03-04",
          _two("Date of birth?", "Oh three, oh four, seventy-nine.")),
    _case("u-d06", "supported", "start", "2026-12-08T10:00:00-05:00", _booked("ten a m"),
          entity="Appointment"),
    _case("u-d07", "supported", "start", "2026-12-08T15:00:00-05:00", _booked("three PM"),
          entity="Appointment"),
    _case("u-d08", "supported", "start", "2026-12-08T15:00:00-05:00", _booked("3 p.m."),
          entity="Appointment"),
    _case("u-d09", "supported", "start", "2026-12-08T15:00:00-05:00", _booked("3:00 PM"),
          entity="Appointment"),
    _case("u-d10", "contradicted", "start", "2026-12-08T03:00:00-05:00", _booked("3:00 PM"),
          entity="Appointment"),
    _case("u-d11", "supported", "address.postal_code", "02138",
          _two("Zip code?", "Zero two one three ate.")),
]  # fmt: skip


# A thirteenth batch: traps for the newest rules, run once before any change.
_WIFE = (
    "Six one seven, five five five, oh one two two, and my wife's is six one seven, five "
    "five five, oh one two three."
)
_B14: list[dict[str, Any]] = [
    _case("u-e01", "unsupported", "phone.home", "+16175550122",
          _two("Numbers?", "My cell isn't the same as my home, it's six one seven, five five "
               "five, oh one two two."), why="the cell's number, the home one never said"),
    _case("u-e02", "supported", "phone.mobile", "+16175550122",
          _two("Numbers?", "The home number is the same as my cell, it's six one seven, five "
               "five five, oh one two two.")),
    _case("u-e03", "unsupported", "phone.mobile", "+16175550199",
          _two("Cell?", "My number for the pharmacy is six one seven, five five five, oh one "
               "nine nine, if you need it.")),
    _case("u-e04", "supported", "phone.mobile", "+16175550122", _two("Your cell?", _WIFE)),
    _case("u-e05", "contradicted", "phone.mobile", "+16175550123", _two("Your cell?", _WIFE)),
    _case("u-e06", "unsupported", "phone.mobile", "+16175550122",
          _two("Your cell?", "I think it ends in oh one two two, six one seven, five five five, "
               "oh one two two, but my daughter knows.")),
]  # fmt: skip


# A fourteenth batch: whole calls in the dev set's style, run once before any change.
_CALL_F1 = [
    (
        A,
        "Thank you for calling Northside Pediatrics, this is the virtual assistant. Who am I "
        "speaking with?",
    ),
    (C, "Hi, this is Dana Whitlock, I'm calling for my son Eli."),
    (A, "Hi Dana. What's Eli's date of birth?"),
    (C, "April ninth, twenty nineteen."),
    (A, "Thank you. How can I help?"),
    (C, "He needs his flu shot, and I want to update my cell. It changed."),
    (A, "Sure. What's the new cell number?"),
    (C, "Three one two, five five five, oh one six nine."),
    (A, "Three one two, five five five, zero one six nine. Is that right?"),
    (C, "Yes."),
    (A, "For the flu shot, I have Monday, December seventh at four p.m."),
    (C, "That works."),
    (A, "You're booked for a vaccination visit for Eli on Monday, December seventh at four p.m."),
    (C, "Great, thank you."),
]
_CALL_F2 = [
    (A, "Harbor Clinic, how can I help?"),
    (C, "Hola, sí, I need to change my address. This is Rosa Ibarra."),
    (A, "Of course, Rosa. What's the new address?"),
    (C, "Es... five twenty Lake Street, apartamento dos."),
    (A, "Five twenty Lake Street, apartment two?"),
    (C, "Sí, apartment two. And the zip is six oh six one four."),
    (A, "Six oh six one four. Got it."),
    (C, "Gracias."),
]
_B15: list[dict[str, Any]] = [
    _case("u-f01", "unsupported", "phone.mobile", "+13125550169", _CALL_F1,
          why="Dana calls for her son; her cell is not the patient's"),
    _case("u-f02", "supported", "appointment_type", "vaccination", _CALL_F1,
          entity="Appointment"),
    _case("u-f03", "supported", "start", "2026-12-07T16:00:00-05:00", _CALL_F1,
          entity="Appointment"),
    _case("u-f04", "supported", "birth_date", "2019-04-09", _CALL_F1),
    _case("u-f05", "supported", "address.line", "520 Lake St Apt 2", _CALL_F2),
    _case("u-f06", "supported", "address.postal_code", "60614", _CALL_F2),
    _case("u-f07", "contradicted", "address.line", "520 Lake St", _CALL_F2,
          why="the apartment is missing"),
]  # fmt: skip


# Written with the caregiver rule the fourteenth batch prompted (not a held-out batch): a
# relative calling for the patient speaks for them, but the caller's own values are theirs.
_B16: list[dict[str, Any]] = [
    _case("u-g01", "supported", "phone.mobile", "+16175550163",
          _two("How can I help?", "I'm calling for my mom, Ana Ruiz. Her new cell is six one "
               "seven, five five five, oh one six three.")),
    _case("u-g02", "unsupported", "phone.mobile", "+16175550164",
          _two("How can I help?", "I'm calling for my mom. You can reach me at six one seven, "
               "five five five, oh one six four.")),
    _case("u-g03", "supported", "phone.mobile", "+16175550165",
          _two("How can I help?", "I'm calling for my dad. My dad's new cell is six one seven, "
               "five five five, oh one six five.")),
    _case("u-g04", "unsupported", "phone.mobile", "+16175550166",
          _two("How can I help?", "I'm calling for my dad. My daughter's number is six one "
               "seven, five five five, oh one six six.")),
    _case("u-g05", "supported", "substance", "penicillin",
          _two("How can I help?", "I'm calling on behalf of my husband. He's allergic to "
               "penicillin."), entity="AllergyIntolerance"),
    _case("u-g06", "unsupported", "substance", "latex",
          _two("How can I help?", "I'm calling for my husband. I'm allergic to latex, by the "
               "way."), entity="AllergyIntolerance"),
    _case("u-g07", "supported", "birth_date", "2015-03-03",
          _two("How can I help?", "I'm calling for my son. His date of birth is March third, "
               "twenty fifteen.")),
    _case("u-g08", "unsupported", "email", "dana.w@example.com",
          _two("Email?", "I'm calling for my son. My email is dana dot w at example dot com.")),
]  # fmt: skip


# A fifteenth batch: traps for the caregiver rule, run once before any change.
_MOM_CELLS = (
    "I'm calling for my mom. Her cell is six one seven, five five five, oh one eight "
    "one. My cell is six one seven, five five five, oh one eight two."
)
_HUSBAND_DOB = (
    "I'm calling for my husband. His date of birth is May second, nineteen sixty. "
    "Mine is June third, nineteen sixty-two."
)
_B17: list[dict[str, Any]] = [
    _case("u-h01", "supported", "phone.mobile", "+16175550181", _two("Numbers?", _MOM_CELLS)),
    _case("u-h02", "contradicted", "phone.mobile", "+16175550182", _two("Numbers?", _MOM_CELLS),
          why="the caller's own cell; the patient's is established"),
    _case("u-h03", "contradicted", "phone.mobile", "+16175550183",
          _two("Her cell?", "I'm calling for my mom. She doesn't have a cell; use my number, six "
               "one seven, five five five, oh one eight three.")),
    _case("u-h04", "supported", "birth_date", "1960-05-02", _two("Date of birth?", _HUSBAND_DOB)),
    _case("u-h05", "contradicted", "birth_date", "1962-06-03",
          _two("Date of birth?", _HUSBAND_DOB)),
    _case("u-h06", "supported", "phone.mobile", "+16175550186",
          _two("How can I help?", "I'm calling for my daughter, she's twelve. Her cell is six one "
               "seven, five five five, oh one eight six.")),
    _case("u-h07", "unsupported", "phone.mobile", "+16175550187",
          _two("How can I help?", "I'm calling for my mother. My sister's number is six one "
               "seven, five five five, oh one eight seven, she lives with mom.")),
]  # fmt: skip


# A sixteenth batch: whole calls in the dev set's style, run once before any change.
_CALL_I1 = [
    (A, "Good morning, Bayview Medical Group, this is the virtual assistant. How can I help?"),
    (C, "Hi, I got new insurance through my job and wanted to give you the info."),
    (A, "Of course. Who is the new insurance with?"),
    (C, "It's Aetna now. I used to have Cigna."),
    (A, "And the member ID?"),
    (C, "W, one two, three four five, six seven eight, nine."),
    (A, "W one two three four five six seven eight nine. Is that right?"),
    (C, "Yes. And the group number is G, R, P, four four zero zero."),
    (A, "G R P four four zero zero. Got it."),
    (C, "Thanks."),
]
_CALL_I2 = [
    (A, "Eastside Family Practice, how can I help?"),
    (C, "I need to move my appointment with Dr. Patel next Thursday."),
    (A, "I see your appointment on Thursday, December tenth at nine a.m. What would work better?"),
    (C, "Could we do Friday instead? In the afternoon."),
    (A, "I have Friday, December eleventh at one thirty p.m. with Dr. Patel."),
    (C, "Perfect."),
    (
        A,
        "Done. Your appointment is now Friday, December eleventh at one thirty p.m. with Dr. "
        "Meera Patel.",
    ),
    (C, "Thank you so much."),
]
_CALL_I3 = [
    (A, "Before your visit, can we review your medications?"),
    (C, "Sure. I take amlodipine, five milligrams, every morning. And metformin."),
    (A, "What dose of metformin?"),
    (
        C,
        "Five hundred, twice a day. Oh, and I stopped the simvastatin, the doctor switched me to "
        "Lipitor, forty milligrams.",
    ),
    (A, "Got it. Any allergies?"),
    (C, "Just sulfa. It gives me a rash."),
]
_B18: list[dict[str, Any]] = [
    _case("u-i01", "supported", "payer", "Aetna", _CALL_I1, entity="InsurancePlan"),
    _case("u-i02", "supported", "member_id", "W123456789", _CALL_I1, entity="InsurancePlan"),
    _case("u-i03", "supported", "group_number", "GRP4400", _CALL_I1, entity="InsurancePlan"),
    _case("u-i04", "unsupported", "payer", "Cigna", _CALL_I1, entity="InsurancePlan",
          why="the old payer"),
    _case("u-i05", "supported", "start", "2026-12-11T13:30:00-05:00", _CALL_I2,
          entity="Appointment",
          known={"Appointment.start": "2026-12-10T09:00:00-05:00",
                 "Appointment.practitioner": "Dr. Meera Patel"}),
    _case("u-i06", "contradicted", "start", "2026-12-10T09:00:00-05:00", _CALL_I2,
          entity="Appointment",
          known={"Appointment.start": "2026-12-10T09:00:00-05:00",
                 "Appointment.practitioner": "Dr. Meera Patel"}),
    _case("u-i07", "supported", "medication.display", "amlodipine 5 mg", _CALL_I3,
          entity="MedicationOrder"),
    _case("u-i08", "supported", "medication.display", "atorvastatin 40 mg", _CALL_I3,
          entity="MedicationOrder"),
    _case("u-i09", "supported", "status", "stopped", _CALL_I3, entity="MedicationOrder",
          known={"MedicationOrder.medication.display": "simvastatin 20 mg",
                 "MedicationOrder.status": "active"}),
    _case("u-i10", "supported", "substance", "sulfa antibiotics", _CALL_I3,
          entity="AllergyIntolerance"),
    _case("u-i11", "supported", "reaction", "rash", _CALL_I3, entity="AllergyIntolerance",
          known={"AllergyIntolerance.substance": "sulfa antibiotics"}),
]  # fmt: skip


# A seventeenth batch: whole calls in the dev set's style, run once before any change.
_CALL_J1 = [
    (A, "Westgate Clinic, virtual assistant speaking. How can I help you today?"),
    (C, "Hi, I'm a new patient, I need to register. My name is Tomasz Kowalczyk."),
    (A, "Welcome, Tomasz. Could you spell your last name?"),
    (C, "K-O-W-A-L-C-Z-Y-K."),
    (A, "Thank you. And your date of birth?"),
    (C, "November twenty-second, nineteen eighty-eight."),
    (A, "What's the best phone number for you?"),
    (C, "My cell, it's four one two, five five five, zero one three one."),
    (A, "Four one two, five five five, zero one three one. Correct?"),
    (C, "Correct."),
    (A, "And an email address?"),
    (C, "tomasz dot k at example dot org."),
    (A, "T-O-M-A-S-Z dot K at example dot org?"),
    (C, "Yes, that's it."),
    (A, "Which language do you prefer for your visits?"),
    (C, "English is fine. Polish would be nice, but English is fine."),
]
_CALL_J2 = [
    (A, "Riverbend Health, how can I help?"),
    (C, "I need to cancel my appointment tomorrow."),
    (
        A,
        "I see your follow-up tomorrow, December fifth, at eleven a.m. with Dr. Sato. Would you "
        "like to reschedule instead?",
    ),
    (C, "No, just cancel it please. I'll call back next month."),
    (A, "Okay, I've cancelled your appointment for tomorrow at eleven a.m."),
    (C, "Thanks."),
]
_B19: list[dict[str, Any]] = [
    _case("u-j01", "supported", "name.family", "Kowalczyk", _CALL_J1),
    _case("u-j02", "supported", "name.given", "Tomasz", _CALL_J1),
    _case("u-j03", "supported", "birth_date", "1988-11-22", _CALL_J1),
    _case("u-j04", "supported", "phone.mobile", "+14125550131", _CALL_J1),
    _case("u-j05", "supported", "email", "tomasz.k@example.org", _CALL_J1),
    _case("u-j06", "supported", "language", "en", _CALL_J1),
    _case("u-j07", "contradicted", "language", "pl", _CALL_J1),
    _case("u-j08", "supported", "status", "cancelled", _CALL_J2, entity="Appointment",
          known={"Appointment.start": "2026-12-05T11:00:00-05:00",
                 "Appointment.status": "booked"}),
    _case("u-j09", "contradicted", "status", "booked", _CALL_J2, entity="Appointment",
          known={"Appointment.start": "2026-12-05T11:00:00-05:00",
                 "Appointment.status": "booked"}),
]  # fmt: skip

UNSEEN: list[LabelledCase] = [
    parse_case(body)
    for body in [
        *_RAW,
        *_B2,
        *_B3,
        *_B4,
        *_B5,
        *_B6,
        *_B7,
        *_B8,
        *_B9,
        *_B10,
        *_B11,
        *_B12,
        *_B13,
        *_B14,
        *_B15,
        *_B16,
        *_B17,
        *_B18,
        *_B19,
    ]
]
