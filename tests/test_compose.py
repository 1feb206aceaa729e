"""docker-compose.yml against the Compose Specification's JSON Schema (no Docker engine here),
and the containers' commands against the ones the README documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "compose-spec.json").read_text())
# The spec names draft-07 as ".../draft-07/schema" (no trailing "#"), which jsonschema does not
# recognise; say the draft explicitly rather than let it guess.
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.gpu.yml"]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_is_valid_against_the_compose_spec(name: str) -> None:
    VALIDATOR.validate(load(name))


def test_schema_rejects_a_broken_compose_file() -> None:
    """The check can fail: a service with an unknown key is refused."""
    broken = load("docker-compose.yml")
    broken["services"]["server"]["comand"] = ["typo"]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)


def test_redis_persists_queued_jobs_across_restarts() -> None:
    redis = load("docker-compose.yml")["services"]["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_workers_can_scale() -> None:
    """`--scale worker=N` fails with a fixed container name or a published host port."""
    worker = load("docker-compose.yml")["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_every_service_has_a_health_check() -> None:
    for name, service in load("docker-compose.yml")["services"].items():
        assert "healthcheck" in service, name


def test_gpu_overlay_reserves_a_gpu_per_worker() -> None:
    devices = load("docker-compose.gpu.yml")["services"]["worker"]["deploy"]["resources"][
        "reservations"
    ]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_container_commands_are_the_documented_ones() -> None:
    """README's deployment table lists `service` | `command`; compose must run exactly those."""
    readme = (ROOT / "README.md").read_text()
    documented = dict(re.findall(r"^\| `(\w+)` \| `(siamatch [^`]+)` \|", readme, re.MULTILINE))
    services = load("docker-compose.yml")["services"]
    for name in ("server", "worker"):
        assert name in documented, f"README documents no command for the {name} service"
        assert " ".join(services[name]["command"]) == documented[name]
        health = services[name]["healthcheck"]["test"]
        assert health[0] == "CMD" and " ".join(health[1:]).startswith("siamatch ")
