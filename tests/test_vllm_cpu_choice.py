"""Opt-in: `choice` on a real vLLM engine (CPU build) equals `choice` on the hf backend.

    VLMFACE_VLLM_PYTHON=/path/to/vllm-venv/bin/python pytest tests/test_vllm_cpu_choice.py -s

For a tiny LLaVA and a tiny PaliGemma (tests/tiny_vlms.py, head_dim 32), real UTKFace faces are
asked race and gender in mode "choice" by the vllm backend (in the vLLM interpreter, with
prefix caching in blocks of 32 tokens, see tests/vllm_opt_in.py) and by the hf backend here.
Both must give the same label and the same probabilities to 1e-3 (measured: 1.4e-9 LLaVA,
5.5e-7 PaliGemma). Both are also checked against log-likelihoods computed here without the backends: one plain forward
pass of the processor's prompt + the label through the transformers model, the label tokens'
log-softmax summed, once with the model's own attention mask (PaliGemma: bidirectional over
image + prompt) and once fully causal (what vLLM 0.32's CPU attention computes for PaliGemma):
hf must equal the first, vllm the second, to 1e-4. So the tokens are the same, and what is left
between the two backends on PaliGemma is the prefix-LM mask, which vLLM 0.32 does not apply on
CPU (tiny PaliGemma: log-likelihoods differ by up to 3.8e-3 nats, exactly the mask's effect;
LLaVA: < 1e-6). The differences, and vLLM's
prefix-cache use over the label requests, are printed (-s) for the closing note.
"""

from __future__ import annotations

import math

import pytest
from vllm_opt_in import OPT_IN, UTKFACE, face_queries, local_queries, serve

pytestmark = OPT_IN

LABELS = {"race5": (["White", "Black", "Asian", "Indian", "Others"], {"Others": "other race"}),
          "gender": (["Male", "Female"], {})}
ENGINE = {"dtype": "fp32", "mode": "choice", "engine_args": {"max_model_len": 512, "block_size": 32}}


def _independent_loglik(backend, query, name: str, causal: bool) -> float:
    """log p(label | prompt, image) by one forward pass over prompt + label (no cache, no backend code)."""
    import torch

    inputs = backend._inputs([backend.format_prompt(query)], [query.image])
    label = torch.tensor([backend.tokenizer(name, add_special_tokens=False)["input_ids"]])
    ids = torch.cat([inputs.pop("input_ids"), label], dim=1)
    inputs.pop("attention_mask")
    if "token_type_ids" in inputs:  # PaliGemma: 0 = the bidirectional prefix, 1 = the causal suffix
        prefix = torch.ones_like(inputs["token_type_ids"]) if causal else inputs["token_type_ids"]
        inputs["token_type_ids"] = torch.cat([prefix, torch.ones_like(label)], dim=1)
    with torch.no_grad():
        logits = backend.model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits[0]
    logp = logits.float().log_softmax(-1)
    start = ids.shape[1] - label.shape[1]
    return sum(logp[start + k - 1, label[0, k]].item() for k in range(label.shape[1]))


@pytest.mark.parametrize("family", ["llava", "paligemma"])
def test_vllm_choice_probabilities_equal_hf_and_an_independent_loglik(family, tmp_path):
    import tiny_vlms

    from vlmface.backends.hf import HFBackend
    from vlmface.interpret import answered
    from vlmface.registry import ModelEntry

    if family == "llava":
        model = tiny_vlms.to_hub_llava_layout(tiny_vlms.build_llava(tmp_path / "llava", head_dim=32))
    else:
        model = tiny_vlms.to_hub_llava_layout(
            tiny_vlms.build_paligemma(tmp_path / "paligemma", head_dim=32, newline_token=True))
    faces = sorted(UTKFACE.glob("*.jpg"))
    queries = face_queries(faces[:6:2] + faces[-6::2], LABELS)
    out = serve(model, ENGINE, ["choice"], queries, tmp_path)
    served = out["choice"]
    hf = HFBackend(ModelEntry(name="tiny", backend="hf", weights=str(model)),
                   {"device": "cpu", "dtype": "fp32", "mode": "choice", "batch_size": 4})
    local_q = local_queries(queries)
    local = answered(hf, local_q)
    prob_diff, loglik_diff, hf_vs_model, vllm_vs_causal, mask_effect = [], [], [], [], []
    for query, theirs, mine in zip(local_q, served, local):
        assert theirs["status"] == "ok", theirs["raw"]
        assert mine.status == "ok" and theirs["label"] == mine.label
        for label, name in zip(query.question.labels, query.question.choices):
            faithful = _independent_loglik(hf, query, name, causal=False)
            causal = _independent_loglik(hf, query, name, causal=True)
            prob_diff.append(abs(theirs["probs"][label] - mine.probs[label]))
            loglik_diff.append(abs(theirs["loglik"][label] - mine.extra["loglik"][label]))
            hf_vs_model.append(abs(mine.extra["loglik"][label] - faithful))
            vllm_vs_causal.append(abs(theirs["loglik"][label] - causal))
            mask_effect.append(abs(faithful - causal))
    stats = out["cache_stats"]
    print(f"\n{family}: {len(local)} queries, {len(prob_diff)} label probabilities; max |p_vllm - p_hf| = "
          f"{max(prob_diff):.2e}, max |loglik_vllm - loglik_hf| = {max(loglik_diff):.2e}, "
          f"max |loglik_hf - independent| = {max(hf_vs_model):.2e}, "
          f"max |loglik_vllm - independent causal| = {max(vllm_vs_causal):.2e}, "
          f"prefix-LM mask effect = {max(mask_effect):.2e}, vLLM prefix-LM = {out['prefix_lm']}; "
          f"prefix cache over label requests: {stats}")
    assert max(hf_vs_model) < 1e-4  # the hf backend scores what the model computes
    assert max(vllm_vs_causal) < 1e-4  # vLLM: the same tokens, its (causal on CPU) attention
    assert max(prob_diff) < 1e-3
    if family == "llava":
        assert max(loglik_diff) < 1e-4
    else:  # measured 3.8e-3 nats, all of it the mask: vllm = causal, hf = prefix-LM (to 1e-6)
        assert all(abs(d - m) < 1e-4 for d, m in zip(loglik_diff, mask_effect))
    assert all(math.isfinite(d) for d in loglik_diff)
    assert out["prefix_lm"] == (family == "paligemma")
    assert stats["requests"] == len(prob_diff) and stats["cached_tokens"] > 0
