"""Job spec files: every field, its default, its errors, and the dict round trip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm import wire
from swarm.errors import ConfigError
from swarm.executor.spec import DEFAULT_OUTPUTS_CAP, DEFAULT_STDOUT_CAP, DEFAULT_TIMEOUT, Limits
from swarm.jobspec import (
    InputSource,
    JobSpec,
    OutputCaps,
    ResourceRequest,
    Target,
    TaskSpec,
    load_job_spec,
    parse_duration,
    parse_job_spec,
)

ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "ab" * 32
MiB = 1024 * 1024


def spec_of(text: str, base: str | None = "/specs") -> JobSpec:
    return parse_job_spec(text, base_dir=Path(base) if base else None)


def test_minimal_spec_takes_every_default():
    spec = spec_of("task: {module: main.wasm}")
    assert spec == JobSpec(
        name="main",
        task=TaskSpec(module="/specs/main.wasm"),
        target=Target.ANY,
        count=1,
        constraints=(),
        resources=ResourceRequest(cpu=1.0, memory=512 * MiB, gpu=0),
    )
    task = spec.task
    assert (task.entry_point, task.args, task.env, task.inputs) == ("_start", (), (), ())
    assert task.timeout == DEFAULT_TIMEOUT == 1800
    assert task.caps == OutputCaps(DEFAULT_STDOUT_CAP, DEFAULT_STDOUT_CAP, DEFAULT_OUTPUTS_CAP)
    assert task.limits() == Limits()
    assert task.module_digest is None


def test_full_yaml_spec():
    spec = spec_of(
        """
name: word count
type: batch
count: 3
constraints: ["zone in (eu, us)", "!spot", gpu]
resources: {cpu: 0.5, memory: 1GiB, gpu: 1}
task:
  module: ../bin/main.wasm
  entry_point: run
  args: [--top, 10, "x y"]
  env: {LANG: C, DEPTH: 2}
  inputs:
    - file:///data/a:/in/a:ro
    - {source: /data/b, target: /rw, writable: true}
    - local/dir
  timeout: 1h30m
  memory: 256MiB
  caps: {stdout: 1MiB, stderr: 2048, outputs: 10M, output_files: 5}
