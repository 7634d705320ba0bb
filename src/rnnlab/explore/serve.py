"""``--serve``: the page and its rows over HTTP on 127.0.0.1, for inputs too large to embed.

``GET /`` answers the page (built without rows), ``GET /data/<model>/<layer>/<quantity>/
<unit>`` one unit's uint8 row. Nothing else is served; the server lives until stopped.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rnnlab.explore.page import Page

_ROW = re.compile(r"^/data/(\d+)/(\d+)/([a-z]+)/(\d+)$")


def make_server(page: Page, port: int = 0) -> ThreadingHTTPServer:
    """A server for ``page`` bound to 127.0.0.1:``port`` (0: any free port), not started."""
    html = page.html(serve=True).encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # the name http.server calls
            if self.path in ("/", "/index.html"):
                return self._send(html, "text/html; charset=utf-8")
            m = _ROW.match(self.path)
            key = m and f"{m.group(1)}/{m.group(2)}/{m.group(3)}"
            if key not in page.rows or int(m.group(4)) >= len(page.rows[key]):
                return self.send_error(404)
            return self._send(page.row(key, int(m.group(4))), "application/octet-stream")

        def _send(self, body: bytes, kind: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # quiet: one line per row would flood
            return

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def serve_in_background(page: Page, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start a server in a daemon thread; return it and its URL (stop: ``.shutdown()``)."""
    server = make_server(page, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
