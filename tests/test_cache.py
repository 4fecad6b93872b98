"""Repetitions of the same prompt must pay their prefill again unless --keep-cache is given.

llama.cpp keeps the last prompt's K/V; llama-cpp-python would reuse a matching prefix and a
repeated prompt's TTFT would collapse to one token's decode. The stated factors: without
keep_cache the second repetition's TTFT is at least 0.5x the first's (a cache hit re-decodes 1
of ~400 tokens, well under 0.1x); with keep_cache it is under 0.2x the uncached TTFT.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeprof.measure.runner import RunConfig, profile
from edgeprof.store.db import Store
from tests.builders import loose

pytestmark = [pytest.mark.model, pytest.mark.slow]

STORY = (
    "The lighthouse keeper counted the ships each evening and wrote their names in a ledger. "
    "Some nights the fog was so thick that he counted only horns, and wrote those down too. "
)


def _suite(tmp_path: Path) -> Path:
    suite = tmp_path / "long.jsonl"
    prompt = "Read this and answer in one word: what is counted?\n\n" + STORY * 10
    suite.write_text(json.dumps({"name": "long", "prompt": prompt}) + "\n")
    return suite


def _ttfts(tmp_path: Path, keep_cache: bool) -> tuple[list[float], list[str], int]:
    db = tmp_path / f"keep{int(keep_cache)}.db"
    run_id = profile(
        RunConfig(
            prompts=str(_suite(tmp_path)),
            repetitions=2,
            warmup=1,  # the cold first request (page faults) is not one of the two compared
            max_tokens=8,
            threads=1,
            ctx=1024,
            db=db,
            idle_seconds=0,
            keep_cache=keep_cache,
        )
    )
    store = Store(db)
    rows = [r for r in loose(store.requests(run_id)) if not r["warmup"]]
    store.close()
    assert [r["repetition"] for r in rows] == [0, 1]
    return [r["ttft_s"] for r in rows], [r["output_text"] for r in rows], rows[0]["input_tokens"]


def test_second_repetition_is_not_a_prompt_cache_hit_unless_kept(tmp_path: Path) -> None:
    fresh, fresh_text, n_in = _ttfts(tmp_path, keep_cache=False)
    kept, kept_text, _ = _ttfts(tmp_path, keep_cache=True)
    assert n_in > 300  # prefill dominates TTFT: the cache effect is the whole prefill

    # Without --keep-cache both repetitions prefill the whole prompt.
    assert fresh[1] >= 0.5 * fresh[0], fresh

    # With --keep-cache the warm-up filled the cache: both repetitions reuse it.
    assert max(kept) < 0.2 * min(fresh), (kept, fresh)

    # The reused cache gives the same greedy tokens as a full prefill.
    assert kept_text == fresh_text
    assert fresh_text[0] == fresh_text[1]


def test_a_shared_system_prompt_is_kept_between_requests_and_counted(tmp_path: Path) -> None:
    """Every request starts with the same ~320-token system prompt. With --keep-cache llama.cpp
    keeps that prefix's KV state: each measured request records how many input tokens it did
    not compute again; without it, none."""
    from edgeprof.models.files import demo_model_path
    from edgeprof.models.tokens import load_vocab

    data = Path(__file__).parent / "data"
    system = (data / "system_prompt_300.txt").read_text("utf-8")
    vocab = load_vocab(demo_model_path())
    system_tokens = len(vocab.tokenize(system.encode(), add_bos=False))
    vocab.close()
    db = tmp_path / "p.db"
    cached: dict[bool, list[dict[str, Any]]] = {}
    for keep in (False, True):
        run_id = profile(
            RunConfig(
                prompts=str(data / "four_prompts.jsonl"),
                max_tokens=4,
                repetitions=1,
                warmup=1,
                threads=2,
                db=db,
                idle_seconds=0,
                system_prompt=system,
                keep_cache=keep,
            )
        )
        with Store(db) as store:
            cached[keep] = [r for r in loose(store.requests(run_id)) if not r["warmup"]]
    assert all(r["cached_input_tokens"] == 0 for r in cached[False])
    for r in cached[True]:
        assert system_tokens <= r["cached_input_tokens"] < r["input_tokens"], r
    assert [r["input_tokens"] for r in cached[True]] == [r["input_tokens"] for r in cached[False]]
