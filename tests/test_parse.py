"""The answer parser on realistic model outputs: label, invalid or refused, never a guess."""

from __future__ import annotations

import pytest

from functools import partial

from vlmface.backends import base
from vlmface.parse import normalize, parse_answer
from vlmface.vocabulary import load_vocabulary

# the task specs' answer words (tasks/*.yaml declare `vocabulary: faces`)
FACES = load_vocabulary("faces")
Question = partial(base.Question, vocabulary=FACES)

RACE6 = Question("race6", "categorical", ("White", "Black", "Asian", "Indian", "Latino_Hispanic", "Middle_Eastern"),
                 display={"Latino_Hispanic": "Latino or Hispanic", "Middle_Eastern": "Middle Eastern"})
RACE7 = Question("race", "categorical", ("East_Asian", "Indian", "Black", "White", "Middle_Eastern",
                                         "Latino_Hispanic", "Southeast_Asian"),
                 display={"East_Asian": "East Asian", "Southeast_Asian": "Southeast Asian",
                          "Middle_Eastern": "Middle Eastern", "Latino_Hispanic": "Latino or Hispanic"})
RACE_BARE = Question("race", "categorical", ("White", "Black", "Asian", "Latino_Hispanic"))  # no display names
GENDER = Question("gender", "categorical", ("Male", "Female"))
AGE5 = Question("age5", "ordinal", ("0-9", "10-19", "20-39", "40-59", "60+"),
                display={"60+": "More than 60"},
                bins=(("0-9", 0, 10), ("10-19", 10, 20), ("20-39", 20, 40), ("40-59", 40, 60),
                      ("60+", 60, float("inf"))))
AGE = Question("age", "numeric", ())
# the utkface and fairface task specs' own label names
RACE5 = Question("race5", "categorical", ("White", "Black", "Asian", "Indian", "Others"),
                 display={"Others": "other (Hispanic, Latino or Middle Eastern)"})
FAIR7 = Question("race7", "categorical", ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian",
                                          "Indian", "Middle Eastern"), display={"Latino_Hispanic": "Latino or Hispanic"})
UTK_AGE5 = Question("age5", "ordinal", ("0-9", "10-19", "20-39", "40-59", "60+"), display={"60+": "60 or older"},
                    bins=(("0-9", 0, 10), ("10-19", 10, 20), ("20-39", 20, 40), ("40-59", 40, 60),
                          ("60+", 60, float("inf"))))
AGE9 = Question("age9", "ordinal", ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                                    "more than 70"),
                bins=(("0-2", 0, 3), ("3-9", 3, 10), ("10-19", 10, 20), ("20-29", 20, 30), ("30-39", 30, 40),
                      ("40-49", 40, 50), ("50-59", 50, 60), ("60-69", 60, 70), ("more than 70", 70, float("inf"))))
EMOTION = Question("emotion", "categorical", ("neutral", "happy", "sad", "surprise", "fear", "disgust",
                                               "anger", "contempt"))

OK, INVALID, REFUSED = "ok", "invalid", "refused"

