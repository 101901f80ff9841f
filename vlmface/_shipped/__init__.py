"""The spec files shipped with the package: tasks/ (with probes/ and probes/datasets/), prompts/ and
perturbations/.

The repository keeps ONE copy of them, in its top-level tasks/, prompts/ and perturbations/ folders.
setup.py maps the subpackages vlmface._shipped.tasks, .prompts and .perturbations onto those folders,
so a wheel (or `pip install .`) carries them here, inside the package; `vlmface.specfiles` finds them
with importlib.resources, and in a source checkout (editable install or PYTHONPATH) where this folder
holds only this file, falls back to the checkout's top-level folders.
"""
