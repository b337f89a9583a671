"""``app.api.server`` extends uvicorn's internal ``HttpToolsProtocol``, which uvicorn may change in any release.
These checks fail loudly, naming what moved, when the parts we rely on change shape: then re-read
``uvicorn/protocols/http/httptools_impl.py`` and update ``LimitedHttpToolsProtocol`` (and the pin in pyproject)."""

from __future__ import annotations

import asyncio
import inspect
from unittest import mock

import httptools
import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.api.server import LimitedHttpToolsProtocol

# name -> the parameters after self, as we call or override them
METHODS = {
    "__init__": ["config", "server_state", "app_state", "_loop"],
    "connection_made": ["transport"],
    "connection_lost": ["exc"],
    "data_received": ["data"],
    "send_400_response": ["msg"],
    "on_message_begin": [],
    "on_url": ["url"],
    "on_header": ["name", "value"],
    "on_headers_complete": [],
    "on_message_complete": [],
    "_unset_keepalive_if_required": [],
    "_should_upgrade": [],
    "handle_websocket_upgrade": [],
    "_unsupported_upgrade_warning": [],
}
ATTRIBUTES = ("loop", "parser", "transport", "url", "cycle", "client", "server_state", "flow")
"""Instance attributes the subclass reads once a connection is made."""
DATA_RECEIVED_CALLS = {
    "_unset_keepalive_if_required",
    "parser",
    "feed_data",
    "httptools",
    "HttpParserError",
    "logger",
    "warning",
    "send_400_response",
    "HttpParserUpgrade",
    "_should_upgrade",
    "handle_websocket_upgrade",
    "_unsupported_upgrade_warning",
}
"""What uvicorn's ``data_received`` does: ours re-implements it around its own checks, so a new step upstream must
be copied."""


@pytest.mark.parametrize(("name", "parameters"), list(METHODS.items()), ids=list(METHODS))
def test_the_methods_we_override_or_call_keep_their_signature(name: str, parameters: list[str]) -> None:
    method = getattr(HttpToolsProtocol, name, None)
    assert method is not None, f"uvicorn's HttpToolsProtocol no longer has {name}()"
    assert list(inspect.signature(method).parameters)[1:] == parameters, f"{name}() changed its parameters"


def test_data_received_does_what_our_override_copies() -> None:
    names = set(HttpToolsProtocol.data_received.__code__.co_names)
    assert names == DATA_RECEIVED_CALLS, f"uvicorn's data_received changed: {sorted(names ^ DATA_RECEIVED_CALLS)}"


def test_the_status_lines_we_answer_with_exist() -> None:
    for status in (400, 408, 414, 431):
        assert STATUS_LINE[status].startswith(b"HTTP/1.1 %d " % status)


async def never_called(scope: object, receive: object, send: object) -> None:
    raise AssertionError("the head is not complete: no request reaches the app")


def test_a_connection_has_the_attributes_we_read() -> None:
    async def scenario() -> LimitedHttpToolsProtocol:
        config = Config(app=never_called, log_level="error")
        protocol = LimitedHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        transport = mock.Mock(spec=asyncio.Transport)
        transport.get_extra_info.return_value = None
        transport.is_closing.return_value = False
        protocol.connection_made(transport)
        protocol.data_received(b"GET /health/live?x=1 HTTP/1.1\r\nHost: x\r\n")  # the head, not yet complete
        missing = [name for name in ATTRIBUTES if not hasattr(protocol, name)]
        assert not missing, f"uvicorn's protocol no longer sets {missing}"
        assert isinstance(protocol.parser, httptools.HttpRequestParser)
        protocol.connection_lost(None)
        return protocol

    protocol = asyncio.run(scenario())
    assert protocol.url == b"/health/live?x=1"  # on_url accumulates the target, which _refuse reads
    assert hasattr(protocol.server_state, "default_headers")
    assert callable(protocol.flow.resume_reading)