CASES = [
    # plain and decorated answers
    (RACE6, "White", OK, "White"),
    (RACE6, "white", OK, "White"),
    (RACE6, "'Latino or Hispanic'", OK, "Latino_Hispanic"),
    (RACE6, "Latino_Hispanic", OK, "Latino_Hispanic"),
    (RACE6, "Hispanic", OK, "Latino_Hispanic"),
    (RACE6, "**Middle Eastern**", OK, "Middle_Eastern"),
    (RACE6, "The person in the image appears to be Black.", OK, "Black"),
    (RACE6, "Answer: Indian\n", OK, "Indian"),
    (RACE6, "  asian.  ", OK, "Asian"),
    (RACE6, "Caucasian", OK, "White"),
    (RACE6, "East Asian", OK, "Asian"),
    (RACE_BARE, "Latino or Hispanic", OK, "Latino_Hispanic"),
    # longest match wins
    (RACE7, "East Asian", OK, "East_Asian"),
    (RACE7, "Southeast Asian", OK, "Southeast_Asian"),
    (RACE7, "South-East Asian", OK, "Southeast_Asian"),
    (RACE7, "Asian", INVALID, None),
    # trailing explanation: the first sentence naming one label is the answer
    (RACE6, "White. The person has light skin and European features, unlike Black or Asian people.", OK, "White"),
    (RACE6, "The main person is Indian.\nExplanation: skin tone and facial features suggest South Asian, "
            "not Middle Eastern.", OK, "Indian"),
    (RACE6, "The man in the white shirt appears to be Black.", OK, "Black"),
    # ambiguous, echoes, negation
    (RACE6, "The person could be White or Latino or Hispanic.", INVALID, None),
    (RACE6, "Black, White", INVALID, None),
    (RACE6, "Options: Black, Asian, Indian, Latino or Hispanic, Middle Eastern, White. The person is Asian.",
     OK, "Asian"),
    (RACE6, "The person is not White; they are Black.", OK, "Black"),
    (RACE6, "non-White", INVALID, None),
    (RACE6, "a photo of a face", INVALID, None),
    (RACE6, "", INVALID, None),
    # JSON answers (AlDahoul et al.'s API prompt)
    (RACE6, '{"race": "White", "gender": "Male", "age-group": "20-39"}', OK, "White"),
    (GENDER, '```json\n{"race": "Black", "gender": "Female", "age-group": "40-59"}\n```', OK, "Female"),
    (AGE5, '{"race": "Black", "gender": "Female", "age-group": "40-59"}', OK, "40-59"),
    (AGE5, "{'race': 'Asian', 'gender': 'Male', 'age_group': 'More than 60'}", OK, "60+"),
    (RACE6, '{"gender": "Male", "age-group": "20-39"}', INVALID, None),
    (RACE6, 'Here is the hypothetical classification: {"race": "Latino or Hispanic", "gender": "Female"}',
     OK, "Latino_Hispanic"),
    # refusals and hedges
    (RACE6, "I'm sorry, but I can't determine a person's race from an image.", REFUSED, None),
    (RACE6, "I cannot identify the race of people in images.", REFUSED, None),
    (RACE6, "As an AI, I am not able to make assumptions about someone's ethnicity.", REFUSED, None),
    (RACE6, "I’m sorry, I can’t help with that.", REFUSED, None),
    (RACE6, "I can't determine whether the person is Black or White.", REFUSED, None),
    (RACE6, "I can't be certain, but the person appears to be White.", OK, "White"),
    (RACE6, "It is not possible to determine race from appearance alone. However, based on visible "
            "features, the person may be East Asian.", OK, "Asian"),
    (GENDER, "Not sure.", REFUSED, None),
    # gender and emotion synonyms, whole words only
    (GENDER, "A young woman.", OK, "Female"),
    (GENDER, "woman", OK, "Female"),
    (GENDER, "The person is a man.", OK, "Male"),
    (GENDER, "female", OK, "Female"),
    (GENDER, "The person is a man, not a woman.", OK, "Male"),
    (EMOTION, "Happy", OK, "happy"),
    (EMOTION, "The person looks surprised.", OK, "surprise"),
    (EMOTION, "angry", OK, "anger"),
    (EMOTION, "sadness", OK, "sad"),
    # ordinal age: labels first, then numbers binned
    (AGE5, "20-39", OK, "20-39"),
    (AGE5, "More than 60", OK, "60+"),
    (AGE5, "The person looks about 45 years old.", OK, "40-59"),
    (AGE5, "25-30", OK, "20-39"),
    (AGE5, "She is in her late teens.", OK, "10-19"),
    # numeric age
    (AGE, "35", OK, 35.0),
    (AGE, "The person appears to be around 25-30 years old.", OK, 27.5),
    (AGE, "between 40 and 50", OK, 45.0),
    (AGE, "Approximately twenty-five years old.", OK, 25.0),
    (AGE, "About twenty-one years old.", OK, 21.0),  # "one" is a unit word too (not "20-1", a range)
    (AGE, "I would guess thirty nine.", OK, 39.0),
    (AGE, "Roughly sixty.", OK, 60.0),
    (AGE, "She looks about seven years old.", OK, 7.0),  # a unit word alone
    (AGE, "Age: twelve", OK, 12.0),
    # a generation cut off by max_new_tokens: the fragment is no label (no "s"-less plural guess)
    (RACE6, "The person in the image is Blac", INVALID, None),
    (GENDER, "The person appears to be fema", INVALID, None),
    (AGE, "in his mid-30s", OK, 35.0),
    (AGE, "She looks like she is in her early twenties.", OK, 22.0),
    (AGE, "Age: 7.5", OK, 7.5),
    (AGE, "an adult", INVALID, None),
    (AGE, "I'm sorry, I cannot estimate a person's age from a photo.", REFUSED, None),
    (AGE, '{"age": 62}', OK, 62.0),
    # "field: value" lines, colours that name things, more refusals
    (RACE6, "Race: White\nGender: Male\nAge: 25", OK, "White"),
    (AGE, "Number of people: 1\n**Age:** 25", OK, 25.0),
    (GENDER, "- Race: Black\n- Gender: Female", OK, "Female"),
    (RACE6, "A white man with black hair.", OK, "White"),
    (RACE6, "I don't know.", REFUSED, None),
    (RACE6, "I'm unable to determine the race of individuals based on images.", REFUSED, None),
    (RACE6, "The person appears to be of mixed race.", INVALID, None),
    (GENDER, "Neither male nor female", INVALID, None),
    (EMOTION, "The person looks happy and surprised.", INVALID, None),
    # label names as the shipped task specs spell them
    (RACE5, "Other", OK, "Others"),
    (RACE5, "Hispanic", OK, "Others"),
    (RACE5, "The person appears to be Middle Eastern.", OK, "Others"),
    (RACE5, "other (Hispanic, Latino or Middle Eastern)", OK, "Others"),
    (FAIR7, "East Asian", OK, "East Asian"),
    (FAIR7, "Latino", OK, "Latino_Hispanic"),
    (UTK_AGE5, "60 or older", OK, "60+"),
    (UTK_AGE5, "60+", OK, "60+"),
    (UTK_AGE5, "between 50 and 60", OK, "40-59"),
    (UTK_AGE5, "The person looks older.", INVALID, None),
    (AGE9, "30-39", OK, "30-39"),
    (AGE9, "more than 70", OK, "more than 70"),
    (AGE9, "about 75 years old", OK, "more than 70"),
    (AGE9, "0-2", OK, "0-2"),
]


