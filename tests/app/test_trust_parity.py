"""Issue 18, item 6: the calibrated probabilities, OOD scores and prediction sets the service answers are the ones
training computed for the same images (a LeNet-5 fitted on the digits through ``python -m training fit``).

Images: the bundle's own validation split (what export calibrated on) and a few pictures of no digit at all.
Training's numbers come from its own path (torch network, training's eval dataset); the bundle's stored data is
checked against them too: its sorted conformal scores are 1 - p(true label) of the validation images, and its OOD
threshold lets 95 % of their scores pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from modelspec import Bundle
from modelspec.trust import TrustResult, TrustScorer, build_trust, load_tensors
from modelspec.trust.ood import pass_threshold
from modelspec.trust.scorer import CONFORMAL_SCORES
from tests.app.conftest import settings_for
from tests.app.trust_parity import (
    COVERAGE,
    OOD_RELATIVE_TOLERANCE,
    PROB_TOLERANCE,
    Outputs,
    probe_images,
    service_outputs,
    set_labels,
    split,
    training_outputs,
)


@pytest.fixture(scope="module")
def trained(digits_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    """Training's outputs on the validation split followed by the probes (label -1)."""
    probes = probe_images(tmp_path_factory.mktemp("probes"))
    samples = split(digits_bundle)[1] + [(path, -1) for path in probes]
    return training_outputs(digits_bundle, samples)


def assert_same_trust(bundle: Bundle, trained: Outputs, probs: np.ndarray, ood: np.ndarray,
                      flags: list[bool], sets: list[list[str]]) -> None:  # fmt: skip
    """``probs``, ``ood``, ``flags`` and ``sets`` (per image, in ``trained.files`` order) are training's."""
    expected = trained.trust(bundle)
    assert expected.ood_score is not None and expected.out_of_distribution is not None
    np.testing.assert_allclose(probs, expected.probs, rtol=0, atol=PROB_TOLERANCE)
    np.testing.assert_allclose(ood, expected.ood_score, rtol=OOD_RELATIVE_TOLERANCE, atol=PROB_TOLERANCE)
    trust = bundle.spec.trust
    assert trust is not None and trust.ood is not None
    near = np.abs(expected.ood_score - trust.ood.threshold) <= OOD_RELATIVE_TOLERANCE * trust.ood.threshold
    assert [f for f, n in zip(flags, near, strict=True) if not n] == list(expected.out_of_distribution[~near])
    assert sets == set_labels(expected, bundle.spec.labels)
    # Both flag values occur: pictures of no digit are flagged far more often than validation images (about 5 %).
    is_probe = trained.labels < 0
    flagged = np.asarray(flags, dtype=bool)
    assert 0.02 <= flagged[~is_probe].mean() <= 0.1
    assert flagged[is_probe].mean() >= 0.5
    # What export stored is what these numbers give on the validation images.
    val = ~is_probe
    stored = load_tensors(bundle.file(trust.file or ""))[CONFORMAL_SCORES]
    served_scores = np.sort(1.0 - probs[val][np.arange(val.sum()), trained.labels[val]])
    np.testing.assert_allclose(served_scores, stored, rtol=0, atol=PROB_TOLERANCE)
    threshold = pass_threshold(ood[val], trust.ood.pass_rate)
    assert threshold == pytest.approx(trust.ood.threshold, rel=OOD_RELATIVE_TOLERANCE)
    labels = trained.labels[val]
    coverage = np.mean([bundle.spec.labels[y] in s for y, s in zip(labels, np.asarray(sets, dtype=object)[val],
                                                                    strict=True)])  # fmt: skip
    assert coverage >= COVERAGE  # on the calibration images themselves, split conformal covers at least 1 - alpha


def test_export_stored_what_modelspec_trust_computes_from_trainings_validation_outputs(
    digits_bundle: Bundle, trained: Outputs
) -> None:
    val = trained.labels >= 0
    trust = digits_bundle.spec.trust
    assert digits_bundle.spec.calibrated and trust is not None and trust.calibration is not None
    assert trust.calibration.images == trust.conformal.images == int(val.sum())  # type: ignore[union-attr]
    train = training_outputs(digits_bundle, split(digits_bundle)[0])
    again, tensors = build_trust(trained.logits[val], trained.labels[val], trained.embeddings[val],
                                 train.embeddings, train.labels)  # fmt: skip
    assert again.calibration is not None and again.ood is not None and trust.ood is not None
    assert again.calibration.temperature == pytest.approx(trust.calibration.temperature, rel=1e-6)
    stored = load_tensors(digits_bundle.file(trust.file or ""))
    np.testing.assert_allclose(stored[CONFORMAL_SCORES], tensors[CONFORMAL_SCORES], rtol=0, atol=1e-6)
    assert again.ood.threshold == pytest.approx(trust.ood.threshold, rel=1e-5)


def test_scorer_on_the_services_inputs_gives_what_training_computed(digits_bundle: Bundle, trained: Outputs) -> None:
    """The in-process half: ``TrustScorer.from_bundle`` on ``modelspec.load_input`` + ONNX Runtime outputs."""
    served = service_outputs(digits_bundle, trained)
    result: TrustResult = TrustScorer.from_bundle(digits_bundle)(served.logits, served.embeddings, COVERAGE)
    assert result.ood_score is not None and result.out_of_distribution is not None
    assert_same_trust(digits_bundle, trained, result.probs, result.ood_score, list(result.out_of_distribution),
                      set_labels(result, digits_bundle.spec.labels))  # fmt: skip


def test_service_answers_what_training_computed(digits_bundle: Bundle, trained: Outputs) -> None:
    """The HTTP half: POST /v1/models/digits/predict with every label's score, the OOD fields and 90 % sets."""
    labels = digits_bundle.spec.labels
    probs, ood, flags, sets = [], [], [], []
    with TestClient(create_app(settings_for(digits_bundle.path.parent.parent))) as client:
        for start in range(0, len(trained.files), 32):
            chunk = trained.files[start : start + 32]
            upload = [("file", (path.name, path.read_bytes(), "image/png")) for path in chunk]
            response = client.post(
                "/v1/models/digits/predict", files=upload, params={"top_k": len(labels), "coverage": COVERAGE}
            )
            assert response.status_code == 200, response.text
            for result in response.json()["results"]:
                row = np.zeros(len(labels))
                for prediction in result["predictions"]:
                    row[prediction["index"]] = prediction["score"]
                probs.append(row)
                ood.append(result["ood_score"])
                flags.append(result["out_of_distribution"])
                assert result["prediction_set"]["coverage"] == COVERAGE
                assert result["prediction_set"]["indices"] == [
                    labels.index(x) for x in result["prediction_set"]["labels"]
                ]
                sets.append(result["prediction_set"]["labels"])
    assert_same_trust(digits_bundle, trained, np.array(probs), np.array(ood, dtype=np.float64), flags, sets)
