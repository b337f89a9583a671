"""Quantise a bundle: calibrate on training images, check int8 against fp32, add ``model.int8.onnx`` and its record.

``quantize_bundle`` is for bundles with labelled data (fit's export, ``python -m training quantize``): int8 is
within its bound when it loses at most ``max_top1_drop`` points of top-1 on the validation split and on the test
split when one is given. ``quantize_unlabelled`` is for the embedded ImageNet model, which has no labelled data
offline: int8 is within its bound when its top-1 agrees with fp32 on at least ``min_agreement`` of random crops of
the offline sample photos. Either way the int8 file is kept only within the bound; the record says why.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelspec.bundle import INT8_ONNX_FILE, ONNX_FILE, Bundle, FileWriter, read_bundle, update_bundle
from modelspec.machine import measured_on
from modelspec.preprocess import Float32Array
from modelspec.quantization import Bound, Calibration, Candidate, PrecisionCheck, Quantization
from modelspec.spec import Preprocessing
from modelspec.trust import INT8_TRUST_FILE, Trust, refit, save_tensors, trust_for
from modelspec.trust.precision import Tensors
from training.quantize import compare, graph, images
from training.quantize.images import LabelledImage
from training.quantize.settings import DEFAULT, FALLBACKS, SEARCH, UNLABELLED_DEFAULT, Setting

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOP1_DROP = 1.0
"""Points of top-1 accuracy int8 may lose against fp32."""
DEFAULT_MIN_AGREEMENT = 0.97
"""Share of natural photos on which int8 must give fp32's top-1 (models without labelled data)."""
CALIBRATION_IMAGES = 256
NATURAL_CHECK_IMAGES = 400
NATURAL_CALIBRATION_SEED, NATURAL_CHECK_SEED = 1, 2
CACHE_LIMIT_BYTES = 512 << 20
"""Preprocessed validation images are kept in memory up to this size (a search scores them once per setting)."""


@dataclass(frozen=True)
class Tried:
    """One quantised graph and its validation check."""

    setting: Setting
    path: Path
    calibration: Calibration
    check: PrecisionCheck


@dataclass(frozen=True)
class QuantizeResult:
    bundle: Bundle
    record: Quantization
    tried: list[Tried] = field(default_factory=list)


class _Images:
    """Labelled (or not) inputs, preprocessed once when they fit in ``CACHE_LIMIT_BYTES``."""

    def __init__(self, source: Sequence[Path] | Float32Array, prep: Preprocessing, labels: Sequence[int] | None):
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self._prep = prep
        self._paths: Sequence[Path] = []
        self._cache: Float32Array | None = None
        self._fp32: compare.IntArray | None = None
        if isinstance(source, np.ndarray):
            self._cache = source
        elif len(source) * 3 * 4 * prep.crop_size**2 <= CACHE_LIMIT_BYTES:
            self._cache = images.load_all(source, prep)
        else:
            self._paths = source

    def __len__(self) -> int:
        return len(self._cache) if self._cache is not None else len(self._paths)

    def fp32_top1(self, bundle: Bundle) -> compare.IntArray:
        """fp32's answers, computed once (a search checks many int8 graphs against them)."""
        if self._fp32 is None:
            self._fp32 = compare.top1(compare.session(bundle.file(ONNX_FILE)), self.batches())
        return self._fp32

    def batches(self, batch_size: int = 32) -> Iterator[Float32Array]:
        if self._cache is None:
            yield from images.batches(self._paths, self._prep, batch_size)
            return
        for start in range(0, len(self._cache), batch_size):
            yield self._cache[start : start + batch_size]


