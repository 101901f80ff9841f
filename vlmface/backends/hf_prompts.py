"""The exact text a transformers-format VLM reads for a query; shared by the hf and vllm backends,
so both feed a model the same prompts.

Chat models get the processor's chat template (user turn: image + question, then the
generation prompt); models without one (PaliGemma, Florence-2) get the raw prompt, as they
were trained. `chat_format` (auto | chat | raw) and `prompt_prefix` come from the template header first, then
the options. In raw mode the processor's image placeholder is put in front unless the text has one
or the processor inserts it itself.
"""

from __future__ import annotations

from typing import Any

from vlmface.backends.base import Option, Query, Question
from vlmface.errors import BackendError

DEFAULT_MAX_NEW_TOKENS = 32

#: options read here, shared by the hf and vllm backends (their options_schema includes these)
PROMPT_OPTIONS: dict[str, Option] = {
    "mode": Option(str, "generate", True, "answer mode: generate (free text, parsed), choice (label "
                   "log-likelihood) or constrained (decoding restricted to the labels; vllm only)"),
    "max_new_tokens": Option(int, None, True, f"generation budget (default: the template's, else {DEFAULT_MAX_NEW_TOKENS})"),
    "chat_format": Option(str, None, True, "auto | chat | raw (default: the template header's, else auto)"),
    "prompt_prefix": Option(str, None, True, "text put before the question (default: the template header's, else none)"),
    "system_prompt": Option(str, None, True, "a system turn before the question (default: none)"),
    "dtype": Option(str, None, True, "fp32, fp16 or bf16 (default: the model's)"),
}
#: processors that put the image tokens into the text themselves
ADDS_IMAGE_TOKEN = {"florence2"}
#: processors that want the image token glued to the prompt (no newline after it)
GLUED_IMAGE_TOKEN = {"paligemma"}


class PromptFormatter:
    def __init__(self, processor: Any, model_type: str, options: dict[str, Any]):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.model_type = model_type
        self.options = options

    def has_chat_template(self) -> bool:
        return bool(getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None))

    def chat_format(self, question: Question) -> str:
        meta = question.template.metadata if question.template is not None else {}
        wanted = str(meta.get("chat_format") or self.options.get("chat_format") or "auto")
        if wanted == "auto":
            return "chat" if self.has_chat_template() else "raw"
        if wanted not in ("chat", "raw"):
            raise BackendError(f"chat_format {wanted!r}: use auto, chat or raw")
        return wanted

    def question_text(self, query: Query) -> str:
        """The question itself (the runner's rendering, else the template's), after the prompt prefix:
        the template header's `prompt_prefix` if it sets one (verbatim paper prompts set ""), else
        the options' (e.g. PaliGemma mix's "answer en ")."""
        text = query.prompt
        if text is None:
            question = query.question
            if question.template is None:
                raise BackendError(f"query {query.sample_id!r} has no prompt and its question no template")
            text = question.template.render_question(attribute=question.attribute, choices=question.choices,
                                                     labels=list(question.labels), task=question.task,
                                                     meta=query.meta)
        meta = query.question.template.metadata if query.question.template is not None else {}
        prefix = meta["prompt_prefix"] if "prompt_prefix" in meta else self.options.get("prompt_prefix")
        return str(prefix or "") + text

    def format(self, query: Query) -> str:
        """The full model input text for one query, image placeholder included."""
        question = self.question_text(query)
        if self.chat_format(query.question) == "chat":
            messages = []
            if self.options.get("system_prompt"):
                messages.append({"role": "system",
                                 "content": [{"type": "text", "text": str(self.options["system_prompt"])}]})
            messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # Gemma 3 writes images as its begin-of-image token, which the processor expands
        token = getattr(self.processor, "boi_token", None) or getattr(self.processor, "image_token", None)
        if not token or token in question or self.model_type in ADDS_IMAGE_TOKEN:
            return question
        glue = "" if self.model_type in GLUED_IMAGE_TOKEN else "\n"
        return token + glue + question

    def max_new_tokens(self, queries: list[Query]) -> int:
        """options.max_new_tokens, else the largest template-header value, else the default."""
        if self.options.get("max_new_tokens"):
            return int(self.options["max_new_tokens"])
        wanted = [q.question.template.metadata.get("max_new_tokens") for q in queries if q.question.template]
        return max([int(w) for w in wanted if w] or [DEFAULT_MAX_NEW_TOKENS])


#: generate: free text, parsed; choice: label log-likelihood (vlmface.backends.choice);
#: constrained: decoding restricted to the label strings (vllm only)
MODES = ("generate", "choice", "constrained")


def answer_mode(entry, options: dict[str, Any], modes: tuple[str, ...] = MODES) -> str:
    """The answer mode of a generative backend, checked against the modes it supports,
    for an entry that names weights."""
    mode = str(options.get("mode", "generate"))
    if mode not in modes:
        what = "unknown mode" if mode not in MODES else f"backend {entry.backend!r} has no mode"
        raise BackendError(f"model {entry.name!r}: {what} {mode!r}; use one of {', '.join(modes)} "
                           "(see the README's table of modes per backend)")
    if not entry.weights:
        raise BackendError(f"model {entry.name!r} names no weights: give a hub id or a local dir")
    return mode


def preview_model_input(entry, options: dict[str, Any], query: Query) -> dict[str, Any]:
    """What an hf or vllm backend would feed the model for `query` (`vlmface render --model`),
    from the processor alone: no weights are loaded."""
    from vlmface.backends.hf_loading import load_processor

    processor, config = load_processor(entry.weights, revision=entry.revision,
                                       trust_remote_code=entry.trust_remote_code)
    formatter = PromptFormatter(processor, getattr(config, "model_type", "unknown"), options)
    return {"model_input": formatter.format(query)}
