"""Input sources beyond local files: parsing, the bid strategy's reasons, has_data, and
dataset lookups on real folders (``data://NAME/sub/path`` against ``--data NAME=PATH``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from swarm import schema
from swarm.compute.inputs import input_facts
from swarm.config import Dataset, parse_dataset
from swarm.errors import ConfigError, ProtocolError
from swarm.jobspec import InputSource, JobSpec, ResourceRequest, Target, parse_job_spec
from swarm.models import AllowedPath
from swarm.placement import Bid, Decline, InputFacts, decide_bid
from swarm.protocol import JobAnnounce
from swarm.storage.inputs import InputArg, check_input, make_input, parse_input
from tests.test_placement import NODE, OFFER  # a node that bids for the offer, but for inputs

DIGEST = "ab" * 32


# Parsing: the -i form and the spec's mapping form


@pytest.mark.parametrize(
    "text,source,target,sha256",
    [
        ("data://logs-eu", "data://logs-eu", "/inputs", None),
        ("data://logs-eu/", "data://logs-eu", "/inputs", None),
        ("data://logs-eu:/data", "data://logs-eu", "/data", None),
        ("data://logs-eu:ro", "data://logs-eu", "/inputs", None),
        (
            "data://logs-eu/2026//jan/./x.log:/in/x.log",
            "data://logs-eu/2026/jan/x.log",
            "/in/x.log",
            None,
        ),
        ("data://a.b_c-9/sub:/d/", "data://a.b_c-9/sub", "/d", None),
        ("https://host/a.csv", "https://host/a.csv", "/inputs", None),
        ("HTTPS://host/a.csv", "https://host/a.csv", "/inputs", None),
        ("http://host/dir/a%20b.csv", "http://host/dir/a%20b.csv", "/inputs", None),
        ("https://host:8080/a.csv", "https://host:8080/a.csv", "/inputs", None),
        ("https://host:8080/a.csv:/inputs", "https://host:8080/a.csv", "/inputs", None),
        ("https://host:8080/a.csv:/data:ro", "https://host:8080/a.csv", "/data", None),
        (
            "http://[::1]:8080/d/a.csv?x=1&y=2:/data",
            "http://[::1]:8080/d/a.csv?x=1&y=2",
            "/data",
            None,
        ),
        ("https://u:p@host/a.csv", "https://u:p@host/a.csv", "/inputs", None),
        (f"https://host/a.csv#sha256={DIGEST.upper()}", "https://host/a.csv", "/inputs", DIGEST),
        (f"https://host/a.csv#sha256={DIGEST}:/data", "https://host/a.csv", "/data", DIGEST),
        ("file:///srv/x:/in", "file:///srv/x", "/in", None),
        ("/odd:name", "file:///odd:name", "/inputs", None),
    ],
)
def test_parse_input_kinds(text, source, target, sha256):
    arg = parse_input(text)
    assert arg == InputArg(source=source, target=target, writable=False, sha256=sha256)
    check_input(arg)  # the canonical form passes the nodes' own check


@pytest.mark.parametrize(
    "text,words",
    [
        ("data://logs-eu:rw", "dataset inputs are read-only; write results to /outputs"),
        ("data://logs-eu/x:/in:rw", "dataset inputs are read-only"),
        ("data://", "names no dataset: write data://NAME"),
        ("data:///sub", "names no dataset"),
        ("data://a$b/x", "dataset name 'a$b' must be 1 to 64 letters"),
        ("data://-x", "dataset name '-x'"),
        ("data://logs/../etc", "a dataset path must not contain '..'"),
        ("data://logs/a/..", "must not contain '..'"),
        ("https://host/a.csv:rw", "URL inputs are read-only"),
        ("https://host/", "must end in a file name, like https://example.org/data.csv"),
        ("https://host", "must end in a file name"),
        ("https://host/..", "must end in a file name"),
        ("https://host/a%2Fb", "must end in a file name"),
        ("https:///a.csv", "a URL input needs a host"),
        ("https://host:99999/a.csv", "not a valid URL"),
        ("https://host/a b.csv", "must not contain spaces"),
        ("https://host/a.csv#top", "the only fragment a URL input may have is #sha256="),
        ("https://host/a.csv#sha256=abc", "sha256 must be 64 hex digits"),
        ("s3://bucket/key", "s3:// inputs are not supported yet"),
        ("ftp://host/a.csv", "ftp:// inputs are not supported yet"),
        (":/inputs", "has no source path"),
        ("data://logs:/outputs", "/outputs is the job's own output directory"),
    ],
)
def test_parse_input_refuses_in_one_line(text, words):
    with pytest.raises(ConfigError) as caught:
        parse_input(text)
    message = str(caught.value)
    assert words in message
    assert message.startswith(f"input {text!r}")
    assert "\n" not in message


def spec_inputs(*inputs) -> tuple[InputSource, ...]:
    return JobSpec.from_dict({"task": {"module": "/m.wasm", "inputs": list(inputs)}}).task.inputs


def test_spec_mapping_form_with_sha256():
    (url,) = spec_inputs({"source": "https://h/a.csv", "target": "/data", "sha256": DIGEST.upper()})
    assert url == InputSource("https://h/a.csv", "/data", False, DIGEST)
    (same,) = spec_inputs({"source": f"https://h/a.csv#sha256={DIGEST}", "sha256": DIGEST})
    assert same == InputSource("https://h/a.csv", "/inputs", False, DIGEST)
    (dataset,) = spec_inputs("data://logs/2026:/logs")
    assert dataset == InputSource("data://logs/2026", "/logs")


@pytest.mark.parametrize(
    "item,words",
    [
        (
            {"source": "/d", "sha256": DIGEST},
            "task.inputs[0]: sha256 applies to http(s):// inputs only",
        ),
        ({"source": "data://x", "sha256": DIGEST}, "sha256 applies to http(s):// inputs only"),
        ({"source": "https://h/a", "sha256": 5}, "task.inputs[0].sha256 must be 64 hex digits"),
        ({"source": "https://h/a", "sha256": "x" * 64}, "task.inputs[0]: sha256 must be 64 hex"),
        (
            {"source": f"https://h/a#sha256={DIGEST}", "sha256": "cd" * 32},
            "two different sha256 digests are given",
        ),
        (
            {"source": "data://logs", "writable": True},
            "task.inputs[0]: dataset inputs are read-only",
        ),
        ({"source": "https://h/a", "writable": True}, "task.inputs[0]: URL inputs are read-only"),
        ({"source": "https://h/a", "sha": DIGEST}, "did you mean 'sha256'?"),
        ("data://../x", "task.inputs[0]: dataset name '..'"),
    ],
)
def test_spec_input_errors(item, words):
    with pytest.raises(ConfigError) as caught:
        spec_inputs(item)
    assert words in str(caught.value)


def test_canonical_spec_round_trips_with_url_and_dataset_inputs():
    spec = JobSpec.from_dict(
        {
            "task": {
                "module": "/m.wasm",
                "inputs": [f"https://h/a.csv#sha256={DIGEST}:/data", "data://logs/x", "/local"],
            }
        }
    )
    data = spec.to_dict()
    assert data["task"]["inputs"][0] == {
        "source": "https://h/a.csv",
        "target": "/data",
        "writable": False,
        "sha256": DIGEST,
    }
    assert JobSpec.from_dict(data) == spec


def test_inputs_travel_in_announces_with_bounded_digests():
    inputs = (InputSource("https://h/a.csv", sha256=DIGEST), InputSource("data://logs/x"))
    announce = JobAnnounce("j", "r", 1, "sha256:" + DIGEST, 10, ResourceRequest(), inputs=inputs)
    assert schema.decode(schema.encode(announce), JobAnnounce) == announce
    body = schema.to_map(announce)
    body["inputs"][0]["sha256"] = "a" * 65
    with pytest.raises(ProtocolError, match=r"sha256 has 65 characters, at most 64"):
        schema.from_map(body, JobAnnounce)
    del body["inputs"][0]["sha256"]  # an older requester's announce still decodes
    assert schema.from_map(body, JobAnnounce).inputs[0].sha256 is None


def test_swarm_wasm_exec_mounts_local_paths_only():
    assert parse_input("/srv/x").to_mount().source == Path("/srv/x")
    with pytest.raises(ConfigError, match="only local paths can be mounted here"):
        parse_input("data://logs").to_mount()


def test_make_input_resolves_relative_paths_from_the_base(tmp_path):
    assert make_input("d", base_dir=tmp_path).source == f"file://{tmp_path}/d"
    with pytest.raises(ConfigError, match="must be an absolute path"):
        make_input("d", base_dir=None)


@pytest.mark.parametrize("name", ["logs eu", "a/b", "", "x" * 65, "../x"])
def test_dataset_names_are_checked_at_serve(tmp_path, name):
    with pytest.raises(ConfigError):
        parse_dataset(f"{name}={tmp_path}")
    assert parse_dataset(f"logs-eu.v2={tmp_path}") == Dataset("logs-eu.v2", tmp_path)


# The bid strategy: reasons and has_data (pure)

LOGS = InputSource("data://logs-eu")
LOGS_2026 = InputSource("data://logs-eu/2026")
URL = InputSource("https://h/a.csv")
FILE = InputSource("file:///data/x")
HOSTED = InputFacts(LOGS.source, True, "/srv/logs", exists=True, allowed=True, hosted=True)


@pytest.mark.parametrize(
    "source,facts,reason",
    [
        (LOGS, InputFacts(LOGS.source, True), "dataset logs-eu is not hosted here"),
        (
            LOGS_2026,
            InputFacts(LOGS_2026.source, True, "/srv/logs/2026", allowed=True, hosted=True),
            "input data://logs-eu/2026 does not exist here",
        ),
        (
            LOGS_2026,
            InputFacts(LOGS_2026.source, True, hosted=True),
            "input data://logs-eu/2026 leads out of dataset logs-eu here",
        ),
        (
            replace(LOGS, writable=True),
            HOSTED,
            "input data://logs-eu: dataset inputs are read-only; write results to /outputs",
        ),
        (
            InputSource("data://logs-eu/../etc"),
            None,
            "input data://logs-eu/../etc: a dataset path must not contain '..'",
        ),
        (InputSource("data://a b"), None, "input data://a b: dataset name 'a b' must be"),
        (replace(URL, writable=True), InputFacts(URL.source, True), "input https://h/a.csv: URL"),
        (InputSource("https://h/"), None, "input https://h/: a URL input must end in a file name"),
        (replace(URL, sha256="AB" * 32), None, "input https://h/a.csv: sha256 must be 64 lower"),
        (InputSource("https://h/a.csv#x"), None, "input https://h/a.csv#x: the URL is not"),
        (replace(FILE, sha256=DIGEST), None, "input file:///data/x: sha256 applies to http(s)://"),
        (
            InputSource("s3://b/k"),
            InputFacts("s3://b/k", False),
            "input s3://b/k uses a source this node cannot serve "
            "(it serves file://, data:// and http(s):// inputs)",
        ),
    ],
)
def test_input_decline_reasons(source, facts, reason):
    facts_by_source = {} if facts is None else {source.source: facts}
    answer = decide_bid(replace(OFFER, inputs=(source,)), NODE, facts_by_source)
    assert isinstance(answer, Decline)
    assert answer.reason.startswith(reason), answer.reason
    assert "\n" not in answer.reason


GOOD_FILE = InputFacts(FILE.source, True, "/data/x", exists=True, allowed=True)


@pytest.mark.parametrize(
    "inputs,facts,has_data",
    [
        ((), {}, False),
        ((URL,), {URL.source: InputFacts(URL.source, True)}, False),
        ((LOGS,), {LOGS.source: HOSTED}, True),
        ((FILE,), {FILE.source: GOOD_FILE}, True),
        ((URL, LOGS), {URL.source: InputFacts(URL.source, True), LOGS.source: HOSTED}, True),
    ],
)
def test_has_data_only_for_data_the_node_holds(inputs, facts, has_data):
    answer = decide_bid(replace(OFFER, inputs=inputs), NODE, facts)
    assert isinstance(answer, Bid)
    assert answer.has_data is has_data


# Dataset lookups on real folders


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "logs"
    (root / "2026").mkdir(parents=True)
    (root / "2026" / "jan.log").write_text("a b c\n")
    (tmp_path / "secret").write_text("not yours\n")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "escape-dir").symlink_to(tmp_path)
    (root / "latest").symlink_to(root / "2026")
    (tmp_path / "alias").symlink_to(root)
    return root


def facts_of(source: str, *datasets: Dataset) -> InputFacts:
    return input_facts([source], (AllowedPath("/"),), datasets)[source]


def test_a_dataset_resolves_to_this_nodes_copy(dataset):
    logs = Dataset("logs-eu", dataset)
    assert facts_of("data://logs-eu", logs) == InputFacts(
        "data://logs-eu", True, str(dataset), exists=True, allowed=True, hosted=True
    )
    jan = facts_of("data://logs-eu/2026/jan.log", logs)
    assert (jan.path, jan.exists, jan.hosted) == (str(dataset / "2026" / "jan.log"), True, True)
    via_link = facts_of("data://logs-eu/latest/jan.log", logs)  # a symlink inside is fine
    assert via_link.path == str(dataset / "2026" / "jan.log") and via_link.exists
    aliased = facts_of("data://logs-eu/2026", Dataset("logs-eu", dataset.parent / "alias"))
    assert aliased.path == str(dataset / "2026") and aliased.exists  # a symlinked root too


def test_missing_escaping_and_unhosted_dataset_paths(dataset):
    logs = Dataset("logs-eu", dataset)
    missing = facts_of("data://logs-eu/2027", logs)
    assert (missing.hosted, missing.exists, missing.path) == (True, False, str(dataset / "2027"))
    for source in ("data://logs-eu/escape", "data://logs-eu/escape-dir/secret"):
        facts = facts_of(source, logs)
        assert (facts.hosted, facts.path, facts.exists) == (True, None, False)
    assert facts_of("data://logs-eu", Dataset("other", dataset)) == InputFacts(
        "data://logs-eu", True
    )
    assert not facts_of("data://logs-eu/../x", logs).hosted  # the bid strategy says why


def test_dataset_facts_feed_the_bid_strategy(dataset):
    logs = (Dataset("logs-eu", dataset),)
    reasons = {}
    for path in ("", "/2027", "/escape", "/2026"):
        source = InputSource(f"data://logs-eu{path}")
        facts = input_facts([source.source], (), logs)
        answer = decide_bid(replace(OFFER, inputs=(source,)), NODE, facts)
        reasons[path] = answer.reason if isinstance(answer, Decline) else answer.has_data
    assert reasons == {
        "": True,
        "/2027": "input data://logs-eu/2027 does not exist here",
        "/escape": "input data://logs-eu/escape leads out of dataset logs-eu here",
        "/2026": True,
    }
    elsewhere = input_facts(["data://logs-eu"], (), ())
    assert decide_bid(replace(OFFER, inputs=(LOGS,)), NODE, elsewhere).reason == (
        "dataset logs-eu is not hosted here"
    )
    assert os.path.exists(dataset / "escape")  # the link exists; it is only refused


def test_the_dataset_example_spec_parses():
    path = Path(__file__).resolve().parent.parent / "examples" / "jobs" / "wordcount-dataset.yaml"
    spec = parse_job_spec(path.read_text(), base_dir=path.parent, source=str(path))
    assert spec.task.inputs == (InputSource("data://books", "/inputs"),)
    assert spec.target is Target.ALL
