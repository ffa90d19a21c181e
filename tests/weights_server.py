"""A real HTTP server on 127.0.0.1 that serves model files to pooch, with failure modes.

Used in-process (a thread) by the install tests, and as a separate process (`python
weights_server.py DIR PORTFILE`) for the test that kills the server mid-transfer.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        with server.lock:
            server.hits[self.path] = server.hits.get(self.path, 0) + 1
        route = server.routes.get(self.path)
        if route is None:
            self.send_error(404, "not found")
            return
        mode, payload = route
        body = bytes(payload)
        if mode == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "truncate":
            # Promise the whole file, send half, then drop the connection.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        chunk = 64 * 1024
        for start in range(0, len(body), chunk):
            self.wfile.write(body[start : start + chunk])
            if mode == "slow":
                time.sleep(server.delay)


class WeightsServer:
    """Serve {url_path: (mode, bytes)} on an ephemeral loopback port."""

    def __init__(self, delay: float = 0.05):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.hits = {}
        self.httpd.lock = threading.Lock()
        self.httpd.delay = delay
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, payload: bytes, mode: str = "ok") -> str:
        self.httpd.routes[path] = (mode, payload)
        return self.base_url + path

    def hits(self, path: str) -> int:
        return self.httpd.hits.get(path, 0)

    def __enter__(self) -> "WeightsServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _serve_folder_slowly(folder: Path, port_file: Path) -> None:
    server = WeightsServer(delay=0.2)
    for path in folder.iterdir():
        server.add("/" + path.name, path.read_bytes(), mode="slow")
    with server:
        port_file.write_text(server.base_url)
        while True:
            time.sleep(1)


if __name__ == "__main__":
    _serve_folder_slowly(Path(sys.argv[1]), Path(sys.argv[2]))
