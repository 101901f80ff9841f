"""The spec files shipped with the package: tasks/ (with probes/ and probes/datasets/), prompts/,
perturbations/, vocabularies/ and prompt_sets/ (setup.py's SHIPPED).

The repository keeps ONE copy of them, in its top-level folders.
setup.py maps the subpackages vlmface._shipped.<folder> onto those folders,
so a wheel (or `pip install .`) carries them here, inside the package; `vlmface.specfiles` finds them
with importlib.resources, and in a source checkout (editable install or PYTHONPATH) where this folder
holds only this file, falls back to the checkout's top-level folders.
"""
