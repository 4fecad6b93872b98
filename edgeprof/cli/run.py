"""`edgeprof run`: profile one backend on a prompt suite."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from edgeprof.backends import backend_names
from edgeprof.cli.app import app, err, out
from edgeprof.cli.prompt_options import (
    CHAT_TEMPLATE_HELP,
    RAW_HELP,
    format_warning,
    prompt_settings,
)
from edgeprof.cli.report import print_servers
from edgeprof.samplers import sampler_sources


@app.command("run")
def run_command(
    backend: str = typer.Option("llamacpp", help=f"One of: {', '.join(backend_names())}."),
    model: str | None = typer.Option(
        None, help="Model file (GGUF/ONNX) or endpoint model name. Default: the demo model."
    ),
    prompts: str | None = typer.Option(
        None,
        help="A bundled suite (default, tasks) or a file: JSONL, promptfooconfig.yaml, OpenAI "
        "evals JSONL (FILE#fuzzy to choose its matching). Checks are graded after the run.",
    ),
    repetitions: int = typer.Option(
        3, help="Measured passes over the suite (with --target-ci: the least)."
    ),
    duration: str | None = typer.Option(
        None,
        help="A soak: repeat the suite until this much time is up (10m, 90s, 1h), to see "
        "what the device sustains once warm (`report --plot` draws it over time).",
    ),
    target_ci: str | None = typer.Option(
        None,
        help="Repeat the suite until the 95% intervals of decode tok/s and J/token are this "
        "narrow, e.g. 3% (at most --max-repetitions passes).",
    ),
    max_repetitions: int = typer.Option(30, help="With --target-ci: the most passes."),
    warmup: int = typer.Option(1, help="Warm-up requests, recorded but not counted."),
    max_tokens: int = typer.Option(128, help="Tokens to generate per request (greedy)."),
    threads: int | None = typer.Option(None, help="CPU threads (default: all cores)."),
    ctx: int = typer.Option(4096, help="Context size in tokens."),
    hz: float = typer.Option(10.0, help="Sensor sampling rate."),
    db: Path | None = typer.Option(
        None, help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    label: str | None = typer.Option(None, help="A label stored with the run."),
    note: list[str] | None = typer.Option(
        None,
        "--note",
        metavar="KEY=VALUE",
        help="What changes results and no sensor reads, stored with the run (repeatable): "
        "--note cooling=passive --note case=open.",
    ),
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
    on_device: bool = typer.Option(
        False,
        "--on-device",
        help="HTTP backends: the server runs on this machine, reached through a non-loopback "
        "address: profile it as a device target (energy, memory). A loopback --base-url is "
        "one already.",
    ),
    remote: bool = typer.Option(
        False, "--remote", help="HTTP backends: treat a server on loopback as remote."
    ),
    concurrency: str = typer.Option(
        "1",
        help="Requests at once: llamacpp decodes them together in one batch, a cloud backend "
        "sends them in parallel. Several levels (1,2,4,8) make one run each and the "
        "throughput curve.",
    ),
    plot: Path | None = typer.Option(
        None, help="With several --concurrency levels: write the throughput curve here (PNG)."
    ),
    system_prompt: Path | None = typer.Option(
        None,
        help="A shared system prompt for every request (replacing the suite's): with "
        "--keep-cache llama.cpp keeps its KV state between requests, as a feature would.",
    ),
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
    chat_template: str | None = typer.Option(
        None, "--chat-template", metavar="NAME|FILE", help=CHAT_TEMPLATE_HELP
    ),
    raw: bool = typer.Option(False, "--raw", help=RAW_HELP),
    in_process: bool = typer.Option(
        False,
        "--in-process",
        help="Run llama.cpp or ONNX Runtime in this process, not in a worker process of its "
        "own: for debugging (a crash of the model then ends edgeprof too; its memory is "
        "counted with edgeprof's). EDGEPROF_IN_PROCESS=1 does the same for every command.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Profile a model on this device (or a cloud endpoint) into the profile database.

    A local server (Ollama: --backend ollama; llama-server, LM Studio, vLLM: --backend openai
    --base-url http://127.0.0.1:PORT/v1) is profiled as a device target: energy attributed,
    the serving process's memory sampled."""
    from edgeprof.analysis.server_side import local_servers
    from edgeprof.analysis.summary import summarize_run
    from edgeprof.backends import backend_class
    from edgeprof.backends.settings import settings_from_strings
    from edgeprof.errors import UsageError
    from edgeprof.measure.runner import RunConfig
    from edgeprof.store import open_store

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
    settings.update(prompt_settings(backend, chat_template, raw, settings))
    for key, value in [
        ("base_url", base_url), ("api_key_env", api_key_env), ("tokenizer", tokenizer),
        ("price_in_usd_per_m", price_in), ("price_out_usd_per_m", price_out),
    ]:  # fmt: skip
        if value is not None:
            settings[key] = value
    _placement(backend, settings, on_device, remote)
    if providers is not None:  # ONNX Runtime's execution providers (docs/onnx.md)
        if backend != "onnx":
            raise UsageError(f"--provider is for --backend onnx, not {backend}; drop --provider")
        settings["providers"] = providers
    if (price_in is None) != (price_out is None):
        raise UsageError("give both --price-in and --price-out, or neither")
    from edgeprof.measure.workload import load_system_prompt

    system = load_system_prompt(system_prompt) if system_prompt else None
    from edgeprof.measure.passes import parse_duration_s, parse_share

    duration_s = parse_duration_s(duration) if duration is not None else None
    ci = parse_share(target_ci) if target_ci is not None else None
    notes = parse_notes(note or [])
    levels = parse_levels(concurrency)
    if plot is not None and len(levels) < 2:
        raise UsageError("--plot draws the curve over several --concurrency levels, e.g. 1,2,4,8")
    configs = [
        RunConfig(
            backend=backend, model=model, prompts=prompts, repetitions=repetitions,
            warmup=warmup, max_tokens=max_tokens, threads=threads, ctx=ctx, hz=hz, db=db,
            label=label, tdp_w=tdp_w, sensors=_split(sensors), idle_seconds=idle_seconds,
            keep_cache=keep_cache, seed=seed, concurrency=n, settings=settings,
            system_prompt=system, duration_s=duration_s, target_ci=ci,
            max_repetitions=max_repetitions, notes=notes, in_process=in_process,
        )
        for n in levels
    ]  # fmt: skip
    # said as the run starts (every input checked by then), before the model loads
    intro = (lambda: _announce_format(model, settings)) if backend == "llamacpp" else None
    run_ids, db_path = _profile_each(configs, intro)
    with open_store(db_path) as store:
        summaries = [summarize_run(store, r) for r in run_ids]
        servers = local_servers(store, run_ids) if not as_json else {}
    if len(levels) > 1:
        _curve(summaries, plot, as_json)
        return
    _print_run(summaries[0], as_json)
    print_servers(servers, err)


