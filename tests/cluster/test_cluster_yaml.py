"""cluster.yaml and cluster-ha.yaml: valid Ray autoscaler configs whose node types provide
every pool wfray uses, locked down, and (cluster-ha.yaml) shaped to survive losing the head
without a secret in the file."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

from wfray.adapters.ray.autoscale import max_bundles
from wfray.config import load_settings
from wfray.coordinator.coordinator import CoordinatorSettings
from wfray.coordinator.scaling import attempt_shape

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("cluster.yaml", "cluster-ha.yaml")


@pytest.fixture(params=CONFIGS)
def name(request: pytest.FixtureRequest) -> str:
    """Each shipped cluster configuration, in turn."""
    return str(request.param)


def cluster(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def worker_types(name: str) -> dict[str, dict[str, Any]]:
    config = cluster(name)
    return {
        node_type: node
        for node_type, node in config["available_node_types"].items()
        if node_type != config["head_node_type"]
    }


def test_it_validates_against_the_schema_of_the_installed_ray(name: str) -> None:
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cluster(name), schema)  # raises with the offending path if it does not


def test_every_pool_the_code_dispatches_to_is_provided_by_some_worker_type(name: str) -> None:
    # the pools come from the code: the coordinator's dispatch windows and the scaling caps
    pools = set(CoordinatorSettings().pool_windows) | set(max_bundles(load_settings(env={})))
    assert {"cpu", "io"} <= pools
    shapes = {pool: dict(attempt_shape(pool, None, {})) for pool in pools}
    # the io executor actor itself holds one io slot on an io node (wfray.adapters.ray.host)
    shapes["io executor"] = {"io": 1.0}
    for pool, shape in shapes.items():
        assert shape, pool
        hosts = [
            node_type
            for node_type, node in worker_types(name).items()
            if all(node["resources"].get(res, 0) >= amount for res, amount in shape.items())
        ]
        assert hosts, f"no worker node type provides {shape} for the {pool} pool"


def test_the_head_runs_no_steps_and_workers_scale_between_limits(name: str) -> None:
    config = cluster(name)
    assert config["available_node_types"][config["head_node_type"]]["resources"]["CPU"] == 0
    assert config["idle_timeout_minutes"] > 0
    for node_type, node in worker_types(name).items():
        assert 0 <= node["min_workers"] < node["max_workers"] <= config["max_workers"], node_type


def test_token_auth_stays_on_and_nothing_listens_on_every_interface(name: str) -> None:
    text = (ROOT / name).read_text()
    config = cluster(name)
    commands = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=disabled" not in text
    assert "0.0.0.0" not in text
    assert "--dashboard-host=127.0.0.1" in commands


def test_the_setup_commands_install_wfray_on_every_node(name: str) -> None:
    config = cluster(name)
    mounted = {remote for remote, local in config["file_mounts"].items() if local == "./"}
    installs = [c for c in config["setup_commands"] if c.startswith("pip install")]
    assert any(any(path in c for path in mounted) for c in installs), config["setup_commands"]


# -- locked down by its own config (security issue 13, item 8) -------------------------------


def start_commands(name: str) -> dict[str, str]:
    config = cluster(name)
    return {
        "head": " ".join(config["head_start_ray_commands"]),
        "worker": " ".join(config["worker_start_ray_commands"]),
    }


def test_every_node_starts_ray_with_token_auth_and_a_token_file_mounted_from_outside(
    name: str,
) -> None:
    config = cluster(name)
    text = (ROOT / name).read_text()
    assert "RAY_AUTH_TOKEN=" not in text  # the token itself never sits in the file
    for role, commands in start_commands(name).items():
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


def test_the_metrics_port_is_reachable_from_private_networks_only(name: str) -> None:
    config = cluster(name)
    ports = {
        int(port)
        for commands in start_commands(name).values()
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


def test_file_mounts_leave_local_state_behind(name: str) -> None:
    config = cluster(name)
    excluded = set(config.get("rsync_exclude", []))
    assert {".venv", ".wfray", "demo-output"} <= excluded, excluded
    assert ".gitignore" in config.get("rsync_filter", [])  # and what git ignores


def test_the_readme_says_how_to_put_tls_in_front_of_the_http_api() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    assert "TLS" in section and "reverse proxy" in section
    assert "RAY_AUTH_MODE=token" in section


# -- cluster-ha.yaml: a cluster that survives its head (issue 16, item 6) -------------------

HA = "cluster-ha.yaml"
SECRET_DIR = "/home/ubuntu/.wfray-secrets/"
# what a secret's value looks like when it slips into a file: a URL with a password, a
# password, token or key given a value, a cloud access key
SECRET_VALUES = (
    re.compile(r"\w+://[^/\s:@]+:[^@\s]+@"),  # scheme://user:password@host
    # NAME=value or --name=value, unless the value is read at run time: $(cat file)
    re.compile(r"(?i)[\w-]*(password|passwd|secret|token|api_key)[\w-]*=(?![\"']?\$\()[\"']?\w"),
    re.compile(r"(?i)^\s*[\w-]*(password|passwd|secret|token|api_key)[\w-]*\s*:\s+[\"']?\w"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"(?i)\bWFRAY_DATABASE_URL="),
)


def ha_env(role: str) -> dict[str, str]:
    """The VAR=value pairs a node's `ray start` commands export."""
    return dict(re.findall(r"\b([A-Za-z_]+)=(\S+?);?(?=\s|$)", start_commands(HA)[role]))


