"""Trust through the API (issue 18): calibrated scores, the OOD score and flag, prediction sets for a coverage, a
bundle without trust data, levels out of range, the v2 outputs and the metrics, on a bundle whose trust data was
fitted on the real outputs of its network (``tests.app.trust_bundle``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelspec.trust import softmax
from tests.app.conftest import ClientFactory
from tests.app.openapi_check import assert_documented
from tests.app.trust_bundle import PLAIN, TRUSTED, TrustedModels, noise_png, run_bundle
from tests.app.v2_helpers import images_input
from tests.conftest import TINY_LABELS

PREDICT = "/v1/models/{name}/predict"


@pytest.fixture
def client(make_client: ClientFactory, trusted_models: TrustedModels) -> TestClient:
    return make_client(trusted_models.models_dir, default_model=TRUSTED, max_images_per_request=64)


def predict(client: TestClient, name: str, images: list[bytes], **params: Any) -> Any:
    files = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    response = client.post(f"/v1/models/{name}/predict", files=files, params={"top_k": 3, **params})
    assert_documented(client.get("/openapi.json").json(), "post", PREDICT, response)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_model_detail_says_whether_it_is_calibrated(client: TestClient, trusted_models: TrustedModels) -> None:
    openapi = client.get("/openapi.json").json()
    for name, calibrated in ((TRUSTED, True), (PLAIN, False)):
        response = client.get(f"/v1/models/{name}")
        assert_documented(openapi, "get", "/v1/models/{name}", response)
        detail = response.json()
        assert detail["calibrated"] is calibrated
        if calibrated:
            trust = trusted_models.trusted.spec.trust
            assert trust is not None and trust.calibration is not None and trust.ood is not None
            assert detail["trust"]["calibration"]["temperature"] == trust.calibration.temperature
            assert detail["trust"]["ood"]["threshold"] == trust.ood.threshold
            assert len(detail["trust"]["calibration"]["reliability_after"]["counts"]) == 15
        else:
            assert detail["trust"] is None


def test_scores_are_calibrated_and_every_image_has_an_ood_score(
    client: TestClient, trusted_models: TrustedModels
) -> None:
    images = trusted_models.validation[:8]
    answer = predict(client, TRUSTED, images)
    logits, embeddings = run_bundle(trusted_models.trusted, images)
    expected = trusted_models.scorer()(logits, embeddings)
    assert expected.ood_score is not None and expected.out_of_distribution is not None
    threshold = client.get(f"/v1/models/{TRUSTED}").json()["trust"]["ood"]["threshold"]
    for row, result in enumerate(answer["results"]):
        scores = {p["index"]: p["score"] for p in result["predictions"]}
        # The same numbers export computed for these images: softmax(logits / T), not the plain softmax.
        np.testing.assert_allclose([scores[i] for i in range(3)], expected.probs[row], rtol=1e-5)
        assert not np.allclose([scores[i] for i in range(3)], softmax(logits[row : row + 1])[0], rtol=1e-3)
        assert result["ood_score"] == pytest.approx(expected.ood_score[row], rel=1e-5)
        assert result["out_of_distribution"] is bool(result["ood_score"] > threshold)
        assert "prediction_set" not in result


def test_images_unlike_the_training_images_are_flagged(client: TestClient, trusted_models: TrustedModels) -> None:
    noise = predict(client, TRUSTED, [noise_png(seed) for seed in range(4)])
    assert [r["out_of_distribution"] for r in noise["results"]] == [True] * 4
    # The validation images set the threshold: 95 % of them pass.
    ordinary = predict(client, TRUSTED, trusted_models.validation)
    flagged = sum(r["out_of_distribution"] for r in ordinary["results"])
    assert flagged <= math.ceil(0.05 * len(trusted_models.validation))
    assert min(r["ood_score"] for r in noise["results"]) > np.median([r["ood_score"] for r in ordinary["results"]])


def test_a_coverage_gives_each_image_a_prediction_set(client: TestClient, trusted_models: TrustedModels) -> None:
    images, labels = trusted_models.validation, trusted_models.validation_labels
    answer = predict(client, TRUSTED, images, coverage=0.9)
    logits, embeddings = run_bundle(trusted_models.trusted, images)
    expected = trusted_models.scorer()(logits, embeddings, 0.9)
    assert expected.sets is not None
    covered = 0
    for row, (result, label) in enumerate(zip(answer["results"], labels, strict=True)):
        chosen = result["prediction_set"]
        assert chosen["coverage"] == 0.9
        assert chosen["indices"] == expected.sets.indices(row)
        assert chosen["labels"] == [TINY_LABELS[i] for i in chosen["indices"]]
        assert result["predictions"][0]["index"] in chosen["indices"]  # the top-1 label is always in the set
        covered += label in chosen["indices"]
    # On its own calibration images, split conformal covers at least ceil((n + 1) 0.9) / n of them.
    assert covered / len(images) >= math.ceil(61 * 0.9) / 60
    smaller = predict(client, TRUSTED, images, coverage=0.3)
    assert sum(len(r["prediction_set"]["indices"]) for r in smaller["results"]) < sum(
        len(r["prediction_set"]["indices"]) for r in answer["results"]
    )


def test_the_default_model_route_takes_a_coverage_too(client: TestClient, trusted_models: TrustedModels) -> None:
    files = {"file": ("a.png", trusted_models.validation[0], "image/png")}
    response = client.post("/v1/predict", files=files, params={"coverage": 0.5})
    assert_documented(client.get("/openapi.json").json(), "post", "/v1/predict", response)
    [result] = response.json()["results"]
    assert result["prediction_set"]["coverage"] == 0.5
    assert isinstance(result["ood_score"], float)


@pytest.mark.parametrize("coverage", ["0.99", "0.999", "1", "1.5", "0", "-0.1", "nan"])
def test_a_level_the_model_cannot_serve_is_refused_with_the_range(
    client: TestClient, trusted_models: TrustedModels, coverage: str
) -> None:
    files = {"file": ("a.png", trusted_models.validation[0], "image/png")}
    response = client.post(PREDICT.format(name=TRUSTED), files=files, params={"coverage": coverage})
    assert_documented(client.get("/openapi.json").json(), "post", PREDICT, response)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "coverage_out_of_range"
    assert "from 0.01639 to 0.9836" in error["message"]  # 1/61 and 60/61: 60 calibration images
    assert "60 calibration images" in error["message"]


def test_a_bundle_without_trust_data_serves_plain_softmax_and_null_ood(
    client: TestClient, trusted_models: TrustedModels
) -> None:
    images = trusted_models.validation[:4] + [noise_png(0)]
    answer = predict(client, PLAIN, images)
    logits, _ = run_bundle(trusted_models.plain, images)
    for row, result in enumerate(answer["results"]):
        scores = {p["index"]: p["score"] for p in result["predictions"]}
        np.testing.assert_allclose([scores[i] for i in range(3)], softmax(logits[row : row + 1])[0], rtol=1e-5)
        assert result["ood_score"] is None
        assert result["out_of_distribution"] is None
    files = {"file": ("a.png", images[0], "image/png")}
    response = client.post(PREDICT.format(name=PLAIN), files=files, params={"coverage": 0.9})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "coverage_out_of_range"
    assert "no conformal calibration data" in error["message"] and "imgclf-train" in error["message"]


def test_an_image_with_an_error_has_no_trust_fields(client: TestClient, trusted_models: TrustedModels) -> None:
    files = [("file", ("a.png", trusted_models.validation[0], "image/png")), ("file", ("b.png", b"junk", "image/png"))]
    response = client.post(PREDICT.format(name=TRUSTED), files=files, params={"coverage": 0.9})
    assert_documented(client.get("/openapi.json").json(), "post", PREDICT, response)
    good, bad = response.json()["results"]
    assert {"ood_score", "out_of_distribution", "prediction_set"} <= set(good)
    assert set(bad) == {"file", "error"}


def test_v2_answers_ood_outputs_when_asked_for(client: TestClient, trusted_models: TrustedModels) -> None:
    metadata = client.get(f"/v2/models/{TRUSTED}").json()
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert outputs["ood_score"]["datatype"] == "FP32" and outputs["out_of_distribution"]["datatype"] == "BOOL"
    assert "ood_score" not in {o["name"] for o in client.get(f"/v2/models/{PLAIN}").json()["outputs"]}
    images = [trusted_models.validation[0], noise_png(1)]
    body = {
        "inputs": [images_input(*images)],
        "outputs": [{"name": "probabilities"}, {"name": "ood_score"}, {"name": "out_of_distribution"}],
    }
    answer = client.post(f"/v2/models/{TRUSTED}/infer", json=body)
    assert answer.status_code == 200, answer.text
    tensors = {o["name"]: o for o in answer.json()["outputs"]}
    v1 = predict(client, TRUSTED, images)["results"]
    assert tensors["ood_score"]["shape"] == [2]
    assert tensors["ood_score"]["data"] == pytest.approx([r["ood_score"] for r in v1], rel=1e-6)
    assert tensors["out_of_distribution"]["data"] == [r["out_of_distribution"] for r in v1] == [False, True]
    probabilities = np.reshape(tensors["probabilities"]["data"], (2, 3))
    for row, result in enumerate(v1):  # calibrated, as /v1 answers
        assert [probabilities[row][p["index"]] for p in result["predictions"]] == pytest.approx(
            [p["score"] for p in result["predictions"]], rel=1e-6
        )
    unnamed = client.post(f"/v2/models/{TRUSTED}/infer", json={"inputs": [images_input(*images)]}).json()
    assert [o["name"] for o in unnamed["outputs"]] == ["probabilities", "embedding"]
    refused = client.post(
        f"/v2/models/{PLAIN}/infer", json={"inputs": [images_input(*images)], "outputs": [{"name": "ood_score"}]}
    )
    assert refused.status_code == 400
    assert "no out-of-distribution reference" in refused.json()["error"]


def test_metrics_count_top1_probabilities_ood_scores_and_flagged_images(
    client: TestClient, trusted_models: TrustedModels
) -> None:
    answer = predict(client, TRUSTED, [*trusted_models.validation[:5], noise_png(2), noise_png(3)])
    predict(client, PLAIN, trusted_models.validation[:3])
    flagged = sum(r["out_of_distribution"] for r in answer["results"])
    text = client.get("/metrics").text
    version = trusted_models.trusted.version
    assert f'imgclf_top1_probability_count{{model="{TRUSTED}",version="{version}"}} 7.0' in text
    assert f'imgclf_ood_score_count{{model="{TRUSTED}",version="{version}"}} 7.0' in text
    assert f'imgclf_ood_flagged_images_total{{model="{TRUSTED}",version="{version}"}} {float(flagged)}' in text
    assert f'imgclf_top1_probability_count{{model="{PLAIN}",version="1"}} 3.0' in text
    assert f'imgclf_ood_score_count{{model="{PLAIN}",version="1"}} 0.0' in text  # no reference: nothing observed


def test_an_explanation_reports_calibrated_probabilities(client: TestClient, trusted_models: TrustedModels) -> None:
    image = trusted_models.validation[0]
    [result] = predict(client, TRUSTED, [image])["results"]
    files = {"file": ("a.png", image, "image/png")}
    explained = client.post(f"/v1/models/{TRUSTED}/explain", files=files, params={"top_k": 3, "patch": 8})
    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert body["target"]["score"] == pytest.approx(result["predictions"][0]["score"], rel=1e-6)
    assert [p["score"] for p in body["predictions"]] == pytest.approx(
        [p["score"] for p in result["predictions"]], rel=1e-6
    )
