"""The app's HTTP API through FastAPI's TestClient (and a real uvicorn server for the event
stream): files, path safety, interactions, propagation and its cancellation, export, limits."""

from __future__ import annotations

import io
import json
import re
import socket
import time
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs its extra: pip install -e '.[app]'")
pytest.importorskip("httpx", reason="the app tests need httpx (FastAPI's TestClient)")

import httpx

with warnings.catch_warnings():  # Starlette would rather have httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from memvos.app.server import create_app
from memvos.data.frames import open_frames

from .helpers import inside_line, jaccard, served, session_factory, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture
def make_client(tree, shipped):
    """TestClient factory: create_app on ``tree.root`` with the shipped model (maybe slowed)."""
    clients = []

    def make(delay: float = 0.0, **options) -> TestClient:
        app = create_app([tree.root], session_factory(*shipped, delay=delay), **options)
        client = TestClient(app, base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def open_session(client: TestClient, path) -> dict:
    response = client.post("/api/sessions", json={"path": str(path)})
    assert response.status_code == 201, response.text
    return response.json()


def labels_of(response) -> np.ndarray:
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "P"
    return np.asarray(image)


def finish(client: TestClient, sid: str) -> dict:
    """Poll progress until the propagation ends; its final status."""
    return wait_for(lambda: (s := client.get(f"/api/sessions/{sid}/progress").json())["progress"]["state"] != "running"
                    and s)


def scribble(client: TestClient, sid: str, labels: np.ndarray, obj: int, frame: int = 0, kind: str = "positive"):
    body = {"frame": frame, "object_id": obj, kind: [inside_line(labels == obj)]}
    return client.post(f"/api/sessions/{sid}/interact", json=body)


# ---- files and path safety ---------------------------------------------------------------------
def test_files_lists_only_videos_and_frame_folders(make_client, tree):
    client = make_client()
    top = client.get("/api/files").json()
    assert [e["path"] for e in top["entries"]] == [str(tree.root.resolve())]
    listing = client.get("/api/files", params={"path": str(tree.root)}).json()
    kinds = {e["name"]: e["kind"] for e in listing["entries"]}
    assert kinds == {"clip": "frames", "clip.mp4": "video", "long": "frames"}  # no notes.txt, no link out
    assert {e["name"]: e["frames"] for e in listing["entries"]}["clip"] == 8
    assert listing["parent"] is None  # the root has no parent to go to


@pytest.mark.parametrize("path", ["../outside/secret", "clip/../../outside/secret.mp4", "link-out/secret",
                                  "link-out/secret.mp4", "link-out", "/etc", "{outside}/secret", "{root}/.."])
def test_paths_outside_the_roots_are_refused(make_client, tree, path):
    client = make_client()
    path = path.format(outside=tree.outside, root=tree.root)
    opened = client.post("/api/sessions", json={"path": path})
    assert opened.status_code == 403, opened.text
    assert "outside the allowed folders" in opened.json()["detail"]
    listed = client.get("/api/files", params={"path": path})
    assert listed.status_code == 403


def test_a_frame_folder_linking_out_is_refused(tree, shipped, tmp_path):
    root = tmp_path / "root"
    (root / "sneaky").mkdir(parents=True)
    (root / "sneaky" / "00000.png").symlink_to(tree.outside / "secret" / "00000.png")
    with TestClient(create_app([root], session_factory(*shipped)), base_url="http://127.0.0.1") as client:
        response = client.post("/api/sessions", json={"path": "sneaky"})
        assert response.status_code == 403 and "links outside" in response.json()["detail"]


def test_missing_and_unopenable_paths(make_client, tree):
    client = make_client()
    assert client.post("/api/sessions", json={"path": "nope.mp4"}).status_code == 404
    bad = client.post("/api/sessions", json={"path": "notes.txt"})
    assert bad.status_code == 400 and "notes.txt" in bad.json()["detail"]
    assert client.get("/api/files", params={"path": "clip.mp4"}).status_code == 400  # not a folder


# ---- a whole session ------------------------------------------------------------------------------
def test_interact_propagate_undo_remove(make_client, tree, clip):
    client = make_client()
    info = open_session(client, "clip")
    sid = info["id"]
    assert (info["frames"], info["width"], info["height"], info["objects"]) == (8, 256, 192, [])
    assert info["names"][0] == "00000" and info["stroke_radius"] >= 1

    response = scribble(client, sid, clip.labels[0], 1)
    assert response.status_code == 200, response.text
    assert response.json()["objects"] == [1] and response.json()["annotated"] == [0]
    first = labels_of(client.get(f"/api/sessions/{sid}/masks/0.png"))
    (x0, y), (x1, _) = inside_line(clip.labels[0] == 1)
    assert (first[int(y), int(x0):int(x1) + 1] == 1).all()  # the stroke is obeyed
    assert jaccard(first == 1, clip.labels[0] == 1) > 0.6

    assert client.post(f"/api/sessions/{sid}/propagate").status_code == 202
    status = finish(client, sid)
    assert status["progress"]["state"] == "finished" and status["progress"]["done"] == 7
    masks = [labels_of(client.get(f"/api/sessions/{sid}/masks/{t}.png")) for t in range(8)]
    assert np.mean([jaccard(m == 1, g == 1) for m, g in zip(masks, clip.labels)]) > 0.5

    clicked = client.post(f"/api/sessions/{sid}/interact", json={"frame": 3, "object_id": 2, "clicks": [
        [float(c) for c in np.argwhere(clip.labels[3] == 2).mean(0)[::-1]] + [1]]})
    assert clicked.status_code == 200 and clicked.json()["objects"] == [1, 2]
    undone = client.post(f"/api/sessions/{sid}/undo").json()
    assert undone["undone"] and undone["objects"] == [1] and undone["annotated"] == [0]

    removed = client.delete(f"/api/sessions/{sid}/objects/1").json()
    assert removed["objects"] == []
    assert not labels_of(client.get(f"/api/sessions/{sid}/masks/4.png")).any()
    assert client.post(f"/api/sessions/{sid}/undo").json()["objects"] == [1]
    assert (labels_of(client.get(f"/api/sessions/{sid}/masks/4.png")) == masks[4]).all()

    frame = Image.open(io.BytesIO(client.get(f"/api/sessions/{sid}/frames/4.jpg").content))
    assert frame.size == (256, 192) and frame.format == "JPEG"
    layer = Image.open(io.BytesIO(client.get(f"/api/sessions/{sid}/overlays/4.png").content))
    assert layer.mode == "RGBA" and (np.asarray(layer)[..., 3] > 0).sum() >= (masks[4] == 1).sum()
    assert client.get(f"/api/sessions/{sid}/frames/4.jpg", params={"overlay": 1}).status_code == 200
    assert client.delete(f"/api/sessions/{sid}").status_code == 200
    assert client.get(f"/api/sessions/{sid}").status_code == 404


def test_mask_upload_and_stroke_bitmaps(make_client, tree, clip):
    client = make_client()
    sid = open_session(client, "clip.mp4")["id"]
    png = io.BytesIO()
    gt = Image.fromarray(clip.labels[2], mode="P")
    gt.putpalette(Image.open(tree.root / "clip" / "00000.png").convert("P").getpalette() or [0] * 768)
    gt.save(png, format="PNG")
    response = client.post(f"/api/sessions/{sid}/mask", data={"frame": "2"},
                           files={"file": ("gt.png", png.getvalue(), "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["objects"] == [1, 2]  # each id of the file is its own object
    got = labels_of(client.get(f"/api/sessions/{sid}/masks/2.png"))
    assert (got == clip.labels[2]).all()  # a given mask is kept exactly

    as_one = client.post(f"/api/sessions/{sid}/mask", data={"frame": "5", "object_id": "7"},
                         files={"file": ("both.png", png.getvalue(), "image/png")})
    assert as_one.json()["objects"] == [1, 2, 7]
    assert (labels_of(client.get(f"/api/sessions/{sid}/masks/5.png")) == np.where(clip.labels[2] > 0, 7, 0)).all()

    small = io.BytesIO()
    Image.fromarray(np.ones((40, 50), np.uint8) * 255).save(small, format="PNG")
    wrong = client.post(f"/api/sessions/{sid}/mask", data={"frame": "0"},
                        files={"file": ("small.png", small.getvalue(), "image/png")})
    assert wrong.status_code == 400 and wrong.json()["detail"].startswith("small.png: ")

    stroke = np.zeros((192, 256), np.uint8)
    (x0, y), (x1, _) = inside_line(clip.labels[6] == 1)
    stroke[int(y), int(x0):int(x1) + 1] = 255
    bitmap = io.BytesIO()
    Image.fromarray(stroke).save(bitmap, format="PNG")
    drawn = client.post(f"/api/sessions/{sid}/strokes", data={"frame": "6", "object_id": "1"},
                        files={"positive": ("s.png", bitmap.getvalue(), "image/png")})
    assert drawn.status_code == 200, drawn.text
    assert (labels_of(client.get(f"/api/sessions/{sid}/masks/6.png"))[stroke > 0] == 1).all()


def test_export_zip_holds_the_masks(make_client, tree, clip):
    client = make_client()
    sid = open_session(client, "clip")["id"]
    for obj in (1, 2):
        assert scribble(client, sid, clip.labels[0], obj).status_code == 200
    client.post(f"/api/sessions/{sid}/propagate")
    assert finish(client, sid)["progress"]["state"] == "finished"
    expected = [labels_of(client.get(f"/api/sessions/{sid}/masks/{t}.png")) for t in range(8)]

    response = client.get(f"/api/sessions/{sid}/export.zip", params={"kinds": "palette,objects,cutouts,overlay"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "clip-memvos.zip" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    assert {f"masks/{t:05d}.png" for t in range(8)} <= names
    assert {f"objects/{k}/{t:05d}.png" for k in (1, 2) for t in range(8)} <= names
    assert {f"cutouts/{t:05d}.png" for t in range(8)} <= names and "overlay.mp4" in names
    for t in range(8):
        palette = Image.open(archive.open(f"masks/{t:05d}.png"))
        assert palette.mode == "P"
        labels = np.asarray(palette)
        assert (labels == expected[t]).all() and set(np.unique(labels)) <= {0, 1, 2}
        binary = np.asarray(Image.open(archive.open(f"objects/2/{t:05d}.png")))
        assert ((binary == 255) == (labels == 2)).all()
        cutout = np.asarray(Image.open(archive.open(f"cutouts/{t:05d}.png")))
        assert cutout.shape == (192, 256, 4) and ((cutout[..., 3] > 0) == (labels > 0)).all()
    video = tree.base / "exported.mp4"
    video.write_bytes(archive.read("overlay.mp4"))
    assert len(open_frames(video)) == 8

    only = zipfile.ZipFile(io.BytesIO(client.get(f"/api/sessions/{sid}/export.zip").content))
    assert all(n.startswith("masks/") for n in only.namelist())  # default: palette PNGs only
    assert client.get(f"/api/sessions/{sid}/export.zip", params={"kinds": "jpeg"}).status_code == 400


# ---- undo per interaction, marks, sessions that outlive the page ------------------------------------
def click_at(client: TestClient, sid: str, mask: np.ndarray, obj: int, positive: bool = True, frame: int = 0):
    (x0, y), (x1, _) = inside_line(mask, margin=6)  # a point well inside the mask
    x = (x0 + x1) / 2
    return client.post(f"/api/sessions/{sid}/interact",
                       json={"frame": frame, "object_id": obj, "clicks": [[float(x), float(y), int(positive)]]})


def test_undo_and_redo_one_click_at_a_time(make_client, clip):
    client = make_client()
    sid = open_session(client, "clip")["id"]
    assert click_at(client, sid, clip.labels[0] == 1, 1).status_code == 200
    after_one = labels_of(client.get(f"/api/sessions/{sid}/masks/0.png"))
    second = click_at(client, sid, clip.labels[0] == 2, 2).json()
    assert second["objects"] == [1, 2] and second["can_undo"] and not second["can_redo"]
    after_two = labels_of(client.get(f"/api/sessions/{sid}/masks/0.png"))
    assert (after_two == 2).any()

    undone = client.post(f"/api/sessions/{sid}/undo").json()  # only the second click goes
    assert undone["undone"] and undone["objects"] == [1] and undone["can_redo"]
    np.testing.assert_array_equal(labels_of(client.get(f"/api/sessions/{sid}/masks/0.png")), after_one)
    redone = client.post(f"/api/sessions/{sid}/redo").json()
    assert redone["redone"] and redone["objects"] == [1, 2] and not redone["can_redo"]
    np.testing.assert_array_equal(labels_of(client.get(f"/api/sessions/{sid}/masks/0.png")), after_two)

    client.post(f"/api/sessions/{sid}/undo")
    assert click_at(client, sid, clip.labels[0] == 1, 1).status_code == 200  # a new click ends the redo
    assert not client.post(f"/api/sessions/{sid}/redo").json()["redone"]


def test_marks_stay_drawn_until_the_round_is_propagated(make_client, clip):
    client = make_client()
    sid = open_session(client, "clip")["id"]

    def marks(t: int) -> np.ndarray:
        response = client.get(f"/api/sessions/{sid}/marks/{t}.png")
        image = Image.open(io.BytesIO(response.content))
        assert image.mode == "RGBA" and image.size == (256, 192)
        return np.asarray(image)

    assert not marks(0)[..., 3].any()
    assert scribble(client, sid, clip.labels[0], 1).status_code == 200
    assert click_at(client, sid, clip.labels[0] == 0, 1, positive=False).status_code == 200
    def green(layer):
        return (layer[..., 1] > 200) & (layer[..., 0] < 100) & (layer[..., 3] > 0)

    def red(layer):
        return (layer[..., 0] > 200) & (layer[..., 1] < 100) & (layer[..., 3] > 0)

    layer = marks(0)
    (x0, y), (x1, _) = inside_line(clip.labels[0] == 1)
    assert green(layer)[int(y), int(x0):int(x1) + 1].all()  # the stroke, where it was drawn
    assert red(layer).any() and not (red(layer) & (clip.labels[0] == 1)).any()  # the negative click, on background
    assert not marks(3)[..., 3].any()  # other frames: nothing
    client.post(f"/api/sessions/{sid}/undo")  # the negative click goes, the stroke stays
    assert not red(marks(0)).any() and green(marks(0)).any()
    assert client.post(f"/api/sessions/{sid}/propagate").status_code == 202
    assert finish(client, sid)["progress"]["state"] == "finished"
    assert not marks(0)[..., 3].any()


def test_a_session_can_be_reopened_and_idle_ones_are_closed(tree, shipped, clip):
    app = create_app([tree.root], session_factory(*shipped), session_timeout=0.5)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        sid = open_session(client, "clip")["id"]
        assert scribble(client, sid, clip.labels[0], 1).status_code == 200
        listed = client.get("/api/sessions").json()
        assert [(s["id"], s["name"], s["objects"]) for s in listed] == [(sid, "clip", [1])]
        again = client.get(f"/api/sessions/{sid}").json()  # what a reloaded page asks for
        assert again["annotated"] == [0] and again["objects"] == [1] and again["can_undo"]
        time.sleep(0.8)  # no page, no request: past the timeout
        assert client.get("/api/sessions").json() == []
        assert client.get(f"/api/sessions/{sid}").status_code == 404


def test_an_interaction_longer_than_the_idle_timeout_keeps_its_session(tree, shipped, clip):
    """The idle clock restarts when the work of a request ends, not only when it starts."""
    app = create_app([tree.root], session_factory(*shipped), session_timeout=0.3)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        sid = open_session(client, "clip")["id"]
        session = app.state.memvos.sessions[sid]
        interact = session.interactive.interact

        def slow(*args, **kwargs):
            time.sleep(0.5)  # past the timeout while the request runs
            return interact(*args, **kwargs)

        session.interactive.interact = slow
        assert scribble(client, sid, clip.labels[0], 1).status_code == 200
        assert [s["id"] for s in client.get("/api/sessions").json()] == [sid]
        time.sleep(0.5)
        assert client.get("/api/sessions").json() == []


# ---- limits and refusals ---------------------------------------------------------------------------
def test_upload_too_large_is_refused(make_client, clip):
    client = make_client(max_upload=20_000)
    sid = open_session(client, "clip")["id"]
    big = np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)
    data = io.BytesIO()
    Image.fromarray(big).save(data, format="PNG")
    assert len(data.getvalue()) > 20_000
    response = client.post(f"/api/sessions/{sid}/mask", data={"frame": "0"},
                           files={"file": ("big.png", data.getvalue(), "image/png")})
    assert response.status_code == 413 and "too large" in response.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(30):
            yield b"x" * 1000

    streamed = client.post(f"/api/sessions/{sid}/interact", content=chunks(),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.get(f"/api/sessions/{sid}").json()["objects"] == []


def test_an_image_announcing_an_absurd_size_is_refused_before_decoding(make_client, clip):
    """A few-kB PNG that decodes to 40000x40000 pixels: 400 from its header, not 500 (nor 1.6 GB)."""
    client = make_client()
    sid = open_session(client, "clip")["id"]
    data = io.BytesIO()
    Image.new("1", (40000, 40000)).save(data, format="PNG")
    assert len(data.getvalue()) < 300_000
    for endpoint, field in (("mask", "file"), ("strokes", "positive")):
        response = client.post(f"/api/sessions/{sid}/{endpoint}", data={"frame": "0", "object_id": "1"},
                               files={field: ("bomb.png", data.getvalue(), "image/png")})
        assert response.status_code in (400, 413), response.text
        assert "bomb.png" in response.json()["detail"]
    assert client.get(f"/api/sessions/{sid}").json()["objects"] == []


@pytest.mark.parametrize("host, allowed", [("127.0.0.1:7860", True), ("localhost", True), ("[::1]:80", True),
                                           ("evil.example:7860", False), ("127.0.0.1.evil.example", False)])
def test_requests_to_other_host_names_are_refused(tree, shipped, host, allowed):
    """A page elsewhere that rebinds its name to 127.0.0.1 sends its own name as Host: refused."""
    with TestClient(create_app([tree.root], session_factory(*shipped)), base_url="http://127.0.0.1") as client:
        response = client.get("/api/config", headers={"host": host})
    assert (response.status_code == 200) == allowed
    if not allowed:
        assert response.status_code == 400 and "--allow-host" in response.json()["detail"]


def test_allowed_hosts_follow_the_listening_address():
    from memvos.app.server import host_name, hosts_for

    assert host_name("[::1]:7860") == "::1" and host_name("Example.org:80") == "example.org" and host_name("::1") == "::1"
    assert hosts_for("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    assert "10.1.2.3" in hosts_for("10.1.2.3") and "studio.lan" in hosts_for("127.0.0.1", ["studio.lan:8080"])
    assert socket.gethostname().lower() in hosts_for("0.0.0.0")


def test_bad_requests_get_one_line_errors(make_client, clip):
    client = make_client()
    sid = open_session(client, "clip")["id"]
    line = [[10, 10], [20, 10]]
    cases = [({"frame": 99, "object_id": 1, "positive": [line]}, "frame 99 out of range"),
             ({"frame": 0, "object_id": 0, "positive": [line]}, "object id 0 out of range"),
             ({"frame": 0, "object_id": 1}, "nothing to apply"),
             ({"frame": 0, "object_id": 1, "positive": [[[1, 2, 3]]]}, "[x, y] points"),
             ({"frame": 0, "object_id": 1, "clicks": [[500, 10]]}, "outside the 256x192")]
    for body, message in cases:
        response = client.post(f"/api/sessions/{sid}/interact", json=body)
        assert response.status_code == 400 and message in response.json()["detail"], response.text
        assert "\n" not in response.json()["detail"]
    missing = client.post(f"/api/sessions/{sid}/interact", json={"object_id": 1})
    assert missing.status_code == 400 and missing.json()["detail"] == "bad request: frame: Field required"
    assert client.post(f"/api/sessions/{sid}/propagate").status_code == 400  # nothing marked yet
    assert client.get(f"/api/sessions/{sid}/frames/8.jpg").status_code == 400
    assert client.get("/api/sessions/nope/progress").status_code == 404
    assert client.delete(f"/api/sessions/{sid}/objects/3").status_code == 400
    assert not client.post(f"/api/sessions/{sid}/undo").json()["undone"]


def test_one_propagation_at_a_time_and_cancel(make_client, long_clip):
    client = make_client(delay=0.05)
    sid = open_session(client, "long")["id"]
    assert scribble(client, sid, long_clip.labels[0], 1).status_code == 200
    assert client.post(f"/api/sessions/{sid}/propagate").status_code == 202
    again = client.post(f"/api/sessions/{sid}/propagate")
    assert again.status_code == 409 and "already running" in again.json()["detail"]
    assert scribble(client, sid, long_clip.labels[5], 1, frame=5).status_code == 409
    assert client.post(f"/api/sessions/{sid}/undo").status_code == 409
    assert client.get(f"/api/sessions/{sid}/export.zip").status_code == 409
    assert client.get(f"/api/sessions/{sid}/frames/3.jpg").status_code == 200  # scrubbing still works
    wait_for(lambda: client.get(f"/api/sessions/{sid}/progress").json()["progress"]["done"] >= 2)
    assert client.post(f"/api/sessions/{sid}/cancel").json()["cancelling"]
    status = finish(client, sid)["progress"]
    assert status["state"] == "cancelled" and status["reason"] == "user" and status["done"] < status["total"] == 39
    assert client.post(f"/api/sessions/{sid}/propagate").status_code == 202  # free again
    client.post(f"/api/sessions/{sid}/cancel")
    finish(client, sid)


def test_a_propagation_nobody_watches_is_cancelled(make_client, tree, long_clip):
    client = make_client(delay=0.05, heartbeat=0.5)
    sid = open_session(client, "long")["id"]
    scribble(client, sid, long_clip.labels[0], 1)
    client.post(f"/api/sessions/{sid}/propagate")
    session = client.app.state.memvos.sessions[sid]
    assert session.wait(10)  # no request, no event stream: stops after the heartbeat
    assert session.progress.state == "cancelled" and session.progress.reason == "page closed"
    assert session.progress.done < 39


def test_closing_the_event_stream_cancels_the_propagation(tree, shipped, long_clip):
    app = create_app([tree.root], session_factory(*shipped, delay=0.05), heartbeat=0.5)
    with served(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        sid = http.post("/api/sessions", json={"path": "long"}).json()["id"]
        http.post(f"/api/sessions/{sid}/interact",
                  json={"frame": 0, "object_id": 1, "positive": [inside_line(long_clip.labels[0] == 1)]})
        session = app.state.memvos.sessions[sid]
        with http.stream("GET", f"/api/sessions/{sid}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            first = _next_status(lines)
            assert first["objects"] == [1] and first["progress"]["state"] == "idle"
            assert session.watchers == 1
            http.post(f"/api/sessions/{sid}/propagate")
            while (status := _next_status(lines))["progress"]["done"] < 10:  # > 0.5 s: the open stream keeps it alive
                assert status["progress"]["state"] == "running"
        assert session.wait(10)
        assert session.progress.state == "cancelled" and session.progress.reason == "page closed"
        assert 10 <= session.progress.done < 39


def _next_status(lines) -> dict:
    """The next `status` event's data from an SSE line iterator."""
    event = None
    for line in lines:
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "status":
            return json.loads(line.split(":", 1)[1])
    raise AssertionError("the event stream ended")


def test_the_page_needs_no_network(make_client):
    client = make_client()
    html = client.get("/").text
    assert "<canvas" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/") for a in assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200
        assert not re.search(r"https?://|//cdn|@import\s+url", response.text), asset
