import json
from pathlib import Path

import pytest

from modelspec import ONNX_FILE, SPEC_FILE, WEIGHTS_FILE, BundleError, list_models, read_bundle, write_bundle
from modelspec.bundle import sha256_file
from tests.conftest import tiny_spec


def _writers(payload: bytes = b"weights") -> dict[str, object]:
    return {WEIGHTS_FILE: lambda p: p.write_bytes(payload), ONNX_FILE: lambda p: p.write_bytes(b"graph")}


def test_write_assigns_increasing_versions_and_hashes(tmp_path: Path) -> None:
    first = write_bundle(tmp_path, tiny_spec(), _writers())  # type: ignore[arg-type]
    second = write_bundle(tmp_path, tiny_spec(), _writers(b"other"))  # type: ignore[arg-type]
    assert (first.version, second.version) == (1, 2)
    assert first.spec.files[WEIGHTS_FILE] == sha256_file(first.path / WEIGHTS_FILE)
    assert list_models(tmp_path) == {"tiny": [1, 2]}
    assert read_bundle(second.path).spec.version == 2


def test_existing_version_is_never_overwritten(tmp_path: Path) -> None:
    write_bundle(tmp_path, tiny_spec(), _writers(), version=3)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="never overwritten"):
        write_bundle(tmp_path, tiny_spec(), _writers(b"new"), version=3)  # type: ignore[arg-type]
    assert (tmp_path / "tiny" / "3" / WEIGHTS_FILE).read_bytes() == b"weights"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_failed_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_bundle(tmp_path, tiny_spec(), {WEIGHTS_FILE: broken})
    assert list_models(tmp_path) == {}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_corrupt_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, tiny_spec(), _writers())  # type: ignore[arg-type]
    (bundle.path / WEIGHTS_FILE).write_bytes(b"tampered")
    with pytest.raises(BundleError, match=r"model\.safetensors does not match its sha256"):
        read_bundle(bundle.path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, tiny_spec(), _writers())  # type: ignore[arg-type]
    (bundle.path / ONNX_FILE).unlink()
    with pytest.raises(BundleError, match=r"model\.onnx is missing"):
        read_bundle(bundle.path)


def test_bundle_moved_to_wrong_version_folder_is_refused(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, tiny_spec(), _writers())  # type: ignore[arg-type]
    bundle.path.rename(tmp_path / "tiny" / "7")
    with pytest.raises(BundleError, match="must stay at"):
        read_bundle(tmp_path / "tiny" / "7")


def test_unparseable_spec_is_refused(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, tiny_spec(), _writers())  # type: ignore[arg-type]
    (bundle.path / SPEC_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(bundle.path)
    (bundle.path / SPEC_FILE).write_text(json.dumps({"name": "tiny"}))
    with pytest.raises(BundleError, match="does not describe a model"):
        read_bundle(bundle.path)
