"""docker-compose.yml, checked without Docker: its structure, its settings against the service's, and (when a
compose implementation is installed) `compose config`."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.main import create_app
from tests.deploy.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_no_version_key(compose: dict[str, Any]) -> None:
    """The Compose Specification: read by docker compose v2 (which warns on `version`) and docker-compose 1.27+."""
    assert "version" not in compose


def test_api_service(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["build"]["target"] == "serving"
    assert "profiles" not in api, "the api starts with a plain `compose up`"
    assert any(str(port).endswith(":8000") for port in api["ports"])
    assert "models:/models" in api["volumes"]
    assert api["environment"]["IMGCLF_MODELS_DIR"] == "/models"
    assert api["restart"] in {"unless-stopped", "always", "on-failure"}
    assert api["read_only"] is True and "/tmp" in api["tmpfs"]


def test_api_key_is_never_written_in_the_file(compose: dict[str, Any]) -> None:
    """No value: compose passes the caller's IMGCLF_API_KEY on when set, and leaves the admin endpoints off if not."""
    assert compose["services"]["api"]["environment"]["IMGCLF_API_KEY"] is None


def test_api_healthcheck_probes_a_real_readiness_route(compose: dict[str, Any]) -> None:
    check = compose["services"]["api"]["healthcheck"]
    command = " ".join(check["test"])
    assert check["test"][0] == "CMD"
    assert "/health/ready" in command and "urllib" in command
    assert "/health/ready" in create_app(Settings(watch_interval=0)).openapi()["paths"]


def test_api_environment_names_real_settings(compose: dict[str, Any]) -> None:
    names = {f"IMGCLF_{field.upper()}" for field in Settings.model_fields}
    unknown = set(compose["services"]["api"]["environment"]) - names
    assert not unknown, f"not settings of app.config.Settings: {sorted(unknown)}"


def test_train_service_is_behind_a_profile_and_shares_the_models_volume(compose: dict[str, Any]) -> None:
    train = compose["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["build"]["target"] == "train"
    assert "models:/workspace/models" in train["volumes"], "the trainer's default --models-dir is models/"
    assert any(str(v).endswith(":/workspace/data:ro") for v in train["volumes"])
    assert "models" in compose["volumes"]


def _compose_commands() -> list[list[str]]:
    commands = []
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        commands.append([docker, "compose"])
    legacy = shutil.which("docker-compose")
    if legacy:
        commands.append([legacy])
    return commands


@pytest.mark.parametrize("profile", [[], ["--profile", "train"]], ids=["default", "train-profile"])
def test_compose_config_accepts_the_file(profile: list[str]) -> None:
    commands = _compose_commands()
    if not commands:
        pytest.skip("neither `docker compose` nor docker-compose is installed (make docker-smoke installs one)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGCLF_", "COMPOSE_"))}
    for command in commands:
        result = subprocess.run(
            [*command, "--file", str(COMPOSE_FILE), *profile, "config", "--quiet"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{' '.join(command)} config: {result.stderr}"
