"""New versions of a bundle for the suite: copies of the newest one, written the way training writes them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from modelspec import Bundle, list_models, read_bundle, write_bundle


def newest(models_dir: Path, name: str) -> Bundle:
    return read_bundle(models_dir / name / str(max(list_models(models_dir)[name])))


def copy_as_new_version(models_dir: Path, name: str, chunk_delay: float = 0.0) -> Bundle:
    """Write the newest version's files again as a new version (``write_bundle``: temp folder, then rename);
    ``chunk_delay`` seconds per MiB make the write last, as an export to a slow disk does."""
    source = newest(models_dir, name)

    def copier(file_name: str) -> Callable[[Path], None]:
        def write(target: Path) -> None:
            with (source.path / file_name).open("rb") as src, target.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    if chunk_delay:
                        dst.flush()
                        time.sleep(chunk_delay)

        return write

    writers = {file_name: copier(file_name) for file_name in source.spec.files}
    return write_bundle(models_dir, source.spec, writers)


def litter(models_dir: Path) -> list[Path]:
    return sorted(p for p in models_dir.iterdir() if p.name.startswith(".tmp-"))


def size_mib(paths: list[Path]) -> float:
    return sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file()) / 2**20
