"""Merging and exporting profile databases, on synthetic rows that follow the schema."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeprof.errors import ProfileDBError, UsageError
from edgeprof.store import Store, migrations
from edgeprof.store.export import export
from edgeprof.store.ids import ulid
from edgeprof.store.share import merge
from tests.builders import add_run, cli, device_row, graded, quality_row

TABLES = ("devices", "prompts", "runs", "requests", "sensors", "samples", "quality",
          "expectations", "grades")  # fmt: skip
HOME = str(Path.home())


def make_db(path: Path, hostname: str, n_runs: int = 2, **run_kw: Any) -> list[str]:
    """Runs on one device, and a quality score for the target of the first."""
    with Store(path) as store:
        dev = device_row(hostname)
        ids = [add_run(store, dev, **run_kw) for _ in range(n_runs)]
        store.insert_quality(quality_row(store.runs([ids[0]])[0], kld_mean=0.02))
        graded(store, ids[0], f"suite-{hostname}")
        return ids


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def rows(path: Path, table: str) -> set[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return set(conn.execute(f"SELECT * FROM {table}"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def two_devices(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "laptop.db", tmp_path / "pi5.db"
    make_db(a, "laptop-7", n_runs=2)
    make_db(b, "pi5-kitchen", n_runs=3, n_samples=25, decode_tps=9.0, power_w=6.0)
    return a, b


def test_merge_two_devices_then_again_adds_nothing(
    two_devices: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_devices
    dest = tmp_path / "all.db"
    seen: list[tuple[int, int]] = []
    result = merge([a, b], dest, progress=lambda _what, done, total: seen.append((done, total)))
    ca, cb, cd = counts(a), counts(b), counts(dest)
    shared_prompts = len(rows(a, "prompts") & rows(b, "prompts"))
    assert shared_prompts == 2
    for table in TABLES:
        expected = ca[table] + cb[table] - (shared_prompts if table == "prompts" else 0)
        assert cd[table] == expected, table
        assert result.added[table] == expected, table
    assert cd["devices"] == 2 and cd["runs"] == 5
    for table in ("samples", "requests", "runs", "sensors", "quality"):
        assert rows(dest, table) == rows(a, table) | rows(b, table)
    assert cd["quality"] == 2
    assert seen and seen[-1][0] == seen[-1][1]  # the bar ends full
    assert all(d1 <= d2 for (d1, _), (d2, _) in itertools.pairwise(seen))

    before = digest(dest)
    again = merge([a, b], dest)
    assert counts(dest) == cd
    assert not again.changed and sum(again.added.values()) == 0
    assert digest(dest) == before  # nothing new: the file is not even rewritten
    with Store(dest) as store:  # still a profile the rest of edgeprof can read
        assert len(store.runs()) == 5


def test_merge_into_existing_destination_and_overlapping_sources(
    two_devices: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_devices
    dest = tmp_path / "mine.db"
    own = make_db(dest, "desktop-3", n_runs=1)
    own_rows = {t: rows(dest, t) for t in TABLES}
    # A colleague's file that already holds a's runs plus one of their own.
    theirs = tmp_path / "theirs.db"
    merge([a], theirs)
    with Store(theirs) as store:
        extra = add_run(store, device_row("laptop-7"), backend="onnx")
    merge([a, theirs, b, a], dest)
    cd = counts(dest)
    assert cd["devices"] == 3
    assert cd["runs"] == 1 + 2 + 1 + 3
    for t in TABLES:
        assert own_rows[t] <= rows(dest, t), t  # nothing of the destination's own was lost
    for t in ("samples", "requests", "sensors", "runs"):
        union = own_rows[t] | rows(a, t) | rows(b, t) | rows(theirs, t)
        assert rows(dest, t) == union and cd[t] == len(union), t
    with Store(dest) as store:
        assert {r["id"] for r in store.runs()} >= {*own, extra}


@pytest.mark.parametrize(
    ("behind", "ahead"),
    [
        ("running", "complete"),
        ("aborted", "complete"),
        ("failed", "complete"),
        ("running", "aborted"),
        ("running", "failed"),
    ],
)
def test_the_copy_of_a_run_that_got_further_wins(tmp_path: Path, behind: str, ahead: str) -> None:
    dev = device_row("laptop-7")
    run_id = ulid()
    early, late = tmp_path / "early.db", tmp_path / "late.db"
    with Store(early) as s:
        add_run(s, dev, run_id=run_id, status=behind, n_requests=1, n_samples=6)
    with Store(late) as s:
        add_run(s, dev, run_id=run_id, status=ahead, n_requests=4, n_samples=40)
    for first, second in ((early, late), (late, early)):
        dest = tmp_path / f"dest-{first.stem}.db"
        merge([first], dest)
        result = merge([second], dest)
        assert result.runs_replaced == (1 if first == early else 0)
        for table in ("runs", "samples", "requests", "sensors"):
            assert rows(dest, table) == rows(late, table), table
        assert counts(dest) == counts(late)
        assert not merge([early, late], dest).changed  # and it stays that way


def test_a_tie_keeps_the_destinations_copy(tmp_path: Path) -> None:
    dev = device_row("laptop-7")
    run_id = ulid()
    mine, theirs = tmp_path / "mine.db", tmp_path / "theirs.db"
    with Store(mine) as s:
        add_run(s, dev, run_id=run_id, status="aborted", n_samples=6)
    with Store(theirs) as s:
        add_run(s, dev, run_id=run_id, status="failed", n_samples=30)
    before = digest(mine)
    assert not merge([theirs], mine).changed
    assert digest(mine) == before


def _corrupt(src: Path, out: Path) -> None:
    data = bytearray(src.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = b"\xde\xad\xbe\xef" * (page // 4)  # no valid page type
    out.write_bytes(bytes(data))


def _newer(src: Path, out: Path) -> None:
    out.write_bytes(src.read_bytes())
    with sqlite3.connect(out) as conn:
        conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")


def _not_profile(src: Path, out: Path) -> None:
    with sqlite3.connect(out) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")


def _not_sqlite(src: Path, out: Path) -> None:
    out.write_text("run_id,t_ns\n1,2\n")


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (_corrupt, "corrupted"),
        (_newer, "newer than this edgeprof"),
        (_not_profile, "not an edgeprof profile"),
        (_not_sqlite, "not an SQLite file"),
    ],
)
def test_bad_source_is_refused_and_destination_left_unchanged(
    two_devices: tuple[Path, Path],
    tmp_path: Path,
    make_bad: Callable[[Path, Path], None],
    message: str,
) -> None:
    a, b = two_devices
    big = tmp_path / "big.db"
    make_db(big, "laptop-7", n_runs=2, n_samples=4000)
    bad = tmp_path / "bad.db"
    make_bad(big, bad)
    dest = tmp_path / "dest.db"
    merge([a], dest)
    listing = sorted(p.name for p in tmp_path.iterdir())
    before = digest(dest)
    with pytest.raises(ProfileDBError, match=message) as info:
        merge([b, bad], dest)  # a good source first: its rows must not land either
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    assert digest(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no temporary files left


def test_newer_destination_is_refused(two_devices: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_devices
    dest = tmp_path / "dest.db"
    _newer(a, dest)
    before = digest(dest)
    with pytest.raises(ProfileDBError, match=r"destination .* newer"):
        merge([a], dest)
    assert digest(dest) == before


def test_older_source_is_migrated_on_the_way_in(
    two_devices: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two_devices
    source_before = digest(a)

    def m002_run_notes(db: Any) -> None:
        db["runs"].add_column("notes", str)

    monkeypatch.setattr(
        migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m002", m002_run_notes)]
    )
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", len(migrations.MIGRATIONS))
    dest = tmp_path / "v2.db"
    with Store(dest) as store:  # a destination already on the new schema, with a new-style row
        add_run(store, device_row("desktop-3"))
        store.db.execute("UPDATE runs SET notes = 'v2'")
        store.db.conn.commit()
    merge([a], dest)
    assert digest(a) == source_before  # sources are only read
    with sqlite3.connect(dest) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        notes = [r[0] for r in conn.execute("SELECT notes FROM runs ORDER BY notes")]
    assert notes == [None, None, "v2"]
    assert counts(dest)["samples"] == counts(a)["samples"] + 40 + 20


# -- export ------------------------------------------------------------------------------


def _read_back(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.dataset as ds

    # a directory per table, partitioned by device (Hive style: device_id in the path)
    hive = ds.partitioning(pa.schema([("device_id", pa.string())]), flavor="hive")
    return list(ds.dataset(path, format="parquet", partitioning=hive).to_table().to_pylist())


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_round_trip(two_devices: tuple[Path, Path], tmp_path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="parquet export needs the optional pyarrow")
    a, b = two_devices
    db = tmp_path / "all.db"
    merge([a, b], db)
    files = export(db, fmt, tmp_path / "out")
    assert sorted(files) == sorted(TABLES)
    expected = counts(db)
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        for table, path in files.items():
            back = _read_back(path, fmt)
            assert len(back) == expected[table], table
            first = dict(conn.execute(f"SELECT * FROM {table} ORDER BY rowid LIMIT 1").fetchone())
            if fmt == "csv":
                first = {k: "" if v is None else str(v) for k, v in first.items()}
            if fmt == "parquet":  # one partition per device: rows grouped by device, and
                # requests, samples and sensors gain the device_id of their directory
                assert first in [{k: r[k] for k in first} for r in back], table
            else:
                assert back[0] == first, table


def test_export_unknown_format(two_devices: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="csv, jsonl, parquet"):
        export(two_devices[0], "xlsx", tmp_path / "out")


def test_anonymize_leaves_no_hostname_user_or_home_path(tmp_path: Path) -> None:
    db = tmp_path / "mine.db"
    me = socket.gethostname()
    with Store(db) as store:
        add_run(
            store,
            device_row("alice-laptop.example.org", label="alice-laptop.example.org"),
            model_path="/home/alice/models/smollm2.gguf",
            params={"threads": 4, "model": "/home/alice/models/smollm2.gguf",
                    "prompts": f"{HOME}/suites/p.jsonl", "cwd": "/home/alice/work"},
            environment={"python": "/home/alice/.venv/bin/python", "user": "alice",
                         "note": "run by alice", "llama_cpp": "0.3.36"},
        )  # fmt: skip
        add_run(store, device_row(me, label="Pi 5 kitchen"), label="pi-run")
        quality = quality_row(store.runs()[0], kld_mean=0.01)
        alice = {"python": "/home/alice/.venv/bin/python"}
        path = "/home/alice/models/smollm2.gguf"
        store.insert_quality({**quality, "model_path": path, "environment": alice})
        store.db.execute(
            "UPDATE requests SET error = 'cannot open /home/alice/x.txt on alice-laptop'"
        )
        store.db.conn.commit()
    for fmt in ("csv", "jsonl"):
        files = export(db, fmt, tmp_path / fmt, anonymize=True)
        text = "\n".join(p.read_text(encoding="utf-8") for p in files.values())
        for secret in ("alice", "/home/", f"{HOME}/"):
            assert secret not in text, (fmt, secret)
        for host in ("alice-laptop", me):
            assert not re.search(rf"(?<![\w-]){re.escape(host)}(?![\w-])", text, re.I), host
        assert "smollm2.gguf" in text and "Pi 5 kitchen" in text and "pi-run" in text
        runs = _read_back(files["runs"], fmt)
        assert {r["model_path"] for r in runs} == {"smollm2.gguf"}
        params = [json.loads(r["params"]) for r in runs]
        assert any(p.get("model") == "smollm2.gguf" and p["threads"] == 4 for p in params)
        (q,) = _read_back(files["quality"], fmt)
        assert q["model_path"] == "smollm2.gguf"
    assert counts(db)["devices"] == 2  # the source is only read


# -- command line --------------------------------------------------------------------------


def test_cli_merge_export_and_errors(two_devices: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_devices
    dest = tmp_path / "all.db"
    done = cli("merge", a, b, "-o", dest)
    assert done.exit_code == 0, done.output
    assert counts(dest)["runs"] == 5
    out = tmp_path / "export"
    done = cli("export", dest, "--format", "jsonl", "-o", out, "--anonymize")
    assert done.exit_code == 0, done.output
    assert len((out / "samples.jsonl").read_text().splitlines()) == counts(dest)["samples"]
    bad = tmp_path / "bad.db"
    _newer(a, bad)
    before = digest(dest)
    done = cli("merge", bad, "-o", dest)
    assert done.exit_code == 2
    assert done.stderr.startswith("edgeprof: error: ") and "newer" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert digest(dest) == before


# -- datasette ------------------------------------------------------------------------------

PINT_UNITS = {"byte", "second", "nanosecond", "joule", "watt", "hertz"}


def test_datasette_metadata_describes_every_column(tmp_path: Path) -> None:
    from edgeprof.store.datasette import metadata

    db = tmp_path / "team.db"
    Store(db).close()
    done = cli("datasette-metadata", db)
    assert done.exit_code == 0, done.output
    md = json.loads(done.stdout)
    assert md == metadata("team")
    tables = md["databases"]["team"]["tables"]
    with sqlite3.connect(db) as conn:
        for table in (*TABLES, "series", "sample_points"):  # the view and its tables
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            described = tables[table]["columns"]
            assert set(described) == set(cols), table
            assert all(len(d) > 3 for d in described.values())
            units = tables[table].get("units", {})
            assert set(units) <= set(cols) and set(units.values()) <= PINT_UNITS, table
            # A column whose name carries a unit suffix gets the unit (or says why not).
            for col in cols:
                if (
                    col.endswith(("_s", "_j", "_w", "_bytes", "_ns"))
                    and col != "recorder_cpu_s_per_s"
                ):
                    assert col in units, (table, col)
    out = tmp_path / "metadata.json"
    done = cli("datasette-metadata", db, "-o", out)
    assert done.exit_code == 0, done.output
    assert json.loads(out.read_text()) == md
