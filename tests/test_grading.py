"""Grading stored answers: at the end of `run`, again with `grade` (idempotent, new
expectations re-grade without re-running), judges, and what `report` shows. Fixed answers
from the `canned` backend (tests/canned.py), no model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import tests.canned
from edgeprof.grading.grade_runs import quality_of_runs
from edgeprof.store import open_store
from tests.builders import cli, write_prompts

SUITE: list[dict[str, Any]] = [
    {"name": "capital", "kind": "qa", "prompt": "Capital of France?",
     "assert": [{"type": "icontains", "value": "Paris"}]},
    {"name": "sum", "kind": "math", "prompt": "2+2?",
     "assert": [{"type": "number", "value": 4}]},
    {"name": "mood", "kind": "classify", "prompt": "Sentiment: I love it.",
     "assert": [{"type": "choice", "value": "positive", "labels": ["positive", "negative"]}]},
    {"name": "summary", "kind": "summarize", "prompt": "Summarize: the cat sat.",
     "assert": [{"type": "llm-rubric", "value": "mentions the cat"},
                {"type": "max-words", "value": 10}]},
]  # fmt: skip
ANSWERS = {
    "Capital of France?": "It is Paris.",
    "2+2?": "5",
    "Sentiment: I love it.": "Positive.",
    "Summarize: the cat sat.": "A cat sat down.",
}
RUN_FLAGS = ("--repetitions", "2", "--warmup", "0", "--idle-seconds", "0", "--max-tokens", "16")


def _run(tmp_path: Path, db: Path, backend: str = "canned", answers: dict[str, str] = ANSWERS,
         suite: list[dict[str, Any]] = SUITE) -> str:  # fmt: skip
    prompts = write_prompts(tmp_path / "mine.jsonl", suite)
    table = tmp_path / f"answers-{backend}.json"
    table.write_text(json.dumps(answers))
    done = cli("run", "--backend", backend, "--set", f"answers={table}", "--prompts", prompts,
               "--db", db, *RUN_FLAGS, "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    return str(json.loads(done.stdout)["run_id"])


def _grades(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT request_id, assertion_index, assertion_type, grader, passed, reason "
            "FROM grades ORDER BY request_id, assertion_index"
        ).fetchall()
    finally:
        conn.close()


def test_run_grades_every_answer_and_report_shows_pass_rates(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    run_id = _run(tmp_path, db)
    grades = _grades(db)
    # 2 repetitions × (1 + 1 + 1 + max-words) rule checks; llm-rubric waits for a judge.
    assert len(grades) == 2 * 4
    assert {g[2] for g in grades} == {"icontains", "number", "choice", "max-words"}
    assert all(g[3] == "rule" for g in grades)
    failed = [g for g in grades if not g[4]]
    assert {g[2] for g in failed} == {"number"} and failed[0][5] == "5, expected 4"

    report = cli("report", db, "--json")
    assert report.exit_code == 0, report.stderr
    (row,) = json.loads(report.stdout)
    q = row["task_quality"]
    # 3 of 4 prompts pass (the unjudged rubric leaves max-words to decide "summary").
    assert q["pass_rate"]["n"] == 4 and q["pass_rate"]["rate"] == 0.75
    assert 0.3 < q["pass_rate"]["low"] < 0.75 < q["pass_rate"]["high"] < 1.0
    assert q["per_type"]["number"]["rate"] == 0.0 and q["per_type"]["choice"]["rate"] == 1.0
    assert q["per_kind"]["math"]["rate"] == 0.0 and q["unjudged"] == 2
    assert q["suite"] == "mine" and q["n_answers"] == 8

    table = cli("report", db, "--failures")
    assert table.exit_code == 0, table.stderr
    assert "task quality" in table.stdout and "75% [" in table.stdout
    assert "5, expected 4" in table.stdout and "sum" in table.stdout
    listed = json.loads(cli("report", db, "--json", "--failures").stdout)
    assert [f["prompt"] for f in listed["failures"]] == ["sum", "sum"]
    assert listed["runs"][0]["run_id"] == run_id


def test_grade_is_idempotent_and_new_expectations_regrade_without_rerunning(
    tmp_path: Path,
) -> None:
    db = tmp_path / "p.db"
    run_id = _run(tmp_path, db)
    before = _grades(db)
    for _ in range(2):
        again = cli("grade", "--db", db)
        assert again.exit_code == 0, again.stderr
        assert _grades(db) == before  # one set of grades, whatever the count of gradings
    assert f"run {run_id}: 8 answers, 8 rule grades, 2 llm-rubric checks" in again.stdout
    # The same prompts, "sum" now expecting 5: its answers pass, nothing generated again.
    changed = [dict(p) for p in SUITE]
    changed[1]["assert"] = [{"type": "number", "value": 5}]
    new = write_prompts(tmp_path / "changed.jsonl", changed)
    done = cli("grade", run_id[:10], "--db", db, "--prompts", new)
    assert done.exit_code == 0, done.stderr
    with open_store(db) as store:
        assert store.count("requests") == 8  # no new answers
        q = quality_of_runs(store, [run_id])[run_id]
    assert q.pass_rate is not None and q.pass_rate.rate == 1.0
    assert len(_grades(db)) == len(before)


def test_grade_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    _run(tmp_path, db, suite=[{"prompt": "hi"}])  # no expectations
    done = cli("grade", "--db", db)
    assert done.exit_code == 2 and "no run of a suite with expectations" in done.stderr
    bad = cli("grade", "--db", db, "--judge", "nonsense")
    assert bad.exit_code == 2 and "give BACKEND:MODEL" in bad.stderr
    alone = cli("grade", "--db", db, "--against", "01")
    assert alone.exit_code == 2 and "needs a --judge" in alone.stderr


@pytest.mark.parametrize(
    ("reply", "passed", "failed"),
    [
        ('{"pass": true, "score": 0.9, "reason": "mentions the cat"}', 1, 0),
        ('{"pass": false, "score": 0.1, "reason": "no cat"}', 0, 0),
        ("The answer looks good to me, it passes.", 0, 1),  # prose: a judge failure
        ('{"pass": "yes", "score": 2, "reason": ""}', 0, 1),  # JSON, but not the schema
    ],
)
def test_judge_grades_rubrics_and_a_reply_that_is_no_verdict_is_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reply: str, passed: int, failed: int
) -> None:
    db = tmp_path / "p.db"
    run_id = _run(tmp_path, db)
    tests.canned.CannedBackend.seen.clear()
    monkeypatch.setenv("CANNED_REPLY", reply)
    for _ in range(2):  # judging again with the same judge replaces its grades
        done = cli("grade", "--db", db, "--judge", "canned-remote:judge-model", "--json")
        assert done.exit_code == 0, done.stderr
    # Both repetitions gave the same answer: one distinct question per judging.
    asked = tests.canned.CannedBackend.seen
    assert len(asked) == 2 and asked[0].response_schema is not None
    assert "mentions the cat" in asked[0].messages[-1]["content"]
    assert "A cat sat down." in asked[0].messages[-1]["content"]
    conn = sqlite3.connect(db)
    rubric = conn.execute(
        "SELECT passed, judge_failed, grader, reason FROM grades "
        "WHERE assertion_type = 'llm-rubric'"
    ).fetchall()
    judge_runs = conn.execute(
        "SELECT id, label, status FROM runs WHERE prompt_suite = 'edgeprof-judge' ORDER BY id"
    ).fetchall()
    tokens = conn.execute(
        "SELECT count(*), sum(output_tokens) FROM requests WHERE run_id = ?", [judge_runs[-1][0]]
    ).fetchone()
    conn.close()
    # The judge's own run: its tokens and time recorded like any run's.
    assert len(judge_runs) == 2 and judge_runs[-1][1:] == ("judge canned-remote:judge-model",
                                                           "complete")  # fmt: skip
    assert tokens[0] == 1 and tokens[1] == len(reply.split(" "))
    assert len(rubric) == 2 and {r[2] for r in rubric} == {judge_runs[-1][0]}
    assert all((r[0], r[1]) == (passed, failed) for r in rubric)
    if failed:
        assert "judge failed" in rubric[0][3]
    with open_store(db) as store:
        q = quality_of_runs(store, [run_id])[run_id]
    assert q.judge_failures == 2 * failed and q.unjudged == 0
    assert q.pass_rate is not None and q.pass_rate.rate == (0.75 if passed else 0.5)


def test_two_judges_agreement_and_pairwise_in_both_orders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "p.db"
    device = _run(tmp_path, db)
    better = {**ANSWERS, "2+2?": "4"}
    cloud = _run(tmp_path, db, backend="canned-remote", answers=better)
    yes = '{"pass": true, "score": 1, "reason": "fine"}'
    no = '{"pass": false, "score": 0, "reason": "not fine"}'
    monkeypatch.setenv("CANNED_REPLIES", json.dumps({"kind": yes, "strict": no}))
    done = cli("grade", device, cloud, "--db", db, "--judge", "canned-remote:kind",
               "--judge", "canned-remote:strict", "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert [j["judge"] for j in report["judges"]] == ["canned-remote:kind", "canned-remote:strict"]
    (agreed,) = report["agreement"]
    # 2 runs × 2 repetitions × 1 rubric: the two judges never agree; κ is undefined when each
    # judge gives one verdict throughout (chance agreement 0, observed 0: κ = 0).
    assert agreed["n"] == 4 and agreed["share"] == 0.0 and agreed["kappa"] == 0.0
    # Pairwise: a judge that always prefers answer A prefers whichever comes first: every
    # verdict flips with the order, so every comparison is a tie.
    monkeypatch.setenv("CANNED_REPLIES", json.dumps({"kind": '{"winner": "A", "reason": "x"}'}))
    pair = cli("grade", device, "--db", db, "--judge", "canned-remote:kind", "--against", cloud,
               "--json")  # fmt: skip
    assert pair.exit_code == 0, pair.stderr
    kinds = [j["kind"] for j in json.loads(pair.stdout)["judges"]]
    assert kinds == ["llm-rubric", "pairwise"]
    report = json.loads(cli("report", db, "--json").stdout)
    mine = next(r for r in report if r["run_id"] == device)["task_quality"]
    assert mine["pairwise"] == {"win": 0, "tie": 8, "loss": 0}
    # The rubric grades of the "strict" judge survived the "kind" judge's second judging.
    conn = sqlite3.connect(db)
    graders = conn.execute(
        "SELECT r.label, count(*) FROM grades g JOIN runs r ON r.id = g.grader "
        "WHERE g.assertion_type = 'llm-rubric' GROUP BY r.label ORDER BY r.label"
    ).fetchall()
    conn.close()
    assert graders == [("judge canned-remote:kind", 4), ("judge canned-remote:strict", 4)]


def test_a_judge_that_replies_prose_is_stored_as_judge_failed(
    tmp_path: Path, cloud_server: Any
) -> None:
    """An OpenAI-compatible judge (the tests' own server, which answers " w0 w1 ..." whatever
    it is asked): every rubric grade is a judge failure, none a pass."""
    db = tmp_path / "p.db"
    run_id = _run(tmp_path, db)
    done = cli("grade", run_id, "--db", db, "--judge", "openai:chunks=5", "--base-url",
               cloud_server.base_url, "--price-in", "1", "--price-out", "2")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert "2 grades, 2 judge failures" in done.stdout
    body = next(b for b in cloud_server.bodies if b["model"] == "chunks=5")
    # The judge was asked for the verdict's schema (llama.cpp's servers: json_object + schema).
    assert body["response_format"]["type"] == "json_object"
    assert body["response_format"]["schema"]["required"] == ["pass", "score", "reason"]
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT passed, judge_failed, reason FROM grades WHERE assertion_type = 'llm-rubric'"
    ).fetchall()
    cost = conn.execute(
        "SELECT sum(cost_usd), sum(output_tokens) FROM requests WHERE run_id = "
        "(SELECT id FROM runs WHERE label = 'judge openai:chunks=5')"
    ).fetchone()
    conn.close()
    assert rows and all(r[:2] == (0, 1) for r in rows)
    assert "not a valid JSON verdict: ' w0 w1 w2 w3 w4'" in rows[0][2]
    assert cost[0] > 0 and cost[1] == 5  # the judge's own tokens and cost, as a run
    report = json.loads(cli("report", db, "--json").stdout)
    graded = next(r for r in report if r["run_id"] == run_id)["task_quality"]
    assert graded["judge_failures"] == 2


def test_html_report_has_the_task_quality_section(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    _run(tmp_path, db)
    page = tmp_path / "r.html"
    done = cli("report", db, "--html", page)
    assert done.exit_code == 0, done.stderr
    text = page.read_text()
    section = text[text.index("<h2>Task quality</h2>") :]
    assert "<td>75% [30%–95%]</td><td>4</td>" in section
    assert "number 0%" in section and 'alt="pass rate against J per request' in section
    plain = tmp_path / "plain.db"
    _run(tmp_path, plain, suite=[{"prompt": "hi"}])
    cli("report", plain, "--html", page)
    assert "Task quality" not in page.read_text()  # nothing graded: no section


@pytest.mark.model
def test_a_local_gguf_judge_answers_under_a_grammar(tmp_path: Path) -> None:
    """The demo model judges in process; llama.cpp's grammar holds its reply to the verdict's
    JSON shape, and the schema check decides whether it is a verdict."""
    from edgeprof.grading.verdicts import parse_verdict
    from edgeprof.models.files import demo_model_path

    db = tmp_path / "p.db"
    _run(tmp_path, db)
    done = cli("grade", "--db", db, "--judge", str(demo_model_path()), "--threads", "2")
    assert done.exit_code == 0, done.stderr
    conn = sqlite3.connect(db)
    replies = conn.execute(
        "SELECT r.output_text, g.judge_failed FROM grades g JOIN requests r ON r.run_id = "
        "g.grader WHERE g.assertion_type = 'llm-rubric'"
    ).fetchall()
    label = conn.execute("SELECT backend, label FROM runs WHERE prompt_suite = 'edgeprof-judge'")
    assert label.fetchone() == ("llamacpp", "judge llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf")
    conn.close()
    assert len(replies) == 2
    for text, failed in replies:
        assert set(json.loads(text)) == {"pass", "score", "reason"}  # the grammar held
        assert failed == (parse_verdict(text) is None)
