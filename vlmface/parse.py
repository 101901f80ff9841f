"""Free-text model answers -> a canonical label, "invalid" or "refused". Never a random fallback.

The rules, in order:
1. A JSON object (bare or in a ``` fence; single quotes tolerated) is reduced to the field for
   the question's attribute (`{"race": "White", "age-group": "20-39"}`; other field names come
   from the vocabulary), then parsed as text;
   so is a "Race: White" line of a "field: value" answer.
2. The text is cut into sentences, and each sentence at contrast words ("but", "however"...).
   A piece holding a refusal phrase ("I'm sorry", "I cannot determine", "as an AI"...) is set
   aside, so "I can't be sure, but they look White" still answers White.
3. Labels are found as whole words, case- and punctuation-insensitive, matching the canonical
   label, its display name, the parts of an "X or Y" name, the task's `synonyms`, the words the
   prompt template printed for a label (its header `options`, e.g. 'More than 60' for 60+), and
   the words of the task's vocabulary (vocabularies/*.yaml: woman -> Female, Caucasian -> White);
   the parser itself knows no face words. The longest match wins ("East Asian" beats "Asian").
   A label right after "not"/"non"/"nor" does not count.
4. The first sentence that names exactly one label gives the answer; a sentence naming two is
   ambiguous (invalid); one naming three or more is taken as an echo of the options and skipped.
5. Numeric questions (and ordinal ones with bins, when no label is named) take the first number,
   range midpoint ("25-30" -> 27.5) or decade ("in her 30s" -> 35) and bin it when bins exist.
6. Nothing found: "refused" if a refusal phrase was seen, else "invalid".
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vlmface.backends.base import Answer, Question
from vlmface.vocabulary import Vocabulary, field_key

_REFUSAL = re.compile("|".join((
    r"\bi(?:'m| am) (?:so |very )?sorry\b", r"\bi apologi[sz]e\b", r"\bsorry,? but\b",
    r"\bas an? (?:ai|language model|assistant|ai language model)\b",
    r"\b(?:can ?not|can't|unable to|not able to|won't|will not|do not|don't|should not|shouldn't)"
    r"(?: \w+){0,3}? (?:determine|identify|tell|infer|assess|classify|guess|speculate|make assumptions?"
    r"|provide|help|assist|answer|comply|judge|predict|estimate|say|categori[sz]e|label)\b",
    r"\b(?:not|im)possible to (?:determine|tell|identify|know|say|infer|assess|classify)\b",
    r"\b(?:cannot|can't|can not) be (?:determined|identified|inferred|assessed|known)\b",
    r"\bnot (?:appropriate|comfortable)\b", r"\binappropriate\b", r"\b(?:must|have to) decline\b",
    r"\brefrain from\b", r"\bi(?:'d| would) rather not\b", r"\bnot (?:sure|certain)\b",
    r"\bi (?:don't|do not) know\b",
    r"\b(?:cannot|can't|can not) be (?:sure|certain)\b", r"\bhard to (?:say|tell)\b",
    r"\bdifficult to (?:say|tell|determine)\b",
)))
_CONTRAST = re.compile(r"\b(?:but|however|though|although|nevertheless|nonetheless|that said)\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_NEGATORS = {"not", "non", "nor", "neither", "isn't", "isnt", "no"}
_ARTICLES = {"a", "an", "the"}
# "white shirt", "black hair": a colour naming a thing, not a person
_THINGS = {"shirt", "t", "top", "hair", "beard", "background", "wall", "dress", "hat", "cap", "jacket",
           "coat", "sweater", "blouse", "clothes", "clothing", "teeth", "light", "border", "frame", "collar",
           "suit", "tie", "scarf", "glasses", "backdrop"}

_WORD_NUMBERS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
         if w != "_"}
_DECADE_WORDS = {w: f"{10 * i}s" for i, w in enumerate(
    "_ teens twenties thirties forties fifties sixties seventies eighties nineties".split()) if i >= 1}
_NUM = r"\d+(?:\.\d+)?"
_RANGE = re.compile(rf"(?:between\s+)?({_NUM})\s*(?:-|–|—|to|and|or)\s*({_NUM})")
_DECADE = re.compile(r"\b(?:(early|mid|late)[\s-]*)?(\d)0'?s\b")
_NUMBER = re.compile(_NUM)


def normalize(text: str) -> str:
    """Lower case, every run of non-alphanumerics one space, apostrophes kept in words."""
    text = text.lower().replace("\u2019", "'").replace("south east", "southeast").replace("south-east", "southeast")
    text = re.sub(r"[^\w']+|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class _Matcher:
    forms: tuple[tuple[str, str], ...]  # (normalized spelling, label), longest first

    def mentions(self, piece: str) -> list[str]:
        """Labels named in `piece`, in order, longest spelling first, negated ones dropped."""
        words = normalize(piece).split()
        text = " " + " ".join(words) + " "
        taken = [False] * len(text)
        found: list[tuple[int, str]] = []
        for form, label in self.forms:
            needle = f" {form} "
            start = text.find(needle)
            while start >= 0:
                lo, hi = start + 1, start + 1 + len(form)
                if not any(taken[lo:hi]):
                    taken[lo:hi] = [True] * (hi - lo)
                    if not _negated(text[:lo]) and text[hi + 1:].split(" ", 1)[0] not in _THINGS:
                        found.append((lo, label))
                start = text.find(needle, start + 1)
        return [label for _, label in sorted(found)]


def _negated(before: str) -> bool:
    previous = before.split()[-2:]
    if previous and previous[-1] in _NEGATORS:
        return True
    return len(previous) == 2 and previous[-1] in _ARTICLES and previous[0] in _NEGATORS


@lru_cache(maxsize=256)
def _matcher(labels: tuple[str, ...], display: tuple[tuple[str, str], ...], numeric_bins: bool,
             declared: tuple[tuple[str, tuple[str, ...]], ...] = (),
             word_groups: tuple[frozenset[str], ...] = ()) -> _Matcher:
    names, synonyms = dict(display), dict(declared)
    own: dict[str, str] = {}  # a label's own names and the task spec's synonyms: always kept
    extra: dict[str, set[str]] = {}  # other spellings: kept when they point to one label only
    for label in labels:
        spellings, aliases = _spellings(label, names.get(label, label), word_groups)
        for spelling in spellings | {normalize(word) for word in synonyms.get(label, ())}:
            own.setdefault(spelling, label)
        for alias in aliases:
            extra.setdefault(alias, set()).add(label)
    forms = dict(own)
    for spelling, owners in extra.items():
        if spelling not in forms and len(owners) == 1:
            forms[spelling] = next(iter(owners))
    if numeric_bins:  # "60" of "60+" must not swallow "between 50 and 60": numbers go to the bins
        forms = {form: label for form, label in forms.items() if not form.replace(" ", "").isdigit()}
    ordered = sorted(forms.items(), key=lambda item: (-len(item[0]), item[0]))
    return _Matcher(tuple((form, label) for form, label in ordered if form))


def _spellings(label: str, shown: str, word_groups: tuple[frozenset[str], ...]) -> tuple[set[str], set[str]]:
    """A label's own names, and the other spellings that point to it."""
    canonical = normalize(label)
    spellings = {canonical, normalize(shown)}
    aliases: set[str] = set()
    if match := re.fullmatch(r"\s*(.*?)\s*\((.*)\)\s*", shown):  # "other (Hispanic, Latino or Middle Eastern)"
        spellings.add(normalize(match.group(1)))
        aliases |= {normalize(part) for part in re.split(r",| or | and ", match.group(2))}
    for spelling in list(spellings):
        parts = re.split(r" or | and ", spelling)
        if len(parts) > 1 and all(part in canonical.split() for part in parts):
            aliases |= set(parts)  # "Latino or Hispanic" for Latino_Hispanic: either word alone
        if len(spelling) > 4 and spelling.endswith("s") and not spelling.endswith("ss"):
            aliases.add(spelling[:-1])  # "Others" -> "other"
    for word in spellings | aliases:
        for group in word_groups:
            if word in group:
                aliases |= group
    return spellings - {""}, aliases - spellings - {""}