def quantize_bundle(
    bundle_dir: Path,
    calibration: Sequence[LabelledImage],
    validation: Sequence[LabelledImage],
    test: Sequence[LabelledImage] | None = None,
    *,
    max_top1_drop: float = DEFAULT_MAX_TOP1_DROP,
    calibration_images: int = CALIBRATION_IMAGES,
    calibration_source: str = "the training split",
    search: bool = False,
    settings: Sequence[Setting] | None = None,
) -> QuantizeResult:
    """Quantise the bundle at ``bundle_dir`` and record the result in its ``model.json``.

    ``calibration`` are training images (up to ``calibration_images`` are used, spread over the classes);
    ``validation`` and ``test`` are (path, label index) pairs. The settings tried are ``settings`` if given, else
    every setting of ``SEARCH`` when ``search`` (the best one kept: within the bound, then the highest validation
    agreement), else ``DEFAULT`` and then ``FALLBACKS`` until one is within the bound on validation.
    """
    if not validation:
        raise ValueError("quantisation needs validation images to check int8 against fp32")
    bundle = read_bundle(bundle_dir)
    prep = bundle.spec.preprocessing
    chosen = images.spread(calibration, calibration_images)
    if not chosen:
        raise ValueError("quantisation needs calibration images from the training split")
    calibration_record = {"images": len(chosen), "source": f"{len(chosen)} images of {calibration_source}"}
    bound = Bound(max_top1_drop_points=max_top1_drop)
    val = _Images([path for path, _ in validation], prep, [label for _, label in validation])

    def within(check: PrecisionCheck) -> bool:
        return check.top1_drop_points is not None and check.top1_drop_points <= max_top1_drop + 1e-9

    with tempfile.TemporaryDirectory(prefix="imgclf-quantize-") as work:
        tried = _try_settings(
            bundle,
            images.load_all([path for path, _ in chosen], prep),
            {"validation": val},
            calibration_record,
            _plan(settings, search),
            stop_when=None if search else lambda checks: within(checks[0]),
            work=Path(work),
        )
        best = _best(tried, within)
        checks = [best.check]
        if test:
            test_images = _Images([path for path, _ in test], prep, [label for _, label in test])
            checks.append(_check(bundle, best.path, "test", test_images))
        passed = all(within(check) for check in checks)
        reason = _drop_reason(checks, max_top1_drop, passed)
        trust = _int8_trust(bundle, best.path, val) if passed else None
        return _record(bundle, best, tried, checks, bound, passed, reason, search, trust)


def quantize_unlabelled(
    bundle_dir: Path,
    *,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    check_images: int = NATURAL_CHECK_IMAGES,
    calibration_images: int = CALIBRATION_IMAGES,
    search: bool = False,
    settings: Sequence[Setting] | None = None,
) -> QuantizeResult:
    """Quantise a bundle that has no labelled data (the embedded ImageNet model): calibrate on random crops of the
    offline sample photos and keep int8 only if its top-1 agrees with fp32 on ``min_agreement`` of other crops.

    Only ``UNLABELLED_DEFAULT`` is tried unless ``settings`` or ``search`` say otherwise: at 224 px the histogram
    calibrations take minutes, too long for ``export-pretrained`` (``make run`` builds the default with it)."""
    bundle = read_bundle(bundle_dir)
    prep = bundle.spec.preprocessing
    photos = len(images.natural_photos())
    source = f"random crops and flips of {photos} scikit-image and scikit-learn photos"
    calibration_record = {"images": calibration_images, "source": f"{calibration_images} {source}"}
    natural = _Images(images.natural_crops(check_images, prep, NATURAL_CHECK_SEED), prep, None)
    bound = Bound(min_top1_agreement=min_agreement)

    def within(check: PrecisionCheck) -> bool:
        return check.top1_agreement >= min_agreement

    with tempfile.TemporaryDirectory(prefix="imgclf-quantize-") as work:
        tried = _try_settings(
            bundle,
            images.natural_crops(calibration_images, prep, NATURAL_CALIBRATION_SEED),
            {"natural-images": natural},
            calibration_record,
            settings if settings is not None else (SEARCH if search else (UNLABELLED_DEFAULT,)),
            stop_when=None if search else lambda checks: within(checks[0]),
            work=Path(work),
        )
        best = _best(tried, within)
        passed = within(best.check)
        agreement = best.check.top1_agreement
        reason = (
            f"int8 gives fp32's top-1 on {agreement:.1%} of {best.check.images} crops of offline photos "
            f"({'at least' if passed else 'below'} the {min_agreement:.0%} required; no labelled data offline)"
        )
        return _record(bundle, best, tried, [best.check], bound, passed, reason, search)


def _plan(settings: Sequence[Setting] | None, search: bool) -> Sequence[Setting]:
    if settings is not None:
        return settings
    return SEARCH if search else (DEFAULT, *FALLBACKS)


