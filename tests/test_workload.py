"""Prompt suites: the bundled one, JSONL files, and the errors a bad file gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeprof.errors import UsageError
from edgeprof.measure.workload import load_suite, parse_suite, prompt_id


def test_bundled_suite_has_varied_prompts() -> None:
    prompts = load_suite()
    assert 10 <= len(prompts) <= 16
    lengths = sorted(len(p.messages[-1]["content"]) for p in prompts)
    assert lengths[0] < 100 and lengths[-1] > 2000  # a one-liner and a long passage
    assert len({p.id for p in prompts}) == len(prompts)


def test_prompt_id_is_content_hash() -> None:
    a = parse_suite('{"prompt": "hi"}', suite="a", source="x")[0]
    b = parse_suite('{"name": "other", "prompt": "hi"}', suite="b", source="y")[0]
    assert a.id == b.id == prompt_id(({"role": "user", "content": "hi"},))


def test_messages_and_system_forms(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    lines = [
        {"name": "s", "system": "Be brief.", "prompt": "Why is the sky blue?"},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}]},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    prompts = load_suite(str(path))
    assert prompts[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert len(prompts[1].messages) == 3
    assert prompts[0].suite == "mine"


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": "broken"\n')
    with pytest.raises(UsageError, match=r"bad\.jsonl, line 2: not valid JSON"):
        load_suite(str(path))


def test_wrong_shapes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "shape.jsonl"
    path.write_text('{"messages": [{"role": "robot", "content": "x"}]}\n')
    with pytest.raises(UsageError, match="line 1: each message needs a role"):
        load_suite(str(path))
    with pytest.raises(UsageError, match="neither a bundled suite"):
        load_suite(str(tmp_path / "missing.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UsageError, match="holds no prompts"):
        load_suite(str(tmp_path / "empty.jsonl"))
