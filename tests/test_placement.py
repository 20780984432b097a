"""Placement: constraints, the bid strategy (every decline reason), ranking and awards.
Also the I/O side of the bid strategy, `swarm.compute.inputs`, on real folders."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.compute.inputs import input_facts
from swarm.constraints import Operator
from swarm.errors import ConfigError
from swarm.jobspec import InputSource, JobSpec, ResourceRequest, Target
from swarm.models import AllowedPath, Role
from swarm.placement import (
    Bid,
    Constraint,
    Decline,
    InputFacts,
    NodeView,
    Offer,
    choose_awards,
    decide_bid,
    node_labels,
    parse_constraint,
    rank_bids,
    short_peer_id,
)

GiB = 1024**3
REQUESTER = "12D3KooWRequesterPeerIdAbcdefXyz123"

# Constraints


@pytest.mark.parametrize(
    "text,parsed",
    [
        ("zone=eu", Constraint("zone", Operator.EQUALS, ("eu",))),
        ("zone == eu", Constraint("zone", Operator.EQUALS, ("eu",))),
        ("zone=", Constraint("zone", Operator.EQUALS, ("",))),
        ("zone!=eu", Constraint("zone", Operator.NOT_EQUALS, ("eu",))),
        ("zone in (eu, us)", Constraint("zone", Operator.IN, ("eu", "us"))),
        ("zone in(eu)", Constraint("zone", Operator.IN, ("eu",))),
        ("zone notin (ap)", Constraint("zone", Operator.NOT_IN, ("ap",))),
        ("gpu", Constraint("gpu", Operator.EXISTS)),
        ("!spot", Constraint("spot", Operator.NOT_EXISTS)),
        (
            "  kubernetes.io/arch=amd64 ",
            Constraint("kubernetes.io/arch", Operator.EQUALS, ("amd64",)),
        ),
    ],
)
def test_parse_constraint(text, parsed):
    assert parse_constraint(text) == parsed
    assert parse_constraint(str(parsed)) == parsed  # str() is the canonical form


@pytest.mark.parametrize(
    "text",
    ["", "=eu", "zone=eu=us", "zone in ()", "zone in (a,)", "zone in a,b", "zone ~ eu", "a b", "!"],
)
def test_bad_constraints_are_config_errors(text):
    with pytest.raises(ConfigError, match="constraint"):
        parse_constraint(text)


LABELS = {"zone": "eu", "os": "linux", "gpu": "2"}


@pytest.mark.parametrize(
    "text,reason",
    [
        ("zone=eu", None),
        ("zone=us", "label zone=eu does not match zone=us"),
        ("rack=a1", "label rack is missing (needs rack=a1)"),
        ("zone!=us", None),
        ("rack!=a1", None),
        ("zone!=eu", "label zone=eu is excluded by zone!=eu"),
        ("zone in (us,eu)", None),
        ("zone in (us,ap)", "label zone=eu is not one of (us, ap)"),
        ("rack in (a1)", "label rack is missing (needs rack in (a1))"),
        ("zone notin (us)", None),
        ("rack notin (a1)", None),
        ("zone notin (us,eu)", "label zone=eu is excluded by zone notin (us,eu)"),
        ("gpu", None),
        ("spot", "label spot is missing"),
        ("!spot", None),
        ("!gpu", "label gpu=2 is present (constraint !gpu)"),
    ],
)
def test_constraint_matching(text, reason):
    constraint = parse_constraint(text)
    assert constraint.mismatch(LABELS) == reason
    assert constraint.matches(LABELS) is (reason is None)


@given(st.dictionaries(st.sampled_from("abc"), st.sampled_from(["x", "y", ""])))
def test_negations_are_complements(labels):
    def holds(text: str) -> bool:
        return parse_constraint(text).matches(labels)

    for key in "abc":
        for value in ("x", "y"):
            assert holds(f"{key}={value}") != holds(f"{key}!={value}")
            assert holds(f"{key} in ({value},z)") != holds(f"{key} notin ({value},z)")
        assert holds(key) != holds("!" + key)


def test_builtin_labels_and_operator_labels_win():
    labels = node_labels(
        {"zone": "eu", "gpu": "a100"}, name="n1", os_name="linux", arch="x86_64", gpus=1
    )
    assert labels == {"os": "linux", "arch": "x86_64", "name": "n1", "gpu": "a100", "zone": "eu"}
    assert "gpu" not in node_labels({}, name="n", os_name="linux", arch="arm64", gpus=0)


# The bid strategy

NODE = NodeView(
    peer_id="12D3KooWNode",
    roles=frozenset({Role.COMPUTE}),
    cpu=4.0,
    memory=8 * GiB,
    gpu=0,
    labels={"zone": "eu", "os": "linux"},
    running=1,
    queued=0,
    max_jobs=4,
)
DATA = InputSource("file:///data/x")
OFFER = Offer(job_id="job-1", requester=REQUESTER, resources=ResourceRequest(1.0, GiB, 0))
GOOD = InputFacts(DATA.source, True, "/data/x", exists=True, allowed=True)


@pytest.mark.parametrize(
    "offer,node,facts,reason",
    [
        (OFFER, replace(NODE, roles=frozenset({Role.REQUESTER})), {}, "not a compute node"),
        (
            OFFER,
            replace(NODE, trusted_requesters=frozenset({"12D3KooWOther"})),
            {},
            "requester 12D3Ko…Xyz123 is not trusted",
        ),
        (
            replace(OFFER, constraints=("os=linux", "zone=us")),
            NODE,
            {},
            "label zone=eu does not match zone=us",
        ),
        (replace(OFFER, resources=ResourceRequest(1, GiB, 2)), NODE, {}, "needs 2 GPUs, has 0"),
        (
            replace(OFFER, resources=ResourceRequest(1, GiB, 1)),
            NODE,
            {},
            "needs 1 GPU, has 0",
        ),
        (
            replace(OFFER, resources=ResourceRequest(1.5, GiB, 0)),
            replace(NODE, cpu=0.5),
            {},
            "needs 1.5 CPUs, has 0.5",
        ),
        (
            replace(OFFER, resources=ResourceRequest(1, 2 * GiB, 0)),
            replace(NODE, memory=GiB // 2),
            {},
            "needs 2.0 GiB of memory, has 512.0 MiB",
        ),
        (
            replace(OFFER, inputs=(InputSource("s3://bucket/key"),)),
            NODE,
            {"s3://bucket/key": InputFacts("s3://bucket/key", supported=False)},
            "input s3://bucket/key uses a source this node cannot serve",
        ),
        (
            replace(OFFER, inputs=(DATA,)),
            NODE,
            {},  # the I/O side said nothing about it: treated as unsupported
            "input file:///data/x uses a source this node cannot serve",
        ),
        (
            replace(OFFER, inputs=(InputSource("file://data/x"),)),
            NODE,
            {"file://data/x": InputFacts("file://data/x", supported=True)},
            "input file://data/x is not an absolute file:// path",
        ),
        (
            replace(OFFER, inputs=(DATA,)),
            NODE,
            {DATA.source: replace(GOOD, allowed=False, exists=False)},
            "input file:///data/x is not in this node's allow-list",
        ),
        (
            replace(OFFER, inputs=(DATA,)),
            NODE,
            {DATA.source: replace(GOOD, exists=False)},
            "input file:///data/x does not exist here",
        ),
        (
            replace(OFFER, inputs=(replace(DATA, writable=True),)),
            NODE,
            {DATA.source: GOOD},
            "input file:///data/x is allow-listed read-only here, and the job asks to write to it",
        ),
        (
            replace(OFFER, constraints=("zone =~ eu",)),
            NODE,
            {},
            "constraint 'zone =~ eu' is not understood",
        ),
    ],
)
def test_every_decline_reason(offer, node, facts, reason):
    answer = decide_bid(offer, node, facts)
    assert isinstance(answer, Decline)
    assert answer.reason.startswith(reason)
    assert (answer.job_id, answer.peer_id) == (offer.job_id, node.peer_id)
    assert "\n" not in answer.reason
    assert not answer.busy  # none of these goes away by waiting


@pytest.mark.parametrize(
    "resources,node,reason",
    [
        (OFFER.resources, replace(NODE, running=4), "busy: 4 of 4 job slots in use"),
        (OFFER.resources, replace(NODE, running=2, queued=2), "busy: 4 of 4 job slots in use"),
        (
            ResourceRequest(1.5, GiB, 0),
            replace(NODE, free_cpu=0.5),
            "busy: needs 1.5 CPUs, 0.5 free now",
        ),
        (
            ResourceRequest(1, 2 * GiB, 0),
            replace(NODE, free_memory=GiB // 2),
            "busy: needs 2.0 GiB of memory, 512.0 MiB free now",
        ),
        (
            ResourceRequest(1, GiB, 1),
            replace(NODE, gpu=2, free_gpu=0),
            "busy: needs 1 GPU, 0 free now",
        ),
    ],
)
def test_busy_declines_say_so_and_can_be_retried(resources, node, reason):
    answer = decide_bid(replace(OFFER, resources=resources), node, {})
    assert answer == Decline(OFFER.job_id, node.peer_id, reason, busy=True)


def test_checks_run_in_order_role_trust_constraints_resources_inputs_then_busy():
    everything_wrong = replace(
        OFFER,
        constraints=("zone=us",),
        resources=ResourceRequest(99, GiB, 0),
        inputs=(DATA,),
    )
    node = replace(NODE, running=4, trusted_requesters=frozenset())
    reasons = []
    for fix in (
        lambda n: replace(n, roles=frozenset({Role.COMPUTE})),
        lambda n: replace(n, trusted_requesters=None),
        lambda n: replace(n, labels={"zone": "us"}),
        lambda n: replace(n, cpu=128.0),
    ):
        node = fix(node)
        reasons.append(decide_bid(everything_wrong, node, {}).reason)
    node_with_data = {DATA.source: GOOD}
    reasons.append(decide_bid(everything_wrong, node, node_with_data).reason)
    assert [r.split(" ")[0] for r in reasons] == ["requester", "label", "needs", "input", "busy:"]


@pytest.mark.parametrize(
    "node,inputs,facts,bid",
    [
        (NODE, (), {}, Bid("job-1", "12D3KooWNode", False, 0.5, 1)),
        (
            replace(NODE, running=0, trusted_requesters=frozenset({REQUESTER})),
            (DATA,),
            {DATA.source: GOOD},
            Bid("job-1", "12D3KooWNode", True, 0.75, 0),
        ),
        (
            replace(NODE, running=0, queued=0, max_jobs=1),
            (replace(DATA, writable=True),),
            {DATA.source: replace(GOOD, writable_allowed=True)},
            Bid("job-1", "12D3KooWNode", True, 0.0, 0),
        ),
    ],
)
def test_bids(node, inputs, facts, bid):
    assert decide_bid(replace(OFFER, inputs=inputs), node, facts) == bid


def test_offer_from_spec():
    spec = JobSpec.from_dict(
        {"type": "ops", "constraints": ["gpu"], "task": {"module": "/m", "inputs": ["/d"]}}
    )
    offer = Offer.from_spec("j", REQUESTER, spec)
    assert offer.target is Target.ALL and offer.constraints == ("gpu",)
    assert offer.inputs == (InputSource("file:///d"),) and offer.resources == spec.resources


def test_short_peer_id():
    assert short_peer_id("12D3KooWAbcdefghijklmnXyz789") == "12D3Ko…Xyz789"
    assert short_peer_id("short") == "short"


# Ranking and awards


def bid(peer: str, has_data=False, capacity=0.5, queue=0) -> Bid:
    return Bid("job-1", peer, has_data, capacity, queue)


def test_ranking_order():
    bids = [
        bid("a", capacity=0.5, queue=1),
        bid("b", capacity=0.9),
        bid("c", has_data=True, capacity=0.1, queue=5),
        bid("d", capacity=0.5, queue=0),
        bid("e", capacity=0.5, queue=0),
        bid("f", capacity=0.5, queue=0),
    ]
    ranked = rank_bids(bids, failures={"d": 2, "e": 1})
    assert [b.peer_id for b in ranked] == ["c", "b", "f", "e", "d", "a"]


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans(), st.integers(0, 4))))
def test_ranking_is_deterministic_whatever_the_arrival_order(raw):
    bids = [bid(p, d, c / 4, c) for p, d, c in raw]
    failures = {"a": 1, "c": 3}
    assert rank_bids(bids, failures) == rank_bids(list(reversed(bids)), failures)


@pytest.mark.parametrize(
    "target,count,peers,awarded",
    [
        (Target.ANY, 1, "abc", "a"),
        (Target.ANY, 2, "cba", "ab"),
        (Target.ANY, 5, "abc", "abc"),  # fewer bids than asked: all of them
        (Target.ANY, 2, "aab", "ab"),  # one node, one award
        (Target.ALL, 1, "cab", "abc"),
        (Target.ALL, 1, "abca", "abc"),
        (Target.ANY, 1, "", ""),
    ],
)
def test_choose_awards(target, count, peers, awarded):
    bids = [bid(p) for p in peers]
    chosen, rejected = choose_awards(target, count, bids, failures={})
    assert "".join(b.peer_id for b in chosen) == awarded
    assert len(chosen) + len(rejected) == len(bids)
    assert sorted(chosen + rejected, key=id) == sorted(bids, key=id)


def test_awards_prefer_nodes_that_have_not_failed_the_job():
    chosen, rejected = choose_awards(Target.ANY, 1, [bid("a"), bid("b")], failures={"a": 1})
    assert [b.peer_id for b in chosen] == ["b"] and [b.peer_id for b in rejected] == ["a"]


# The I/O side: input facts on real folders and symlinks


@pytest.fixture
def tree(tmp_path):
    """allowed/{data.csv, sub/, link-out → ../secret, link-in → data.csv}, secret."""
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "data.csv").write_text("a,b\n")
    (tmp_path / "secret").write_text("no")
    os.symlink(tmp_path / "secret", allowed / "link-out")
    os.symlink(allowed / "data.csv", allowed / "link-in")
    (tmp_path / "alias").symlink_to(allowed)
    return tmp_path


def facts_for(path: str, *patterns: AllowedPath) -> InputFacts:
    source = "file://" + path
    return input_facts([source], patterns)[source]


def test_allowed_file_exists(tree):
    facts = facts_for(f"{tree}/allowed/data.csv", AllowedPath(f"{tree}/allowed"))
    assert facts == InputFacts(
        f"file://{tree}/allowed/data.csv",
        supported=True,
        path=f"{tree}/allowed/data.csv",
        exists=True,
        allowed=True,
        writable_allowed=False,
    )


def test_missing_file_inside_the_allow_list(tree):
    facts = facts_for(f"{tree}/allowed/nope", AllowedPath(f"{tree}/allowed"))
    assert facts.allowed and not facts.exists


def test_symlink_out_of_the_allow_list_is_refused(tree):
    facts = facts_for(f"{tree}/allowed/link-out", AllowedPath(f"{tree}/allowed"))
    assert facts.path == f"{tree}/secret"
    assert not facts.allowed and not facts.exists  # not even looked at


def test_dotdot_out_of_the_allow_list_is_refused(tree):
    assert not facts_for(f"{tree}/allowed/../secret", AllowedPath(f"{tree}/allowed")).allowed


def test_symlink_within_the_allow_list_is_fine(tree):
    facts = facts_for(f"{tree}/allowed/link-in", AllowedPath(f"{tree}/allowed"))
    assert facts.allowed and facts.exists and facts.path == f"{tree}/allowed/data.csv"


def test_a_symlinked_allow_list_entry_allows_its_target(tree):
    facts = facts_for(f"{tree}/allowed/data.csv", AllowedPath(f"{tree}/alias"))
    assert facts.allowed and facts.exists
    via_alias = facts_for(f"{tree}/alias/data.csv", AllowedPath(f"{tree}/allowed"))
    assert via_alias.allowed and via_alias.path == f"{tree}/allowed/data.csv"


@pytest.mark.parametrize(
    "pattern,relative,allowed",
    [
        ("allowed/*", "allowed/data.csv", True),
        ("allowed/*", "allowed/sub", True),
        ("allowed/*", "allowed", False),  # the glob matches what is inside, not the folder
        ("allowed/*.csv", "allowed/data.csv", True),
        ("allowed/*.txt", "allowed/data.csv", False),
        ("allow*", "allowed/sub", True),
        ("allowed/s?b", "allowed/sub", True),
        ("*/sub", "allowed/sub", True),
        ("allowed/sub", "allowed/data.csv", False),
    ],
)
def test_glob_patterns(tree, pattern, relative, allowed):
    assert facts_for(f"{tree}/{relative}", AllowedPath(f"{tree}/{pattern}")).allowed is allowed


def test_writable_needs_an_rw_pattern(tree):
    source = f"{tree}/allowed/data.csv"
    assert not facts_for(source, AllowedPath(f"{tree}/allowed")).writable_allowed
    facts = facts_for(source, AllowedPath(f"{tree}/allowed"), AllowedPath(f"{tree}/*", True))
    assert facts.writable_allowed


def test_brackets_in_a_resolved_pattern_folder_are_literal(tmp_path):
    folder = tmp_path / "[x]"
    folder.mkdir()
    (folder / "f").write_text("")
    (tmp_path / "alias").symlink_to(folder)
    assert facts_for(f"{folder}/f", AllowedPath(f"{tmp_path}/alias/*")).allowed
    assert not facts_for(f"{tmp_path}/x/f", AllowedPath(f"{tmp_path}/alias/*")).allowed


def test_unsupported_and_odd_sources(tree):
    facts = input_facts(["s3://b/k", "file://relative", "https://x"], (AllowedPath("/"),))
    assert facts["s3://b/k"] == InputFacts("s3://b/k", supported=False)
    assert facts["file://relative"] == InputFacts("file://relative", supported=True)
    assert facts["https://x"] == InputFacts("https://x", supported=True)  # any node downloads


def test_nothing_is_allowed_without_an_allow_list(tree):
    assert not facts_for(f"{tree}/allowed/data.csv").allowed


def test_facts_feed_the_bid_strategy(tree):
    inputs = (InputSource(f"file://{tree}/allowed/link-out"),)
    offer = replace(OFFER, inputs=inputs)
    facts = input_facts([i.source for i in inputs], (AllowedPath(f"{tree}/allowed"),))
    decline = decide_bid(offer, NODE, facts)
    assert (
        decline.reason == f"input file://{tree}/allowed/link-out is not in this node's allow-list"
    )
