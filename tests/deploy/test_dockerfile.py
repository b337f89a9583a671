"""The Dockerfile, .dockerignore and container scripts, checked without Docker (hadolint, shellcheck, parsing)."""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path

import pytest

from app.config import Settings
from tests.deploy.conftest import ROOT, Stage, dev_tool

Parsed = tuple[dict[str, str], dict[str, Stage], list[Stage]]

# Variables the container scripts read themselves (docker/entrypoint.sh), not the service's settings.
ENTRYPOINT_VARIABLES = {"IMGCLF_EMBEDDED_MODELS", "IMGCLF_SEED_MODELS"}


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [dev_tool("hadolint"), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("scripts/*.sh"), *ROOT.glob("docker/*.sh")])
    assert "scripts/docker-smoke.sh" in scripts
    result = subprocess.run(
        [dev_tool("shellcheck"), "--external-sources", *scripts], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_syntax_directive(dockerfile_text: str) -> None:
    """A `# syntax=` line makes BuildKit pull a frontend image, which offline builders cannot."""
    assert not any(line.lower().replace(" ", "").startswith("#syntax=") for line in dockerfile_text.splitlines())


def test_base_image_is_an_argument_defaulting_to_the_official_python(dockerfile: Parsed) -> None:
    global_args, stages, _ = dockerfile
    assert global_args["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    assert stages["base"].base == "${BASE_IMAGE}"


def test_serving_is_the_default_target_and_has_no_torch(dockerfile: Parsed) -> None:
    _, stages, ordered = dockerfile
    assert ordered[-1].name == "serving", "the last stage is what `docker build .` produces"
    serving = stages["serving"]
    copied_from = {value.split()[0].removeprefix("--from=") for value in serving.values("COPY") if "--from=" in value}
    assert copied_from == {"serving-deps", "default-model"}
    # serving-deps installs the base dependencies only: no extras, no PyTorch index.
    installs = " ".join(stages["serving-deps"].values("RUN"))
    assert "[" not in installs.replace("--mount", "")
    assert "torch" not in installs.lower()


def _final_user(stage: Stage) -> str:
    users = stage.values("USER")
    assert users, f"stage {stage.name} sets no USER, so it runs as root"
    return users[-1]


@pytest.mark.parametrize("target", ["serving", "train"])
def test_images_run_as_a_numeric_non_root_user(dockerfile: Parsed, target: str) -> None:
    user = _final_user(dockerfile[1][target]).split(":")[0]
    assert user.isdigit(), "a numeric uid lets runtimes check runAsNonRoot"
    assert int(user) != 0


def test_serving_healthcheck_probes_readiness_without_curl(dockerfile: Parsed) -> None:
    (check,) = dockerfile[1]["serving"].values("HEALTHCHECK")
    assert "/health/ready" in check
    assert "urllib" in check
    assert "curl" not in check and "wget" not in check


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in stage.values("ENV"):
        for item in value.split():
            key, _, val = item.partition("=")
            env[key] = val
    return env


def test_serving_environment(dockerfile: Parsed) -> None:
    _, stages, _ = dockerfile
    env = _env(stages["base"]) | _env(stages["serving"])
    assert env["IMGCLF_HOST"] == "0.0.0.0"
    assert env["IMGCLF_MODELS_DIR"] == "/models"
    assert env["IMGCLF_DEFAULT_MODEL"] == "efficientnet-lite0"
    # Every IMGCLF_ variable the image sets is a real setting of the service (or one the entrypoint reads).
    unknown = {k for k in env if k.startswith("IMGCLF_")} - ENTRYPOINT_VARIABLES - _setting_variables()
    assert not unknown, f"not settings of app.config.Settings: {sorted(unknown)}"
    assert "8000" in stages["serving"].values("EXPOSE")


def _setting_variables() -> set[str]:
    return {f"IMGCLF_{name.upper()}" for name in Settings.model_fields}


def test_default_model_is_exported_in_the_build(dockerfile: Parsed) -> None:
    runs = " ".join(dockerfile[1]["default-model"].values("RUN"))
    assert "export-pretrained efficientnet_lite0" in runs
    assert "--name efficientnet-lite0" in runs


def test_training_target(dockerfile: Parsed) -> None:
    _, stages, _ = dockerfile
    train = stages["train"]
    assert train.values("ENTRYPOINT") == ['["python", "-m", "training"]']
    torch_args = " ".join(stages["torch-deps"].values("ARG"))
    assert "TORCH_VARIANT=cpu" in torch_args
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in torch_args


def test_no_secrets_or_wheelhouse_copied_into_images(dockerfile_text: str) -> None:
    for line in dockerfile_text.splitlines():
        if line.strip().upper().startswith(("COPY", "ADD")):
            assert ".wheelhouse" not in line and "secret" not in line.lower() and "cert" not in line.lower(), line
    assert "PIP_CERT" not in dockerfile_text, "the CA bundle is mounted as a secret, never set as image ENV"


def test_copied_sources_exist(dockerfile: Parsed) -> None:
    for stage in dockerfile[2]:
        for value in stage.values("COPY"):
            parts = [p for p in value.split() if not p.startswith("--")]
            if any(p.startswith("--from=") for p in value.split()):
                continue
            for source in parts[:-1]:
                assert (ROOT / source).exists(), f"COPY {source} in stage {stage.name}: no such file"
                assert not dockerignored(source), f"COPY {source} in stage {stage.name}: excluded by .dockerignore"


# ---------------------------------------------------------------------------------------------------------------
# .dockerignore


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule, simplified: a pattern, anchored at the context root (``**/`` at any depth), matches the path
    or one of its parent folders."""
    anywhere = pattern.startswith("**/")
    pattern = pattern.strip("/").removeprefix("**/")
    parts = path.split("/")
    starts = range(len(parts)) if anywhere else range(1)
    candidates = ["/".join(parts[i : j + 1]) for i in starts for j in range(i, len(parts))]
    return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (the last matching pattern wins)."""
    ignored = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        if _matches(pattern.removeprefix("!"), path):
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "models/efficientnet-lite0/1/model.onnx",
        "data/digits/0/0.png",
        "tests/conftest.py",
        "app/__pycache__/main.cpython-311.pyc",
        "modelspec/__pycache__/spec.cpython-311.pyc",
        ".wheelhouse/notes.txt",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "modelspec/spec.py",
        "app/main.py",
        "training/cli.py",
        "docker/entrypoint.sh",
        ".wheelhouse/torch-2.4.0-cp311-cp311-linux_x86_64.whl",
    ],
)
def test_dockerignore_keeps_in(path: str) -> None:
    assert not dockerignored(path)