def _placement(backend: str, settings: dict[str, Any], on_device: bool, remote: bool) -> None:
    """--on-device / --remote into an HTTP backend's `on_device` setting."""
    import dataclasses

    from edgeprof.backends import backend_class
    from edgeprof.backends.local_server import check_on_device_flags
    from edgeprof.errors import UsageError

    value = check_on_device_flags(on_device, remote)
    if value is None:
        return
    fields = backend_class(backend).Settings
    if not any(f.name == "on_device" for f in dataclasses.fields(fields)):
        raise UsageError(
            f"--on-device and --remote are for the HTTP backends (openai, ollama), not {backend}"
        )
    settings["on_device"] = value


def _announce_format(model: str | None, settings: dict[str, Any]) -> None:
    """The prompt format, and a loud warning for a maybe-base model, before the model loads."""
    from rich.markup import escape

    from edgeprof.errors import EdgeprofError

    try:
        described, warning = format_warning(model, settings)
    except (EdgeprofError, ValueError):  # the load itself says what is wrong with the file
        return
    err.print(f"prompt format: {escape(described)}", highlight=False)
    if warning:
        err.print(f"[bold red]warning:[/] {escape(warning)}", highlight=False)


def _print_run(summary: Any, as_json: bool) -> None:
    run_id = summary.run_id
    if as_json:
        out.print_json(json.dumps(summary.to_dict(), default=str))
    else:
        from edgeprof.cli.render import print_warnings, run_notes, runs_table

        err.print(runs_table([summary], title=f"run {run_id}", width=err.width))
        print_warnings(err, [summary])
        for note in run_notes([summary]):
            err.print(f"note: {note}", highlight=False)
        if summary.energy_estimated:
            err.print(
                "[yellow]energy is estimated[/yellow] (no power sensor was readable): "
                "see `edgeprof probe`; pass --tdp-w to refine the estimate"
            )


