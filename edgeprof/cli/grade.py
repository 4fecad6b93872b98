"""`edgeprof grade`: grade stored answers again (new expectations, a judge), never re-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgeprof.cli.app import app, err, out


@app.command("grade")
def grade_command(
    runs: list[str] | None = typer.Argument(
        None, help="Run ids or unique prefixes (default: every run whose suite has expectations)."
    ),
    db: Path | None = typer.Option(
        None, help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    prompts: str | None = typer.Option(
        None,
        help="New expectations for the runs' prompts: a suite (JSONL, promptfooconfig.yaml, "
        "OpenAI evals JSONL) holding the same prompts; stored, then every answer re-graded.",
    ),
    judge: list[str] | None = typer.Option(
        None,
        "--judge",
        help="A judge for llm-rubric checks (repeatable): BACKEND:MODEL (openai:NAME with "
        "--base-url) or a .gguf file. Its tokens, cost and time are a run of its own.",
    ),
    against: str | None = typer.Option(
        None,
        help="Pairwise: the judge compares each answer with this run's answer to the same "
        "prompt, in both orders (a verdict that flips is a tie): win / tie / loss.",
    ),
    base_url: str | None = typer.Option(None, help="Cloud judges: the API's base URL."),
    api_key_env: str | None = typer.Option(
        None, help="Cloud judges: the environment variable holding the API key."
    ),
    price_in: float | None = typer.Option(
        None, help="Cloud judges not in the price list: input USD per 1M tokens."
    ),
    price_out: float | None = typer.Option(
        None, help="Cloud judges not in the price list: output USD per 1M tokens."
    ),
    threads: int | None = typer.Option(None, help="Local judges: CPU threads."),
    as_json: bool = typer.Option(False, "--json", help="Print what was graded as JSON."),
) -> None:
    """Grade stored answers: deterministic checks always, llm-rubric and pairwise with --judge."""
    from edgeprof.errors import ProfileDBError, UsageError
    from edgeprof.grading.grade_runs import gradable_run_ids, grade_rules
    from edgeprof.grading.judges import parse_judge
    from edgeprof.store import open_store
    from edgeprof.store.db import default_db_path

    path = db or default_db_path()
    if not path.exists():
        raise ProfileDBError(f"{path} does not exist; create it with `edgeprof run --db {path}`")
    given = (("base_url", base_url), ("api_key_env", api_key_env),
             ("price_in_usd_per_m", price_in), ("price_out_usd_per_m", price_out))  # fmt: skip
    settings = {k: v for k, v in given if v is not None}
    judges = [parse_judge(j, settings) for j in judge or []]
    if against and not judges:
        raise UsageError("`against` needs a `judge` to compare the answers")
    suite = None
    if prompts is not None:
        from edgeprof.measure.workload import load_suite

        suite = load_suite(prompts)
    report: dict[str, Any] = {"runs": [], "judges": []}
    with open_store(path) as store:
        run_ids = [store.resolve_run_id(r) for r in runs] if runs else gradable_run_ids(store)
        if not run_ids:
            raise UsageError(
                f"{path} holds no run of a suite with expectations; run one with "
                "`edgeprof run --prompts tasks`"
            )
        for run_id in run_ids:
            done = grade_rules(store, run_id, suite)
            report["runs"].append(done.__dict__)
        for j in judges:
            report["judges"] += _judge(store, run_ids, j, against, threads)
        report["agreement"] = _agreement(store, report["judges"])
    _print(report, as_json)


def _agreement(store: Any, judged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """With two judges or more: each pair's share of identical verdicts and Cohen's κ."""
    import itertools

    from edgeprof.grading.judges import judge_agreement

    out = []
    for kind in ("llm-rubric", "pairwise"):
        runs = [(j["judge"], j["judge_run_id"]) for j in judged if j["kind"] == kind]
        for (name_a, a), (name_b, b) in itertools.combinations(runs, 2):
            agreed = judge_agreement(store, a, b)
            out.append({"kind": kind, "judge_a": name_a, "judge_b": name_b,
                        **agreed.__dict__})  # fmt: skip
    return out


def _judge(store: Any, run_ids: list[str], judge: Any, against: str | None, threads: int | None
           ) -> list[dict[str, Any]]:  # fmt: skip
    from edgeprof.cli.run import _LiveProgress
    from edgeprof.grading.judges import judge_pairwise, judge_rubrics

    done = []
    err.print(f"judging with {judge.label}…", highlight=False)
    with _LiveProgress() as live:  # the judge's questions are a run: its progress bar
        result = judge_rubrics(store, run_ids, judge, threads, live.update)
    if result is not None:
        done.append({"judge": judge.label, "kind": "llm-rubric", **result.__dict__})
    if against:
        other = store.resolve_run_id(against)
        for run_id in run_ids:
            with _LiveProgress() as live:
                pair = judge_pairwise(store, run_id, other, judge, threads, live.update)
            done.append({"judge": judge.label, "kind": "pairwise", "run_id": run_id,
                         "against": other, **pair.__dict__})  # fmt: skip
    return done


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(report))
        return
    for r in report["runs"]:
        left = f", {r['judged_checks']} llm-rubric checks left for --judge" if r[
            "judged_checks"
        ] else ""  # fmt: skip
        out.print(
            f"run {r['run_id']}: {r['answers']} answers, {r['grades']} rule grades{left}",
            highlight=False,
        )
    for j in report["judges"]:
        out.print(
            f"judge {j['judge']} ({j['kind']}): {j['grades']} grades, {j['failures']} judge "
            f"failures, its run {j['judge_run_id']}",
            highlight=False,
        )
    for a in report["agreement"]:
        share = "–" if a["share"] is None else f"{a['share']:.0%}"
        kappa = "–" if a["kappa"] is None else f"{a['kappa']:.2f}"
        out.print(
            f"{a['judge_a']} and {a['judge_b']} ({a['kind']}): {share} identical verdicts, "
            f"Cohen's κ {kappa}, n={a['n']}",
            highlight=False,
        )
    out.print("see `edgeprof report` for pass rates", highlight=False)
