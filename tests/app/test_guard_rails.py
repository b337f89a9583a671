"""Guard rails where the service used to be silent: unknown query parameters and multipart fields, the method a
route takes, the model a misspelt name meant, an empty file, the setting behind the top_k cap."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.api.errors import install_error_handlers
from app.api.query import known_query_parameters, reject_unknown_query
from app.engine.suggest import closest
from app.main import ROUTERS
from tests.app.conftest import ClientFactory
from tests.app.images import JPEG

IMAGE = {"content": JPEG, "headers": {"content-type": "image/jpeg"}}


def error_of(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    return message


def test_a_misspelt_query_parameter_is_refused_with_the_known_ones(client: TestClient) -> None:
    message = error_of(client.post("/v1/predict?topk=1", **IMAGE), 422, "unknown_parameter")  # type: ignore[arg-type]
    assert "'topk'" in message and "(did you mean 'top_k'?)" in message
    assert "takes: coverage, top_k, version" in message
    [result] = client.post("/v1/predict?top_k=1", **IMAGE).json()["results"]  # type: ignore[arg-type]
    assert len(result["predictions"]) == 1


def test_a_model_query_parameter_points_to_the_models_path(client: TestClient) -> None:
    message = error_of(client.post("/v1/predict?model=flowers", **IMAGE), 422, "unknown_parameter")  # type: ignore[arg-type]
    assert "/v1/models/{name}/" in message


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/v1/models?x=1"), ("get", "/health/ready?x=1"), ("post", "/v1/models/tiny/features?top_k=3")],
)
def test_every_api_route_refuses_what_it_does_not_declare(client: TestClient, method: str, path: str) -> None:
    error_of(getattr(client, method)(path), 422, "unknown_parameter")


def test_under_v2_the_refusal_has_the_protocols_shape(client: TestClient) -> None:
    response = client.get("/v2/models/tiny?verbose=1")
    assert response.status_code == 422
    assert isinstance(response.json()["error"], str) and "'verbose'" in response.json()["error"]


def test_the_known_parameters_are_the_routes_declared_ones(client: TestClient) -> None:
    """Read from each route's declaration (as OpenAPI is): a parameter a route gains is known with no list to edit."""
    document = client.get("/openapi.json").json()
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema]
    assert routes
    for route in routes:
        for method in route.methods:
            operation = document["paths"][route.path_format][method.lower()]
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert known_query_parameters(route) == declared, route.path

    router = APIRouter()

    @router.post("/predict")
    async def predict(top_k: int = 5, coverage: float | None = Query(None)) -> dict[str, Any]:
        return {"top_k": top_k, "coverage": coverage}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router, dependencies=[Depends(reject_unknown_query)])
    with TestClient(app) as fresh:
        assert fresh.post("/predict?coverage=0.9").json() == {"top_k": 5, "coverage": 0.9}
        message = error_of(fresh.post("/predict?coverge=0.9"), 422, "unknown_parameter")
        assert "did you mean 'coverage'?" in message


def test_a_multipart_part_not_named_file_says_to_name_it_file(client: TestClient) -> None:
    message = error_of(client.post("/v1/predict", files={"image": ("a.jpg", JPEG)}), 400, "unknown_field")
    assert "'image'" in message and "'file'" in message
    message = error_of(
        client.post("/v1/predict", files={"file": ("a.jpg", JPEG)}, data={"top_k": "1"}), 400, "unknown_field"
    )
    assert "query string" in message


def test_a_wrong_method_says_which_to_use(client: TestClient) -> None:
    response = client.get("/v1/models/tiny/predict")
    message = error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    assert "use POST" in message and "GET" in message


def test_an_unknown_model_name_suggests_the_closest(client: TestClient) -> None:
    message = error_of(client.post("/v1/models/tini/predict", **IMAGE), 404, "model_not_found")  # type: ignore[arg-type]
    assert "did you mean 'tiny'?" in message
    message = error_of(client.get("/v1/models/TINY"), 404, "model_not_found")
    assert "did you mean 'tiny'?" in message
    assert "did you mean" not in error_of(client.get("/v1/models/flowers"), 404, "model_not_found")


def test_closest_model_name() -> None:
    names = ["efficientnet-lite0", "digits", "fashion"]
    assert closest("efficientnet_lite0", names) == "efficientnet-lite0"
    assert closest("digit", names) == "digits"
    assert closest("resnet50", names) is None


def test_one_empty_file_says_it_is_empty(client: TestClient) -> None:
    message = error_of(client.post("/v1/predict", files={"file": ("cat.jpg", b"")}), 400, "empty_body")
    assert "'cat.jpg' is empty" in message and "curl" not in message
    empty = client.post("/v1/predict", content=b"", headers={"content-type": "image/jpeg"})
    message = error_of(empty, 400, "empty_body")
    assert "body is empty" in message


def test_the_top_k_cap_names_its_setting(make_client: ClientFactory) -> None:
    client = make_client(max_top_k=3)
    for path in ("/v1/predict?top_k=4", "/v1/explain?top_k=4"):
        message = error_of(client.post(path, **IMAGE), 422, "invalid_parameter")  # type: ignore[arg-type]
        assert "at most 3" in message and "IMGCLF_MAX_TOP_K" in message
