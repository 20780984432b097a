"""`make demo`: the seed article's journey on a local hybrid node, command by command.

Starts `swarm serve` (requester and compute in one process) with the sample data folder
allow-listed, sends the Go word count to it with `swarm wasm run`, fetches the results
with `swarm get`, shows them, and stops the node. Everything runs through the real
`swarm` command, exactly as a user would type it; the node's home is `.demo/home`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWARM = Path(sys.executable).parent / "swarm"
MODULE = ROOT / "examples" / "wordcount-go" / "main.wasm"
DATA = ROOT / "examples" / "wordcount-go" / "data"
WORK = ROOT / ".demo"
HOME = WORK / "home"


def shown(command: list[str]) -> str:
    def short(arg: str) -> str:  # paths inside file:// stay absolute, as a user must type them
        return "swarm" if arg == str(SWARM) else arg.removeprefix(f"{ROOT}/")

    return shlex.join(short(c) for c in command)


def run(*command: str, env: dict[str, str]) -> str:
    print(f"\n$ {shown(list(command))}", flush=True)
    done = subprocess.run(command, cwd=WORK, env=env, stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        sys.exit(f"demo: `{shown(list(command))}` failed with exit code {done.returncode}")
    return done.stdout


def start_node() -> subprocess.Popen:
    command = [
        str(SWARM), "serve", "--home", str(HOME), "--node-type", "requester,compute",
        "--swarm-host", "127.0.0.1", "--swarm-port", "0", "--api-port", "0",
        "--allow-listed-local-paths", str(DATA),
    ]  # fmt: skip
    print(f"$ {shown(command)} &", flush=True)
    log = (WORK / "serve.log").open("w")
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (HOME / "swarm.run").exists():
        if node.poll() is not None or time.monotonic() > deadline:
            node.kill()
            sys.exit(f"demo: the node did not start; see {WORK / 'serve.log'}")
        time.sleep(0.05)
    print((WORK / "serve.log").read_text(), end="")
    return node


def main() -> None:
    if not MODULE.exists():
        sys.exit("demo: examples/wordcount-go/main.wasm is missing; run `make demo` (it builds it)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    names = ", ".join(sorted(p.name for p in DATA.iterdir()))
    print(f"Sample inputs in {DATA.relative_to(ROOT)}: {names}\n")
    node = start_node()
    try:
        exports = dict(re.findall(r"(SWARM_API_\w+)=(\S*)", (HOME / "swarm.run").read_text()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")} | exports
        print(f"\n$ source {HOME.relative_to(ROOT)}/swarm.run")
        output = run(
            str(SWARM), "wasm", "run", "-i", f"file://{DATA}:/inputs", str(MODULE), env=env
        )
        job_id = re.search(r"Job ID: (\S+)", output).group(1)
        run(str(SWARM), "get", job_id, env=env)
        folder = f"job-{job_id[:8]}"
        for name in ("stdout", "outputs/count.txt", "exitCode"):
            run("cat", f"{folder}/{name}", env=env)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=10)
    print(f"\nThe node has stopped. Results are in {(WORK / folder).relative_to(ROOT)}/.")


if __name__ == "__main__":
    main()
