"""The fleet path: `export --format parquet` partitioned by device (Hive style) from several
databases into one directory, and the DuckDB query in docs/fleet.md reproducing
`report --by device --json` over those files. Device databases are built with
tests/builders.py (real rows through the store API; no model)."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgeprof.store import Store
from edgeprof.store.export import export
from edgeprof.store.share import merge
from tests.builders import add_run, cli, device_row, measured_on, quality_row

pq = pytest.importorskip("pyarrow.parquet", reason="parquet export needs the optional pyarrow")
ds = pytest.importorskip("pyarrow.dataset")
duckdb = pytest.importorskip("duckdb", reason="the fleet query needs the optional duckdb")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "fleet.md"
SUITE = "5e" * 32
PARAMS = {"threads": 4, "max_tokens": 16, "suite_sha256": SUITE}
KEY = ("backend", "model_sha256", "quant", "threads", "max_tokens", "suite_sha256",
       "concurrency")  # fmt: skip
FIGURES = ("decode_tps", "prefill_tps", "ttft_p50_s", "j_per_output_token", "avg_power_w")
PARTITIONED = ("runs", "requests", "samples", "sensors", "quality")
LAPTOP = device_row("laptop-7", label="laptop")
PI = device_row("pi5-kitchen", label="pi5", cpu="Cortex-A76")
JETSON = device_row("orin-1", label="jetson", cpu="Cortex-A78AE")


def build_devices(root: Path) -> dict[str, Path]:
    """Three device databases: a laptop (two comparable runs, and one with 8 threads), a Pi
    (three comparable runs measured at the board, one aborted, one remote), a Jetson (one
    comparable run, one at concurrency 2 whose W uses the busy span)."""
    dbs = {name: root / f"{name}.db" for name in ("laptop", "pi5", "jetson")}
    with Store(dbs["laptop"]) as s:
        dev = LAPTOP
        for d in (40.0, 44.0):
            add_run(s, dev, decode_tps=d, params=PARAMS)
        add_run(s, dev, decode_tps=60.0, params={**PARAMS, "threads": 8})
        s.insert_quality({**quality_row(s.runs()[0], kld_mean=0.02), "device_id": dev["id"]})
    with Store(dbs["pi5"]) as s:
        dev = PI
        for d, w in ((9.0, 6.0), (10.0, 6.5), (14.0, 7.5)):
            measured_on(s, add_run(s, dev, decode_tps=d, power_w=w, params=PARAMS),
                        "rpi:board", "board")  # fmt: skip
        add_run(s, dev, decode_tps=99.0, params=PARAMS, status="aborted")
        cloud = add_run(s, dev, backend="openai", decode_tps=80.0, params=PARAMS)
        s.db.execute("UPDATE runs SET target_kind = 'remote' WHERE id = ?", [cloud])
        s.db.conn.commit()
    with Store(dbs["jetson"]) as s:
        dev = JETSON
        add_run(s, dev, decode_tps=20.0, power_w=9.0, params=PARAMS)
        r = add_run(s, dev, decode_tps=30.0, power_w=12.0, params={**PARAMS, "concurrency": 2})
        measured_on(s, r, "jetson:VDD_IN", "rail")
    return dbs


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fleet")
    dbs = build_devices(root)
    out = root / "fleet"
    for db in dbs.values():
        export(db, "parquet", out)
    merge(list(dbs.values()), root / "pooled.db")
    return {"root": root, "dbs": dbs, "out": out, "pooled": root / "pooled.db"}


def fleet_query(out: Path) -> str:
    """The SQL block of docs/fleet.md, pointed at `out`."""
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("<!-- fleet-query -->", 1)[1].split("<!-- /fleet-query -->", 1)[0]
    sql = block.split("```sql", 1)[1].split("```", 1)[0]
    return sql.replace("'fleet/", f"'{out.as_posix()}/")


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["device_id"], *(row[k] for k in KEY))


def test_duckdb_over_the_exports_reproduces_report_by_device(fleet: dict[str, Any]) -> None:
    res = cli("report", fleet["pooled"], "--by", "device", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    expected = {
        _key({**row, **group["key"]}): row for group in report["groups"] for row in group["rows"]
    }
    con = duckdb.connect()
    cur = con.execute(fleet_query(fleet["out"]))
    names = [d[0] for d in cur.description]
    got = {_key(r): r for r in (dict(zip(names, t, strict=True)) for t in cur.fetchall())}
    # laptop 4 and 8 threads, pi5, jetson at concurrency 1 and 2: 5 rows; aborted and remote
    # runs are in neither
    assert len(expected) == 5 and set(got) == set(expected)
    for key, row in expected.items():
        assert got[key]["n_runs"] == row["n_runs"], key
        assert got[key]["device_label"] == row["device_label"]
        for name in FIGURES:
            assert got[key][name] == pytest.approx(row[name], rel=1e-9), (key, name)
    pi = next(r for r in expected.values() if r["device_label"] == "pi5")
    assert pi["n_runs"] == 3 and pi["decode_tps"] == pytest.approx(
        11.5
    )  # median of 10.5, 11.5, 15.5


def test_layout_is_one_partition_per_device(fleet: dict[str, Any]) -> None:
    out: Path = fleet["out"]
    with sqlite3.connect(fleet["pooled"]) as conn:
        device_ids = {r[0] for r in conn.execute("SELECT id FROM devices")}
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in (*PARTITIONED, "devices", "prompts")}  # fmt: skip
    for table in PARTITIONED:
        parts = {p.name for p in (out / table).iterdir() if not p.name.startswith(".")}
        wanted = (
            {f"device_id={d}" for d in device_ids}
            if table != "quality"
            else {f"device_id={d}" for d in device_ids if d == LAPTOP["id"]}
        )
        assert parts == wanted, table
        files = sorted(p.relative_to(out / table) for p in (out / table).rglob("*.parquet"))
        assert all(f.name == "part-0.parquet" for f in files)
        table_ds = ds.dataset(out / table, partitioning="hive", format="parquet")
        assert table_ds.count_rows() == counts[table], table
        assert "device_id" not in pq.read_schema(out / table / files[0]).names  # in the path
    for table in ("devices", "prompts"):  # several exports merged by id, not overwritten
        assert pq.read_table(out / table / "part-0.parquet").num_rows == counts[table]
    assert not list(out.rglob("*.tmp"))


def test_reexport_replaces_one_devices_partition_only(tmp_path: Path) -> None:
    dbs = build_devices(tmp_path)
    out = tmp_path / "fleet"
    for db in dbs.values():
        export(db, "parquet", out)
    pi_id, laptop_id = PI["id"], LAPTOP["id"]
    laptop_runs = out / "runs" / f"device_id={laptop_id}" / "part-0.parquet"
    before = laptop_runs.read_bytes()
    with Store(dbs["pi5"]) as s:
        add_run(s, PI, params=PARAMS)
    export(dbs["pi5"], "parquet", out)
    pi_runs = pq.read_table(out / "runs" / f"device_id={pi_id}" / "part-0.parquet")
    assert pi_runs.num_rows == 6  # five before, one added: replaced, not appended
    assert laptop_runs.read_bytes() == before
    assert pq.read_table(out / "devices" / "part-0.parquet").num_rows == 3
    # the laptop's quality rows are gone from its database: its old partition goes too
    with sqlite3.connect(dbs["laptop"]) as conn:
        conn.execute("DELETE FROM quality")
    export(dbs["laptop"], "parquet", out)
    assert not (out / "quality" / f"device_id={laptop_id}").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_anonymized_parquet_export(tmp_path: Path) -> None:
    me = socket.gethostname()
    db = tmp_path / "mine.db"
    with Store(db) as s:
        add_run(s, device_row(me, label=me), model_path=f"{Path.home()}/models/m.gguf",
                params={**PARAMS, "cwd": str(Path.home())})  # fmt: skip
    out = tmp_path / "fleet"
    files = export(db, "parquet", out, anonymize=True)
    assert set(files) == {"devices", "prompts", *PARTITIONED} - {"quality"}
    assert not (out / "quality").exists()  # no quality rows: no partition
    runs = ds.dataset(out / "runs", partitioning="hive", format="parquet").to_table().to_pylist()
    assert [r["model_path"] for r in runs] == ["m.gguf"]
    assert "cwd" not in json.loads(runs[0]["params"])
    (dev,) = pq.read_table(out / "devices" / "part-0.parquet").to_pylist()
    assert dev["hostname"] is None and dev["label"] == f"device-{dev['id'][:8]}"
    for f in out.rglob("*.parquet"):
        text = str(pq.read_table(f).to_pylist())
        assert not re.search(rf"(?<![\w-]){re.escape(me)}(?![\w-])", text), f


def test_cli_export_parquet_prints_table_directories(tmp_path: Path) -> None:
    dbs = build_devices(tmp_path)
    out = tmp_path / "fleet"
    res = cli("export", dbs["jetson"], "--format", "parquet", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert f"runs      -> {out / 'runs'}" in res.stderr
    assert os.listdir(out / "runs") == [f"device_id={JETSON['id']}"]


def test_a_device_id_that_is_not_hex_is_percent_encoded(tmp_path: Path) -> None:
    db = tmp_path / "odd.db"
    with Store(db) as s:
        add_run(s, {**device_row("x"), "id": "team/pi 5"}, params=PARAMS)
    export(db, "parquet", tmp_path / "fleet")
    assert os.listdir(tmp_path / "fleet" / "runs") == ["device_id=team%2Fpi%205"]


def test_rows_of_no_device_are_merged_by_id_in_hives_null_partition(tmp_path: Path) -> None:
    """Quality rows written without a device (hand-made, or by an older edgeprof) belong to no
    one export: two databases' rows both survive in the null partition."""
    out = tmp_path / "fleet"
    ids = []
    for name in ("a", "b"):
        with Store(tmp_path / f"{name}.db") as s:
            run = s.runs([add_run(s, device_row(name), params=PARAMS)])[0]
            row = quality_row(run, kld_mean=0.01)
            s.insert_quality(row)
            ids.append(row["id"])
        export(tmp_path / f"{name}.db", "parquet", out)
    null = out / "quality" / "device_id=__HIVE_DEFAULT_PARTITION__" / "part-0.parquet"
    assert sorted(pq.read_table(null).column("id").to_pylist()) == sorted(ids)
    import pyarrow as pa

    hive = ds.partitioning(pa.schema([("device_id", pa.string())]), flavor="hive")
    table = ds.dataset(out / "quality", partitioning=hive, format="parquet").to_table()
    assert table.column("device_id").to_pylist() == [None, None]


