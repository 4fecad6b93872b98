"""`edgeprof run`: profile one backend on a prompt suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgeprof.backends import backend_names
from edgeprof.cli.app import app, err, out
from edgeprof.samplers import sampler_sources


@app.command("run")
def run_command(
    backend: str = typer.Option("llamacpp", help=f"One of: {', '.join(backend_names())}."),
    model: str | None = typer.Option(
        None, help="Model file (GGUF/ONNX) or endpoint model name. Default: the demo model."
    ),
    prompts: str | None = typer.Option(
        None, help="A bundled suite name (default) or a .jsonl file of prompts."
    ),
    repetitions: int = typer.Option(3, help="Measured passes over the suite."),
    warmup: int = typer.Option(1, help="Warm-up requests, recorded but not counted."),
    max_tokens: int = typer.Option(128, help="Tokens to generate per request (greedy)."),
    threads: int | None = typer.Option(None, help="CPU threads (default: all cores)."),
    ctx: int = typer.Option(4096, help="Context size in tokens."),
    hz: float = typer.Option(10.0, help="Sensor sampling rate."),
    db: Path | None = typer.Option(
        None, help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    label: str | None = typer.Option(None, help="A label stored with the run."),
    tdp_w: float | None = typer.Option(
        None, help="CPU TDP in watts for the power estimate on devices without sensors."
    ),
    sensors: str | None = typer.Option(
        None,
        help=f"Comma-separated power sources to use: {', '.join(sampler_sources('power'))} "
        "(see `edgeprof probe`).",
    ),
    idle_seconds: float = typer.Option(3.0, help="Idle baseline before loading the model."),
    keep_cache: bool = typer.Option(
        False, help="Let llama.cpp reuse a cached prompt prefix between requests."
    ),
    seed: int = typer.Option(0, help="Sampling seed."),
    tokenizer: Path | None = typer.Option(
        None,
        help="A GGUF whose tokenizer counts tokens: for an ONNX decoder without edgeprof's "
        "files, or a cloud endpoint that reports no usage (a llama.cpp server of that file).",
    ),
    base_url: str | None = typer.Option(None, help="Cloud backends: the API's base URL."),
    api_key_env: str | None = typer.Option(
        None, help="Cloud backends: the environment variable holding the API key."
    ),
    concurrency: int = typer.Option(1, help="Requests in flight at once (cloud backends)."),
    price_in: float | None = typer.Option(None, help="Override: input price, USD per 1M tokens."),
    price_out: float | None = typer.Option(None, help="Override: output price, USD per 1M tokens."),
    providers: str | None = typer.Option(
        None,
        "--provider",
        help="ONNX Runtime execution providers in priority order, NAME[,NAME...]: cpu, cuda, "
        "tensorrt, coreml, dml, openvino, qnn, xnnpack, rocm, webgpu. Default: the best this "
        "onnxruntime build has for the export (`edgeprof probe` lists them).",
    ),
    gpu_layers: str | None = typer.Option(
        None,
        metavar="N|all",
        help="llamacpp: layers to offload to the GPU (default: all where this llama.cpp can "
        "offload, else 0).",
    ),
    flash_attn: bool | None = typer.Option(
        None, "--flash-attn/--no-flash-attn", help="llamacpp: flash attention (default: off)."
    ),
    batch: int | None = typer.Option(
        None, help="llamacpp: logical batch, prompt tokens per decode call (default 512)."
    ),
    ubatch: int | None = typer.Option(
        None, help="llamacpp: physical batch, at most --batch (default 512)."
    ),
    split_mode: str | None = typer.Option(
        None, help="llamacpp: split across GPUs by none, layer (default) or row."
    ),
    main_gpu: int | None = typer.Option(
        None, help="llamacpp: the GPU for the whole model (split none) or small tensors (row)."
    ),
    set_: list[str] | None = typer.Option(
        None,
        "--set",
        help="A backend setting, NAME=VALUE (repeatable): e.g. --set n_batch=256 for llamacpp.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Profile a model on this device (or a cloud endpoint) into the profile database."""
    from edgeprof.backends import backend_class
    from edgeprof.backends.settings import settings_from_strings
    from edgeprof.errors import UsageError
    from edgeprof.runner import RunConfig, profile
    from edgeprof.store import open_store
    from edgeprof.summary import summarize_run

    settings: dict[str, Any] = settings_from_strings(
        backend_class(backend).Settings, set_ or [], owner=f"the {backend} backend"
    )
    settings.update(
        _llamacpp_flags(
            backend, settings,
            {"gpu_layers": gpu_layers, "flash_attn": flash_attn, "batch": batch,
             "ubatch": ubatch, "split_mode": split_mode, "main_gpu": main_gpu},
        )
    )  # fmt: skip
    for key, value in [
        ("base_url", base_url), ("api_key_env", api_key_env), ("tokenizer", tokenizer),
        ("price_in_usd_per_m", price_in), ("price_out_usd_per_m", price_out),
    ]:  # fmt: skip
        if value is not None:
            settings[key] = value
    if providers is not None:  # ONNX Runtime's execution providers (docs/onnx.md)
        if backend != "onnx":
            raise UsageError(f"--provider is for --backend onnx, not {backend}; drop --provider")
        settings["providers"] = providers
    if (price_in is None) != (price_out is None):
        raise UsageError("give both --price-in and --price-out, or neither")
    config = RunConfig(
        backend=backend, model=model, prompts=prompts, repetitions=repetitions, warmup=warmup,
        max_tokens=max_tokens, threads=threads, ctx=ctx, hz=hz, db=db, label=label,
        tdp_w=tdp_w, sensors=_split(sensors),
        idle_seconds=idle_seconds, keep_cache=keep_cache, seed=seed, concurrency=concurrency,
        settings=settings,
    )  # fmt: skip
    live = _LiveProgress()
    try:
        with live:
            run_id = profile(config, on_progress=live.update)
    except KeyboardInterrupt:
        kept = f"run {live.run_id} kept as aborted with {live.done} requests" if live.run_id else ""
        err.print(f"edgeprof: interrupted; {kept}".rstrip("; "))
        raise typer.Exit(130) from None
    with open_store(live.db_path or config.db) as store:
        summary = summarize_run(store, run_id)
    if as_json:
        out.print_json(json.dumps(summary.to_dict(), default=str))
    else:
        from edgeprof.cli.render import run_notes, runs_table

        err.print(runs_table([summary], title=f"run {run_id}", width=err.width))
        for note in run_notes([summary]):
            err.print(f"note: {note}", highlight=False)
        if summary.energy_estimated:
            err.print(
                "[yellow]energy is estimated[/yellow] (no power sensor was readable): "
                "see `edgeprof probe`; pass --tdp-w to refine the estimate"
            )


