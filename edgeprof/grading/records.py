"""Expectations and grades in the profile database (tables from migration m008).

Expectations are stored per (suite, prompt) beside the prompt; grades per (request,
assertion, grader). Writing a request's grades from one grader replaces that grader's earlier
ones in one transaction, so grading twice stores one set of grades.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from edgeprof.grading.assertions import make_assertions
from edgeprof.grading.grades import Expectations, Grade
from edgeprof.measure.prompt import Prompt
from edgeprof.store.db import Store


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def save_expectations(store: Store, prompts: Iterable[Prompt], suite: str | None = None) -> int:
    """Store (replace) the expectations of prompts that carry any, under `suite` (default:
    each prompt's own). Returns how many were stored."""
    now = _now_iso()
    rows = [
        {
            "id": f"{suite or p.suite}:{p.id}",
            "suite": suite or p.suite,
            "prompt_id": p.id,
            "kind": p.kind,
            "reference": p.reference,
            "threshold": p.threshold,
            "assertions": json.dumps([a.to_json() for a in p.assertions], ensure_ascii=False),
            "sha256": p.expectations_sha256(),
            "updated_at": now,
        }
        for p in prompts
        if p.assertions
    ]
    if rows:
        with store.db.conn:
            store.db.table("expectations").upsert_all(rows, pk="id")
    return len(rows)


def load_expectations(store: Store, suite: str) -> dict[str, Expectations]:
    """The stored expectations of a suite, by prompt id."""
    out = {}
    for r in store.db.table("expectations").rows_where("suite = ?", [suite]):
        where = f"stored expectations of prompt {str(r['prompt_id'])[:8]}"
        out[str(r["prompt_id"])] = Expectations(
            prompt_id=str(r["prompt_id"]),
            suite=str(r["suite"]),
            kind=r["kind"],
            reference=r["reference"],
            threshold=r["threshold"],
            assertions=make_assertions(json.loads(r["assertions"] or "[]"), where),
            sha256=str(r["sha256"]),
        )
    return out


def replace_grades(
    store: Store,
    request_ids: Sequence[str],
    graders: Sequence[str],
    grades: Iterable[Grade],
    *,
    pairwise: bool = False,
) -> int:
    """Delete the grades of `request_ids` by any of `graders` (rule, or the earlier runs of
    one judge), of checks or (`pairwise`) of comparisons, then insert `grades`: one
    transaction."""
    scope = "assertion_index < 0" if pairwise else "assertion_index >= 0"
    now = _now_iso()
    rows = [g.row(now) for g in grades]
    conn = store.db.conn
    with conn:
        for start in range(0, len(request_ids), 500):
            chunk = list(request_ids[start : start + 500])
            marks = ",".join("?" for _ in chunk)
            gmarks = ",".join("?" for _ in graders)
            conn.execute(
                f"DELETE FROM grades WHERE request_id IN ({marks}) AND grader IN ({gmarks}) "
                f"AND {scope}",
                [*chunk, *graders],
            )
        if rows:
            store.db.table("grades").insert_all(rows, pk="id", replace=True)
    return len(rows)


def grades_of_runs(store: Store, run_ids: Sequence[str]) -> list[Grade]:
    if not run_ids:
        return []
    marks = ",".join("?" for _ in run_ids)
    rows = store.db.execute(
        f"SELECT run_id, request_id, prompt_id, assertion_index, assertion_type, grader, passed, "
        f"score, reason, judge_failed, against_request_id, expectations_sha256 FROM grades "
        f"WHERE run_id IN ({marks}) ORDER BY run_id, request_id, assertion_index, grader",
        list(run_ids),
    ).fetchall()
    return [
        Grade(
            str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]), bool(r[6]),
            float(r[7] or 0.0), str(r[8] or ""), bool(r[9]), str(r[10] or ""), r[11],
        )
        for r in rows
    ]  # fmt: skip
