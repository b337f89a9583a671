"""SIGTERM with requests in flight: each is answered, then the service exits; new connections are refused."""

from __future__ import annotations

import http.client
import signal
import threading
import time
import uuid
from typing import Any

from scripts.bench.machine import load_average
from scripts.soak.context import Context, connect, wait_until

IMAGES_PER_REQUEST = 8  # a request takes a while, so all of them are surely in flight at the signal


def multipart(image: bytes, count: int) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex.encode()
    part = b'--%s\r\nContent-Disposition: form-data; name="file"; filename="%d.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    body = b"".join(part % (boundary, i) + image + b"\r\n" for i in range(count)) + b"--%s--\r\n" % boundary
    return body, f"multipart/form-data; boundary={boundary.decode()}"


def measure(ctx: Context) -> dict[str, Any]:
    ctx.fresh_models()
    body, content_type = multipart(ctx.image, IMAGES_PER_REQUEST)
    statuses: list[int] = []
    sent = threading.Semaphore(0)
    load_before = load_average()
    with ctx.service("drain") as server:

        def predict() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            try:
                connection.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
                sent.release()
                statuses.append(connection.getresponse().status)
            except OSError:
                statuses.append(0)
            finally:
                connection.close()

        threads = [threading.Thread(target=predict) for _ in range(ctx.sizes.drain_requests)]
        for thread in threads:
            thread.start()
        for _ in threads:
            sent.acquire(timeout=60)
        time.sleep(0.2)  # the last request's body is read and its work under way
        signalled = time.perf_counter()
        server.process.send_signal(signal.SIGTERM)
        wait_until(lambda: server.process.poll() is not None or not _accepts(server.port), 5, step=0.01)
        refused_new = "yes" if server.process.poll() is None and not _accepts(server.port) else "not checked"
        server.process.wait(120)
        exit_s = time.perf_counter() - signalled
        for thread in threads:
            thread.join(120)
    result = {
        "requests": ctx.sizes.drain_requests,
        "images_per_request": IMAGES_PER_REQUEST,
        "ok": statuses.count(200),
        "statuses": sorted(statuses),
        "exit_s": exit_s,
        "exit_code": server.process.returncode,
        "refused_new": refused_new,
        "loads": [load_before, load_average()],
    }
    print(f"  {result}", flush=True)
    return result


def _accepts(port: int) -> bool:
    try:
        with connect(port, timeout=1):
            return True
    except OSError:
        return False


def render(result: dict[str, Any]) -> list[str]:
    return [
        "### SIGTERM with requests in flight",
        "",
        f"- **{result['ok']} of {result['requests']} requests in flight answered 200** ({result['images_per_request']}"
        f" images each), **exit {result['exit_s']:.2f} s after SIGTERM** (exit code {result['exit_code']}); new "
        f"connections refused during the drain: {result['refused_new']}. Load average "
        f"{result['loads'][0]:.1f} -> {result['loads'][1]:.1f}.",
        "",
    ]
