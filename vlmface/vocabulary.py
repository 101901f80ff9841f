"""Answer vocabularies: the words a task's answers may use, as data (vocabularies/NAME.yaml).

The parser (vlmface.parse) is generic: it knows no face words. A task spec names the vocabulary
its answers use (`vocabulary: faces`), and the questions of that task carry it:
- `words`: equivalence classes of answer words (woman ~ female, Caucasian ~ white);
- `fields`: other names of an attribute's field in a JSON / "Field: value" answer (sex ~ gender).
A task's own `synonyms:` (label -> spellings) always win over the vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlmface.errors import SpecError
from vlmface.specfiles import find_specs, read_yaml_mapping, search_dirs, validation_message


class _VocabularyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    words: list[list[str]] = Field(default_factory=list)
    fields: dict[str, list[str]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Vocabulary:
    name: str
    word_groups: tuple[frozenset[str], ...] = ()  # normalized words (vlmface.parse.normalize)
    field_names: tuple[tuple[str, tuple[str, ...]], ...] = ()  # field key -> other keys

    def field_aliases(self, key: str) -> tuple[str, ...]:
        return dict(self.field_names).get(key, ())


def field_key(name: str) -> str:
    """A field name as JSON answers are matched: lower case, letters only."""
    return re.sub(r"[^a-z]", "", str(name).lower())


def vocabulary_dirs() -> list[Path]:
    """$VLMFACE_VOCABULARIES (os.pathsep-separated), then the shipped vocabularies/ folder."""
    return search_dirs("VLMFACE_VOCABULARIES", "vocabularies")


def vocabulary_path(name_or_path: str, spec_path: Path | None = None) -> Path:
    """A vocabulary by name, by a path relative to the task spec, or by an absolute path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_absolute() and spec_path is not None:
            candidate = spec_path.parent / candidate
        if candidate.exists():
            return candidate
    known = find_specs(vocabulary_dirs())
    if name_or_path in known:
        return known[name_or_path]
    where = f"{spec_path}: " if spec_path else ""
    raise SpecError(f"{where}vocabulary: unknown vocabulary {name_or_path!r}; add vocabularies/{name_or_path}.yaml "
                    f"or use one of: {', '.join(known) or '(none found)'}")


def load_vocabulary(name_or_path: str, spec_path: Path | None = None) -> Vocabulary:
    return _load(vocabulary_path(name_or_path, spec_path))


@lru_cache(maxsize=32)
def _load(path: Path) -> Vocabulary:
    from vlmface.parse import normalize

    raw = read_yaml_mapping(path, "vocabulary (words, fields)")
    try:
        spec = _VocabularyFile(**raw)
    except ValidationError as exc:
        raise SpecError(validation_message(path, "vocabulary", exc, "a vocabulary has description, words "
                                                                    "and fields")) from None
    groups = tuple(frozenset(normalize(word) for word in group) - {""} for group in spec.words)
    fields = tuple((field_key(name), tuple(field_key(alias) for alias in aliases))
                   for name, aliases in spec.fields.items())
    return Vocabulary(name=path.stem, word_groups=tuple(g for g in groups if g), field_names=fields)
