"""Generative VLMs through transformers (PaliGemma, LLaVA, Florence-2, SmolVLM, Qwen2.5-VL...).

Two answer modes (`options.mode`):
- "generate" (default): batched greedy decoding with left padding (right padding for
  encoder-decoder models, whose encoder positions must start at 0); the raw text is returned
  and vlmface.interpret parses it into a label, "invalid" or "refused".
- "choice": each label's display name is scored as a continuation of the prompt and image
  with the rule shared by every backend (vlmface.backends.choice: summed token log-likelihood,
  or per-token mean with `choice_score: mean`), returned in Answer.scores (vlmface.interpret
  takes the argmax and the softmax). One prefill per batch of queries (`batch_size`, padded),
  then the prefill cache is selected once per label, so each image is encoded once. (Constrained decoding, mode "constrained", is
  vllm only.)

Prompts: the processor's chat template wraps the question when the model has one; models
without one (PaliGemma, Florence-2) get the raw prompt, as they were trained. `chat_format`
(auto | chat | raw) comes from the template's header, else options; `prompt_prefix` (e.g.
"answer en ") is put before the question; `system_prompt` adds a system turn.

Options: batch_size, device, dtype, mode, max_new_tokens, chat_format, prompt_prefix, system_prompt,
choice_prefix, choice_score, model_class, attn_implementation, device_map, hf_cache_dir (the
runner's `cache_dir` is for vlmface's own caches and is ignored: weights stay in the HF cache).
"""

from __future__ import annotations

import logging
from typing import Any

from vlmface.backends.base import Answer, Backend, Option, Query, Question
from vlmface.backends.choice import CHOICE_OPTIONS, choice_answer, choice_score, label_token_ids
from vlmface.backends.hf_loading import load
from vlmface.backends.hf_prompts import PROMPT_OPTIONS, PromptFormatter, answer_mode, preview_model_input

log = logging.getLogger(__name__)



