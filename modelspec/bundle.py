"""Bundle I/O: ``<models_dir>/<name>/<version>/`` holding ``model.json``, ``model.safetensors`` and ``model.onnx``.

A bundle is written into a temporary folder beside its final place and renamed into place, so a reader never sees
half of one, and a version that exists is never overwritten: only derived files (the int8 graph) may be added to
it later, by ``update_bundle``, in the same all-or-nothing way. Reading verifies the sha256 of every file.

A writer that is killed leaves its temporary folder (``.tmp-*``) behind. Each writer holds an exclusive ``flock``
on a lock file inside its folder for its whole life, and the kernel drops the lock when the process dies however it
dies; so whoever can take the lock knows the writer is gone, and removes the folder (``remove_stale_temp_dirs``, run
before each write and by the service at start). A live writer's folder is never touched. ``flock`` works between
processes and containers on one host (a Docker volume or bind mount shared by the trainer and the service); on a
network filesystem it is only as good as the filesystem's locks (NFSv4: yes; some FUSE and SMB mounts: no, and there
a folder whose lock cannot be taken is left alone).

Over 300 lines on purpose: writing, updating, reading and cleaning up share one set of rules (the temporary folder,
its lock, the hashes, the order of renames), and keeping them in one module keeps them from drifting apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from modelspec.files import fsync_path, write_text_atomically
from modelspec.spec import ModelSpec, check_model_name
from modelspec.trust.spec import INT8_TRUST_FILE

logger = logging.getLogger(__name__)

SPEC_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"
"""The optional int8 graph (same input and outputs as ``model.onnx``), added by ``python -m training quantize``."""
TMP_PREFIX = ".tmp-"
LOCK_FILE = ".writer.lock"
ORPHAN_AGE_SECONDS = 3600.0
"""A temporary folder without a lock file (left by a writer from before the lock files, or killed between creating
its folder and its lock) is removed once it is this old."""

FileWriter = Callable[[Path], None]
"""Writes one file of the bundle at the path it is given."""


class BundleError(Exception):
    """A bundle is missing, malformed or does not match its hashes. The message names the file and the fix."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    spec: ModelSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> int:
        assert self.spec.version is not None  # read_bundle guarantees it
        return self.spec.version

    def file(self, name: str) -> Path:
        """Path of one of the bundle's files; ``BundleError`` if the bundle does not have it."""
        if name not in self.spec.files:
            raise BundleError(f"bundle {self.path} has no {name}; re-export it with the training package")
        return self.path / name


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def list_versions(models_dir: Path, name: str) -> list[int]:
    """The versions of ``name`` present under ``models_dir``, ascending (folders named by an integer >= 1)."""
    folder = models_dir / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) >= 1)


def versions_to_open(available: Iterable[int], requested: int | None = None) -> list[int]:
    """The one version rule: which of a model's ``available`` versions to open, best first.

    A ``requested`` version alone (nothing when it is not available); otherwise every version, newest (highest
    number) first, so a caller that cannot open one falls back to the one before. The service, the batch command
    and evaluation all choose through this, so they agree on what "the model" means.
    """
    versions = sorted(set(available), reverse=True)
    if requested is not None:
        return [requested] if requested in versions else []
    return versions