# ---------------------------------------------------------------------------------------------------------------
# docker/entrypoint.sh: seeding the models folder from the image


def run_entrypoint(models: Path, embedded: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "IMGCLF_MODELS_DIR": str(models),
        "IMGCLF_EMBEDDED_MODELS": str(embedded),
        **env,
    }
    return subprocess.run(
        ["sh", str(ROOT / "docker/entrypoint.sh"), "echo", "command ran"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def embedded(tmp_path: Path) -> Path:
    bundle = tmp_path / "embedded" / "efficientnet-lite0" / "1"
    bundle.mkdir(parents=True)
    (bundle / "model.json").write_text("{}")
    (bundle / "model.onnx").write_bytes(b"onnx")
    return tmp_path / "embedded"


def test_entrypoint_seeds_an_empty_models_folder(tmp_path: Path, embedded: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    result = run_entrypoint(models, embedded)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "command ran\n"
    assert (models / "efficientnet-lite0" / "1" / "model.onnx").read_bytes() == b"onnx"
    assert [p.name for p in models.iterdir()] == ["efficientnet-lite0"], "no temporary folder is left behind"


def test_entrypoint_leaves_an_existing_model_alone(tmp_path: Path, embedded: Path) -> None:
    """A user who removed version 1 (a rollback, a cleanup) does not get it back at the next start."""
    kept = tmp_path / "models" / "efficientnet-lite0" / "2"
    kept.mkdir(parents=True)
    result = run_entrypoint(tmp_path / "models", embedded)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in kept.parent.iterdir()) == ["2"]


def test_entrypoint_can_be_turned_off(tmp_path: Path, embedded: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    assert run_entrypoint(models, embedded, IMGCLF_SEED_MODELS="0").returncode == 0
    assert not any(models.iterdir())


def test_entrypoint_warns_and_serves_when_the_folder_cannot_be_written(tmp_path: Path, embedded: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # a models path below a file cannot be created, not even by root
    result = run_entrypoint(blocker / "models", embedded)
    assert result.returncode == 0
    assert result.stdout == "command ran\n"
    assert "could not copy the embedded model efficientnet-lite0" in result.stderr
