"""``tvts serve`` over HTTP on 127.0.0.1: search (JSON and page), thumbnails, video range requests, paths
outside the index refused, everything HTML-escaped, requests for other hosts refused."""

from __future__ import annotations

import http.client
import shutil
import threading
from urllib.parse import quote

import pytest
import requests

from tvts.search.serve import SearchApp, make_server

ODD = "<b>x&y<b> 'q\".mp4"  # a legal file name full of HTML


@pytest.fixture(scope="module")
def server(narrated, build, tiny_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    videos = base / "videos"
    (videos / "sub dir").mkdir(parents=True)
    names = sorted(narrated["events"])
    shutil.copy2(narrated["dir"] / names[0], videos / ODD)
    shutil.copy2(narrated["dir"] / names[1], videos / "sub dir" / "two.mp4")
    for n in names[2:4]:
        shutil.copy2(narrated["dir"] / n, videos / n)
    (base / "secret.txt").write_text("top secret")
    build(videos, base / "index")
    app = SearchApp(base / "index", model=tiny_model[0])
    srv = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{srv.server_address[1]}", "port": srv.server_address[1], "app": app,
           "base": base, "videos": videos}
    srv.shutdown()
    srv.server_close()


def _raw(server, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET with the path exactly as given (requests would normalise ``..``)."""
    c = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_search_api_returns_ranked_moments_with_working_urls(server):
    r = requests.get(server["url"] + "/api/search", params={"q": "the red square moves left", "k": 5}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    moments = r.json()["moments"]
    # exactly the library's answer for that text (the HTTP layer drops, reorders or rounds nothing)
    from tvts.search.query import text_query

    app = server["app"]
    want = app.index.search(text_query(app.load_model(), "the red square moves left"), 5)
    assert [(m["video"], m["start"], m["end"]) for m in moments] == [(w.video, w.start, w.end) for w in want]
    assert [m["score"] for m in moments] == pytest.approx([w.score for w in want], abs=1e-6)
    assert [m["score"] for m in moments] == sorted((m["score"] for m in moments), reverse=True)
    idx = server["app"].index
    for m in moments:
        assert m["video"] in idx.by_name and m["video_url"].endswith(f"#t={m['start']:.2f},{m['end']:.2f}")
        thumb = requests.get(server["url"] + m["thumb_url"], timeout=10)
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
        video = requests.get(server["url"] + m["video_url"].split("#")[0], timeout=10)
        assert video.status_code == 200 and video.content == (server["videos"] / m["video"]).read_bytes()
    like = requests.get(server["url"] + "/api/search", params={"like": "sub dir/two.mp4", "t": 6, "k": 3}, timeout=30)
    assert like.status_code == 200 and like.json()["moments"]
    assert requests.get(server["url"] + "/api/search", timeout=10).status_code == 400
    bad = requests.get(server["url"] + "/api/search", params={"like": "missing.mp4"}, timeout=10)
    assert bad.status_code == 400 and "not in the index" in bad.json()["error"]
    info = requests.get(server["url"] + "/api/info", timeout=10).json()
    assert info["videos"] == 4 and info["windows"] == len(idx)


@pytest.mark.parametrize("spec,span", [("bytes=10-99", (10, 99)), ("bytes=100-", (100, None)), ("bytes=-50", (-50, None)),
                                       ("bytes=0-0", (0, 0)), ("bytes=5-999999999", (5, None))])
def test_video_range_requests(server, spec, span):
    data = (server["videos"] / "sub dir" / "two.mp4").read_bytes()
    r = requests.get(server["url"] + "/video/" + quote("sub dir/two.mp4"), headers={"Range": spec}, timeout=10)
    a, b = span
    want = data[a:] if b is None else data[a : b + 1]
    assert r.status_code == 206 and r.content == want
    first = a if a >= 0 else len(data) + a
    assert r.headers["Content-Range"] == f"bytes {first}-{first + len(want) - 1}/{len(data)}"
    assert r.headers["Accept-Ranges"] == "bytes" and int(r.headers["Content-Length"]) == len(want)


def test_unsatisfiable_or_odd_ranges(server):
    url = server["url"] + "/video/" + quote("sub dir/two.mp4")
    size = (server["videos"] / "sub dir" / "two.mp4").stat().st_size
    r = requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=10)
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    assert requests.get(url, headers={"Range": "bytes=9-3"}, timeout=10).status_code == 416
    whole = requests.get(url, headers={"Range": "bytes=0-1,5-9"}, timeout=10)  # several ranges: the whole file
    assert whole.status_code == 200 and len(whole.content) == size
    assert requests.head(url, timeout=10).headers["Content-Length"] == str(size)


@pytest.mark.parametrize("path", [
    "/video/../secret.txt", "/video/%2E%2E/secret.txt", "/video/..%2Fsecret.txt", "/video//etc/passwd",
    "/video/%2Fetc%2Fpasswd", "/thumbs/../index.json", "/thumbs/%2E%2E/index.safetensors", "/thumbs//etc/passwd",
    "/thumbs/%2Fetc%2Fpasswd", "/static/../serve.py", "/static/page.html", "/index.json", "/etc/passwd",
    "/video/nothing.mp4", "/video/sub%20dir", "/thumbs/", "/video/%00",
])
def test_paths_outside_the_index_are_refused(server, path):
    status, body = _raw(server, path)
    assert status == 404 and b"secret" not in body and b"root:" not in body


def test_links_leading_out_are_refused(server):
    base, videos = server["base"], server["videos"]
    key = server["app"].index.videos[0]["key"]
    link = base / "index" / "thumbs" / key / "999.jpg"
    link.symlink_to(base / "secret.txt")
    try:
        assert _raw(server, f"/thumbs/{key}/999.jpg")[0] == 404
        assert _raw(server, f"/thumbs/{key}/0.jpg")[0] == 200  # its neighbour is served
    finally:
        link.unlink()
    # an indexed video replaced by a link to a file outside the video folder
    victim = videos / "sub dir" / "two.mp4"
    kept = base / "two-kept.mp4"
    victim.rename(kept)
    victim.symlink_to(kept)
    try:
        assert _raw(server, "/video/" + quote("sub dir/two.mp4"))[0] == 404
    finally:
        victim.unlink()
        kept.rename(victim)
    assert _raw(server, "/video/" + quote("sub dir/two.mp4"))[0] == 200


def test_the_page_escapes_file_names_and_queries(server):
    idx = server["app"].index
    r = requests.get(server["url"] + "/", params={"like": "sub dir/two.mp4", "k": 10}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    page = r.text
    assert "&lt;b&gt;x&amp;y&lt;b&gt; &#x27;q&quot;.mp4" in page  # the odd name, shown and escaped
    assert "<b>" not in page and "x&y" not in page
    assert page.count('class="moment"') == len(idx.search(idx.clips[idx.by_name["sub dir/two.mp4"]], k=10,
                                                           exclude_video=idx.by_name["sub dir/two.mp4"]))
    assert "'self'" in r.headers["Content-Security-Policy"] and "script" not in r.headers["Content-Security-Policy"]
    evil = "<script>alert('x')</script>"
    r = requests.get(server["url"] + "/", params={"q": evil}, timeout=30)
    assert r.status_code == 200 and "<script>" not in r.text and "&lt;script&gt;" in r.text
    r = requests.get(server["url"] + "/", params={"like": evil}, timeout=30)  # an error message, escaped too
    assert r.status_code == 200 and "<script>" not in r.text and "not in the index" in r.text
    assert requests.get(server["url"] + "/static/style.css", timeout=10).headers["Content-Type"].startswith("text/css")


def test_requests_for_another_host_are_refused(server):
    status, _ = _raw(server, "/api/info", {"Host": "attacker.example:80"})
    assert status == 403
    assert _raw(server, "/api/info", {"Host": f"localhost:{server['port']}"})[0] == 200


def test_the_command_binds_127_0_0_1_and_serves(small_index):
    """``tvts serve INDEX --port 0`` as a user runs it: it prints its address (this machine only) and answers."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tvts.cli", "serve", str(small_index), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "serving" in line and "http://127.0.0.1:" in line, line
        url = line.split("at ", 1)[1].split()[0]
        assert requests.get(url + "api/info", timeout=30).json()["windows"] > 0
        r = requests.get(url + "api/search", params={"q": "a star shrinks", "k": 2}, timeout=30)
        assert r.status_code == 200 and len(r.json()["moments"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
