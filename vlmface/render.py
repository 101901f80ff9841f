"""`vlmface render`: exactly what a run would send for one image, one entry per request.

The requests are grouped and their text rendered by vlmface.asking (requests_for,
render_request), the code the runner uses; with `--model`, the backend's `preview` adds what it
wraps around the text (the chat messages of an API model, the full input text of a local VLM
with its chat template and image token), built by the code its `answer` uses.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from vlmface.asking import render_request, requests_for
from vlmface.backends.base import Query
from vlmface.data import Sample
from vlmface.errors import SpecError


def _stand_in() -> Sample:
    """One image's sample: templates that read `meta` get empty strings."""
    return Sample(id="render", image=None, labels={}, meta=defaultdict(str))


def render_requests(task: str | Path, prompt: str | None = None, attributes: list[str] | None = None,
                    model: str | None = None, options: dict[str, Any] | None = None,
                    variant: Any = None) -> list[dict[str, Any]]:
    """[{"attributes": [...], "text": "..."} (+ the backend's preview with a model)], one per request."""
    from vlmface.registry import backend_class, resolve_model
    from vlmface.runner import build_questions
    from vlmface.tasks import load_task

    spec = load_task(task)
    asked = attributes or spec.evaluated_attributes
    unknown = [a for a in asked if a not in spec.attributes]
    if unknown:
        raise SpecError(f"--attribute: {spec.name} has no {', '.join(map(repr, unknown))}; "
                        f"it has {', '.join(spec.attributes)}")
    entry = resolve_model(model) if model else None
    backend = backend_class(entry.backend) if entry else None
    style = backend.prompt_style if backend else "question"
    if style != "question":
        raise SpecError(f"model {entry.name!r} sends no question prompt (its prompt style is {style!r}); "
                        "render shows question prompts")
    questions = build_questions(spec, "question", prompt, asked)
    if variant is not None:
        questions = [variant.apply(q) for q in questions]
    sample = _stand_in()
    out = []
    for group in requests_for(questions):
        text = render_request(group, sample)
        item: dict[str, Any] = {"attributes": [q.attribute for q in group], "text": text}
        if variant is not None:
            item["variant"] = variant.name
            item["labels"] = {q.attribute: printed_labels(q, sample) for q in group}
        if backend is not None:
            query = Query(sample_id=sample.id, image=None, question=group[0], prompt=text, meta=sample.meta,
                          questions=group if len(group) > 1 else ())
            item.update(backend.preview(entry, options or {}, query))
        out.append(item)
    return out


def printed_labels(question, sample: Sample) -> list[str]:
    """The task labels in the order the question's prompt prints their words."""
    declared = question.template.checked_options(question.attribute, list(question.labels), question.task)
    choices, labels = (list(declared), list(declared.values())) if declared else (question.choices, list(question.labels))
    if question.presentation is not None:
        choices, labels = question.presentation.arrange(question.attribute, choices, labels, sample.id)
    return labels


def render_prompt_set(task: str | Path, set_name: str, prompt: str | None = None,
                      attributes: list[str] | None = None, model: str | None = None,
                      options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """render_requests for every variant of a prompt set, each request tagged with its variant."""
    from vlmface.prompt_sets.spec import load_prompt_set, variants_of
    from vlmface.tasks import load_task

    spec_task = load_task(task)
    prompt_set = load_prompt_set(set_name, spec_task)
    out = []
    for variant in variants_of(prompt_set, spec_task, attributes):
        out += render_requests(task, prompt or prompt_set.prompt, attributes, model, options, variant)
    return out


def format_requests(requests: list[dict[str, Any]]) -> str:
    """The requests for a reader: a header line per request, then exactly what is sent."""
    import json

    blocks = []
    for number, request in enumerate(requests, start=1):
        variant = f" (variant {request['variant']})" if "variant" in request else ""
        lines = [f"# request {number} of {len(requests)}{variant}: {', '.join(request['attributes'])}",
                 request["text"]]
        if "model_input" in request:
            lines += ["# model input (chat template and image token applied):", request["model_input"]]
        if "messages" in request:
            lines += ["# messages:", json.dumps(request["messages"], indent=2, ensure_ascii=False)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
