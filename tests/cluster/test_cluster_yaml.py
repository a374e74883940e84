"""cluster.yaml: a valid Ray autoscaler config whose node types provide every pool wfray uses."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import ray
import yaml

from wfray.adapters.ray.autoscale import max_bundles
from wfray.config import load_settings
from wfray.coordinator.coordinator import CoordinatorSettings
from wfray.coordinator.scaling import attempt_shape

ROOT = Path(__file__).resolve().parents[2]


def cluster() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    return loaded


def worker_types() -> dict[str, dict[str, Any]]:
    config = cluster()
    return {
        name: node
        for name, node in config["available_node_types"].items()
        if name != config["head_node_type"]
    }


def test_it_validates_against_the_schema_of_the_installed_ray() -> None:
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cluster(), schema)  # raises with the offending path if it does not


def test_every_pool_the_code_dispatches_to_is_provided_by_some_worker_type() -> None:
    # the pools come from the code: the coordinator's dispatch windows and the scaling caps
    pools = set(CoordinatorSettings().pool_windows) | set(max_bundles(load_settings(env={})))
    assert {"cpu", "io"} <= pools
    shapes = {pool: dict(attempt_shape(pool, None, {})) for pool in pools}
    # the io executor actor itself holds one io slot on an io node (wfray.adapters.ray.host)
    shapes["io executor"] = {"io": 1.0}
    for pool, shape in shapes.items():
        assert shape, pool
        hosts = [
            name
            for name, node in worker_types().items()
            if all(node["resources"].get(res, 0) >= amount for res, amount in shape.items())
        ]
        assert hosts, f"no worker node type provides {shape} for the {pool} pool"


def test_the_head_runs_no_steps_and_workers_scale_between_limits() -> None:
    config = cluster()
    assert config["available_node_types"][config["head_node_type"]]["resources"]["CPU"] == 0
    assert config["idle_timeout_minutes"] > 0
    for name, node in worker_types().items():
        assert 0 <= node["min_workers"] < node["max_workers"] <= config["max_workers"], name


def test_token_auth_stays_on_and_nothing_listens_on_every_interface() -> None:
    text = (ROOT / "cluster.yaml").read_text()
    config = cluster()
    commands = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=disabled" not in text
    assert "0.0.0.0" not in text
    assert "--dashboard-host=127.0.0.1" in commands


def test_the_setup_commands_install_wfray_on_every_node() -> None:
    config = cluster()
    mounted = {remote for remote, local in config["file_mounts"].items() if local == "./"}
    installs = [c for c in config["setup_commands"] if c.startswith("pip install")]
    assert any(any(path in c for path in mounted) for c in installs), config["setup_commands"]


# -- locked down by its own config (security issue 13, item 8) -------------------------------


def start_commands() -> dict[str, str]:
    config = cluster()
    return {
        "head": " ".join(config["head_start_ray_commands"]),
        "worker": " ".join(config["worker_start_ray_commands"]),
    }


def test_every_node_starts_ray_with_token_auth_and_a_token_file_mounted_from_outside() -> None:
    config = cluster()
    text = (ROOT / "cluster.yaml").read_text()
    assert "RAY_AUTH_TOKEN=" not in text  # the token itself never sits in the file
    for role, commands in start_commands().items():
        assert "RAY_AUTH_MODE=token" in commands, role
        match = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+?);?\s", commands)
        assert match, f"{role}: no RAY_AUTH_TOKEN_PATH for `ray start`"
        token_path = match.group(1)
        # the token file reaches every node through file_mounts, from a file on the
        # operator's machine (a path, not a literal token)
        assert token_path in config["file_mounts"], (role, token_path)
        source = config["file_mounts"][token_path]
        assert source.startswith(("~/", "/", "./")), source
    setup = " ".join(config["setup_commands"])
    assert "RAY_AUTH_MODE=token" in setup  # drivers on the nodes (`ray exec`) use it too


def test_the_metrics_port_is_reachable_from_private_networks_only() -> None:
    config = cluster()
    ports = {
        int(port)
        for commands in start_commands().values()
        for port in re.findall(r"--metrics-export-port[= ](\d+)", commands)
    }
    assert ports, "no --metrics-export-port: Ray would pick a random one"
    group = config["provider"].get("security_group")
    assert group, "no security_group: the node's ports are only as closed as the default"
    rules = group.get("IpPermissions", [])
    for rule in rules:
        ranges = [r["CidrIp"] for r in rule.get("IpRanges", [])]
        ranges += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        for cidr in ranges:
            network = ipaddress.ip_network(cidr)
            assert network.is_private and network.prefixlen > 0, f"{rule} is open to {cidr}"
    for port in ports:
        opened = [r for r in rules if r["FromPort"] <= port <= r["ToPort"]]
        assert opened, f"metrics port {port}: not reachable for a Prometheus in the network"


def test_file_mounts_leave_local_state_behind() -> None:
    config = cluster()
    excluded = set(config.get("rsync_exclude", []))
    assert {".venv", ".wfray", "demo-output"} <= excluded, excluded
    assert ".gitignore" in config.get("rsync_filter", [])  # and what git ignores


def test_the_readme_says_how_to_put_tls_in_front_of_the_http_api() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    assert "TLS" in section and "reverse proxy" in section
    assert "RAY_AUTH_MODE=token" in section