def _profile_each(
    configs: list[Any], intro: Callable[[], None] | None = None
) -> tuple[list[str], Path | None]:
    """One run per config, each with its live progress; every bad input first. `intro` is
    called once, as the first run starts."""
    from edgeprof.measure.runner import profile

    for c in configs:
        c.validate()  # every level's bad input before the first run starts
    run_ids: list[str] = []
    db_path = configs[0].db
    for config in configs:
        live = _LiveProgress(intro if not run_ids else None)
        try:
            with live:
                run_ids.append(profile(config, on_progress=live.update))
        except KeyboardInterrupt:
            kept = f"run {live.run_id} kept as aborted with {live.done} requests"
            done = f"; finished: {', '.join(run_ids)}" if run_ids else ""
            err.print(f"edgeprof: interrupted; {kept if live.run_id else ''}".rstrip("; ") + done)
            raise typer.Exit(130) from None
        db_path = live.db_path or config.db
    return run_ids, db_path


def parse_notes(pairs: list[str]) -> dict[str, str]:
    """`--note KEY=VALUE`, repeatable, into a mapping; a key given twice is a mistake."""
    from edgeprof.errors import UsageError

    notes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--note takes KEY=VALUE, e.g. --note cooling=passive (got {pair!r})")
        if key in notes:
            raise UsageError(f"--note {key} is given twice; give each key once")
        notes[key] = value.strip()
    return notes


def parse_levels(value: str) -> list[int]:
    """`--concurrency` 4 or 1,2,4,8: the levels, each once, in the order given."""
    from edgeprof.errors import UsageError

    try:
        levels = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        levels = []
    if not levels or any(n < 1 for n in levels):
        raise UsageError(
            f"--concurrency takes counts of 1 or more, e.g. 4 or 1,2,4,8 (got {value!r})"
        )
    return list(dict.fromkeys(levels))


def _curve(summaries: list[Any], plot: Path | None, as_json: bool) -> None:
    """The throughput/latency curve over the concurrency levels, one run each."""
    from edgeprof.report.plots import concurrency_points, plot_concurrency

    points = concurrency_points(summaries)
    if plot is not None:
        plot_concurrency(points, plot)
        err.print(f"wrote {plot}")
    if as_json:
        print(json.dumps([p.__dict__ for p in points], indent=2))
        return
    from rich.table import Table

    from edgeprof.report.formatting import DASH

    def num(v: float | None, fmt: str) -> str:
        return DASH if v is None else format(v, fmt)

    table = Table(title="throughput against concurrency", title_justify="left")
    for head in ("concurrency", "run", "aggregate tok/s", "× N=1", "requests/s",
                 "decode tok/s per request", "TTFT p95 s", "J/token"):  # fmt: skip
        table.add_column(head, justify="right")
    base = points[0].aggregate_tps
    for p in points:
        ratio = p.aggregate_tps / base if p.aggregate_tps and base else None
        table.add_row(
            str(p.concurrency), p.run_id[-8:], num(p.aggregate_tps, ".1f"), num(ratio, ".2f"),
            num(p.requests_per_s, ".2f"), num(p.decode_tps, ".1f"), num(p.ttft_p95_s, ".3f"),
            num(p.j_per_output_token, ".3f") + (" est." if p.energy_estimated else ""),
        )  # fmt: skip
    out.print(table)


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

    def __init__(self, intro: Callable[[], None] | None = None) -> None:
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
        self.intro = intro  # lines to print above the bar, once the run has started

    def __enter__(self) -> _LiveProgress:
        return self  # the bar appears with the first update: bad input fails before any bar

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def update(self, p: Any) -> None:
        if not self.progress.live.is_started:
            if self.intro is not None and p.phase == "start":
                self.intro()
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
            if p.detail:
                fields["rate"] += f"  {p.detail}"
        self.progress.update(self.task, **fields)
