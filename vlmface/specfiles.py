"""Finding and reading the YAML spec files users write (tasks, probes, perturbations),
with validation errors that name the file, the field and the fix."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vlmface.errors import SpecError

CHECKOUT = Path(__file__).resolve().parent.parent
SHIPPED = "shipped"


def shipped_dir(folder: str) -> Path | None:
    """The package's own FOLDER (tasks, prompts, perturbations): inside an installed wheel
    vlmface/_shipped/FOLDER (importlib.resources), in a source checkout its top-level FOLDER."""
    inside = Path(str(files("vlmface._shipped") / folder))
    if inside.is_dir():
        return inside
    in_checkout = CHECKOUT / folder
    return in_checkout if (CHECKOUT / "pyproject.toml").is_file() and in_checkout.is_dir() else None


def user_dirs(env_var: str) -> list[Path]:
    """The folders named in $ENV_VAR (os.pathsep-separated; --tasks-dir and the like prepend to it)."""
    return [Path(p).expanduser() for p in os.environ.get(env_var, "").split(os.pathsep) if p]


def search_dirs(env_var: str, folder: str) -> list[Path]:
    """User folders ($ENV_VAR) first, then the shipped FOLDER: a user file overrides a shipped one
    of the same name. A user folder that does not exist is an error, not a silent no-op."""
    dirs = user_dirs(env_var)
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise SpecError(f"${env_var} names folder(s) that do not exist: {', '.join(missing)}")
    shipped = shipped_dir(folder)
    return dirs + ([shipped] if shipped else [])


def origin(path: Path, folder: str) -> str:
    """'shipped' for a file or folder of the package's own FOLDER, else 'user'."""
    shipped = shipped_dir(folder)
    return SHIPPED if shipped is not None and path.resolve().is_relative_to(shipped.resolve()) else "user"


def find_specs(dirs: list[Path], pattern: str = "*.yaml") -> dict[str, Path]:
    """name -> path of every file matching `pattern` in `dirs`; earlier directories win."""
    found: dict[str, Path] = {}
    for directory in reversed(dirs):
        for path in sorted(directory.glob(pattern)):
            found[path.stem] = path
    return dict(sorted(found.items()))


def spec_path(name_or_path: str | Path, known: dict[str, Path], what: str,
              suffixes: tuple[str, ...] = (".yaml", ".yml")) -> Path:
    """A spec given by name (one of `known`) or by a path to an existing file."""
    candidate = Path(name_or_path)
    if candidate.suffix in suffixes and candidate.exists():
        return candidate
    if str(name_or_path) not in known:
        raise SpecError(f"unknown {what} {str(name_or_path)!r}: use one of {', '.join(known) or '(none)'} "
                        f"or a path to a {suffixes[0]} file")
    return known[str(name_or_path)]


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping key given twice (plain YAML keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKey(f"duplicate key {key!r} (first on line {seen[key]}); YAML would "
                                       f"silently keep the last value: keep one", line)
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader reports it
                pass
        return super().construct_mapping(node, deep=deep)


class DuplicateKey(yaml.YAMLError):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


def load_yaml_text(path: Path, what: str) -> Any:
    """The YAML document in `path`: UTF-8 text, no key given twice in one mapping."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        f"save the {what} as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except DuplicateKey as exc:
        raise SpecError(f"{path}:{exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    raw = load_yaml_text(path, what)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a {what} is a YAML mapping")
    return raw


def validation_message(where: str | Path, what: str, exc: ValidationError, unknown_field_hint: str) -> str:
    lines = [f"{where}: invalid {what}"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field (typo?); {unknown_field_hint}"
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)
