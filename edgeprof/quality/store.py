"""Quality evaluations in the profile database: measure what is missing, reuse what is there.

A row is keyed by the evaluated file's own sha256, the reference's, the text's and ctx; the
same key measured again (`fresh`) adds a row, and the newest one is used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeprof.errors import UsageError
from edgeprof.progress import ProgressFn
from edgeprof.quality import perplexity as q
from edgeprof.store.db import Store
from edgeprof.store.ids import ulid
from edgeprof.store.rows import QualityRow


@dataclass(frozen=True)
class QualityText:
    name: str  # "bundled: eval.txt" or the file's name
    text: str

    @property
    def sha256(self) -> str:
        return q.text_sha256(self.text)


def load_text(path: Path | None) -> QualityText:
    if path is None:
        return QualityText(f"bundled: {q.BUNDLED_TEXT}", q.bundled_text())
    try:
        return QualityText(path.name, q.read_text_exactly(path))
    except FileNotFoundError:
        raise UsageError(f"--text {path} not found; pass a UTF-8 text file") from None
    except IsADirectoryError:
        raise UsageError(f"--text {path} is a directory; pass a UTF-8 text file") from None
    except UnicodeDecodeError:
        raise UsageError(f"--text {path} is not UTF-8 text; pass a UTF-8 text file") from None


def file_sha256(path: Path) -> str:
    from edgeprof.models.files import sha256_file

    return q._onnx_sha256(path) if path.suffix.lower() == ".onnx" else sha256_file(path)


@dataclass(frozen=True)
class Outcome:
    row: QualityRow
    reused: bool


def stored(
    store: Store, file_sha: str, ref_sha: str | None, text_sha: str, ctx: int
) -> QualityRow | None:
    where = "file_sha256 = ? AND text_sha256 = ? AND ctx = ? AND "
    where += "reference_sha256 = ?" if ref_sha else "reference_sha256 IS NULL"
    args = [file_sha, text_sha, ctx, *([ref_sha] if ref_sha else [])]
    rows = store.quality(where, args)
    return rows[0] if rows else None


def row_of(
    result: q.QualityResult, device_id: str, threads: int | None, seconds: float
) -> QualityRow:
    from edgeprof import __version__
    from edgeprof.measure.device import environment

    ppl, ref, div = result.perplexity, result.reference_perplexity, result.divergence
    return {  # a dict literal mypy checks against QualityRow, key for key
        "id": ulid(),
        "device_id": device_id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgeprof_version": __version__,
        "target": result.target,
        "model_path": result.path,
        "backend": result.backend,
        "quant": result.quant,
        "model_sha256": result.model_sha256,
        "file_sha256": result.file_sha256,
        "size_bytes": result.size_bytes,
        "reference": result.reference,
        "reference_sha256": result.reference_sha256,
        "reference_note": result.reference_note,
        "text_name": result.text_name,
        "text_sha256": result.text_sha256,
        "text_tokens": ppl.text_tokens,
        "ctx": ppl.ctx,
        "n_chunks": ppl.n_chunks,
        "n_scored": ppl.n_scored,
        "ppl": ppl.ppl,
        "ppl_se": ppl.ppl_se,
        "ref_ppl": ref.ppl if ref else None,
        "ref_ppl_se": ref.ppl_se if ref else None,
        "delta_ppl": div.delta_ppl if div else None,
        "delta_ppl_pct": div.delta_ppl_pct if div else None,
        "delta_ppl_pct_se": div.delta_ppl_pct_se if div else None,
        "kld_mean": div.kld_mean if div else None,
        "kld_se": div.kld_se if div else None,
        "kld_p99": div.kld_p99 if div else None,
        "kld_max": div.kld_max if div else None,
        "top1_agreement": div.top1_agreement if div else None,
        "top1_se": div.top1_se if div else None,
        "threads": threads,
        "seconds": round(seconds, 3),
        "peak_rss_bytes": result.peak_rss_bytes,
        "environment": environment(),
    }


def assess(
    store: Store,
    targets: Sequence[Path],
    *,
    reference: Path | None = None,
    text: QualityText | None = None,
    ctx: int = q.DEFAULT_CTX,
    threads: int | None = None,
    fresh: bool = False,
    progress: ProgressFn | None = None,
) -> list[Outcome]:
    """Evaluate each target on the text (against `reference` when given), storing each row as
    soon as it is complete, so an interrupted call keeps the targets it finished.

    The reference's own row (its perplexity) comes first. `progress(what, done, total)` counts
    chunks over every evaluation that runs."""
    for path in [*targets, *([reference] if reference else [])]:
        if not path.is_file():
            raise UsageError(f"{path} not found; pass a .gguf model or an .onnx export")
    text = text or load_text(None)
    job = _Assessment(store, targets, reference, text, (ctx, threads), progress)
    ref_sha = file_sha256(reference) if reference else None
    jobs: list[tuple[Path, str | None]] = [(reference, None)] if reference else []
    same = (lambda t: t.resolve() == reference.resolve()) if reference else (lambda t: False)
    jobs += [(t, ref_sha) for t in targets if not same(t)]
    todo = [(path, against) for path, against in jobs if fresh or not job.reuse(path, against)]
    if len(todo) > 1 and todo[0][1] is None and reference is not None:
        # Every comparison scores the reference on the same chunks: its own row comes from
        # the first one instead of a pass of its own.
        todo, job.ref_row_missing = todo[1:], True
    job.total = len(job.chunks) * len(todo)
    try:
        for k, (path, against) in enumerate(todo):
            job.measure(path, against, k)
    finally:
        job.close()
    order = {str(p.resolve()): i for i, (p, _) in enumerate(jobs)}
    return sorted(
        job.outcomes,
        key=lambda o: order.get(str(Path(o.row["model_path"]).resolve()), len(order)),
    )


class _Assessment:
    """The state of one `assess` call: the text's chunks, the loaded reference, the rows."""

    def __init__(
        self,
        store: Store,
        targets: Sequence[Path],
        reference: Path | None,
        text: QualityText,
        settings: tuple[int, int | None],
        progress: ProgressFn | None,
    ) -> None:
        import psutil

        from edgeprof.measure.device import fingerprint

        self.store, self.reference, self.text, self.progress = store, reference, text, progress
        self.ctx, self.threads = settings
        self.tokens, bos = q.tokenize_text(q.tokenizer_path(reference or targets[0]), text.text)
        self.chunks = q.chunk_tokens(self.tokens, self.ctx, bos)
        self.outcomes: list[Outcome] = []
        self.ref_row_missing = False
        self.total = 0
        self._ref_model: Any = None
        self._proc = psutil.Process()
        device = fingerprint()
        store.upsert_device(device)
        self.device_id = str(device["id"])

    def reuse(self, path: Path, against: str | None) -> bool:
        row = stored(self.store, file_sha256(path), against, self.text.sha256, self.ctx)
        if row is not None:
            self.outcomes.append(Outcome(row, reused=True))
        return row is not None

    def measure(self, path: Path, against: str | None, k: int) -> None:
        """Evaluate the k-th target to measure; store its row (and the reference's, once)."""
        if against is not None and self._ref_model is None and self.reference is not None:
            self._ref_model = q.open_model(self.reference, self.ctx, self.threads)
        model = q.open_model(path, self.ctx, self.threads)
        peak_rss = self._proc.memory_info().rss
        n = len(self.chunks)

        def tick(i: int) -> None:
            nonlocal peak_rss
            peak_rss = max(peak_rss, self._proc.memory_info().rss)
            if self.progress:
                self.progress(model.name, k * n + i, self.total)

        t0 = time.perf_counter()
        try:
            ppl, ref_ppl, div = q.evaluate(
                model, self.chunks, self._ref_model if against else None, progress=tick
            )
        finally:
            model.close()
        seconds = time.perf_counter() - t0
        self._store(model, against, (ppl, ref_ppl, div), peak_rss, seconds)
        if self.ref_row_missing and ref_ppl is not None:
            self._store(self._ref_model, None, (ref_ppl, None, None), peak_rss, seconds)
            self.ref_row_missing = False

    def _store(
        self,
        model: Any,
        against: str | None,
        figures: tuple[q.Perplexity, q.Perplexity | None, q.Divergence | None],
        peak_rss: int,
        seconds: float,
    ) -> None:
        ppl, ref_ppl, div = figures
        ref = self.reference if against else None
        result = q.QualityResult(
            target=model.name,
            path=str(model.path),
            backend=model.backend,
            quant=model.quant,
            model_sha256=model.model_sha256,
            file_sha256=model.file_sha256,
            size_bytes=model.size_bytes,
            text_name=self.text.name,
            text_sha256=self.text.sha256,
            perplexity=replace(ppl, text_tokens=len(self.tokens)),
            reference=ref.name if ref else None,
            reference_sha256=against,
            reference_note=q.reference_note(ref) if ref else None,
            reference_perplexity=ref_ppl,
            divergence=div,
            peak_rss_bytes=peak_rss,
        )
        row = row_of(result, self.device_id, self.threads, seconds)
        self.store.insert_quality(row)
        self.outcomes.append(Outcome(row, reused=False))

    def close(self) -> None:
        if self._ref_model is not None:
            self._ref_model.close()
            self._ref_model = None


def quality_of(
    store: Store, model_sha256: str | None, backend: str, quant: str | None
) -> QualityRow | None:
    """The newest quality row with a reference for the target a run measured, if any."""
    if not model_sha256:
        return None
    where = "model_sha256 = ? AND backend = ? AND reference_sha256 IS NOT NULL AND "
    where += "quant = ?" if quant else "quant IS NULL"
    rows = store.quality(where, [model_sha256, backend, *([quant] if quant else [])])
    return rows[0] if rows else None