def list_models(models_dir: Path) -> dict[str, list[int]]:
    """Every model name under ``models_dir`` with its versions; hidden and temporary folders are skipped."""
    if not models_dir.is_dir():
        return {}
    found = {}
    for folder in sorted(models_dir.iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            versions = list_versions(models_dir, folder.name)
            if versions:
                found[folder.name] = versions
    return found


def write_bundle(
    models_dir: Path,
    spec: ModelSpec,
    writers: Mapping[str, FileWriter],
    *,
    version: int | None = None,
) -> Bundle:
    """Write a new version of ``spec.name`` and return it.

    Each writer creates one file in a temporary folder; hashes are computed, ``model.json`` is written last, and
    the folder is renamed to ``<models_dir>/<name>/<version>``. ``version`` defaults to one above the highest
    present. An existing version is never replaced: asking for one raises ``BundleError``.
    """
    check_model_name(spec.name)
    if SPEC_FILE in writers:
        raise ValueError(f"{SPEC_FILE} is written from the spec; do not pass a writer for it")
    model_dir = models_dir / spec.name
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(models_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{spec.name}-", dir=models_dir))
    lock = _hold_writer_lock(tmp)
    try:
        files = _write_files(tmp, writers)
        chosen = version if version is not None else max(list_versions(models_dir, spec.name), default=0) + 1
        final_spec = spec.model_copy(update={"version": chosen, "files": files})
        _write_json_atomically(tmp / SPEC_FILE, final_spec.model_dump(mode="json"))
        os.chmod(tmp / SPEC_FILE, 0o644)
        os.chmod(tmp, 0o755)
        final = model_dir / str(chosen)
        if final.exists():
            raise BundleError(f"{final} already exists; bundles are never overwritten, choose another version")
        (tmp / LOCK_FILE).unlink()  # not part of the bundle; the lock itself lasts until ``lock`` is closed
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)
    _fsync_dir(model_dir)
    logger.info("wrote bundle %s version %d at %s", spec.name, chosen, final)
    return Bundle(path=final, spec=final_spec)


ADDABLE_FILES = frozenset({INT8_ONNX_FILE, INT8_TRUST_FILE})
"""The files ``update_bundle`` may add, replace or remove; the weights and ``model.onnx`` never change."""


def update_bundle(
    bundle_dir: Path, spec: ModelSpec, writers: Mapping[str, FileWriter], *, remove: Collection[str] = ()
) -> Bundle:
    """Add or replace derived files (``ADDABLE_FILES``) of an existing bundle, or remove them, and rewrite its
    ``model.json`` from ``spec`` (whose ``files`` are recomputed).

    New files are written in a temporary folder, moved in while ``model.json`` does not list them, and listed by
    replacing ``model.json`` in one rename; a file being replaced or removed is first unlisted the same way. So a
    reader of ``model.json`` sees a whole bundle at every moment, with or without the new files; only a reader that
    read the old ``model.json`` and hashes a replaced file after it changed sees a mismatch (and the service's
    registry retries a recently changed folder). Updaters of one bundle take turns (``flock`` on its folder).
    """
    changed = set(writers) | set(remove)
    if not changed <= ADDABLE_FILES:
        raise ValueError(
            f"only {sorted(ADDABLE_FILES)} may be added to a bundle, not {sorted(changed - ADDABLE_FILES)}"
        )
    models_dir = bundle_dir.parent.parent
    folder_lock = os.open(bundle_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder_lock, fcntl.LOCK_EX)
        current = read_bundle(bundle_dir)
        if (spec.name, spec.version) != (current.spec.name, current.spec.version):
            raise BundleError(f"{bundle_dir} holds {current.spec.name} v{current.spec.version}, not {spec.name}")
        remove_stale_temp_dirs(models_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{spec.name}-update-", dir=models_dir))
        lock = _hold_writer_lock(tmp)
        try:
            added = _write_files(tmp, writers)
            kept = {name: digest for name, digest in current.spec.files.items() if name not in changed}
            if kept != current.spec.files:  # unlist what is replaced or removed before touching it
                _write_json_atomically(
                    bundle_dir / SPEC_FILE,
                    current.spec.model_copy(update={"files": kept, "quantization": None}).model_dump(mode="json"),
                )
            for file_name in added:
                os.replace(tmp / file_name, bundle_dir / file_name)
            final_spec = spec.model_copy(update={"files": {**kept, **added}})
            _write_json_atomically(bundle_dir / SPEC_FILE, final_spec.model_dump(mode="json"))
            os.chmod(bundle_dir / SPEC_FILE, 0o644)
            for file_name in set(remove) - set(added):
                with contextlib.suppress(FileNotFoundError):
                    (bundle_dir / file_name).unlink()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            os.close(lock)
    finally:
        os.close(folder_lock)
    _fsync_dir(bundle_dir)
    removed = ", ".join(sorted(set(remove) - set(writers))) or "none"
    written = ", ".join(sorted(writers)) or "none"
    logger.info("updated %s v%s (written: %s; removed: %s)", spec.name, spec.version, written, removed)
    return Bundle(path=bundle_dir, spec=final_spec)


def _write_files(folder: Path, writers: Mapping[str, FileWriter]) -> dict[str, str]:
    """Run each writer into ``folder`` and return the sha256 of every file written, by name."""
    for file_name, write in writers.items():
        write(folder / file_name)
        if not (folder / file_name).is_file():
            raise BundleError(f"the writer for {file_name} did not create it")
        os.chmod(folder / file_name, 0o644)  # readable by a serving process running as another user
    return {file_name: sha256_file(folder / file_name) for file_name in sorted(writers)}


def _hold_writer_lock(folder: Path) -> int:
    """Create the folder's lock file and hold it (exclusive ``flock``) until the returned descriptor is closed."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a filesystem without locks: the folder is then only removed by age
        logger.debug("cannot lock %s; it will be cleaned up by age only", folder, exc_info=True)
    return fd


def _writer_gone(folder: Path) -> int | None:
    """If the writer of ``folder`` is gone, a descriptor holding its lock (or -1: no lock file, and old enough);
    None while it may still be writing."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            if time.time() - folder.stat().st_mtime > ORPHAN_AGE_SECONDS:
                return -1
        return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live writer (or no locks on this filesystem): leave it
        os.close(fd)
        return None
    return fd


def remove_stale_temp_dirs(models_dir: Path) -> list[Path]:
    """Remove the temporary folders that writers killed mid-write left in ``models_dir``; never a live writer's.
    Returns the folders removed. A folder that cannot be removed (a read-only volume) is logged and left."""
    removed: list[Path] = []
    try:
        candidates = [p for p in models_dir.iterdir() if p.name.startswith(TMP_PREFIX) and p.is_dir()]
    except OSError:
        return removed
    for folder in candidates:
        held = _writer_gone(folder)
        if held is None:
            continue
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            logger.warning("cannot remove %s, left by an interrupted bundle writer: %s", folder, exc)
            continue
        finally:
            if held >= 0:
                os.close(held)
        logger.info("removed %s, left by an interrupted bundle writer", folder)
        removed.append(folder)
    return removed


def read_spec(bundle_dir: Path) -> ModelSpec:
    """Parse ``model.json`` without checking the other files (for listings); ``BundleError`` if it is unusable."""
    spec_path = bundle_dir / SPEC_FILE
    try:
        raw = json.loads(spec_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{spec_path} is missing: not a model bundle (or one still being copied)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{spec_path} is not valid JSON ({exc}); re-export the bundle") from exc
    try:
        return ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{spec_path} does not describe a model: {exc}") from exc


def read_bundle(bundle_dir: Path, *, verify: bool = True) -> Bundle:
    """Read and verify a bundle: the spec parses, its folder matches its name/version, every hash matches."""
    spec = read_spec(bundle_dir)
    if spec.version is None or bundle_dir.name != str(spec.version) or bundle_dir.parent.name != spec.name:
        raise BundleError(
            f"{bundle_dir / SPEC_FILE} says {spec.name} version {spec.version} but lies in "
            f"{bundle_dir.parent.name}/{bundle_dir.name}; bundles must stay at <models>/<name>/<version>"
        )
    if not spec.files:
        raise BundleError(f"{bundle_dir / SPEC_FILE} lists no files; re-export the bundle")
    if verify:
        for file_name, expected in spec.files.items():
            path = bundle_dir / file_name
            if os.sep in file_name or file_name.startswith("."):
                raise BundleError(f"{bundle_dir / SPEC_FILE} names an unsafe file {file_name!r}")
            if not path.is_file():
                raise BundleError(f"{path} is missing (listed in {SPEC_FILE}); the bundle is incomplete")
            actual = sha256_file(path)
            if actual != expected:
                raise BundleError(
                    f"{path} does not match its sha256 in {SPEC_FILE} (expected {expected[:12]}..., "
                    f"found {actual[:12]}...): the file is corrupt or was changed; re-export or re-copy the bundle"
                )
    return Bundle(path=bundle_dir, spec=spec)


def _write_json_atomically(path: Path, data: object) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", durable=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened and synced
        fsync_path(path)
