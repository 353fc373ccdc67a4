"""``tvts serve``: a local web page and a JSON API over a search index (the standard library's HTTP server).

Routes (GET, and HEAD for files):

- ``/``: the page: a query box; with ``?q=TEXT`` or ``?like=VIDEO[&t=SECONDS]`` the ranked moments, rendered
  here (no script, no build step): a video element per moment that plays the moment (``#t=start,end``), with
  the thumbnail as its poster, the score, the file name and a "more like this" link;
- ``/api/search?q=TEXT&k=10`` or ``?like=VIDEO&t=SECONDS``: the moments as JSON (with their URLs);
- ``/api/info``: the index's model, settings and counts;
- ``/thumbs/<key>/<j>.jpg``: a thumbnail of the index; ``/video/<name>``: a video of the index, with HTTP
  range requests (what browsers use to seek); ``/static/<file>``: the page's style sheet.

Safety: it binds 127.0.0.1 unless told otherwise, and then answers only requests addressed to this machine
(``Host`` header: no DNS rebinding); it serves only the thumbnails inside the index folder and the videos the
index names, each resolved (links followed) and checked to lie inside its folder, so ``..``, absolute paths
and links leading out are refused (404); everything shown on the page is HTML-escaped, and a
Content-Security-Policy allows no script at all.
"""

from __future__ import annotations

import html
import json
import mimetypes
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tvts.errors import TVTSError

