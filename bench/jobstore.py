"""Job store figures: `.venv/bin/python bench/jobstore.py`.

How many jobs per second `JobStore.create_job` persists (each committed before it
returns: WAL, synchronous=NORMAL), and how fast the reads the API makes are, on a store
already holding 10,000 jobs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.jobspec import JobSpec  # noqa: E402
from swarm.requester.store import JobStore  # noqa: E402

JOBS = 10_000


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:8.0f}/s  ({seconds / count * 1e6:6.1f} µs each)"


def main() -> None:
    spec = JobSpec.from_dict(
        {
            "name": "wordcount",
            "constraints": ["zone=eu"],
            "task": {"module": "sha256:" + "ab" * 32, "inputs": ["/data/text:/inputs"]},
        }
    )
    with tempfile.TemporaryDirectory() as tmp, JobStore(Path(tmp) / "jobs.db") as store:
        start = time.perf_counter()
        jobs = [store.create_job(spec) for _ in range(JOBS)]
        created = time.perf_counter() - start
        start = time.perf_counter()
        for job in jobs[:2000]:
            store.get_job(job.id[:8])
        by_prefix = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(100):
            store.list_jobs(limit=100)
        listed = time.perf_counter() - start
        print(f"job store benchmark ({JOBS} jobs)")
        print(f"  create_job            {rate(JOBS, created)}")
        print(f"  get_job by prefix     {rate(2000, by_prefix)}")
        print(f"  list_jobs (100 rows)  {rate(100, listed)}")


if __name__ == "__main__":
    main()
