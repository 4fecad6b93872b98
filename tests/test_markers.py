"""The automatic model/server markers (tests/markers.py): what they read as using the demo
model or the server, and what they must not."""

from __future__ import annotations

from tests.markers import needed_markers


def test_fixtures_decide() -> None:
    assert needed_markers(["tmp_path", "demo_model"], []) == {"model"}
    assert needed_markers(["llama_server"], []) == {"server"}
    assert needed_markers(["demo_run", "llama_server"], []) == {"model", "server"}
    assert needed_markers(["tmp_path"], []) == set()


def test_sources_that_load_the_model() -> None:
    assert needed_markers([], ["x = load_vocab(demo_model_path())"]) == {"model"}
    assert needed_markers([], ["llm = llama_cpp.Llama(str(path))"]) == {"model"}
    assert needed_markers([], ["name = f'{STEM}.onnx'"]) == {"model"}


def test_words_that_only_look_alike() -> None:
    assert needed_markers([], ['role = "SYSTEM"', "class FakeLlama(Backend): ..."]) == set()
    assert needed_markers([], ["def my_demo_model_path_helper(): ..."]) == set()
