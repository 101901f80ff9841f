"""Packaging that pyproject.toml cannot express: the top-level tasks/, prompts/ and perturbations/
folders are shipped inside the package as vlmface/_shipped/<folder>/ (see vlmface/_shipped/__init__.py),
one copy in the repository, found at run time through importlib.resources."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
SHIPPED = {"tasks": "*.yaml", "prompts": "*.jinja", "perturbations": "*.yaml"}


def shipped_packages() -> dict[str, str]:
    """package name -> folder, for every shipped folder and each of its subfolders."""
    packages = {}
    for folder in SHIPPED:
        for directory in [ROOT / folder, *sorted(p for p in (ROOT / folder).rglob("*") if p.is_dir())]:
            relative = directory.relative_to(ROOT)
            packages["vlmface._shipped." + ".".join(relative.parts)] = relative.as_posix()
    return packages


packages = shipped_packages()
setup(
    packages=find_packages(include=["vlmface", "vlmface.*"]) + list(packages),
    package_dir={"": ".", **{name: packages[name] for name in
                             (f"vlmface._shipped.{folder}" for folder in SHIPPED)}},
    # package data lives here, not in pyproject.toml: setuptools lets pyproject's table replace this one
    package_data={"vlmface": ["*.yaml"],
                  **{name: [SHIPPED[name.split(".")[2]], "*.md"] for name in packages}},
)
