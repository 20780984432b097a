"""Flag parsers and NodeConfig checks: typed values, or one-line ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.config import (
    Dataset,
    NodeConfig,
    parse_allowed_path,
    parse_dataset,
    parse_labels,
    parse_peers,
    parse_roles,
    parse_trusted_requesters,
    resolve_home,
)
from swarm.errors import ConfigError
from swarm.models import AllowedPath, Role

PEER = "/ip4/127.0.0.1/tcp/1235/p2p/12D3KooWF78qtKPqvAUDJcmwkKH9cevAdksmXESHT74nq7oGmCTk"


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        ("requester,compute", (Role.COMPUTE, Role.REQUESTER)),
        ("compute", (Role.COMPUTE,)),
        (" Requester , requester ", (Role.REQUESTER,)),
    ],
)
def test_roles(text, roles):
    assert parse_roles(text) == roles


@pytest.mark.parametrize("text", ["", "miner", "compute,gpu"])
def test_bad_roles(text):
    with pytest.raises(ConfigError):
        parse_roles(text)


def test_labels_merge_across_flags():
    assert parse_labels(["zone=eu,disk=ssd", "gpu=a100", "empty="]) == {
        "zone": "eu",
        "disk": "ssd",
        "gpu": "a100",
        "empty": "",
    }


@pytest.mark.parametrize("text", ["zone", "=eu", "a=1,b"])
def test_bad_labels(text):
    with pytest.raises(ConfigError, match="key=value"):
        parse_labels([text])


def test_allowed_paths(tmp_path):
    (tmp_path / "data").mkdir()
    assert parse_allowed_path(str(tmp_path / "data")) == AllowedPath(str(tmp_path / "data"))
    assert parse_allowed_path(f"{tmp_path}/data/*.csv:rw") == AllowedPath(
        f"{tmp_path}/data/*.csv", writable=True
    )
    assert parse_allowed_path(f"{tmp_path}/*/logs:ro").pattern == f"{tmp_path}/*/logs"


@pytest.mark.parametrize("suffix", ["missing", "missing/*.csv", "missing:rw"])
def test_allowed_paths_must_exist_up_to_the_first_wildcard(tmp_path, suffix):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_allowed_path(f"{tmp_path}/{suffix}")


def test_datasets(tmp_path):
    dataset = parse_dataset(f"logs={tmp_path}")
    assert (dataset.name, dataset.path) == ("logs", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_dataset(f"logs={tmp_path}/absent")
    with pytest.raises(ConfigError, match="NAME=PATH"):
        parse_dataset(str(tmp_path))


def test_peers_accept_repeats_and_commas():
    assert parse_peers([PEER, f"{PEER}, {PEER}"]) == (PEER, PEER, PEER)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not-a-multiaddr", "not a multiaddr"),
        ("/ip4/127.0.0.1/tcp/1235", "does not end in /p2p/"),
        ("/ip4/999.0.0.1/tcp/1235/p2p/x", "not a multiaddr"),
        (PEER.replace("/tcp/1235", "/udp/1235"), "no /tcp/"),
    ],
)
def test_bad_peers(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_peers([text])


def test_home_flag_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "env"))
    assert resolve_home(str(tmp_path / "flag")) == tmp_path / "flag"
    assert resolve_home() == tmp_path / "env"
    monkeypatch.delenv("SWARM_HOME")
    assert resolve_home() == Path("~/.swarm").expanduser()


def test_each_config_gets_its_own_token(tmp_path):
    assert NodeConfig(home=tmp_path).api_token != NodeConfig(home=tmp_path).api_token


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"roles": ()}, "at least one role"),
        ({"swarm_port": 70000}, "not a TCP port"),
        ({"api_host": "localhost"}, "not an IP address"),
        ({"api_host": "0.0.0.0", "api_token": None}, "without a token"),
        ({"heartbeat": 0.0}, "between"),
        ({"gpus": -1}, "0 or more"),
        ({"swarm_key": Path("/nonexistent/swarm.key")}, "cannot read swarm key"),
        (
            {"datasets": (Dataset("logs", Path("/a")), Dataset("logs", Path("/b")))},
            "--data logs is given twice",
        ),
    ],
)
def test_bad_configs(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        NodeConfig(home=tmp_path, **kwargs)


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([], None),
        (["12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"], 1),
        (
            [
                "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq,"
                "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
            ],
            2,
        ),
    ],
)
def test_trusted_requesters(texts, expected):
    trusted = parse_trusted_requesters(texts)
    assert (None if trusted is None else len(trusted)) == expected


@pytest.mark.parametrize("text", ["nope", "12D3KooWFoo", ",", "Qm123"])
def test_bad_trusted_requesters(text):
    with pytest.raises(ConfigError, match="--trusted-requesters"):
        parse_trusted_requesters([text])


def test_api_beyond_loopback_is_fine_with_a_token(tmp_path):
    assert NodeConfig(home=tmp_path, api_host="0.0.0.0").api_token
    assert NodeConfig(home=tmp_path, api_host="127.0.0.1", api_token=None).api_token is None
