"""Where specs come from: the shipped folders, user folders layered on top (--tasks-dir,
--prompts-dir, --perturbations-dir, $VLMFACE_*), `list`/`validate` naming the folders they read and
failing on nothing; one-line errors for a missing extra; help text with defaults (issue 17)."""

from __future__ import annotations

import argparse
import sys

import pytest

from conftest import REPO_ROOT
from vlmface import specfiles
from vlmface.cli import build_parser, main
from vlmface.extras import EXTRAS_OF_MODULE


@pytest.fixture
def no_env(monkeypatch):
    """No user folders; what `main` puts in these variables is undone after the test."""
    for name in ("VLMFACE_TASKS", "VLMFACE_PROMPTS", "VLMFACE_PERTURBATIONS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture
def nothing_shipped(monkeypatch):
    """As if the package had been installed without its spec folders (the bug this issue fixes)."""
    monkeypatch.setattr(specfiles, "shipped_dir", lambda folder: None)


def test_checkout_reads_its_top_level_folders(no_env):
    for folder in ("tasks", "prompts", "perturbations"):
        assert specfiles.shipped_dir(folder) == REPO_ROOT / folder


def test_user_task_overrides_shipped_one_and_list_says_where_from(no_env, tmp_path, capsys):
    spec = (REPO_ROOT / "tasks" / "utkface.yaml").read_text()
    (tmp_path / "utkface.yaml").write_text(spec.replace("evaluate: [gender, race5, age, age5, age9]",
                                                        "evaluate: [gender]"))
    assert main(["--tasks-dir", str(tmp_path), "list", "tasks"]) == 0
    out, err = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["utkface"].startswith("utkface") and "attributes: gender;" in lines["utkface"]
    assert lines["utkface"].endswith("[user]") and lines["fairface"].endswith("[shipped]")
    assert f"reading tasks from {tmp_path} (user)" in err
    assert f"reading tasks from {REPO_ROOT / 'tasks'} (shipped)" in err
    assert f"reading tasks from {REPO_ROOT / 'tasks' / 'probes' / 'datasets'} (shipped)" in err


def test_user_prompt_folder_from_environment(no_env, monkeypatch, tmp_path, capsys):
    shipped = (REPO_ROOT / "prompts" / "vlm_question.jinja").read_text()
    (tmp_path / "my_question.jinja").write_text(shipped)
    monkeypatch.setenv("VLMFACE_PROMPTS", str(tmp_path))
    assert main(["list", "prompts"]) == 0
    out = capsys.readouterr().out
    assert "my_question" in out and out.count("[user]") == 1


def test_prompts_dir_option_reaches_eval_lookup(no_env, tmp_path, capsys):
    (tmp_path / "clip_photo.jinja").write_text((REPO_ROOT / "prompts" / "clip_photo_single.jinja").read_text())
    assert main(["--prompts-dir", str(tmp_path), "list", "prompts"]) == 0
    from vlmface.prompts import available_templates

    assert available_templates()["clip_photo"] == tmp_path / "clip_photo.jinja"


def test_missing_user_folder_is_an_error(no_env, capsys):
    assert main(["--tasks-dir", "/no/such/folder", "list", "tasks"]) == 2
    assert "/no/such/folder" in capsys.readouterr().err


def test_list_and_validate_fail_when_nothing_is_found(no_env, nothing_shipped, capsys):
    for what in ("tasks", "prompts", "perturbations", "probes"):
        assert main(["list", what]) == 1
        assert f"no {what} found" in capsys.readouterr().err
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "no task specs found" in err and "no prompt templates found" in err


def test_validate_names_every_folder_it_reads(no_env, capsys):
    assert main(["validate"]) == 0
    err = capsys.readouterr().err
    for folder in ("tasks", "tasks/probes", "tasks/probes/datasets", "prompts", "perturbations"):
        assert f"from {REPO_ROOT / folder} (shipped)" in err


def test_validate_checks_probe_only_datasets(no_env, tmp_path, capsys):
    (tmp_path / "probes" / "datasets").mkdir(parents=True)
    (tmp_path / "probes" / "datasets" / "broken.yaml").write_text("name: broken\nsources: {}\nattributes: {}\n")
    assert main(["--tasks-dir", str(tmp_path), "validate"]) == 1
    assert "broken.yaml" in capsys.readouterr().err


def test_missing_extra_is_one_line_naming_it(monkeypatch, capsys, utkface_dir, tmp_path):
    """A probe with open_clip absent (it used to end in a raw ModuleNotFoundError)."""
    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` raises ModuleNotFoundError
    for name in [m for m in sys.modules if m.startswith("vlmface.backends.clip")]:
        monkeypatch.delitem(sys.modules, name)
    code = main(["probe", "--probe", "social-perception", "--task", "utkface", "--data-dir", str(utkface_dir),
                 "--models", "clip:ViT-B-32/openai", "--limit", "4", "--out", str(tmp_path), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and "pip install 'vlmface[clip]'" in err


def test_every_extra_named_exists_in_pyproject():
    import tomllib

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {e for names in EXTRAS_OF_MODULE.values() for e in names} <= set(extras)


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, subparser in [("(global)", parser), *sub.choices.items()]:
        formatter = subparser._get_formatter()
        for action in subparser._actions:
            where = f"vlmface {name} {action.option_strings or action.dest}"
            assert action.help, f"{where}: no help text"
            flag = isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction, argparse._SubParsersAction))
            if action.option_strings and not action.required and not flag:
                assert "default" in formatter._get_help_string(action), f"{where}: default not shown"
