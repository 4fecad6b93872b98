"""Peak memory of `edgeprof quality` as the text grows: it must stay flat.

Each length runs `edgeprof quality TARGET --reference REF --text T` in its own process (a fresh
database, --fresh) and reads that process's peak RSS from the kernel (getrusage of the child),
so nothing from an earlier length is counted. The text is the bundled evaluation text repeated
`k` times. Run:

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_quality_memory.py \\
        --reference models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.F32.gguf --repeat 1,4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_of(cmd: list[str]) -> tuple[int, float]:
    """(peak RSS bytes, seconds) of one child process; fails loudly if it fails."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child execs the command; its own getrusage is the measurement
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the rows are read back afterwards
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return int(usage.ru_maxrss) * 1024, seconds  # Linux: ru_maxrss is in KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="demo")
    ap.add_argument("--reference", required=True)
    ap.add_argument("--repeat", default="1,4", help="text lengths, as repeats of the bundled one")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    from edgeprof.quality.perplexity import bundled_text

    text = bundled_text()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in (int(x) for x in a.repeat.split(",")):
            path = Path(tmp) / f"text-x{k}.txt"
            path.write_text(text * k, encoding="utf-8")
            db = Path(tmp) / f"p{k}.db"
            cmd = [sys.executable, "-m", "edgeprof", "quality", a.target, "--reference",
                   a.reference, "--text", str(path), "--ctx", str(a.ctx), "--threads",
                   str(a.threads), "--db", str(db), "--json", "--fresh"]  # fmt: skip
            rss, seconds = peak_rss_of(cmd)
            rows = json.loads(
                subprocess.run(
                    [*cmd[:-2], "--json"], capture_output=True, text=True, check=True
                ).stdout
            )  # the stored rows, read back (reused, nothing measured again)
            target = rows[-1]
            results.append(
                {"repeat": k, "text_tokens": target["text_tokens"],
                 "n_scored": target["n_scored"], "peak_rss_mib": rss / 2**20,
                 "seconds": seconds, "kld_mean": target["kld_mean"], "ppl": target["ppl"]}
            )  # fmt: skip
            print(
                f"text x{k}: {target['text_tokens']:>6} tokens, {target['n_scored']:>6} scored, "
                f"peak RSS {rss / 2**20:7.1f} MiB, {seconds:6.1f} s, "
                f"PPL {target['ppl']:.3f}, KLD {target['kld_mean']:.5f}",
                flush=True,
            )
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    lo, hi = results[0]["peak_rss_mib"], results[-1]["peak_rss_mib"]
    print(f"peak RSS grows {hi / lo - 1:+.1%} for {results[-1]['repeat']}x the text")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
