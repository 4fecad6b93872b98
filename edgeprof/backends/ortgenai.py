"""ONNX Runtime GenAI: its own generation loop and KV cache, on an `edgeprof convert` export.

onnxruntime-genai is the runtime on-device ONNX deployments use (Windows ML, Android, Foundry
Local). It runs a decoder from a folder holding `genai_config.json`; edgeprof's exports have
GenAI's I/O (Optimum names, GroupQueryAttention with past/present buffer sharing), so at load
a temporary folder gets a config written from the export's NAME.edgeprof.json and links to the
graph and its weights, and GenAI runs the very file the `onnx` backend runs. Prompts are
tokenized by llama.cpp from the export's vocabulary, as for the other backends, and go in as
token ids (`append_tokens`), so input counts agree across the three runtimes.

Timings come from GenAI's streaming API: `append_tokens(prompt)` runs the prompt, each
`generate_next_token()` runs the previous token (none for the first) and picks the next, and
the token is stamped when that call returns: the same points at which the `onnx` backend's
loop stamps its tokens (tests/test_ort_genai.py checks both on one export).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeprof.backends.base import BackendOptions, ModelInfo
from edgeprof.backends.onnxrt import OnnxBackend
from edgeprof.backends.signals import SignalBuffers
from edgeprof.errors import ModelLoadError, UsageError

INSTALL = "pip install 'edgeprof[ort-genai]' (onnxruntime-genai)"


@dataclass(frozen=True)
class OrtGenaiSettings:
    # The prompt format, as the llamacpp backend takes it (edgeprof.models.prompt_format).
    chat_template: str | None = None
    raw: bool = False
    # how sure the model was of each answer, from GenAI's logits (backends/signals.py); off:
    # no copy of the logits out of GenAI a step, NULL columns
    signals: bool = True

    def __post_init__(self) -> None:
        from edgeprof.models.chat import check_prompt_settings

        check_prompt_settings(self.chat_template, self.raw, "ort-genai")

    # what OnnxBackend reads of its settings
    tokenizer: ClassVar[None] = None
    providers: ClassVar[None] = None


class OrtGenaiBackend(OnnxBackend):
    name: ClassVar[str] = "ort-genai"
    Settings: ClassVar[type[OrtGenaiSettings]] = OrtGenaiSettings  # type: ignore[assignment]
    native_modules: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnxruntime_genai")
    engine: ClassVar[str] = "ONNX Runtime GenAI"
    batches: ClassVar[bool] = False  # GenAI batches its own way; not measured here yet

    def __init__(self, options: BackendOptions, settings: OrtGenaiSettings | None = None) -> None:
        super().__init__(options, settings)  # type: ignore[arg-type]
        self._model: Any = None
        self._folder: Path | None = None

    def _read_configs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        config, hf = super()._read_configs()
        if not config.get("hparams"):  # GenAI's config is written from the export's
            raise UsageError(
                f"the ort-genai backend runs `edgeprof convert` exports; {self.path.name} has "
                f"no {self.path.stem}.edgeprof.json beside it (run it with --backend onnx)"
            )
        return config, hf

    def check(self) -> None:
        _genai()

    def load(self) -> ModelInfo:
        og = _genai()
        self._folder = Path(tempfile.mkdtemp(prefix="edgeprof-genai-"))
        try:
            self._link_export(self._folder)
            self.load_tokenizer()
            self._write_config(self._folder)
            self._model = og.Model(str(self._folder))
        except (OSError, RuntimeError) as e:
            raise ModelLoadError(
                f"ONNX Runtime GenAI could not load {self.path} ({str(e).splitlines()[0]}); "
                "run it with --backend onnx, or re-run `edgeprof convert`"
            ) from e
        import onnxruntime as ort

        versions = {"onnxruntime": ort.__version__, "onnxruntime_genai": og.__version__}
        provenance = {
            "runtime": "onnxruntime-genai",
            **versions,
            "providers_used": ["CPUExecutionProvider"],
            "kv_cache": "GenAI's, past/present buffer shared, max length per request",
        }
        n_vocab = int(self.config["hparams"]["n_vocab"])
        self.signal_buffers = SignalBuffers(n_vocab) if self.settings.signals else None
        return self.model_info(versions, provenance)

    def _link_export(self, folder: Path) -> None:
        """The graph and its weights, by their own names (the graph names its data file)."""
        for path in (self.path, self.path.with_name(self.path.name + ".data")):
            if path.is_file():
                os.symlink(path.resolve(), folder / path.name)

    def _write_config(self, folder: Path) -> None:
        hp = self.config["hparams"]
        decoder = {
            "filename": self.path.name,
            "head_size": hp["head_dim"],
            "hidden_size": hp["n_embd"],
            "num_attention_heads": hp["n_head"],
            "num_key_value_heads": hp["n_head_kv"],
            "num_hidden_layers": hp["n_layer"],
            "session_options": {
                "intra_op_num_threads": self.threads,
                "inter_op_num_threads": 1,
                "log_id": "edgeprof",
                "provider_options": [],  # CPU
            },
            "inputs": {
                "input_ids": "input_ids",
                "attention_mask": "attention_mask",
                "position_ids": "position_ids",
                "past_key_names": "past_key_values.%d.key",
                "past_value_names": "past_key_values.%d.value",
            },
            "outputs": {
                "logits": "logits",
                "present_key_names": "present.%d.key",
                "present_value_names": "present.%d.value",
            },
        }
        config = {
            "model": {
                "type": "decoder",
                "bos_token_id": self.config.get("bos_token_id", 1),
                "eos_token_id": sorted(self.eog),
                "pad_token_id": 0,
                "context_length": self._max_positions(),
                "vocab_size": hp["n_vocab"],
                "decoder": decoder,
            },
            "search": {
                "do_sample": False,  # greedy, as every device backend
                "num_beams": 1,
                "num_return_sequences": 1,
                "max_length": self._max_positions(),
                "min_length": 0,
                "past_present_share_buffer": True,
                "repetition_penalty": 1.0,
                "temperature": 1.0,
                "top_k": 1,
                "top_p": 1.0,
            },
        }
        (folder / "genai_config.json").write_text(json.dumps(config, indent=2))

    def loaded(self) -> bool:
        return self._model is not None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "runtime": "onnxruntime-genai"}

    def _generator(self, length: int) -> Any:
        og = _genai()
        if self._model is None:
            raise RuntimeError("load() first")
        params = og.GeneratorParams(self._model)
        params.set_search_options(max_length=length)  # the KV cache GenAI allocates
        return og.Generator(self._model, params)

    def _greedy(
        self, tokens: list[int], max_new: int
    ) -> Generator[tuple[int, int, np.ndarray], None, None]:
        """(token, perf_counter_ns, its step's logits) from GenAI's loop: prompt, then one call
        per token. The logits are copied out of GenAI only when the signals are on (their
        cost is on the decode path); otherwise an empty array stands in."""
        import time

        generator = self._generator(len(tokens) + max_new)
        generator.append_tokens(tokens)
        signals = self.signal_buffers is not None
        for _ in range(max_new):
            logits = np.asarray(generator.get_logits()).reshape(-1) if signals else _NO_LOGITS
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            yield token, time.perf_counter_ns(), logits
            if generator.is_done():
                return

    def logits_stream(self, tokens: list[int], max_new: int) -> Generator[np.ndarray, int, None]:
        """Teacher-forced next-token logits through GenAI's KV cache (edgeprof.convert's
        agreement scoring): the prompt, then each token sent in."""
        generator = self._generator(len(tokens) + max_new)
        generator.append_tokens(tokens)
        token = yield np.asarray(generator.get_logits()).reshape(-1)
        for _ in range(1, max_new):
            generator.append_tokens([token])
            token = yield np.asarray(generator.get_logits()).reshape(-1)

    def close(self) -> None:
        self._model = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        super().close()


_NO_LOGITS = np.empty(0, dtype=np.float32)


def _genai() -> Any:
    try:
        import onnxruntime_genai
    except ImportError as e:
        raise ModelLoadError(f"the ort-genai backend needs onnxruntime-genai: {INSTALL}") from e
    return onnxruntime_genai