def _pieces(text: str) -> tuple[list[list[str]], bool]:
    """Sentences as lists of their answer pieces (refusal pieces removed); whether any refused."""
    sentences, refused = [], False
    for sentence in _SENTENCE_END.split(text):
        kept = []
        for piece in _CONTRAST.split(sentence.lower().replace("\u2019", "'")):
            if _REFUSAL.search(piece):
                refused = True
            elif piece.strip():
                kept.append(piece)
        sentences.append(kept)
    return sentences, refused


def _find_label(sentences: list[list[str]], matcher: _Matcher) -> tuple[str | None, str]:
    for pieces in sentences:
        labels = list(dict.fromkeys(label for piece in pieces for label in matcher.mentions(piece)))
        if len(labels) == 1:
            return labels[0], "label"
        if len(labels) == 2:
            return None, f"ambiguous: {labels[0]} and {labels[1]}"
    return None, "no answer found"


def _words_to_digits(text: str) -> str:
    for word, decade in _DECADE_WORDS.items():
        text = re.sub(rf"\b{word}\b", decade, text)
    def tens(match: re.Match) -> str:
        return str(_TENS[match.group(1)] + _WORD_NUMBERS.get(match.group(2) or "zero", 0))

    text = re.sub(rf"\b({'|'.join(_TENS)})(?:[\s-]+({'|'.join(list(_WORD_NUMBERS)[1:10])}))?\b", tens, text)
    return re.sub(rf"\b({'|'.join(_WORD_NUMBERS)})\b", lambda m: str(_WORD_NUMBERS[m.group(1)]), text)


