"""Prompt sets: the same faces asked under named prompt variants (template wording, option order,
label casing, display names), and how much each group's accuracy, and the gaps between groups,
move with the prompt.

    load_prompt_set(name_or_path, task) -> PromptSet     prompt_sets/*.yaml or a task's prompt_sets:
    variants_of(spec, task) -> [PromptVariant]           default first, one run each

`vlmface eval --prompt-set NAME` runs them (one resumable run per variant, the default shared
with the plain run) and the analysis; `vlmface prompt-sensitivity PATH...` redoes the analysis.
Modules: spec (YAML, variants), runs (finding sweeps), analysis (tables; pairing and bootstrap
from vlmface.perturb), plots, command (CLI).
"""
