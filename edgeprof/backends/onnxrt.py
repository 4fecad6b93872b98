"""ONNX Runtime: a greedy decoder loop over an Optimum-style graph with KV cache.

Works on `edgeprof convert` exports (which carry NAME.edgeprof.json and a vocab-only GGUF
beside NAME.onnx) and on a user's own Optimum decoder with past (`settings.tokenizer` then
names a GGUF whose vocabulary to use). Prompts are tokenized by llama.cpp itself from that
vocabulary, through the same `prompt_tokens` as the llama.cpp backend, so input token counts
agree across the two runtimes.

Per token the loop rebinds ORT-owned `present` values as the next `past` inputs (IO binding,
no copies through numpy) and writes the logits into one preallocated buffer, which the
answer's signals (backends/signals.py) read before the next step. `serve` decodes several
requests in one session call per step (onnx_batch.py).
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import sys
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeprof.backends.base import (
    Backend,
    BackendOptions,
    Generation,
    ModelInfo,
    Request,
    TokenEvent,
)
from edgeprof.backends.signals import LogitSignals, SignalBuffers
from edgeprof.errors import ModelLoadError, UsageError
from edgeprof.models.files import GGUF_MAGIC, resolve_model

FLOAT16 = 10  # onnx.TensorProto.FLOAT16, the KV tensors' element type in fp16 exports

log = logging.getLogger("edgeprof")


@dataclass(frozen=True)
class OnnxSettings:
    # A GGUF whose vocabulary tokenizes for a decoder without edgeprof's sidecar files.
    tokenizer: Path | None = None
    # Execution providers in priority order: "cuda,cpu" or ("cuda", "cpu"), short or ONNX
    # Runtime names; stored as ONNX Runtime names. None: the best this build has for the export
    # (edgeprof.backends.ort_providers.choose_providers).
    providers: tuple[str, ...] | str | None = None
    # The prompt format, as the llamacpp backend takes it (edgeprof.models.prompt_format).
    chat_template: str | None = None
    raw: bool = False
    # How sure the model was of each answer, from the logits of every step, as the llamacpp
    # backend reads them (backends/signals.py, docs/benchmarks.md). Off: NULL columns.
    signals: bool = True

    def __post_init__(self) -> None:
        from edgeprof.models.chat import check_prompt_settings

        check_prompt_settings(self.chat_template, self.raw, "onnx")
        if self.providers is not None:
            from edgeprof.backends.ort_providers import parse_providers

            # frozen: normalise once here so runs.params records the ORT names
            object.__setattr__(self, "providers", parse_providers(self.providers))


_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _fix_hint(path: Path) -> str:
    return f"create one with `edgeprof convert MODEL.gguf -o models/{path.stem}.onnx`"


def inspect_onnx(path: Path) -> dict[str, Any]:
    """Check that `path` is an ONNX decoder with KV cache; return its I/O description."""
    import onnx

    with path.open("rb") as f:
        if f.read(4) == GGUF_MAGIC:
            raise ModelLoadError(
                f"{path} is a GGUF file; use the llamacpp backend, or "
                f"convert it with `edgeprof convert {path} -o models/{path.stem}.onnx`"
            )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, or RuntimeWarning-ish errors
        raise ModelLoadError(f"{path} is not an ONNX model; {_fix_hint(path)}") from e
    if not model.graph.node:
        raise ModelLoadError(f"{path} is not an ONNX model; {_fix_hint(path)}")
    inits = {i.name for i in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    outputs = [o.name for o in model.graph.output]
    pasts = sorted((n for n in inputs if n.startswith("past_key_values.")), key=_layer_key)
    missing = [n for n in ("input_ids", "attention_mask") if n not in inputs]
    if missing or not pasts or "logits" not in outputs:
        lacks = ", ".join(missing or (["past_key_values.N.key/value"] if not pasts else ["logits"]))
        raise ModelLoadError(
            f"{path} lacks the decoder inputs/outputs {lacks}; export a decoder with KV cache "
            "(`edgeprof convert`, or `optimum-cli export onnx --task text-generation-with-past`)"
        )
    first = inputs[pasts[0]].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in first.shape.dim]
    ops = {n.op_type for n in model.graph.node}
    return {
        "pasts": pasts,
        "presents": [n.replace("past_key_values.", "present.", 1) for n in pasts],
        "position_ids": "position_ids" in inputs,
        "use_cache_branch": "use_cache_branch" in inputs,
        # edgeprof's exports: per-row lengths from attention_mask, so rows can be batched
        "gqa": "GroupQueryAttention" in ops,
        "kv_heads": dims[1] if len(dims) == 4 else None,
        "head_dim": dims[3] if len(dims) == 4 else None,
        "elem_type": first.elem_type,
        "weights_guess": "int4"
        if "MatMulNBits" in ops
        else (
            "int8"
            if ops & {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
            else None
        ),
    }


def _layer_key(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return (int(parts[1]) if parts[1].isdigit() else 0, parts[-1])


class OnnxBackend(Backend):
    name: ClassVar[str] = "onnx"
    Settings: ClassVar[type[OnnxSettings]] = OnnxSettings
    isolated: ClassVar[bool] = True
    native_modules: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    engine: ClassVar[str] = "ONNX Runtime"

    def __init__(self, options: BackendOptions, settings: OnnxSettings | None = None) -> None:
        super().__init__(options, settings)
        self.settings: OnnxSettings
        options.check_local()
        if options.model is None or options.model == "demo":
            raise UsageError(
                "the onnx backend needs `model` NAME.onnx; create one with "
                "`edgeprof convert demo -o models/smollm2.onnx`"
            )
        self.path = resolve_model(options.model, suffixes=(".onnx",))
        self.io = inspect_onnx(self.path)
        self.config, self.hf_config = self._read_configs()
        self.tokenizer_path = self._tokenizer_path()
        self.threads = options.threads or max(1, os.cpu_count() or 1)
        self._session: Any = None
        self._vocab: Any = None
        self._fmt: Any = None  # edgeprof.models.prompt_format.PromptFormat, chosen at load
        self._eog: frozenset[int] = frozenset()
        self.signal_buffers: SignalBuffers | None = None  # made at load, when signals are on

    # --- metadata beside the model -------------------------------------------------------
    def _read_configs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from edgeprof.convert.sidecar import read_config, sidecar_paths

        ours = sidecar_paths(self.path)["config"]
        config = read_config(ours) if ours.is_file() else {}
        hf_path = self.path.parent / "config.json"
        hf: dict[str, Any] = {}
        if not config and hf_path.is_file():
            try:
                hf = json.loads(hf_path.read_text("utf-8"))
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"cannot read {hf_path} ({e}); fix or remove it") from e
        return config, hf

    def _tokenizer_path(self) -> Path:
        given = self.settings.tokenizer
        if given:
            path = given.expanduser()
        elif self.config.get("tokenizer"):
            path = self.path.parent / str(self.config["tokenizer"])
        else:
            raise ModelLoadError(
                f"no tokenizer for {self.path.name}: pass `tokenizer` PATH, the GGUF it came "
                f"from, or {_fix_hint(self.path)}"
            )
        if not path.is_file():
            raise ModelLoadError(f"tokenizer {path} not found; re-run `edgeprof convert`")
        return path

    def _kv_dims(self) -> tuple[int, int]:
        hp = self.config.get("hparams", {})
        hf = self.hf_config
        heads = self.io["kv_heads"] or hp.get("n_head_kv") or hf.get("num_key_value_heads")
        head_dim = (
            self.io["head_dim"]
            or hp.get("head_dim")
            or hf.get("head_dim")
            or (
                hf["hidden_size"] // hf["num_attention_heads"]
                if "hidden_size" in hf and "num_attention_heads" in hf
                else None
            )
        )
        if not heads or not head_dim:
            raise ModelLoadError(
                f"cannot tell the KV cache shape of {self.path.name}; put its config.json beside it"
            )
        return int(heads), int(head_dim)

    # --- execution providers ---------------------------------------------------------------
    def _providers(self) -> tuple[list[str], list[str], str]:
        """(providers to ask ONNX Runtime for, CPU last; notes; "setting" or "default")."""
        import onnxruntime as ort

        from edgeprof.backends import ort_providers as eps

        available = list(ort.get_available_providers())
        weights = self.config.get("weights")  # None: not an edgeprof export, ops unknown
        given = self.settings.providers
        if given is None:
            chosen, notes = eps.choose_providers(available, weights or "unknown", sys.platform)
            return chosen, notes, "default"
        eps.check_available(given, available, ort.__version__)
        notes = eps.requested_notes(given, weights)
        return [*given, *([] if eps.CPU in given else [eps.CPU])], notes, "setting"

    def _session_options(self, ort: Any) -> Any:
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # Which provider got each node, recorded once while the session is built (ORT >= 1.24;
        # older versions ignore the key): nothing runs or is profiled for it.
        so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        return so

    def _provenance(
        self, ort: Any, requested: list[str], notes: list[str], by: str
    ) -> dict[str, Any]:
        from edgeprof.backends import ort_providers as eps

        used = list(self._session.get_providers())
        missing = eps.not_started(requested, used)
        if missing and by == "setting":
            short = eps.short_name(missing[0]) or missing[0]
            raise ModelLoadError(
                f"onnxruntime could not start the {short} execution provider (it fell back to "
                f"{', '.join(used)}); check the libraries it needs "
                f"({eps.INSTALL_HINTS.get(short, 'see its docs')}), or drop `providers`"
            )
        notes += [f"{eps.short_name(m) or m} could not start; not used" for m in missing]
        try:
            placement: dict[str, int] | None = eps.node_placement(
                self._session.get_provider_graph_assignment_info()
            )
        except (AttributeError, RuntimeError) as e:  # ORT < 1.24, or the key was refused
            placement = None
            notes.append(f"node placement unknown ({str(e).splitlines()[0]})")
        return {
            "runtime": "onnxruntime",
            "onnxruntime": ort.__version__,
            "device": ort.get_device(),
            "providers_available": list(ort.get_available_providers()),
            "providers_requested": requested,
            "providers_chosen_by": by,
            "providers_used": used,
            # nodes of the graph as partitioned: after ORT's basic (level 1) rewrites, before
            # the provider-specific fusions of levels 2 and 3
            "node_placement": placement,
            "notes": notes,
        }

    # --- the Backend contract -------------------------------------------------------------
    def check(self) -> None:
        self._providers()  # a provider this build lacks fails before the run is recorded

    def load(self) -> ModelInfo:
        import onnxruntime as ort

        requested, notes, chosen_by = self._providers()
        for note in notes if chosen_by == "setting" else []:
            log.warning("onnx: %s", note)  # said at load: a partial placement is no surprise
        try:
            self._session = ort.InferenceSession(
                str(self.path), self._session_options(ort), providers=requested
            )
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/RuntimeException types
            raise ModelLoadError(
                f"ONNX Runtime could not load {self.path} ({str(e).splitlines()[0]}); check that "
                f"{self.path.name}.data sits beside it, or {_fix_hint(self.path)}"
            ) from e
        provenance = self._provenance(ort, requested, notes, chosen_by)
        self.load_tokenizer()
        self.kv_heads, self.head_dim = self._kv_dims()
        self.kv_dtype = np.float16 if self.io["elem_type"] == FLOAT16 else np.float32
        out = self._session.get_outputs()
        self.n_vocab = int(out[[o.name for o in out].index("logits")].shape[-1])
        self.signal_buffers = SignalBuffers(self.n_vocab) if self.settings.signals else None
        return self.model_info({"onnxruntime": ort.__version__}, provenance)

    def load_tokenizer(self) -> None:
        """The vocabulary, prompt format and end-of-generation tokens, from the sidecars."""
        from edgeprof.models.tokens import eog_token_ids, load_vocab, model_format, prompt_given

        self._vocab = load_vocab(self.tokenizer_path)
        self._fmt = model_format(self._vocab, **prompt_given(self.settings))
        eog = self.config.get("eog_token_ids") or eog_token_ids(self._vocab)
        eos = self.hf_config.get("eos_token_id")
        extra_eos = eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else []
        self._eog = frozenset(int(t) for t in [*eog, *extra_eos])

    def model_info(self, versions: dict[str, str], provenance: dict[str, Any]) -> ModelInfo:
        source = self.config.get("source", {})
        data = self.path.with_name(self.path.name + ".data")
        size = self.path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
        return ModelInfo(
            target=self.path.name,
            path=str(self.path),
            sha256=source.get("sha256"),  # the GGUF the weights came from
            quant=self.config.get("weights")
            or self.io["weights_guess"]
            or ("fp16" if self.io["elem_type"] == FLOAT16 else "fp32"),
            size_bytes=size,
            arch=self.config.get("arch") or self.hf_config.get("model_type"),
            extra={
                **versions,
                "source_gguf": source.get("file"),
                "quantization": self.config.get("quantization"),
                "tokenizer": self.tokenizer_path.name,
                "chat_template": self._fmt.label,
                "prompt_format": self._fmt.record(),
                "logits": self.config.get("logits", "all"),
                "provenance": provenance,
            },
        )

    def params(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "ctx": self.options.ctx,
            "seed": self.options.seed,
            "intra_op_num_threads": self.threads,
        }

    def loaded(self) -> bool:
        return self._session is not None

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        if not self.loaded():
            raise RuntimeError("load() first")
        from edgeprof.models.tokens import prompt_tokens

        if request.temperature != 0:
            raise UsageError(f"the {self.name} backend decodes greedily; run with temperature 0")
        tokens = prompt_tokens(self._vocab, request.messages, self._fmt)
        limit = min(self.options.ctx, self._max_positions())
        if len(tokens) + request.max_tokens > limit:
            raise UsageError(
                f"prompt {request.prompt_id} needs {len(tokens)} + {request.max_tokens} tokens, "
                f"more than `ctx` {limit}; raise `ctx` (at most the export's max_positions)"
            )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        n_out = 0
        finish = "length"
        error: str | None = None
        buffers = self.signal_buffers
        signals = LogitSignals(buffers) if buffers is not None else None
        try:
            for token, t_ns, logits in self._greedy(tokens, request.max_tokens):
                if token in self._eog:
                    finish = "stop"
                    break
                n_out += 1
                if signals is not None:
                    signals.add(logits, token)
                text = decoder.decode(self._vocab.detokenize([token]))
                pieces.append(text)
                yield TokenEvent(t_ns=t_ns, text=text)
        except Exception as e:  # an ORT failure mid-request is recorded, not fatal to the run
            if isinstance(e, GeneratorExit):
                raise
            finish, error = "error", f"onnxruntime: {str(e).splitlines()[0]}"
        return Generation(
            input_tokens=len(tokens),
            output_tokens=n_out,
            text="".join(pieces) + decoder.decode(b"", final=True),
            finish_reason=finish,
            error=error,
            signals=signals.result() if signals is not None else None,
        )

    def _greedy(
        self, tokens: list[int], max_new: int
    ) -> Generator[tuple[int, int, np.ndarray], None, None]:
        """Yield (token, perf_counter_ns, its step's logits) for up to max_new greedy tokens
        (EOG included); the logits are valid until the next token is asked for."""
        steps = self.logits_stream(tokens, max_new)
        row = next(steps)
        for i in range(max_new):
            token = int(np.argmax(row))
            yield token, time.perf_counter_ns(), row
            if i + 1 < max_new:
                row = steps.send(token)

    def logits_stream(self, tokens: list[int], max_new: int) -> Generator[np.ndarray, int, None]:
        """Yield the next-token logits after the prompt, then after each token sent in.

        The prefill runs the whole prompt in one call; every later call feeds one token and
        the KV cache. A yielded row is only valid until the next send.
        """
        if self._session is None:
            raise RuntimeError("load() first")
        session, io = self._session, self.io
        n = len(tokens)
        binding = session.io_binding()
        mask = np.ones((1, n + max_new), dtype=np.int64)
        self.bind_prefill(binding, tokens, mask[:, :n])
        session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        token = yield outs[0].numpy()[0, -1]

        # One-token steps: fixed-size inputs and logits live in buffers reused every step.
        ids = np.zeros((1, 1), dtype=np.int64)
        pos = np.zeros((1, 1), dtype=np.int64)
        logits = np.empty((1, 1, self.n_vocab), dtype=np.float32)
        binding.bind_cpu_input("input_ids", ids)
        if io["position_ids"]:
            binding.bind_cpu_input("position_ids", pos)
        if io["use_cache_branch"]:
            binding.bind_cpu_input("use_cache_branch", np.ones(1, dtype=np.bool_))
        binding.bind_output(
            "logits",
            "cpu",
            element_type=np.float32,
            shape=logits.shape,
            buffer_ptr=logits.ctypes.data,
        )
        presents = outs[1:]
        for step in range(1, max_new):
            ids[0, 0] = token
            pos[0, 0] = n + step - 1
            binding.bind_cpu_input("attention_mask", mask[:, : n + step])
            for name, value in zip(io["pasts"], presents, strict=True):
                binding.bind_ortvalue_input(name, value)
            for name in io["presents"]:
                binding.bind_output(name, "cpu")
            session.run_with_iobinding(binding)
            presents = binding.get_outputs()[1:]
            token = yield logits[0, -1]

    def bind_prefill(self, binding: Any, tokens: list[int], mask: np.ndarray) -> None:
        """The whole prompt in one call, from an empty KV cache."""
        io, n = self.io, len(tokens)
        binding.bind_cpu_input("input_ids", np.asarray([tokens], dtype=np.int64))
        binding.bind_cpu_input("attention_mask", mask)
        if io["position_ids"]:
            binding.bind_cpu_input("position_ids", np.arange(n, dtype=np.int64)[None])
        if io["use_cache_branch"]:
            binding.bind_cpu_input("use_cache_branch", np.zeros(1, dtype=np.bool_))
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype)
        for name in io["pasts"]:
            binding.bind_cpu_input(name, empty)
        for name in ["logits", *io["presents"]]:
            binding.bind_output(name, "cpu")

    # --- several requests in one batch (onnx_batch.py) --------------------------------------
    batches: ClassVar[bool] = True

    def check_concurrency(self, requests: Sequence[Request], concurrency: int) -> dict[str, Any]:
        """The KV cache `concurrency` rows of these requests take, against `ctx` (a budget the
        rows share, as on llama.cpp) and the export's positions; from the vocabulary alone."""
        from edgeprof.backends.batching import batch_jobs
        from edgeprof.backends.onnx_batch import check_rows_fit, kv_bytes_per_token
        from edgeprof.models.tokens import prompt_given

        self._check_batchable()
        jobs = batch_jobs(self.tokenizer_path, requests, prompt_given(self.settings))
        cells = check_rows_fit(jobs, concurrency, self.options.ctx, self._max_positions())
        heads, head_dim = self._kv_dims()
        itemsize = 2 if self.io["elem_type"] == FLOAT16 else 4
        per_token = kv_bytes_per_token(len(self.io["pasts"]), heads, head_dim, itemsize)
        # allocated as needed (the longest request per row), not `ctx`
        return {"kv_cache": {"sequences": concurrency, "cells": cells, "cells_needed": cells,
                             "bytes": per_token * cells}}  # fmt: skip

    def serve(self, requests: Sequence[Request], concurrency: int) -> Iterator[Any]:
        from edgeprof.backends.batching import BatchJob
        from edgeprof.backends.onnx_batch import OnnxBatchDecoder, check_rows_fit
        from edgeprof.models.tokens import prompt_tokens

        self._check_batchable()
        if any(r.temperature != 0 for r in requests):
            raise UsageError("the onnx backend decodes greedily; run with temperature 0")
        jobs = [BatchJob(r, prompt_tokens(self._vocab, r.messages, self._fmt), r.max_tokens)
                for r in requests]  # fmt: skip
        check_rows_fit(jobs, concurrency, self.options.ctx, self._max_positions())
        decoder = OnnxBatchDecoder(self, concurrency, signals=self.settings.signals)
        for result in decoder.serve(jobs):
            yield result.key, result

    def _check_batchable(self) -> None:
        if not self.io["gqa"]:
            raise UsageError(
                f"{self.path.name} has no GroupQueryAttention, so its rows cannot be batched; "
                "use `concurrency` 1, or an `edgeprof convert` export of the model"
            )

    def _max_positions(self) -> int:
        return int(self.config.get("max_positions") or 1 << 31)

    @property
    def session(self) -> Any:
        if self._session is None:
            raise RuntimeError("load() first")
        return self._session

    @property
    def eog(self) -> frozenset[int]:
        return self._eog

    def detokenize(self, token: int) -> bytes:
        return bytes(self._vocab.detokenize([token]))

    def close(self) -> None:
        self._session = None
        if self._vocab is not None:
            self._vocab.close()
            self._vocab = None
