"""Tells the browser where the app's server is, so a page opened by its own URL connects at once.

Streamlit's frontend does not know the server's base path. Opened at ``/transfer``, it first asks
``/transfer/_stcore/health``, gets a 404, waits its fixed 100 ms retry delay and then asks ``/_stcore/health``: every
shared link or reload of a page other than Home lost ~0.15 s before its script started (`docs/benchmarks.md`). The
frontend reads an embedding host's settings from ``window.__streamlit`` before it starts; ``BACKEND_BASE_URL`` there
is the server's base, and it then asks only there.

`PageBaseHint` is ASGI middleware for ``st.App`` (`app.py`). For a GET of a page (one path segment under the server's
base path, no file extension: the app's pages are ``/transfer``, ``/relative-space``…) whose answer is the HTML
shell, it sets ``BACKEND_BASE_URL`` to the page's parent URL as the browser sees it, so a proxy that serves the app
under a prefix of its own keeps working. The root page and every other request pass untouched.
"""

from __future__ import annotations

import re

# Set before the frontend's module script runs (it reads the setting once, when it loads). An embedding host's own
# settings win.
HINT = (
    b'<script>window.__streamlit=Object.assign({BACKEND_BASE_URL:new URL(".",location.href).href},'
    b"window.__streamlit)</script>"
)
PAGE = re.compile(r"/[A-Za-z0-9_-]+")
# Headers of the shell that no longer describe the changed body; conditional requests are dropped with them, so the
# browser never revalidates a changed copy against the file's own validators.
STALE = {b"content-length", b"etag", b"last-modified", b"content-encoding", b"accept-ranges"}
CONDITIONAL = {b"accept-encoding", b"if-none-match", b"if-modified-since", b"range"}


def with_hint(html: bytes) -> bytes:
    """The shell with the hint as the first thing in its <head>; unchanged when it has no <head>."""
    head = re.search(rb"<head[^>]*>", html)
    return html if head is None else html[: head.end()] + HINT + html[head.end() :]


class PageBaseHint:
    def __init__(self, app, base_url_path: str | None = None):
        from streamlit import config

        self.app = app
        base = config.get_option("server.baseUrlPath") if base_url_path is None else base_url_path
        base = (base or "").strip("/")
        self.base = f"/{base}" if base else ""

    def is_page(self, scope) -> bool:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "GET" or not path.startswith(self.base):
            return False
        return PAGE.fullmatch(path[len(self.base) :]) is not None

    async def __call__(self, scope, receive, send):
        if not self.is_page(scope):
            await self.app(scope, receive, send)
            return
        # An uncompressed, unconditional answer: the shell is ~8 KB and is edited below.
        scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() not in CONDITIONAL]}
        start: dict | None = None
        chunks: list[bytes] = []

        async def edit(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            headers = list(start.get("headers", []))
            body = b"".join(chunks)
            kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if start.get("status") == 200 and kind.startswith(b"text/html"):
                body = with_hint(body)
                headers = [(k, v) for k, v in headers if k.lower() not in STALE]
                headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, edit)
