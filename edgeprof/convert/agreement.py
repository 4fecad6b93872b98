"""How closely an ONNX export reproduces llama.cpp on the same GGUF and the same prompt tokens.

llama.cpp decodes greedily for `n_tokens` steps and keeps its next-token logits at each step.
The export is then fed exactly the same tokens (teacher forcing: prompt in one call, then
llama.cpp's tokens one by one through the KV cache), and at every step we compare:

    top1          share of steps where both runtimes pick the same next token
    common_prefix steps before the first disagreement = tokens two free greedy runs share
    rel_l2_first  ||onnx - llama|| / ||llama|| of the logits after the prompt
    rel_l2_max    the same, worst step
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Agreement:
    prompt_tokens: int
    steps: int
    top1: float
    common_prefix: int
    rel_l2_first: float
    rel_l2_max: float


def llamacpp_greedy(llm: Any, tokens: list[int], n_tokens: int) -> tuple[list[int], np.ndarray]:
    """llama.cpp's greedy continuation (stopping after an EOG token) and its logits per step."""
    import llama_cpp

    vocab = llm._model.vocab
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(tokens)
    rows: list[np.ndarray] = []
    cont: list[int] = []
    for _ in range(n_tokens):
        # Only the last position's logits exist (logits_all=False), as in a normal llama.cpp run.
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        row = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32)
        rows.append(row)
        token = int(np.argmax(row))
        cont.append(token)
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        llm.eval([token])
    return cont, np.stack(rows)


def compare(backend: Any, tokens: list[int], cont: list[int], ref: np.ndarray) -> Agreement:
    """Feed `tokens` then `cont` to an loaded OnnxBackend and score it against `ref`."""
    stream = backend.logits_stream(tokens, len(cont))
    row = next(stream)
    same: list[bool] = []
    rel: list[float] = []
    for i, token in enumerate(cont):
        ours = np.asarray(row, dtype=np.float32)
        same.append(int(np.argmax(ours)) == int(np.argmax(ref[i])))
        rel.append(float(np.linalg.norm(ours - ref[i]) / np.linalg.norm(ref[i])))
        if i + 1 < len(cont):
            row = stream.send(token)
    stream.close()
    prefix = same.index(False) if False in same else len(same)
    return Agreement(len(tokens), len(cont), float(np.mean(same)), prefix, rel[0], max(rel))


def agreement_on_prompts(
    backend: Any,
    llm: Any,
    prompts: Sequence[Sequence[Mapping[str, str]]],
    n_tokens: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> list[Agreement]:
    """One Agreement per prompt; both runtimes tokenize with `prompt_tokens` on llama.cpp.

    llama.cpp runs every prompt before ONNX Runtime runs any: each runtime's idle worker
    threads spin for a while after a call, and interleaving the two on a small machine made
    them fight for its cores (2.5x slower on a busy 2-core VM). `progress(done, total)` counts
    both passes, 2 x len(prompts) in all.
    """
    from edgeprof.models.tokens import prompt_tokens

    total = 2 * len(prompts)
    refs = []
    for messages in prompts:
        tokens = prompt_tokens(llm, messages)
        refs.append((tokens, *llamacpp_greedy(llm, tokens, n_tokens)))
        if progress:
            progress(len(refs), total)
    results = []
    for tokens, cont, ref in refs:
        results.append(compare(backend, tokens, cont, ref))
        if progress:
            progress(len(refs) + len(results), total)
    return results


def pooled(results: Sequence[Agreement]) -> dict[str, float]:
    """Step-weighted top-1 over all prompts, and the worst/median logit errors."""
    steps = sum(r.steps for r in results)
    return {
        "prompts": len(results),
        "steps": steps,
        "top1": sum(r.top1 * r.steps for r in results) / steps,
        "min_common_prefix": min(r.common_prefix for r in results),
        "rel_l2_first_median": float(np.median([r.rel_l2_first for r in results])),
        "rel_l2_first_max": max(r.rel_l2_first for r in results),
    }