def _first_number(sentences: list[list[str]]) -> float | None:
    for pieces in sentences:
        for piece in pieces:
            piece = _words_to_digits(piece)
            candidates = []
            if match := _RANGE.search(piece):
                candidates.append((match.start(), (float(match.group(1)) + float(match.group(2))) / 2))
            if match := _DECADE.search(piece):
                offset = {"early": 2, "mid": 5, "late": 8}.get(match.group(1) or "", 5)
                candidates.append((match.start(), int(match.group(2)) * 10 + offset))
            if match := _NUMBER.search(piece):
                candidates.append((match.start(), float(match.group(0))))
            if candidates:
                return min(candidates, key=lambda c: c[0])[1]
    return None


def _json_field(text: str, attribute: str, vocabulary: Vocabulary | None) -> str | None:
    """The value of `attribute`'s field if `text` holds a JSON object ("" if it lacks one), else None."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start or end - start > 20_000:
        return None
    blob = text[start:end + 1]
    try:
        data = json.loads(blob)
    except ValueError:
        try:
            data = ast.literal_eval(blob)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if not isinstance(data, dict) or not data:
        return None
    value = _pick_field(data, attribute, vocabulary)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def _line_field(text: str, attribute: str, vocabulary: Vocabulary | None) -> str | None:
    """The value of a "Race: White" line naming the attribute, if the answer has such lines."""
    fields = {}
    for line in text.splitlines():
        if match := re.match(r"\s*[-*]*\s*\**([A-Za-z][\w \-]{0,30}?)\**\s*:\s*(.+)", line):
            fields.setdefault(match.group(1), match.group(2))
    if not fields:
        return None
    value = _pick_field(fields, attribute, vocabulary, fallback=False)
    return None if value is None else str(value)


def _pick_field(data: dict[str, Any], attribute: str, vocabulary: Vocabulary | None,
                fallback: bool = True) -> Any:
    names = {field_key(k): v for k, v in data.items()}
    for wanted in dict.fromkeys((field_key(attribute), field_key(re.split(r"[_\W\d]", attribute)[0]))):
        if wanted in names:
            return names[wanted]
        aliases = vocabulary.field_aliases(wanted) if vocabulary else ()
        for name, value in names.items():
            if name in aliases or (len(wanted) >= 3 and (name.startswith(wanted) or wanted.startswith(name))):
                return value
    return next(iter(data.values())) if fallback and len(data) == 1 else None


def _declared_spellings(question: Question) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The task spec's synonyms plus the words the prompt template printed for each label."""
    spellings = {label: tuple(words) for label, words in question.synonyms.items()}
    if question.template is not None:
        for label, words in question.template.spellings(question.attribute).items():
            spellings[label] = spellings.get(label, ()) + words
    return tuple(sorted(spellings.items()))


def parse_answer(text: str | None, question: Question) -> Answer:
    """Map a model's free-text answer to an Answer with status ok, invalid or refused."""
    if text is None or not text.strip():
        return Answer(label=None, status="invalid", raw=text, extra={"parse": "empty answer"})
    body, how = text, "text"
    vocabulary = question.vocabulary
    field = _json_field(text, question.attribute, vocabulary)
    if field == "":
        return Answer(label=None, status="invalid", raw=text,
                      extra={"parse": f"JSON answer without a {question.attribute!r} field"})
    if field is not None:
        body, how = field, "json"
    elif (line := _line_field(text, question.attribute, vocabulary)) is not None:
        body, how = line, "field line"
    sentences, refused = _pieces(body)
    label, why = None, "no answer found"
    if question.labels:
        matcher = _matcher(tuple(question.labels), tuple(sorted(question.display.items())), bool(question.bins),
                           _declared_spellings(question), vocabulary.word_groups if vocabulary else ())
        label, why = _find_label(sentences, matcher)
        if label is not None:
            return Answer(label=label, status="ok", raw=text, extra={"parse": how})
        if why.startswith("ambiguous"):
            return Answer(label=None, status="invalid", raw=text, extra={"parse": why})
    if question.kind == "numeric" or question.bins:
        value = _first_number(sentences)
        if value is not None:
            if question.kind == "numeric":
                return Answer(label=value, status="ok", raw=text, extra={"parse": f"{how} number"})
            binned = question.label_for_value(value)
            if binned is not None:
                return Answer(label=binned, status="ok", raw=text, extra={"parse": f"{how} number {value:g}"})
            why = f"number {value:g} outside every bin"
    status = "refused" if refused and why == "no answer found" else "invalid"
    return Answer(label=None, status=status, raw=text, extra={"parse": why})