def test_the_ha_config_keeps_the_store_in_postgresql_through_a_mounted_url_file() -> None:
    config = cluster(HA)
    setup = " ".join(config["setup_commands"])
    match = re.search(r"WFRAY_DATABASE_URL_FILE=(\S+)", setup)
    assert match, "no WFRAY_DATABASE_URL_FILE: the store would be SQLite on the head"
    url_file = match.group(1)
    assert url_file.startswith(SECRET_DIR) and url_file in config["file_mounts"]
    assert config["file_mounts"][url_file].startswith("~/"), "the URL comes from your machine"
    assert "WFRAY_BLOB_ROOT=s3://" in setup  # results readable from whichever node runs on


def test_the_ha_head_keeps_the_gcs_in_an_external_redis_under_its_own_namespace() -> None:
    head, worker = ha_env("head"), ha_env("worker")
    assert head["RAY_REDIS_ADDRESS"].startswith("rediss://")  # TLS to Redis
    assert re.fullmatch(r"[\w-]+", head["RAY_external_storage_namespace"])
    # the nodes wait for a GCS that restarts longer than Ray's default 60 s
    for env in (head, worker):
        assert int(env["RAY_gcs_rpc_server_reconnect_timeout_s"]) >= 300, env
    # Redis's password is read from a mounted file when Ray starts, never written here
    password = re.search(r"--redis-password=\"\$\(cat (\S+)\)\"", start_commands(HA)["head"])
    assert password, start_commands(HA)["head"]
    assert password.group(1) in cluster(HA)["file_mounts"]


def test_the_ha_config_holds_no_secret_values() -> None:
    config = cluster(HA)
    for line in (ROOT / HA).read_text().splitlines():
        for pattern in SECRET_VALUES:
            assert not pattern.search(line), f"a secret value in {HA}? {line.strip()!r}"
    # every secret reaches the nodes as a file from the operator's machine
    mounts = config["file_mounts"].items()
    secrets = {remote: local for remote, local in mounts if remote.startswith(SECRET_DIR)}
    assert len(secrets) == 3, secrets  # Ray's token, the store's URL, Redis's password
    assert all(local.startswith("~/") for local in secrets.values()), secrets
    assert any("chmod 600" in c and SECRET_DIR.rstrip("/") in c for c in config["setup_commands"])


def test_the_secret_patterns_catch_what_they_are_for() -> None:
    leaks = [
        "WFRAY_DATABASE_URL=postgresql+psycopg://wfray:hunter2@db/wfray",
        "  url: postgresql://wfray:s3cr3t@db.internal:5432/wfray",
        "--redis-password=hunter2",
        "RAY_AUTH_TOKEN: abcdef0123456789",
        "aws_access_key_id = AKIAABCDEFGHIJKLMNOP",
    ]
    for leak in leaks:
        assert any(p.search(leak) for p in SECRET_VALUES), leak
    fine = '--redis-password="$(cat /home/ubuntu/.wfray-secrets/redis_password)"'
    assert not any(p.search(fine) for p in SECRET_VALUES)
