"""Checks a real response against the OpenAPI document the app publishes."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator


def strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists its properties, so that a
    response field the document does not mention fails too."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if "properties" in result and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


def assert_documented(openapi: dict[str, Any], method: str, path: str, response: httpx.Response) -> None:
    responses = openapi["paths"][path][method]["responses"]
    documented = responses.get(str(response.status_code))
    assert documented is not None, (
        f"{method.upper()} {path} answered {response.status_code}; it documents {list(responses)}"
    )
    schema = documented["content"]["application/json"]["schema"]
    validator = Draft202012Validator(strict({**schema, "components": openapi["components"]}))
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(response.json())]
    assert not problems, f"{method.upper()} {path} ({response.status_code}): {problems}"
