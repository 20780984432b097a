"""The web UI: its routes and summaries, and the page itself in a real headless Chromium.

The browser test drives Debian's ``/usr/bin/chromium`` with Playwright (no browser is
downloaded); `make install` installs it when run as root, as CI is. Without it the test
fails and says so: it is never skipped.

``SWARM_UI_SCREENSHOTS=docs pytest tests/test_web_ui.py`` also writes the screenshots
to ``docs/`` (that is how docs/web-ui.png was made); they always go to the test's tmp dir.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import wasmtime

from swarm.api.app import create_app
from swarm.api.ui import per_minute
from swarm.jobspec import JobSpec
from swarm.lifecycle import ExecutionState, JobState
from swarm.requester.store import JOBS_DB, JobStore
from tests.guests import hello, ticker
from tests.test_api_app import FakeNode

TOKEN = "s3cret"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DIGEST = "sha256:" + "ab" * 32
SPEC = JobSpec.from_dict({"name": "wc", "task": {"module": DIGEST}})
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# ---- summaries and routes, without a browser -------------------------------------------


class Clock:
    def __init__(self, now: float = 6000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    with JobStore(tmp_path / JOBS_DB, clock=Clock()) as store:
        yield store


def run_job(store: JobStore, *, nodes: tuple[str, ...], codes: tuple[int, ...], took: float):
    """A job that ran on ``nodes`` and ended with ``codes``, ``took`` seconds after submit."""
    job = store.create_job(SPEC)
    store.set_job_state(job.id, JobState.RUNNING)
    for node, code in zip(nodes, codes, strict=True):
        execution = store.add_execution(job.id, node, ExecutionState.ACCEPTED)
        store.set_execution_state(
            execution.id,
            ExecutionState.COMPLETED if code == 0 else ExecutionState.FAILED,
            exit_code=code,
        )
    store._clock.now += took
    final = JobState.COMPLETED if not any(codes) else JobState.FAILED
    return store.set_job_state(job.id, final)


def test_executions_of_many_jobs_in_one_call(store):
    done = run_job(store, nodes=("n1", "n2"), codes=(0, 3), took=1)
    waiting = store.create_job(SPEC)
    many = [store.create_job(SPEC).id for _ in range(1200)]  # more than one IN (...) chunk
    found = store.executions_of([done.id, waiting.id, *many, done.id])
    assert [(e.node_id, e.exit_code) for e in found[done.id]] == [("n1", 0), ("n2", 3)]
    assert found[waiting.id] == [] and len(found) == 1202
    assert store.count_by_state() == {JobState.FAILED: 1, JobState.PENDING: 1201}


def test_ended_since(store):
    first = run_job(store, nodes=("n1",), codes=(0,), took=2)
    store._clock.now += 100
    second = run_job(store, nodes=("n1",), codes=(1,), took=5)
    assert store.ended_since(first.updated) == [
        (JobState.COMPLETED, first.created, first.updated),
        (JobState.FAILED, second.created, second.updated),
    ]
    assert store.ended_since(first.updated + 1) == [
        (JobState.FAILED, second.created, second.updated)
    ]


@pytest.mark.parametrize(
    "ended,expected",
    [
        ([], [(0, 0, 0, None, None)] * 3),
        (
            [(JobState.COMPLETED, 0.0, 10.0), (JobState.FAILED, 0.0, 30.0)],
            [(1, 1, 0, 20.0, 30.0), (0, 0, 0, None, None), (0, 0, 0, None, None)],
        ),
        (  # the end of the window, the minute after it, and before it
            [
                (JobState.STOPPED, 100.0, 179.5),
                (JobState.COMPLETED, 170.0, 180.0),
                (JobState.COMPLETED, -9.0, -1.0),
            ],
            [(0, 0, 0, None, None), (0, 0, 0, None, None), (0, 0, 1, 79.5, 79.5)],
        ),
    ],
)
def test_per_minute(ended, expected):
    buckets = per_minute(ended, start=0.0, minutes=3)
    assert [b["start"][11:19] for b in buckets] == ["00:00:00", "00:01:00", "00:02:00"]
    got = [
        (b["completed"], b["failed"], b["stopped"], b["latency_median"], b["latency_max"])
        for b in buckets
    ]
    assert got == expected


def client(node, *, web_ui: bool, token: str | None = TOKEN) -> httpx.AsyncClient:
    app = create_app(node, token=token, web_ui=web_ui)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node")


async def test_without_web_ui_nothing_is_served():
    async with client(FakeNode(), web_ui=False) as http:
        for path in ("/", "/ui/app.js", "/api/v1/ui/jobs"):
            response = await http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 404, path


async def test_the_page_needs_no_token_and_forbids_inline_script():
    async with client(FakeNode(), web_ui=True) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self';" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert '<script src="/ui/app.js" defer>' in page.text
        for name, kind in (
            ("app.js", "javascript"),
            ("chart.js", "javascript"),
            ("style.css", "css"),
        ):
            asset = await http.get(f"/ui/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"]
        for path in ("/ui/nope.js", "/ui/index.html", "/ui/..%2Fui.py", "/ui/../app.py"):
            assert (await http.get(path)).status_code == 404, path


async def test_no_innerhtml_in_the_page_scripts():
    async with client(FakeNode(), web_ui=True) as http:
        for name in ("app.js", "chart.js"):
            code = [
                line
                for line in (await http.get(f"/ui/{name}")).text.splitlines()
                if not line.strip().startswith("//")  # the comment that says why
            ]
            for line in code:
                assert not re.search(
                    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", line
                )


async def test_summaries_need_the_token(store):
    node = FakeNode()
    node.requester = SimpleNamespace(store=store)
    failed = run_job(store, nodes=("n1",), codes=(3,), took=1.5)
    pending = store.create_job(SPEC)
    async with client(node, web_ui=True) as http:
        assert (await http.get("/api/v1/ui/jobs")).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        jobs = (await http.get("/api/v1/ui/jobs", headers=auth)).json()
        assert [(j["id"], j["state"], j["duration"]) for j in jobs] == [
            (pending.id, "pending", None),
            (failed.id, "failed", 1.5),
        ]
        assert jobs[1]["module"] == DIGEST and jobs[1]["target"] == "any"
        assert [(e["node_id"], e["exit_code"]) for e in jobs[1]["executions"]] == [("n1", 3)]
        only = (await http.get("/api/v1/ui/jobs?state=failed,completed", headers=auth)).json()
        assert [j["id"] for j in only] == [failed.id]
        bad = await http.get("/api/v1/ui/jobs?state=done", headers=auth)
        assert bad.status_code == 400 and "unknown job state" in bad.json()["detail"]
        stats = (await http.get("/api/v1/ui/stats?minutes=5", headers=auth)).json()
        assert stats["states"] == {"failed": 1, "pending": 1}
        assert len(stats["minutes"]) == 5


async def test_summaries_on_a_node_that_keeps_no_jobs():
    async with client(FakeNode(), web_ui=True) as http:
        response = await http.get("/api/v1/ui/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 503 and "not a requester" in response.json()["detail"]


# ---- the page in Chromium, against real `swarm serve` processes --------------------------


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the web UI test needs Debian's chromium "
            "(`make install` installs it when run as root; or `apt-get install chromium`)",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `make install`", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def stderr_and_exit(text: str, code: int) -> bytes:
    """A module that writes ``text`` to stderr, then exits with ``code``."""
    data = "".join(f"\\{b:02x}" for b in text.encode())
    return wasmtime.wat2wasm(
        f"""(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "{data}")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const {len(text.encode())}))
            (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
            (call $proc_exit (i32.const {code}))))"""
    )


def submit(node, tmp_path: Path, name: str, module: bytes) -> str:
    with node.client() as api:
        path = tmp_path / f"{hashlib.sha256(module).hexdigest()[:16]}.wasm"
        path.write_bytes(module)
        return api.submit({"name": name, "task": {"module": api.upload_module(path)}})["id"]


def run_jobs(node, tmp_path: Path, jobs: list[tuple[str, bytes]]) -> list[dict]:
    """Submit every (name, module) to ``node``, then wait for all of them to end."""
    ids = [submit(node, tmp_path, name, module) for name, module in jobs]
    with node.client() as api:
        return [api.wait(job_id) for job_id in ids]


def save_screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=tmp_path / name, full_page=True)
    if folder := os.environ.get("SWARM_UI_SCREENSHOTS"):
        shutil.copy(tmp_path / name, Path(folder) / name)


def test_the_page_in_chromium(serve, browser, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    alpha = serve("alpha", "--web-ui", "--labels", "zone=eu,rack=<b>r1</b>")
    url = re.search(r"web ui:\s+(\S+)", alpha.banner).group(1)
    base = f"http://127.0.0.1:{alpha.exports['SWARM_API_PORT']}/"
    assert url == f"{base}#token={alpha.exports['SWARM_API_TOKEN']}"

    script = "<script>window.pwned = 1</script>"
    evil_name = '<img src=x onerror="window.pwned = 2">'
    ok, bad = run_jobs(
        alpha,
        tmp_path,
        [(evil_name, hello(f"hello {script}\n")), ("fails", stderr_and_exit("boom: on fire\n", 3))],
    )
    assert (ok["state"], bad["state"]) == ("completed", "failed")

    errors: list[str] = []

    def new_page():  # a new context: its own, empty sessionStorage
        page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    # Without the token: the form. A wrong token is refused; the right one opens the page.
    overview = new_page()
    overview.goto(base)
    expect(overview.locator("#login")).to_be_visible()
    expect(overview.locator("#overview")).to_be_hidden()
    overview.fill("#token-input", "wrong")
    overview.click("#login button[type=submit]")
    expect(overview.locator("#login-error")).to_contain_text("refused")
    overview.fill("#token-input", alpha.exports["SWARM_API_TOKEN"])
    overview.click("#login button[type=submit]")
    expect(overview.locator("#overview")).to_be_visible()

    # The node, and both jobs with their states; markup in a label or a name stays text.
    node_row = overview.locator(f'#nodes tbody tr[data-peer="{alpha.peer_id}"]')
    expect(node_row).to_contain_text("alpha")
    expect(node_row).to_contain_text("healthy")
    expect(node_row).to_contain_text("rack=<b>r1</b>")
    ok_row = overview.locator(f'#jobs tbody tr[data-job="{ok["id"]}"]')
    bad_row = overview.locator(f'#jobs tbody tr[data-job="{bad["id"]}"]')
    expect(ok_row.locator(".badge")).to_have_text("completed")
    expect(bad_row.locator(".badge")).to_have_text("failed")
    expect(ok_row.locator("td.name")).to_have_text(evil_name)
    expect(bad_row.locator("td").last).to_have_text("3")
    expect(bad_row).to_contain_text("alpha")  # the node it ran on, by name
    expect(overview.locator("#chart rect.bar.failed")).to_have_count(1)
    overview.click('#filters button[data-filter="failed"]')
    expect(overview.locator("#jobs tbody tr")).to_have_count(1)
    expect(bad_row).to_be_visible()
    overview.click('#filters button[data-filter="all"]')
    expect(overview.locator("#jobs tbody tr")).to_have_count(2)

    # Live: this tab stays open while a second node starts; it must show up in it
    # without a reload (checked at the end, so the node starts while the rest runs).
    overview.evaluate("window.notReloaded = true")
    beta = serve("beta", "--node-type", "compute", "--web-ui", "--peer", alpha.address, ready=False)

    # With the printed URL: the token moves out of the address bar into sessionStorage.
    page = new_page()
    page.goto(url)
    expect(page.locator("#overview")).to_be_visible()
    assert page.url == base
    token = page.evaluate("sessionStorage.getItem('swarm.api-token')")
    assert token == alpha.exports["SWARM_API_TOKEN"]

    # The failing job: its stderr, exit code, events, and its results as a download.
    page.locator(f'#jobs tbody tr[data-job="{bad["id"]}"] td.name a').click()
    expect(page.locator("#job")).to_be_visible()
    expect(page.locator("#job-state")).to_have_text("failed")
    expect(page.locator("#executions tbody tr")).to_have_count(1)
    expect(page.locator("#executions tbody td.num.bad")).to_have_text("3")
    expect(page.locator("#logs pre.stderr")).to_have_text("boom: on fire\n")
    expect(page.locator("#events li")).not_to_have_count(0)
    with page.expect_download() as download:
        page.click("#job-download")
    assert download.value.suggested_filename == f"job-{bad['id'][:8]}.tar.zst"
    assert Path(download.value.path()).read_bytes()[:4] == ZSTD_MAGIC
    save_screenshot(page, tmp_path, "web-ui-job.png")

    # The job whose stdout and name hold markup: shown as text, nothing ran.
    page.goto(f"{base}#/jobs/{ok['id']}")
    expect(page.locator("#job-name")).to_have_text(evil_name)
    expect(page.locator("#logs pre.stdout")).to_have_text(f"hello {script}\n")
    assert page.locator("#job script, #job img").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"

    # A running job: its page follows its stdout while it runs, then shows it ended.
    ticking = submit(alpha, tmp_path, "ticker", ticker(4, 0.3))
    page.goto(f"{base}#/jobs/{ticking}")
    stdout = page.locator("#logs pre.stdout")
    expect(stdout).to_contain_text("tick")
    assert page.locator("#job-state").inner_text() in ("pending", "running")
    expect(page.locator("#job-state")).to_have_text("completed")
    expect(stdout).to_have_text("tick\n" * 4)
    expect(page.locator("#job-stop")).to_be_hidden()  # an ended job cannot be stopped

    # A job stopped from its page: confirmed, cancelled where it ran, shown as stopped.
    endless = submit(alpha, tmp_path, "endless", ticker(1000, 0.2))
    page.goto(f"{base}#/jobs/{endless}")
    expect(page.locator("#logs pre.stdout")).to_contain_text("tick")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#job-stop")
    expect(page.locator("#job-state")).to_have_text("stopped")
    expect(page.locator("#executions tbody tr")).to_contain_text("cancelled")
    expect(page.locator("#job-stop")).to_be_hidden()

    beta.wait_ready()
    beta_row = overview.locator(f'#nodes tbody tr[data-peer="{beta.peer_id}"]')
    expect(beta_row).to_contain_text("beta", timeout=20_000)
    expect(beta_row).to_contain_text("compute")
    expect(overview.locator(f'#jobs tbody tr[data-job="{ticking}"]')).to_contain_text("completed")
    expect(overview.locator('#filters button[data-filter="completed"] .n')).to_have_text("2")
    expect(overview.locator('#filters button[data-filter="stopped"] .n')).to_have_text("1")
    assert overview.evaluate("window.notReloaded") is True
    assert overview.evaluate("typeof window.pwned") == "undefined"
    save_screenshot(overview, tmp_path, "web-ui.png")

    # A compute node's page lists the nodes and says that its jobs are elsewhere.
    page.goto(re.search(r"web ui:\s+(\S+)", beta.banner).group(1))
    expect(page.locator("#no-jobs")).to_be_visible()
    expect(page.locator(f'#nodes tbody tr[data-peer="{alpha.peer_id}"]')).to_be_visible()
    expect(page.locator(".jobs-card")).to_be_hidden()
    assert errors == []
