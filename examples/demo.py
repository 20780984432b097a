"""`make demo`: the seed's word-count journey, shown command by command.

Runs the Go word count (examples/wordcount-go) on the sample files through the real
`swarm` command, exactly as a user would type it, then prints the result folder.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWARM = Path(sys.executable).parent / "swarm"
MODULE = ROOT / "examples" / "wordcount-go" / "main.wasm"
DATA = ROOT / "examples" / "wordcount-go" / "data"
WORK = ROOT / ".demo"


def show(*command: str) -> None:
    shown = ["swarm" if c == str(SWARM) else c.replace(f"{ROOT}/", "") for c in command]
    print(f"\n$ {shlex.join(shown)}", flush=True)
    done = subprocess.run(command, cwd=WORK)
    if done.returncode != 0:
        sys.exit(f"demo: `{shlex.join(command)}` failed with exit code {done.returncode}")


def main() -> None:
    if not MODULE.exists():
        sys.exit("demo: examples/wordcount-go/main.wasm is missing; run `make demo` (it builds it)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    relative = lambda p: str(p.relative_to(ROOT))  # noqa: E731 - shown paths stay short
    print(f"Sample inputs in {relative(DATA)}: {', '.join(sorted(p.name for p in DATA.iterdir()))}")
    show(str(SWARM), "wasm", "exec", "-i", f"file://{DATA}:/inputs", "-o", "job-demo", str(MODULE))
    for name in ("stdout", "outputs/count.txt", "exitCode"):
        show("cat", f"job-demo/{name}")
    print(f"\nResults are in {relative(WORK / 'job-demo')}/.")


if __name__ == "__main__":
    main()