def _try_settings(
    bundle: Bundle,
    calibration: Float32Array,
    splits: dict[str, _Images],
    calibration_record: dict[str, object],
    plan: Sequence[Setting],
    *,
    stop_when: Callable[[list[PrecisionCheck]], bool] | None,
    work: Path,
) -> list[Tried]:
    """Quantise with each setting in turn, check each on ``splits`` (the first one ranks them); stop early when
    ``stop_when`` accepts a setting's checks."""
    prepared = work / "prepared.onnx"
    pre_processed = graph.pre_process(bundle.file(ONNX_FILE), prepared)
    logger.info("quantising %s v%d (%s)", bundle.name, bundle.version, "pre-processed" if pre_processed else "as is")
    tried: list[Tried] = []
    split_name, split = next(iter(splits.items()))
    for index, setting in enumerate(plan):
        cache = work / f"ranges-{setting.method}-{setting.percentile:g}.json"
        if not cache.exists():
            graph.calibrate(prepared, calibration, setting, cache, work)
        target = work / f"int8-{index}.onnx"
        fp32_nodes = graph.quantize(prepared, target, setting, cache)
        record = Calibration(
            method=setting.method,
            percentile=setting.percentile if setting.method == "percentile" else None,
            per_channel=setting.per_channel,
            reduce_range=setting.reduce_range,
            fp32_nodes=fp32_nodes,
            fp32_policy=setting.fp32_policy,
            **calibration_record,  # type: ignore[arg-type]
        )
        check = _check(bundle, target, split_name, split)
        logger.info("%s: %s", setting.label(), _check_line(check))
        tried.append(Tried(setting, target, record, check))
        if stop_when is not None and stop_when([check]):
            break
    return tried


def _check(bundle: Bundle, int8_path: Path, name: str, split: _Images) -> PrecisionCheck:
    int8 = compare.top1(compare.session(int8_path), split.batches())
    return compare.check(name, split.fp32_top1(bundle), int8, split.labels)


def _int8_trust(bundle: Bundle, int8_path: Path, val: _Images) -> tuple[Trust, Tensors] | None:
    """The bundle's trust data refitted on int8's validation outputs (None when the bundle has none)."""
    if bundle.spec.trust is None or val.labels is None:
        return None
    logits, embeddings = compare.outputs(compare.session(int8_path), val.batches())
    fp32_trust, tensors = trust_for(bundle, "fp32")
    if fp32_trust is None:
        return None
    return refit(fp32_trust, tensors, logits, val.labels, embeddings)


def _best(tried: list[Tried], within: Callable[[PrecisionCheck], bool]) -> Tried:
    """Within the bound first, then the highest agreement with fp32, then top-1, then fewer float32 nodes."""

    def key(item: Tried) -> tuple[bool, float, float, int]:
        check = item.check
        return (within(check), check.top1_agreement, check.top1_int8 or 0.0, -len(item.calibration.fp32_nodes))

    return max(tried, key=key)


def _drop_reason(checks: Iterable[PrecisionCheck], bound: float, passed: bool) -> str:
    drops = ", ".join(f"{c.top1_drop_points:+.2f} on {c.split} ({c.images} images)" for c in checks)
    verdict = "within" if passed else "beyond"
    return f"int8 top-1 loss in points: {drops}; {verdict} the bound of {bound:g} point(s)"


def _check_line(check: PrecisionCheck) -> str:
    line = f"agreement {check.top1_agreement:.2%} on {check.images} {check.split} images"
    if check.top1_fp32 is not None and check.top1_int8 is not None:
        line += f", top-1 fp32 {check.top1_fp32:.2%} int8 {check.top1_int8:.2%}"
    return line


def _record(
    bundle: Bundle,
    best: Tried,
    tried: list[Tried],
    checks: list[PrecisionCheck],
    bound: Bound,
    passed: bool,
    reason: str,
    search: bool,
    trust: tuple[Trust, Tensors] | None = None,
) -> QuantizeResult:
    """Write (or withdraw) ``model.int8.onnx``, its trust data and the record into the bundle."""
    record = Quantization(
        file=INT8_ONNX_FILE if passed else None,
        within_bound=passed,
        bound=bound,
        reason=reason,
        calibration=best.calibration,
        checks=checks,
        candidates=[Candidate(calibration=t.calibration, check=t.check) for t in tried if t is not best]
        if search or len(tried) > 1
        else [],
        measured_on=measured_on(),
        trust=trust[0] if trust else None,
    )
    spec = bundle.spec.model_copy(update={"quantization": record})
    if passed:

        def copy_int8(path: Path) -> None:
            shutil.copyfile(best.path, path)

        writers: dict[str, FileWriter] = {INT8_ONNX_FILE: copy_int8}
        if trust is not None:
            writers[INT8_TRUST_FILE] = lambda path: save_tensors(path, trust[1])
        stale = [] if trust is not None else [INT8_TRUST_FILE]
        updated = update_bundle(bundle.path, spec, writers, remove=stale)
    else:
        updated = update_bundle(bundle.path, spec, {}, remove=[INT8_ONNX_FILE, INT8_TRUST_FILE])
    logger.info("%s v%d: %s", bundle.name, bundle.version, reason)
    return QuantizeResult(updated, record, tried)
