"""A webhook receiver on loopback that keeps what Alertmanager sends it (the demo's stand-in for a pager)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413, "body too large")
                    return
                try:
                    doc = json.loads(self.rfile.read(length))
                except ValueError:
                    self.send_error(400, "body is not JSON")
                    return
                if isinstance(doc, dict):
                    with receiver._lock:
                        receiver.notifications.append(doc)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far, oldest first."""
        with self._lock:
            return [alert for doc in self.notifications for alert in doc.get("alerts", [])]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
