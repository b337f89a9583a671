"""Unknown query parameters are refused, not ignored: ``?model=flowers`` would otherwise be answered by the default
model and ``?topk=1`` with five classes.

The known parameters of a route are read from its declared parameters (FastAPI's dependant, the same source as the
OpenAPI document), so a parameter added to a route is known without a list to keep in step.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.api.errors import APIError
from app.engine.suggest import closest

_KNOWN: dict[int, tuple[APIRoute, frozenset[str]]] = {}  # id(route) -> (route, its query parameters' names)


def _query_names(dependant: Dependant) -> Iterator[str]:
    for param in dependant.query_params:
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):  # a Query() model: its fields
            yield from (field.alias or name for name, field in annotation.model_fields.items())
        else:
            yield param.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def known_query_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` declares (its own and its dependencies')."""
    cached = _KNOWN.get(id(route))
    if cached is not None and cached[0] is route:  # (APIRoute is not hashable; the route kept alive keeps its id)
        return cached[1]
    known = frozenset(_query_names(route.dependant))
    _KNOWN[id(route)] = (route, known)
    return known


def _hint(name: str, path: str) -> str:
    if name == "model" and path.startswith("/v1/"):
        return "; to use another model, name it in the path: /v1/models/{name}/..."
    return ""


async def reject_unknown_query(request: Request) -> None:
    """A dependency of every API route: 422 ``unknown_parameter`` naming the known parameters."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = known_query_parameters(route)
    unknown = [name for name in request.query_params if name not in known]
    if not unknown:
        return
    first = unknown[0]
    meant = closest(first, known)
    suggestion = f" (did you mean {meant!r}?)" if meant else ""
    listed = ", ".join(sorted(known)) if known else "none"
    names = ", ".join(repr(name) for name in dict.fromkeys(unknown))
    raise APIError(
        422,
        "unknown_parameter",
        f"unknown query parameter{'s' if len(set(unknown)) > 1 else ''} {names}{suggestion}"
        f"{_hint(first, request.url.path)}; {request.method} {route.path} takes: {listed}",
    )