MAX_K = 100
CHUNK = 1 << 16
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATIC = {"style.css": "text/css; charset=utf-8"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _static(name: str) -> bytes:
    return resources.files("tvts.search").joinpath("static", name).read_bytes()


class SearchApp:
    """An index, its model (for text queries; loaded on first use unless given) and the file checks."""

    def __init__(self, folder: str | os.PathLike, model=None, model_dir: str | None = None, backend: str = "exact"):
        from tvts.search.query import SearchIndex

        self.index = SearchIndex(folder)
        self.folder = Path(folder).resolve()
        self.thumbs = self.folder / "thumbs"
        self.root = self.index.root.resolve()
        self.model, self.model_dir, self.backend = model, model_dir, backend
        self.lock = threading.Lock()  # one query at a time through the model

    def load_model(self):
        from tvts.search.query import load_query_model

        with self.lock:
            if self.model is None:
                self.model = load_query_model(self.index, self.model_dir)
        return self.model

    # ------------------------------------------------------------------------------------ queries
    def search(self, q: str | None, like: str | None, t: float | None, k: int) -> list[dict]:
        from tvts.search.query import like_query, text_query

        if like:
            query, exclude = like_query(self.index, like, t)
        else:
            model = self.load_model()
            with self.lock:
                query, exclude = text_query(model, q), {}
        with self.lock:  # FAISS builds its index on the first query
            moments = self.index.search(query, k, backend=self.backend, **exclude)
        return [{**m.to_dict(), "video_url": self.video_url(m.video, m.start, m.end), "thumb_url": "/" + m.thumb}
                for m in moments]

    @staticmethod
    def video_url(name: str, start: float | None = None, end: float | None = None) -> str:
        url = "/video/" + quote(name, safe="/")
        return url if start is None else f"{url}#t={start:.2f},{end:.2f}"

    # ------------------------------------------------------------------------------------ files
    @staticmethod
    def _inside(base: Path, rel: str) -> Path | None:
        """``base/rel`` when it is a file whose real path lies inside ``base``; else None."""
        if not rel or "\0" in rel or rel.startswith("/") or os.path.isabs(rel):
            return None
        p = (base / rel).resolve()
        return p if p.is_relative_to(base) and p.is_file() else None

    def thumb_file(self, rel: str) -> Path | None:
        return self._inside(self.thumbs, rel)

    def video_file(self, name: str) -> Path | None:
        return self._inside(self.root, name) if name in self.index.by_name else None


# ---------------------------------------------------------------------------------------- the page
def _fmt_time(s: float) -> str:
    m, s = divmod(s, 60)
    return f"{int(m)}:{s:04.1f}"


def render_page(app: SearchApp, q: str = "", like: str = "", t: float | None = None, k: int = 10,
                moments: list[dict] | None = None, error: str = "") -> bytes:
    esc = html.escape
    cards = []
    for rank, m in enumerate(moments or [], 1):
        centre = (m["window_start"] + m["window_end"]) / 2
        more = f"/?like={quote(m['video'], safe='')}&t={centre:.2f}&k={k}"
        cards.append(
            f'<li class="moment"><video controls preload="none" poster="{esc(m["thumb_url"])}" '
            f'src="{esc(m["video_url"])}"></video>'
            f'<div class="meta"><span class="rank">{rank}</span> <span class="score">{m["score"]:.3f}</span> '
            f'<span class="time">{esc(_fmt_time(m["start"]))}&ndash;{esc(_fmt_time(m["end"]))}</span></div>'
            f'<div class="name" title="{esc(m["video"])}">{esc(m["video"])}</div>'
            f'<a class="more" href="{esc(more)}">more like this</a></li>')
    if like:
        heading = f"Moments like {like}" + (f" at {_fmt_time(t)}" if t is not None else "")
    elif q:
        heading = f"Moments for \u201c{q}\u201d"
    else:
        heading = ""
    idx = app.index
    info = (f"{len(idx.videos)} videos, {len(idx)} windows of {idx.settings['window']:g} s every "
            f"{idx.settings['stride']:g} s; model {idx.settings['model']['name']}")
    page = Template(_static("page.html").decode()).substitute(
        query=esc(q), info=esc(info), heading=esc(heading), error=esc(error),
        results="\n".join(cards) if cards else ('<li class="empty">no moments</li>' if (q or like) and not error else ""),
        count=str(len(cards)))
    return page.encode()


# ---------------------------------------------------------------------------------------- HTTP
class Handler(BaseHTTPRequestHandler):
    app: SearchApp  # set on a subclass by make_server
    check_host: bool = True
    server_version = "tvts-search"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length

    def log_message(self, fmt, *args):  # quiet: one line per request only with TVTS_SERVE_LOG=1
        if os.environ.get("TVTS_SERVE_LOG"):
            super().log_message(fmt, *args)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _not_found(self) -> None:
        self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _host_ok(self) -> bool:
        if not self.check_host:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.lower() in LOOPBACK_NAMES

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        if not self._host_ok():
            return self._send(403, b"this server answers requests to 127.0.0.1 / localhost only\n",
                              "text/plain; charset=utf-8")
        url = urlsplit(self.path)
        path, params = url.path, parse_qs(url.query, keep_blank_values=True)
        try:
            if path.startswith("/video/"):
                return self._file(self.app.video_file(unquote(path[len("/video/"):])), head, ranges=True)
            if path.startswith("/thumbs/"):
                return self._file(self.app.thumb_file(unquote(path[len("/thumbs/"):])), head)
            if path.startswith("/static/"):
                name = path[len("/static/"):]
                return self._send(200, _static(name), STATIC[name], head=head) if name in STATIC else self._not_found()
            if path == "/api/info":
                idx = self.app.index
                return self._json(200, {"settings": idx.settings, "videos": len(idx.videos), "windows": len(idx),
                                        "failed": len(idx.failed)})
            if path in ("/api/search", "/"):
                return self._search(path, params, head)
        except (BrokenPipeError, ConnectionResetError):
            return None
        return self._not_found()

    def _search(self, path: str, params: dict, head: bool) -> None:
        one = lambda key: (params.get(key) or [""])[0]  # noqa: E731
        q, like = one("q").strip(), one("like").strip()
        moments, error, t, k = None, "", None, 10
        try:
            k = max(1, min(MAX_K, int(one("k") or 10)))
            t = float(one("t")) if one("t") else None
            if q or like:
                moments = self.app.search(q or None, like or None, t, k)
        except (ValueError, TVTSError) as e:
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
        if path == "/api/search":
            if error or not (q or like):
                return self._json(400, {"error": error or "give q=TEXT or like=VIDEO[&t=SECONDS]"})
            return self._json(200, {"query": q, "like": like, "t": t, "k": k, "moments": moments})
        self._send(200, render_page(self.app, q, like, t, k, moments, error), "text/html; charset=utf-8", head=head)

    def _file(self, path: Path | None, head: bool, ranges: bool = False) -> None:
        if path is None:
            return self._not_found()
        size = path.stat().st_size
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        start, end, status = 0, size - 1, 200
        spec = self.headers.get("Range") if ranges else None
        if spec:
            m = _RANGE.match(spec.strip())
            if m is None or (not m[1] and not m[2]):  # several ranges or another unit: the whole file (RFC 9110)
                m = None
            elif m[1]:
                start, end = int(m[1]), min(int(m[2]), size - 1) if m[2] else size - 1
            else:  # suffix: the last n bytes
                start, end = max(0, size - int(m[2])), size - 1
            if m is not None:
                if start >= size or start > end or (not m[1] and int(m[2]) == 0):
                    return self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"}, head)
                status = 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                data = f.read(min(CHUNK, left))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)


def make_server(app: SearchApp, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server (not started: call ``serve_forever``) for ``app``; port 0 picks a free one (``server_address``)."""
    handler = type("BoundHandler", (Handler,), {"app": app, "check_host": host in LOOPBACK_NAMES})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(folder: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, model_dir: str | None = None,
          backend: str = "exact") -> None:
    app = SearchApp(folder, model_dir=model_dir, backend=backend)
    if backend == "faiss":
        from tvts.deps import require

        require("faiss", "tvts serve --backend faiss", field="backend")
    app.load_model()  # fail now, not at the first query, when the model is missing or not the index's
    server = make_server(app, host, port)
    h, p = server.server_address[:2]
    print(f"[tvts] serving {folder} ({len(app.index.videos)} videos, {len(app.index)} windows) at http://{h}:{p}/ "
          "(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
