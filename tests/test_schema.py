"""Typed wire messages: decoding is total, bounded and says where a message is wrong."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm import schema
from swarm.errors import ProtocolError
from swarm.jobspec import JobSpec
from swarm.protocol import (
    Ack,
    Answers,
    Award,
    BidMessage,
    DeclineMessage,
    JobAnnounce,
    JobAnnounces,
    Log,
    Reject,
    Replies,
    ResultEnd,
    RunEnd,
)

SPEC = JobSpec.from_dict(
    {
        "name": "wc",
        "constraints": ["zone=eu"],
        "task": {
            "module": "sha256:" + "a" * 64,
            "args": ["-v"],
            "env": {"LANG": "C"},
            "inputs": [{"source": "file:///data", "target": "/inputs"}],
        },
    }
)
ANNOUNCE = JobAnnounce(
    job_id="j1",
    requester="12D3KooWpeer",
    seq=time.time_ns(),
    module="sha256:" + "a" * 64,
    module_size=1234,
    resources=SPEC.resources,
    constraints=SPEC.constraints,
    inputs=SPEC.task.inputs,
)
SAMPLES = [
    JobAnnounces((ANNOUNCE, ANNOUNCE)),
    Award("j1", "e1", SPEC),
    Replies(awards=(Award("j1", "e1", SPEC),), rejects=(Reject("j2", "taken"),)),
    Answers(bids=(BidMessage("j1", True, 0.5, 2),), declines=(DeclineMessage("j2", "busy", True),)),
    RunEnd("completed", None, "", 0.25, 6, 0, False, True, 0),
    Log("stdout", b"hi\n"),
    ResultEnd(),
    Ack(),
]
CLASSES = [type(m) for m in SAMPLES]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.TYPE)
def test_every_message_round_trips_through_its_map_and_bytes(message):
    assert schema.from_map(schema.to_map(message), type(message)) == message
    assert schema.decode(schema.encode(message), *CLASSES) == message


def test_a_bad_value_deep_inside_is_named_by_its_path():
    body = schema.to_map(Award("j1", "e1", SPEC))
    body["spec"]["task"]["env"][0][1] = 7
    with pytest.raises(ProtocolError) as caught:
        schema.from_map(body, Award)
    assert str(caught.value) == "award.spec.task.env[][] is int '7', expected a string"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda b: b.pop("job_id"), "award: field 'job_id' is missing"),
        (lambda b: b.update(extra=1), "award: unknown field 'extra'"),
        (lambda b: b["spec"].update(type="often"), "award.spec: unknown field 'type'"),
        (
            lambda b: b["spec"].update(target="most"),
            "award.spec.target: 'most' is not one of ['any', 'all']",
        ),
        (
            lambda b: b["spec"].update(constraints=["c"] * 2000),
            "award.spec.constraints has 2000 items, at most 1024 allowed",
        ),
        (lambda b: b.update(job_id="x" * 200), "award.job_id has 200 characters, at most 128"),
        (lambda b: b["spec"].update(task=[]), "award.spec.task is a list, expected a map"),
        (lambda b: b.update(v=9), "award message of unsupported version 9"),
        (lambda b: b.update(type="bid"), "unexpected message type 'bid' (expected award)"),
    ],
)
def test_each_kind_of_bad_message_gets_its_own_one_line_error(change, error):
    body = schema.to_map(Award("j1", "e1", SPEC))
    change(body)
    with pytest.raises(ProtocolError) as caught:
        schema.from_map(body, Award)
    assert str(caught.value).startswith(error)


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.sampled_from(SAMPLES), st.data())
def test_any_change_to_a_message_decodes_or_raises_protocol_error(message, data):
    body = schema.to_map(message)
    target = body  # a message's map always holds "type" and "v": never empty
    while True:  # walk to a random spot and put any value there
        key = data.draw(
            st.sampled_from(list(target) if isinstance(target, dict) else range(len(target)))
        )
        child = target[key]
        if not isinstance(child, dict | list) or not child or data.draw(st.booleans()):
            break
        target = child  # go into a non-empty map or list
    target[key] = data.draw(values)
    try:
        assert isinstance(schema.from_map(body, *CLASSES), tuple(CLASSES))
    except ProtocolError:
        pass
