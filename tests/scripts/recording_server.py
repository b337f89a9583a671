"""A stand-in HTTP server for the load generators' tests: it answers 200 on /ok and 503 elsewhere and records what
each request carried, so a test can compare what a client reports with what the server saw."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 on /ok and 503 elsewhere; records what each request carried."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the service
    seen: list[tuple[str, str, str | None, bytes]] = []
    extra: set[str | None] = set()  # the X-Extra header of each request

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.command, self.path, self.headers.get("Content-Type"), body))
        self.extra.add(self.headers.get("X-Extra"))
        answer = b'{"ok": true}'
        self.send_response(200 if self.path == "/ok" else 503)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read ``seen``."""


def port_of(server: ThreadingHTTPServer) -> int:
    return int(server.server_address[1])