class HFBackend(Backend):
    prompt_style = "question"
    options_schema = {
        **PROMPT_OPTIONS,
        **CHOICE_OPTIONS,
        "model_class": Option(str, None, True, "the transformers class to load (default: from the config)"),
        "attn_implementation": Option(str, None, False, "eager, sdpa, flash_attention_2 (default: transformers')"),
        "device_map": Option(str | dict, None, False, "accelerate device map (default: one device)"),
        "hf_cache_dir": Option(str, None, False, "where hub weights are cached (default: the HF cache)"),
    }

    def __init__(self, entry, options: dict[str, Any] | None = None):
        super().__init__(entry, options)
        self.mode = answer_mode(entry, self.options, modes=("generate", "choice"))
        self.choice_score = choice_score(self.options)
        opts = self.options
        self.loaded = load(entry.weights, revision=entry.revision, trust_remote_code=entry.trust_remote_code,
                           device=opts.get("device"), dtype=opts.get("dtype"), cache_dir=opts.get("hf_cache_dir"),
                           model_class=opts.get("model_class"), attn_implementation=opts.get("attn_implementation"),
                           device_map=opts.get("device_map"))
        self.model, self.processor = self.loaded.model, self.loaded.processor
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        self.tokenizer.padding_side = "right" if self.encoder_decoder else "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.prompts = PromptFormatter(self.processor, self.loaded.model_type, self.options)

    # ----- facts for run.json -------------------------------------------------------------
    @classmethod
    def preview(cls, entry, options: dict[str, Any], query: Query) -> dict[str, Any]:
        return preview_model_input(entry, cls.resolve_options(entry, options), query)

    def identity(self) -> dict[str, Any]:
        return {"backend": "hf", "weights": self.entry.weights, "revision": self.entry.revision,
                "model_type": self.loaded.model_type, "dtype": str(self.loaded.dtype).removeprefix("torch."),
                "mode": self.mode, "max_new_tokens": self.options.get("max_new_tokens"),
                "choice_score": self.choice_score if self.mode == "choice" else None,
                "chat_format": self.options.get("chat_format", "auto"),
                "prompt_prefix": self.options.get("prompt_prefix", "")}

    def prepare(self, questions: list[Question]) -> dict[str, Any]:
        import torch
        import transformers

        return {"model_type": self.loaded.model_type, "model_class": self.loaded.model_class,
                "device": str(self.loaded.device), "dtype": str(self.loaded.dtype).removeprefix("torch."),
                "mode": self.mode, "has_chat_template": self.prompts.has_chat_template(),
                "transformers": transformers.__version__, "torch": torch.__version__}

    def unsupported_reason(self, question: Question) -> str | None:
        if self.mode == "choice" and not question.labels:
            return (f"mode 'choice' scores a fixed label set, and {question.attribute!r} is numeric; "
                    "use mode 'generate' for it")
        return None

    # ----- prompts ------------------------------------------------------------------------
    def chat_format(self, question: Question) -> str:
        return self.prompts.chat_format(question)

    def format_prompt(self, query: Query) -> str:
        """The full model input text for one query (image placeholder included)."""
        return self.prompts.format(query)

    def max_new_tokens(self, queries: list[Query]) -> int:
        return self.prompts.max_new_tokens(queries)

    def _inputs(self, texts: list[str], images: list) -> dict:
        batch = self.processor(text=texts, images=[[image] for image in images], return_tensors="pt", padding=True)
        batch = dict(batch)
        batch.pop("labels", None)
        out = {}
        for key, value in batch.items():
            if hasattr(value, "to"):
                value = value.to(self.loaded.device)
                if value.is_floating_point():
                    value = value.to(self.loaded.dtype)
            out[key] = value
        return out

    # ----- answering ----------------------------------------------------------------------
    def answer(self, queries: list[Query]) -> list[Answer]:
        if not queries:
            return []
        run = self._choose if self.mode == "choice" else self._generate
        size = max(1, int(self.options.get("batch_size") or len(queries)))
        if self.mode == "choice" and not self._choice_batchable:
            size = 1
        answers: list[Answer | None] = [None] * len(queries)
        todo = []
        for i, query in enumerate(queries):
            reason = self.unsupported_reason(query.question)
            if reason:
                answers[i] = Answer.error(reason)
            else:
                todo.append(i)
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            for i, answer in zip(chunk, self._answer_chunk(run, [queries[i] for i in chunk])):
                answers[i] = answer
        return answers  # type: ignore[return-value]

    def _answer_chunk(self, run, queries: list[Query]) -> list[Answer]:
        try:
            return run(queries)
        except Exception as exc:  # one bad sample must not sink the batch: retry one by one
            if len(queries) == 1:
                self._free_memory()
                return [Answer.error(f"{type(exc).__name__}: {exc}")]
            log.warning("batch of %d failed (%s); retrying one query at a time", len(queries), exc)
            self._free_memory()
            return [self._answer_or_error(lambda q: run([q])[0], query) for query in queries]

    def _answer_or_error(self, fn, query: Query) -> Answer:
        reason = self.unsupported_reason(query.question)
        if reason:
            return Answer.error(reason)
        try:
            return fn(query)
        except Exception as exc:
            self._free_memory()
            return Answer.error(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self.model = self.loaded.model = None
        self._free_memory()

    def _free_memory(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generation_config(self, max_new_tokens: int):
        config = self.model.generation_config.__class__.from_dict(self.model.generation_config.to_dict())
        config.update(do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None,
                      max_new_tokens=max_new_tokens, max_length=None)
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        return config

    def generate_texts(self, queries: list[Query]) -> list[str]:
        import torch

        inputs = self._inputs([self.format_prompt(q) for q in queries], [q.image for q in queries])
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self.generation_config(self.max_new_tokens(queries)))
        new = out if self.encoder_decoder else out[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.processor.batch_decode(new, skip_special_tokens=True)]

    def _generate(self, queries: list[Query]) -> list[Answer]:
        return [Answer(label=None, status="ok", raw=text) for text in self.generate_texts(queries)]

    # ----- choice mode (the scoring rule: vlmface.backends.choice) ----------------------
    def continuations(self, question: Question) -> list[list[int]]:
        return label_token_ids(self.tokenizer, question.choices, str(self.options.get("choice_prefix") or ""))

    @property
    def _choice_batchable(self) -> bool:
        from vlmface.backends.hf_choice import batchable

        return self.encoder_decoder or batchable(self.model)

    def label_token_logprobs(self, queries: list[Query]) -> list[list[list[float]]]:
        """Per query, per label: log p(token | prompt, image, earlier label tokens) for each label
        token; the queries share one padded batch."""
        from vlmface.backends.hf_choice import decoder_logliks, encoder_decoder_logliks

        inputs = self._inputs([self.format_prompt(q) for q in queries], [q.image for q in queries])
        conts = [self.continuations(q.question) for q in queries]
        score = encoder_decoder_logliks if self.encoder_decoder else decoder_logliks
        return score(self.model, inputs, conts, self.tokenizer.pad_token_id)

    def _choose(self, queries: list[Query]) -> list[Answer]:
        return [choice_answer(q.question.labels, logprobs, self.choice_score)
                for q, logprobs in zip(queries, self.label_token_logprobs(queries))]