@pytest.mark.parametrize("question,text,status,label", CASES, ids=[f"{i}-{c[1][:30]}" for i, c in enumerate(CASES)])
def test_parse_table(question, text, status, label):
    answer = parse_answer(text, question)
    assert (answer.status, answer.label) == (status, label), answer.extra
    assert answer.raw == text


def test_none_is_invalid():
    answer = parse_answer(None, GENDER)
    assert answer.status == "invalid" and answer.label is None


def test_ok_labels_are_always_canonical():
    for question, text, status, _ in CASES:
        answer = parse_answer(text, question)
        if answer.status == "ok" and question.labels:
            assert answer.label in question.labels


def test_reason_is_recorded():
    answer = parse_answer("White or Black", RACE6)
    assert "ambiguous" in answer.extra["parse"]


def test_normalize():
    assert normalize("Latino_Hispanic") == normalize("latino  hispanic!") == "latino hispanic"
    assert normalize("I’m sure") == "i'm sure"


@pytest.mark.parametrize("question,text,label", [
    # the JSON object is read first: the free text would name both White and Black (ambiguous)
    (RACE6, '{"race": "White", "first_guess": "Black"}', "White"),
    (RACE6, 'Answer: {"race": "Black", "note": "not White"}', "Black"),
    # a field named by a prefix of the attribute (3+ letters): "ages" for age5
    (AGE5, '{"ages": "40-59", "first_guess": "20-39"}', "40-59"),
    # a single-field object whose field is not named after the attribute: its one value
    (GENDER, '{"male_or_female": "female"}', "Female"),
    # a field under another name the vocabulary gives (faces: gender ~ sex), beside another field
    (GENDER, '{"sex": "female", "ethnicity": "Black", "note": "a man is in the background"}', "Female"),
    # a field holding a list of one value: that value
    (GENDER, '{"gender": ["Male"], "note": "a woman is in the background"}', "Male"),
])
def test_json_answers_are_read_by_field(question, text, label):
    answer = parse_answer(text, question)
    assert (answer.status, answer.label) == ("ok", label), answer.extra


def test_a_json_answer_up_to_its_size_bound_is_read_by_field():
    """The JSON reader takes objects spanning at most 20,000 characters (longer ones are free text,
    bounding the parse): at exactly the bound the field is read; one more and the free text names
    both genders, so it is ambiguous."""
    def answer(span: int) -> str:
        head = '{"gender": "Male", "other_guess": "Female", "note": "'
        return head + "x" * (span - len(head) - 2) + '"}'

    assert len(answer(20_001)) - 1 == 20_000  # end - start
    at_bound = parse_answer(answer(20_001), GENDER)
    assert (at_bound.status, at_bound.label) == (OK, "Male")
    beyond = parse_answer(answer(20_002), GENDER)
    assert beyond.status == INVALID and beyond.extra["parse"].startswith("ambiguous")


# without a vocabulary (a task spec that declares none): only the labels' own spellings
BARE_RACE = base.Question("race6", "categorical", ("White", "Black", "Latino_Hispanic"),
                          display={"Latino_Hispanic": "Latino or Hispanic"})
BARE_RACE5 = base.Question("race5", "categorical", ("White", "Black", "Asian", "Indian", "Others"))


@pytest.mark.parametrize("question,text,label", [
    (BARE_RACE, "Hispanic", "Latino_Hispanic"),  # "Latino or Hispanic": either word alone
    (BARE_RACE, "The person looks Latino.", "Latino_Hispanic"),
    (BARE_RACE5, "other", "Others"),  # a plural label name read in the singular
    (BARE_RACE, '{"race": "Black", "age": 30}', "Black"),
    (BARE_RACE, '{"ethnicity": "Black", "first_guess": "White"}', None),  # no field alias without a vocabulary
])
def test_answers_without_a_vocabulary(question, text, label):
    answer = parse_answer(text, question)
    assert (answer.status, answer.label) == (("ok", label) if label else ("invalid", None)), answer.extra


def test_the_cached_matcher_cannot_be_changed():
    """One matcher per question is cached and shared by every answer of the run (lru_cache), so it is frozen."""
    import dataclasses

    from vlmface.parse import _Matcher

    matcher = _Matcher((("white", "White"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        matcher.forms = ()