"""
    )
    assert spec.name == "word count" and spec.count == 3 and spec.target is Target.ANY
    assert spec.constraints == ("zone in (eu,us)", "!spot", "gpu")
    assert spec.resources == ResourceRequest(cpu=0.5, memory=1024 * MiB, gpu=1)
    task = spec.task
    assert task.module == "/bin/main.wasm"
    assert task.entry_point == "run" and task.args == ("--top", "10", "x y")
    assert task.env == (("LANG", "C"), ("DEPTH", "2"))
    assert task.inputs == (
        InputSource("file:///data/a", "/in/a", False),
        InputSource("file:///data/b", "/rw", True),
        InputSource("file:///specs/local/dir", "/inputs", False),
    )
    assert task.timeout == 5400.0 and task.memory == 256 * MiB
    assert task.caps == OutputCaps(stdout=MiB, stderr=2048, outputs=10 * MiB, output_files=5)


def test_json_spec_with_type_ops():
    text = json.dumps({"type": "ops", "task": {"module": DIGEST}})
    spec = parse_job_spec(text, source="job.json")
    assert spec.target is Target.ALL and spec.count == 1
    assert spec.task.module == spec.task.module_digest == DIGEST and spec.name == "job"


def test_memory_of_task_and_resources_follow_each_other():
    assert spec_of("task: {module: m, memory: 1G}").resources.memory == 1024 * MiB
    assert spec_of("task: {module: m}\nresources: {memory: 64M}").task.memory == 64 * MiB


@pytest.mark.parametrize(
    "text,words",
    [
        ("", "is empty"),
        ("[1, 2]", "the job spec must be a mapping"),
        ("name: x", "has no task"),
        ("task: {modul: m}", "unknown field 'modul' in task: did you mean 'module'?"),
        ("tsk: {module: m}", "unknown field 'tsk' in the job spec: did you mean 'task'?"),
        ("task: {module: m}\nzzz: 1", "known: name, type, count"),
        ("task: {}", "task.module is missing"),
        ("task: m", "task must be a mapping"),
        ("task: {module: 'sha256:abc'}", "not a module id"),
        ("type: cluster\ntask: {module: m}", "use batch (--target any) or ops"),
        ("type: ops\ncount: 2\ntask: {module: m}", "count applies to type batch only"),
        ("count: 0\ntask: {module: m}", "count must be a whole number from 1"),
        ("count: two\ntask: {module: m}", "count must be a whole number"),
        ("count: true\ntask: {module: m}", "count must be a whole number"),
        ("name: ''\ntask: {module: m}", "name must be 1 to 128 printable characters"),
        ('name: "a\\n"\ntask: {module: m}', "name must be 1 to 128 printable characters"),
        ("constraints: zone=eu\ntask: {module: m}", "constraints must be a list"),
        ("constraints: ['zone =~ eu']\ntask: {module: m}", "constraints[0]: constraint"),
        ("resources: {cpu: 0}\ntask: {module: m}", "resources.cpu 0 must be a number"),
        ("resources: {cpus: 1}\ntask: {module: m}", "did you mean 'cpu'?"),
        ("resources: {gpu: -1}\ntask: {module: m}", "resources.gpu must be a whole number"),
        ("resources: {memory: lots}\ntask: {module: m}", "resources.memory: cannot read size"),
        ("task: {module: m, memory: 1K}", "task.memory 1024 bytes is too small"),
        ("task: {module: m, memory: 1G}\nresources: {memory: 1M}", "raise resources.memory"),
        ("task: {module: m, timeout: 0}", "task.timeout 0 must be more than zero"),
        ("task: {module: m, timeout: soon}", "task.timeout 'soon' is not a duration"),
        ("task: {module: m, entry_point: ''}", "task.entry_point must be"),
        ("task: {module: m, args: --x}", "task.args must be a list"),
        ("task: {module: m, args: [true]}", "task.args[0] must be a string: quote it"),
        ("task: {module: m, env: [A]}", "task.env[0] 'A' must look like KEY=VALUE"),
        ("task: {module: m, env: [A=1, A=2]}", "task.env sets A twice"),
        ("task: {module: m, env: {A: yes}}", "task.env.A must be a string: quote it"),
        ("task: {module: m, env: x}", "task.env must be a mapping"),
        ("task: {module: m, inputs: ['s3://b/k']}", "s3:// inputs are not supported yet"),
        ("task: {module: m, inputs: [{source: /d, target: rel}]}", "must be absolute"),
        ("task: {module: m, inputs: [{source: /d, target: /outputs}]}", "task.inputs[0]: /outputs"),
        ("task: {module: m, inputs: [{source: /d, writable: rw}]}", "writable must be true or"),
        ("task: {module: m, inputs: [{src: /d}]}", "did you mean 'source'?"),
        ("task: {module: m, caps: {stdout: -1}}", "task.caps.stdout -1 bytes is too small"),
        ("task: {module: m, caps: {stdout: -1K}}", "task.caps.stdout: cannot read size"),
        ("task: {module: m, caps: {output_files: 1.5}}", "task.caps.output_files must be"),
        ("task: {module: m, caps: {outputs: 99999999999999999999}}", "is too large"),
        ("task: [unclosed", "cannot read the job spec"),
    ],
)
def test_errors_name_the_field_and_the_fix(text, words):
    with pytest.raises(ConfigError) as caught:
        spec_of(text)
    message = str(caught.value)
    assert words in message
    assert "\n" not in message


def test_relative_input_without_a_base_is_refused():
    with pytest.raises(ConfigError, match=r"task.inputs\[0\] 'data' must be an absolute path"):
        spec_of("task: {module: m, inputs: [data]}", base=None)


def test_without_a_base_paths_stay_as_written():
    assert spec_of("task: {module: bin/m.wasm}", base=None).task.module == "bin/m.wasm"


@pytest.mark.parametrize(
    "value,seconds",
    [
        (90, 90.0),
        (0.5, 0.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        (" 1h 30m ", 5400.0),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "m", "30x", "1h30", "-5s", "0", 0, -1, True, "nan"])
def test_parse_duration_refuses(value):
    with pytest.raises(ConfigError, match="duration|more than zero"):
        parse_duration(value)


def test_load_job_spec_resolves_the_module_next_to_the_file(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "main.wasm").write_bytes(b"\0asm")
    (tmp_path / "jobs").mkdir()
    path = tmp_path / "jobs" / "job.yaml"
    path.write_text("task:\n  module: ../bin/main.wasm\n  inputs: [../data]\n")
    spec = load_job_spec(path)
    assert spec.task.module == str(tmp_path / "bin" / "main.wasm")
    assert spec.task.inputs[0].source == f"file://{tmp_path}/data"


def test_load_job_spec_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read job spec"):
        load_job_spec(tmp_path / "nope.yaml")
    path = tmp_path / "job.yaml"
    path.write_text("task: {module: missing.wasm}")
    with pytest.raises(ConfigError, match="missing.wasm in .* does not exist: build it"):
        load_job_spec(path)
    bad = tmp_path / "job.json"
    bad.write_text('{"task": ')
    with pytest.raises(ConfigError, match=r"cannot read the job spec in .*job.json: Expecting"):
        load_job_spec(bad)


@pytest.mark.parametrize("name", ["wordcount.yaml", "csvstats-all.json"])
def test_example_specs_parse(name):
    path = ROOT / "examples" / "jobs" / name
    spec = parse_job_spec(path.read_text(), base_dir=path.parent, source=str(path))
    assert Path(spec.task.module).parent.parent == ROOT / "examples"
    assert spec.task.inputs and spec.task.inputs[0].source.startswith("file:///")
    assert spec.target is (Target.ALL if name.endswith(".json") else Target.ANY)


@pytest.mark.parametrize(
    "text,message",
    [
        ("retries: -1", "retries must be a whole number from 0 to 100"),
        ("retries: many", "retries must be a whole number"),
        ("queue_timeout: soon", "queue_timeout 'soon' is not a duration"),
        ("queue_timeout: true", "queue_timeout must be seconds"),
        ("queue_timeout: -5", "queue_timeout -5 must be more than zero"),
    ],
)
def test_retries_and_queue_timeout_are_checked(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_job_spec(f"{text}\ntask: {{module: {DIGEST}}}")


def test_retries_and_queue_timeout_defaults_and_forms():
    spec = parse_job_spec(f"task: {{module: {DIGEST}}}")
    assert (spec.retries, spec.queue_timeout) == (2, 0.0)
    spec = parse_job_spec(f"retries: 0\nqueue_timeout: 1h30m\ntask: {{module: {DIGEST}}}")
    assert (spec.retries, spec.queue_timeout) == (0, 5400.0)


def test_the_specs_in_the_docs_parse():
    text = (ROOT / "docs" / "JOB_SPEC.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "task:" in b]
    assert len(blocks) >= 2
    for block in blocks:
        parse_job_spec(block, base_dir=ROOT / "examples" / "jobs")


def test_with_module_swaps_in_the_uploaded_id():
    spec = spec_of("task: {module: m.wasm}")
    assert spec.with_module(DIGEST).task.module_digest == DIGEST
    assert spec.with_module(DIGEST).name == "m"


# Round trip: any valid spec → to_dict → (JSON | msgpack) → from_dict gives it back.

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12)
_word = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_sizes = st.integers(min_value=64 * 1024, max_value=2**40)
_paths = st.lists(_word, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
_constraint = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", _word, _word),
    st.builds(lambda k, v: f"{k}!={v}", _word, _word),
    st.builds(lambda k, vs: f"{k} in ({','.join(vs)})", _word, st.lists(_word, min_size=1)),
    st.builds(lambda k, vs: f"{k} notin ({','.join(vs)})", _word, st.lists(_word, min_size=1)),
    _word,
    _word.map(lambda k: "!" + k),
)


@st.composite
def job_specs(draw) -> JobSpec:
    memory = draw(_sizes)
    env_keys = draw(st.lists(_word, unique=True, max_size=3))
    task = TaskSpec(
        module=draw(st.one_of(_paths, st.just(DIGEST))),
        entry_point=draw(st.one_of(st.just("_start"), _word)),
        args=tuple(draw(st.lists(_text, max_size=3))),
        env=tuple((k, draw(_text)) for k in env_keys),
        inputs=tuple(
            InputSource("file://" + draw(_paths), draw(_paths), draw(st.booleans()))
            for _ in range(draw(st.integers(0, 2)))
        ),
        timeout=draw(st.floats(min_value=0.001, max_value=1e7)),
        memory=memory,
        caps=OutputCaps(
            draw(st.integers(0, 2**40)),
            draw(st.integers(0, 2**40)),
            draw(st.integers(0, 2**40)),
            draw(st.integers(0, 10**6)),
        ),
    )
    target = draw(st.sampled_from(Target))
    return JobSpec(
        name=draw(_word),
        task=task,
        target=target,
        count=1 if target is Target.ALL else draw(st.integers(1, 10_000)),
        constraints=tuple(draw(st.lists(_constraint, max_size=3))),
        resources=ResourceRequest(
            cpu=draw(st.floats(min_value=0.01, max_value=64)),
            memory=memory + draw(st.integers(0, 2**30)),
            gpu=draw(st.integers(0, 8)),
        ),
        retries=draw(st.integers(0, 100)),
        queue_timeout=draw(st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=1e7))),
    )


@settings(max_examples=150, deadline=None)
@given(job_specs())
def test_to_dict_round_trips_through_json_and_msgpack(spec):
    data = spec.to_dict()
    assert JobSpec.from_dict(data) == spec
    assert JobSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert JobSpec.from_dict(wire.unpack(wire.pack({"spec": data}))["spec"]) == spec


@pytest.mark.parametrize(
    "data",
    [
        {"name": "\ud800", "task": {"module": "sha256:" + "ab" * 32}},
        {"task": {"module": "sha256:" + "ab" * 32, "env": {"\udfff": "x"}}},
        {"task": {"module": "sha256:" + "ab" * 32, "args": ["ok", "\ud83d"]}},
    ],
)
def test_text_that_is_not_unicode_is_refused_in_one_line(data):
    with pytest.raises(ConfigError, match="not valid Unicode") as excinfo:
        JobSpec.from_dict(data)
    assert "\n" not in str(excinfo.value)
