"""Every word of every answer vocabulary a task uses is read as its label by the parser.

The words come from the vocabulary data itself (vocabularies/*.yaml, through the task specs
that name them), so a synonym added there is covered here without editing this test, and two
classes swapped (fear's words under disgust) fail it."""

from __future__ import annotations

from vlmface.parse import normalize, parse_answer
from vlmface.runner import question_for
from vlmface.tasks import available_tasks, load_task

SENTENCES = ("{word}", "The person in the image looks {word}.", '{{"{field}": "{word}"}}')


def _questions():
    for name in sorted(available_tasks()):
        task = load_task(name)
        if task.answer_vocabulary() is None:
            continue
        for attribute, spec in task.attributes.items():
            if spec.kind != "numeric":
                yield question_for(task, attribute, None)


def _label_of(group: frozenset[str], question) -> str | None:
    """The one label of `question` whose name or display name is a word of `group`."""
    hits = {label for label in question.labels
            if normalize(label) in group or normalize(question.display_name(label)) in group}
    return hits.pop() if len(hits) == 1 else None


def test_every_vocabulary_word_is_parsed_as_its_label_by_some_task():
    questions = list(_questions())
    vocabularies = {q.vocabulary.name: q.vocabulary for q in questions}
    assert "faces" in vocabularies
    uncovered, wrong = [], []
    for vocabulary in vocabularies.values():
        for group in vocabulary.word_groups:
            for word in sorted(group):
                cases = [(q, label) for q in questions if q.vocabulary == vocabulary
                         for label in [_label_of(group, q)] if label is not None]
                if not cases:
                    uncovered.append((vocabulary.name, word))
                for question, label in cases:
                    for sentence in SENTENCES:
                        text = sentence.format(word=word, field=question.attribute)
                        answer = parse_answer(text, question)
                        if (answer.status, answer.label) != ("ok", label):
                            wrong.append((question.task, question.attribute, text, answer.status, answer.label))
    assert not uncovered, f"vocabulary words no task label can take: {uncovered}"
    assert not wrong, wrong


#: what each word of vocabularies/faces.yaml means, written by hand (English usage), so that a class
#: whose words were moved to another class (fear's under disgust) fails even though the data then
#: agrees with itself. A word added to the vocabulary must be added here with its meaning.
FACES_MEANING = {
    **dict.fromkeys(["male", "man", "men", "boy", "masculine"], "male"),
    **dict.fromkeys(["female", "woman", "women", "girl", "lady", "feminine"], "female"),
    **dict.fromkeys(["white", "caucasian"], "white"),
    **dict.fromkeys(["black", "african american"], "black"),
    **dict.fromkeys(["latino hispanic", "latino or hispanic", "hispanic or latino", "hispanic", "latino",
                     "latina", "latinx"], "latino hispanic"),
    **dict.fromkeys(["middle eastern", "middle east", "arab", "arabic"], "middle eastern"),
    **dict.fromkeys(["indian", "south asian"], "indian"),
    **dict.fromkeys(["happy", "happiness", "joy", "joyful"], "happy"),
    **dict.fromkeys(["sad", "sadness", "unhappy"], "sad"),
    **dict.fromkeys(["angry", "anger", "mad"], "angry"),
    **dict.fromkeys(["surprise", "surprised"], "surprise"),
    **dict.fromkeys(["fear", "fearful", "afraid", "scared"], "fear"),
    **dict.fromkeys(["disgust", "disgusted"], "disgust"),
    **dict.fromkeys(["neutral", "calm", "expressionless"], "neutral"),
    **dict.fromkeys(["contempt", "contemptuous"], "contempt"),
}


def test_every_faces_word_is_in_the_class_of_its_meaning():
    faces = next(q.vocabulary for q in _questions() if q.vocabulary.name == "faces")
    words = {word: group for group in faces.word_groups for word in group}
    assert words.keys() == {normalize(w) for w in FACES_MEANING}, \
        "a word was added to or removed from vocabularies/faces.yaml: give its meaning in FACES_MEANING"
    misplaced = {word: sorted(words[normalize(word)]) for word, meaning in FACES_MEANING.items()
                 if normalize(meaning) not in words[normalize(word)]}
    assert not misplaced, misplaced


def test_the_emotion_words_the_audit_found_untested_parse_as_their_labels():
    fer = question_for(load_task("fer2013"), "emotion", None)
    for word, label in {"scared": "fear", "afraid": "fear", "fearful": "fear", "disgusted": "disgust"}.items():
        assert parse_answer(f"They look {word}.", fer).label == label, word
