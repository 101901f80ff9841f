"""Template rendering is bounded and its failures are SpecErrors naming the template and line (issue 13).

Before: `{{ 1/0 }}` gave a ZeroDivisionError traceback, range(10**9) an OverflowError, "x" * 10**9
ran out of time and memory, and `vlmface validate` hung on nested range(99999) loops.
"""

from __future__ import annotations

import time

import pytest

from vlmface.errors import SpecError
from vlmface.prompts import MAX_OUTPUT, load_template_file
from vlmface.validation import validate_all

HEADER = "{# kind: question\n   description: a bad template #}\n"
BAD = {
    "divide": (HEADER + "What is the {{ attribute }}?\n{{ 1/0 }}\n",
               ":4: template 'divide' failed while rendering: ZeroDivisionError: division by zero"),
    "huge_range": ("Hi\n{{ range(10**9)|list|length }}\n",
                   ":2: rendering stopped: range() of 1,000,000,000 items; templates may use at most 10,000"),
    "nested": ("{% for i in range(99999) %}{% for j in range(99999) %}.{% endfor %}{% endfor %}\n",
               ":1: rendering stopped: range() of 99,999 items"),
    "nested_small": ("{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}x\n",
                     ":1: rendering stopped: more than 100,000 loop steps (nested range() loops?)"),
    "repeat": (HEADER + '{{ "x" * 10**9 }}\n',
               ":3: rendering stopped: a repeated string or list of 1,000,000,000 items; at most 100,000"),
    "power": ("{{ 7 ** 100000000 }}\n", ":1: rendering stopped: 7 ** 100000000: exponent too large"),
    "long_output": ('{% for i in range(5000) %}{{ choices|join(",") * 20 }}{% endfor %}\n',
                    f": rendering stopped: output longer than {MAX_OUTPUT:,} characters"),
}


def _render(path):
    return load_template_file(path).render_question(attribute="gender", choices=["male", "female"],
                                                    labels=["Male", "Female"], task="utkface", meta={})


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_template_is_a_spec_error_naming_file_and_line(tmp_path, name):
    source, expected = BAD[name]
    path = tmp_path / f"{name}.jinja"
    path.write_text(source, encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        _render(path)
    assert str(caught.value).startswith(f"{path}{expected}")
    assert time.perf_counter() - start < 10  # bounded, never a hang (typically well under 0.1 s)


def test_loops_and_ranges_within_bounds_render(tmp_path):
    path = tmp_path / "fine.jinja"
    path.write_text("Options: {% for i in range(choices|length) %}{{ loop.index }}. {{ choices[i] }} "
                    "{% endfor %}({{ range(3)|length }}, {{ 'ab' * 2 }}, {{ 2 ** 10 }})\n", encoding="utf-8")
    assert _render(path) == "Options: 1. male 2. female (3, abab, 1024)"
    assert _render(path) == _render(path)  # the loop-step budget is per render


def test_validate_reports_bad_templates_without_hanging(tmp_path, monkeypatch):
    for name in ("divide", "nested", "repeat"):
        (tmp_path / f"{name}.jinja").write_text(BAD[name][0], encoding="utf-8")
    monkeypatch.setenv("VLMFACE_PROMPTS", str(tmp_path))
    start = time.perf_counter()
    problems = "\n".join(validate_all(["fer2013"]))
    assert time.perf_counter() - start < 60
    for name in ("divide", "nested", "repeat"):
        assert f"{tmp_path / name}.jinja{BAD[name][1]}" in problems