# The typed flags that fill llamacpp settings, as `--set NAME=VALUE` would: flag -> setting.
LLAMACPP_FLAGS = {
    "gpu_layers": "n_gpu_layers",
    "flash_attn": "flash_attn",
    "batch": "n_batch",
    "ubatch": "n_ubatch",
    "split_mode": "split_mode",
    "main_gpu": "main_gpu",
}


def _llamacpp_flags(
    backend: str, from_set: dict[str, Any], flags: dict[str, Any]
) -> dict[str, Any]:
    """The settings the llamacpp flags give; refused for another backend, and where `--set`
    names the same setting (which of the two should win is anyone's guess)."""
    from edgeprof.backends import backend_class
    from edgeprof.backends.llamacpp import LlamaCppSettings
    from edgeprof.backends.settings import settings_from_strings
    from edgeprof.errors import UsageError

    given = {flag: value for flag, value in flags.items() if value is not None}
    if given and not issubclass(backend_class(backend).Settings, LlamaCppSettings):
        names = ", ".join(f"`{flag}`" for flag in given)
        verb, it = ("applies", "it") if len(given) == 1 else ("apply", "them")
        raise UsageError(f"{names} only {verb} to the llamacpp backend, not {backend}; drop {it}")
    out: dict[str, Any] = {}
    for flag, value in given.items():
        name = LLAMACPP_FLAGS[flag]
        if name in from_set:
            raise UsageError(f"`{flag}` and --set {name} both set {name}; give one of them")
        out[name] = value
    if "n_gpu_layers" in out:  # "7" -> 7; "all" stays text
        pair = f"n_gpu_layers={out['n_gpu_layers']}"
        out.update(settings_from_strings(LlamaCppSettings, [pair], owner="llamacpp"))
    return out


def _split(csv: str | None) -> list[str] | None:
    return [s.strip() for s in csv.split(",") if s.strip()] if csv else None


class _LiveProgress:
    """A rich progress bar on stderr: request i of n and the latest decode tok/s."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.task = self.progress.add_task("starting", total=None, rate="")
        self.run_id: str | None = None
        self.db_path: str | None = None
        self.done = 0

    def __enter__(self) -> _LiveProgress:
        return self  # the bar appears with the first update: bad input fails before any bar

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def update(self, p: Any) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        if p.phase == "start" and p.row:
            self.run_id, self.db_path = p.row["run_id"], p.row["db"]
            return
        labels = {"idle": "idle baseline", "load": "loading model", "warmup": "warm-up",
                  "measure": "measuring", "done": "done"}  # fmt: skip
        fields: dict[str, Any] = {"description": labels.get(p.phase, p.phase)}
        if p.total:
            fields.update(total=p.total, completed=p.done)
        if p.row:
            self.done += 1
            tps = p.row.get("decode_tps")
            fields["rate"] = f"{tps:,.1f} tok/s" if tps else ""
        self.progress.update(self.task, **fields)