def test_samples_are_exported_through_the_samples_view(tmp_path: Path) -> None:
    """`samples` is a view of the old long-format columns over the compact tables (m007); the
    export selects from it, in every format, whatever stores the points."""
    db = tmp_path / "p.db"
    with Store(db) as s:
        add_run(s, PI, params=PARAMS, n_samples=10)
    with sqlite3.connect(db) as conn:
        n = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert n == 15  # builders: 10 power readings and 5 RSS readings
    export(db, "parquet", tmp_path / "fleet")
    csv_file = export(db, "csv", tmp_path / "csv")["samples"]
    part = tmp_path / "fleet" / "samples" / f"device_id={PI['id']}" / "part-0.parquet"
    schema = pq.read_schema(part)
    assert schema.names == ["run_id", "t_ns", "sensor", "metric", "value"]
    assert (str(schema.field("t_ns").type), str(schema.field("value").type)) == ("int64", "double")
    assert pq.read_table(part).num_rows == n
    assert len(csv_file.read_text().splitlines()) == n + 1


def test_columns_that_declare_no_type_take_their_values_type() -> None:
    """A view's computed column declares no type; its first rows decide the Parquet type."""
    import pyarrow as pa

    from edgeprof.store.export import _arrow_type

    assert _arrow_type(pa, "", [None, 3, 4]) == pa.int64()
    assert _arrow_type(pa, "", [3, 4.5]) == pa.float64()
    assert _arrow_type(pa, "", ["a", 1]) == pa.string()
    assert _arrow_type(pa, "", []) == pa.string()
    assert _arrow_type(pa, "INTEGER", ["x"]) == pa.int64()  # the declaration wins
