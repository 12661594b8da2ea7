"""The web app's HTTP server (FastAPI): JSON endpoints over the sessions, the static page, and an
event stream per page whose end (a closed tab) cancels that page's propagation.

    memvos app --root ~/videos [--port 7860]

Endpoints (all under /api; errors are JSON ``{"detail": "one line"}``):

    GET    /config                            roots, upload limit, heartbeat
    GET    /files?path=DIR                    sub-folders, frame folders and videos of DIR (no path: the roots)
    GET    /sessions                          the open sessions (to reopen one after a reload)
    POST   /sessions            {path}        open a video file or frame folder -> session info
    GET    /sessions/ID                       info: frames, size, objects, annotated frames, progress
    DELETE /sessions/ID                       close it
    GET    /sessions/ID/frames/T.jpg[?overlay=1]   the frame (with the masks drawn in)
    GET    /sessions/ID/masks/T.png           its labels, palette PNG (index = object id)
    GET    /sessions/ID/overlays/T.png        RGBA layer of coloured masks for the page's canvas
    POST   /sessions/ID/interact  {frame, object_id, positive, negative, clicks}   polylines / clicks
    POST   /sessions/ID/strokes   multipart: frame, object_id, positive=PNG, negative=PNG
    POST   /sessions/ID/mask      multipart: frame, [object_id], file=PNG (palette, binary or RGB)
    POST   /sessions/ID/propagate             start in the background (409 while one runs)
    GET    /sessions/ID/progress              progress (polling also counts as a heartbeat)
    GET    /sessions/ID/events                Server-Sent Events: status on every change
    POST   /sessions/ID/cancel                stop the propagation after its current frame
    GET    /sessions/ID/marks/T.png           RGBA layer of the open round's strokes and clicks on frame T
    POST   /sessions/ID/undo                  revert the last interaction (stroke, click, mask, removal)
    POST   /sessions/ID/redo                  apply it again
    DELETE /sessions/ID/objects/K             remove object K
    GET    /sessions/ID/export.zip?kinds=palette,objects,cutouts,overlay
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from memvos import __version__
from memvos.app.export import export_zip, parse_kinds, remove_quietly
from memvos.app.paths import PathRefused, Roots
from memvos.app.render import (
    decode_mask_upload,
    decode_stroke_upload,
    jpeg,
    overlay_layer,
    palette_png,
    rasterise,
    stroke_radius,
    strokes_layer,
)
from memvos.app.session import AppSession, AppState, Busy, SessionFactory, default_factory
from memvos.data.masks import object_ids
from memvos.data.writers import render_overlay
from memvos.errors import InputError

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD = 32 << 20  # bytes per request body
EVENT_TICK = 0.25  # seconds between status checks of an event stream
PING_EVERY = 2.0  # seconds between keep-alive comments (they also reveal a closed tab)


class NoSession(Exception):
    """An unknown session id (HTTP 404)."""


class OpenRequest(BaseModel):
    path: str


class InteractRequest(BaseModel):
    frame: int
    object_id: int
    positive: list[list[list[float]]] = Field(default_factory=list)  # polylines of [x, y] frame pixels
    negative: list[list[list[float]]] = Field(default_factory=list)
    clicks: list[list[float]] = Field(default_factory=list)  # [x, y] or [x, y, 1|0]


# ---- the app ------------------------------------------------------------------------------------
def create_app(roots: Roots | Sequence[str | Path], factory: SessionFactory | None = None, *,
               heartbeat: float = 5.0, max_upload: int = DEFAULT_MAX_UPLOAD, max_sessions: int = 8,
               allowed_hosts: Sequence[str] | None = None, session_timeout: float = 1800.0) -> FastAPI:
    """The FastAPI app serving ``roots``; ``factory(frames)`` makes each InteractiveSession
    (default: the shipped fast model and interaction network, loaded on first use). Requests whose ``Host`` is
    not in ``allowed_hosts`` (default: this machine's loopback names; ``"*"``: any) are refused."""
    roots = roots if isinstance(roots, Roots) else Roots(list(roots))
    state = AppState(factory or default_factory(), heartbeat=heartbeat, max_sessions=max_sessions,
                     idle_timeout=session_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.close_all()  # stop running propagations when the server stops

    app = FastAPI(title="memvos", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.memvos = state
    app.state.roots = roots
    app.add_middleware(BodyLimit, limit=max_upload)
    app.add_middleware(HostCheck, allowed=LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts)
    _error_handlers(app)
    _page_routes(app)
    _file_routes(app, roots, state, max_upload, heartbeat)
    _session_routes(app, roots, state)
    _image_routes(app, state)
    _interaction_routes(app, state)
    _job_routes(app, state)
    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": " ".join(str(message).split())}, status_code=status)


def _error_handlers(app: FastAPI) -> None:
    """Every expected failure is a one-line JSON message with a fitting status."""
    for kind, status in ((InputError, 400), (NotADirectoryError, 400), (PathRefused, 403), (PermissionError, 403),
                         (FileNotFoundError, 404), (NoSession, 404), (Busy, 409)):
        app.add_exception_handler(kind, lambda request, err, status=status: _error(status, str(err)))
    app.add_exception_handler(RequestValidationError, lambda request, err: _error(400, _validation_message(err)))


def _validation_message(err: RequestValidationError) -> str:
    """FastAPI's list of validation problems as one line: 'frame: Field required; ...'."""
    problems = []
    for item in err.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path", "form"))
        problems.append(f"{where or 'request'}: {item.get('msg', 'invalid')}")
    return "bad request: " + "; ".join(problems[:5])


# ---- the page ----------------------------------------------------------------------------------
def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


# ---- files and sessions ----------------------------------------------------------------------------
def _file_routes(app: FastAPI, roots: Roots, state: AppState, max_upload: int, heartbeat: float) -> None:
    @app.get("/api/config")
    def config() -> dict:
        return {"roots": [str(r) for r in roots.paths], "max_upload": max_upload, "heartbeat": heartbeat,
                "version": __version__}

    @app.get("/api/files")
    def files(path: str | None = None) -> dict:
        return roots.listing(path)


def _session(state: AppState, sid: str) -> AppSession:
    try:
        return state.get(sid)
    except KeyError:
        raise NoSession(f"no session {sid!r} (closed, or the server restarted): open the video again") from None


def _info(session: AppSession) -> dict:
    """Session info plus the stroke radius the page draws with (what the server rasterises)."""
    return {**session.info(), "stroke_radius": stroke_radius(_shape(session))}


def _session_routes(app: FastAPI, roots: Roots, state: AppState) -> None:
    @app.post("/api/sessions", status_code=201)
    def open_session(body: OpenRequest) -> dict:
        path = roots.resolve(body.path)
        roots.check_frames(path)
        return _info(state.open(path))

    @app.get("/api/sessions")
    def sessions() -> list[dict]:
        """The open sessions, most recently used last: a reloaded or second page can reopen one."""
        state.sweep()
        return [{"id": s.id, "path": str(s.path), "name": s.path.name, "frames": len(s.frames),
                 "state": s.progress.state, "objects": list(s.interactive.object_ids), "watchers": s.watchers}
                for s in list(state.sessions.values())]

    @app.get("/api/sessions/{sid}")
    def session_info(sid: str) -> dict:
        return _info(_session(state, sid))

    @app.delete("/api/sessions/{sid}")
    def close_session(sid: str) -> dict:
        try:
            state.close(sid)
        except KeyError:
            raise NoSession(f"no session {sid!r}") from None
        return {"closed": sid}


# ---- images ------------------------------------------------------------------------------------
def _frame_index(session: AppSession, t: int) -> int:
    if not 0 <= t < len(session.frames):
        raise InputError(None, f"frame {t} out of range: {session.path.name} has {len(session.frames)} frames")
    return t


def _image_routes(app: FastAPI, state: AppState) -> None:
    @app.get("/api/sessions/{sid}/frames/{t}.jpg")
    def frame_image(sid: str, t: int, overlay: bool = False) -> Response:
        session = _session(state, sid)
        frame = session.frames[_frame_index(session, t)]
        if overlay:
            frame = render_overlay(frame, session.interactive.mask(t))
            return Response(jpeg(frame), media_type="image/jpeg", headers={"Cache-Control": "no-store"})
        return Response(jpeg(frame), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/sessions/{sid}/masks/{t}.png")
    def mask_image(sid: str, t: int) -> Response:
        session = _session(state, sid)
        labels = session.interactive.mask(_frame_index(session, t))
        return Response(palette_png(labels), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/sessions/{sid}/marks/{t}.png")
    def marks_image(sid: str, t: int) -> Response:
        session = _session(state, sid)
        marks = session.interactive.round_strokes(_frame_index(session, t))
        return Response(strokes_layer(marks, _shape(session)), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/sessions/{sid}/overlays/{t}.png")
    def overlay_image(sid: str, t: int) -> Response:
        session = _session(state, sid)
        labels = session.interactive.mask(_frame_index(session, t))
        return Response(overlay_layer(labels), media_type="image/png", headers={"Cache-Control": "no-store"})


# ---- interaction ---------------------------------------------------------------------------------
def _shape(session: AppSession) -> tuple[int, int]:
    return tuple(session.frames.size)


def _apply(session: AppSession, frame: int, object_id: int, **inputs) -> dict:
    """One interaction under the session's lock; the page gets the new status back."""
    _frame_index(session, frame)
    with session.exclusive():
        session.interactive.interact(frame, object_id, **inputs)
        session.changed()
    return {"frame": frame, **session.status()}


def _interaction_routes(app: FastAPI, state: AppState) -> None:
    @app.post("/api/sessions/{sid}/interact")
    def interact(sid: str, body: InteractRequest) -> dict:
        session = _session(state, sid)
        shape = _shape(session)
        positive = rasterise(body.positive, shape)
        negative = rasterise(body.negative, shape)
        clicks = [_click(c) for c in body.clicks] or None
        if positive is None and negative is None and clicks is None:
            raise InputError(None, "nothing to apply: give positive or negative strokes or clicks")
        return _apply(session, body.frame, body.object_id, positive=positive, negative=negative, clicks=clicks)

    @app.post("/api/sessions/{sid}/strokes")
    def strokes(sid: str, frame: Annotated[int, Form()], object_id: Annotated[int, Form()],
                positive: Annotated[UploadFile | None, File()] = None,
                negative: Annotated[UploadFile | None, File()] = None) -> dict:
        session = _session(state, sid)
        shape = _shape(session)
        maps = {name: decode_stroke_upload(upload.file.read(), upload.filename, shape)
                for name, upload in (("positive", positive), ("negative", negative)) if upload is not None}
        if not maps:
            raise InputError(None, "upload a positive and/or a negative stroke image")
        return _apply(session, frame, object_id, **maps)

    @app.post("/api/sessions/{sid}/mask")
    def mask_upload(sid: str, frame: Annotated[int, Form()], file: Annotated[UploadFile, File()],
                    object_id: Annotated[int | None, Form()] = None) -> dict:
        session = _session(state, sid)
        labels = decode_mask_upload(file.file.read(), file.filename, _shape(session))
        ids = object_ids(labels)
        if not ids:
            raise InputError(file.filename, "mask contains no object (all pixels are background or void)")
        _frame_index(session, frame)
        with session.exclusive():
            if object_id is not None:  # the whole mask is the chosen object
                session.interactive.interact(frame, object_id, mask=(labels > 0) & (labels != 255))
            else:  # every id of the file is its own object
                for obj in ids:
                    session.interactive.interact(frame, obj, mask=labels == obj)
            session.changed()
        return {"frame": frame, **session.status()}

    @app.post("/api/sessions/{sid}/undo")
    def undo(sid: str) -> dict:
        return _history(_session(state, sid), "undo")

    @app.post("/api/sessions/{sid}/redo")
    def redo(sid: str) -> dict:
        return _history(_session(state, sid), "redo")

    @app.delete("/api/sessions/{sid}/objects/{object_id}")
    def remove_object(sid: str, object_id: int) -> dict:
        session = _session(state, sid)
        with session.exclusive():
            session.interactive.remove_object(object_id)
            session.changed()
        return session.status()


def _history(session: AppSession, action: str) -> dict:
    """Undo or redo one interaction: ``{"undone"|"redone": bool, **status}``."""
    step, key = {"undo": (session.interactive.undo, "undone"), "redo": (session.interactive.redo, "redone")}[action]
    with session.exclusive():
        done = step()
        session.changed()
    return {key: done, **session.status()}


def _click(values: list[float]) -> tuple[float, float, bool]:
    if len(values) not in (2, 3) or not all(np.isfinite(v) for v in values):
        raise InputError(None, f"a click is [x, y] or [x, y, positive], not {values}")
    return float(values[0]), float(values[1]), bool(values[2]) if len(values) == 3 else True


# ---- long jobs: propagation, events, export ----------------------------------------------------------
def _job_routes(app: FastAPI, state: AppState) -> None:
    @app.post("/api/sessions/{sid}/propagate", status_code=202)
    def propagate(sid: str) -> dict:
        session = _session(state, sid)
        if not session.interactive.object_ids:
            raise InputError(None, "nothing to propagate: mark an object first")
        session.start_propagation()
        return session.status()

    @app.get("/api/sessions/{sid}/progress")
    def progress(sid: str) -> dict:
        return _session(state, sid).status()

    @app.post("/api/sessions/{sid}/cancel")
    def cancel(sid: str) -> dict:
        session = _session(state, sid)
        return {"cancelling": session.request_cancel(), **session.status()}

    @app.get("/api/sessions/{sid}/events")
    async def events(sid: str, request: Request) -> StreamingResponse:
        session = _session(state, sid)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(_event_stream(session, request), media_type="text/event-stream", headers=headers)

    @app.get("/api/sessions/{sid}/export.zip")
    def export(sid: str, kinds: str = "palette") -> FileResponse:
        session = _session(state, sid)
        chosen = parse_kinds(kinds)
        folder = Path(tempfile.mkdtemp(prefix="memvos-download-"))
        name = f"{session.path.stem or 'video'}-memvos.zip"
        try:
            with session.exclusive():
                export_zip(folder / name, session.frames, session.frames.names, session.interactive.mask,
                           tuple(session.interactive.object_ids), chosen, fps=session.frames.fps)
        except BaseException:
            remove_quietly(folder)
            raise
        return FileResponse(folder / name, media_type="application/zip", filename=name,
                            background=BackgroundTask(remove_quietly, folder))


async def _event_stream(session: AppSession, request: Request):
    """Status as Server-Sent Events whenever it changes, a comment every few seconds otherwise;
    while the stream is open the page counts as alive, and its end starts the heartbeat clock."""
    session.watch(+1)
    loop = asyncio.get_running_loop()
    try:
        yield "retry: 1000\n\n"
        last, pinged = None, loop.time()
        while not await request.is_disconnected():
            text = json.dumps(session.status())
            if text != last:
                yield f"event: status\ndata: {text}\n\n"
                last, pinged = text, loop.time()
            elif loop.time() - pinged > PING_EVERY:
                yield ": ping\n\n"
                pinged = loop.time()
            session.touch()
            await asyncio.sleep(EVENT_TICK)
    finally:
        session.watch(-1)


# ---- who may call -------------------------------------------------------------------------------
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def host_name(header: str) -> str:
    """The name of a ``Host`` header without its port: ``[::1]:7860`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def hosts_for(bind_host: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` names the app answers when listening on ``bind_host``: loopback names, the
    address itself, and ``extra`` (``--allow-host``). Listening on every interface (0.0.0.0, ::)
    adds this machine's name and addresses."""
    hosts = [*LOOPBACK_HOSTS, host_name(bind_host), *(host_name(h) for h in extra)]
    if bind_host in ("0.0.0.0", "::", ""):
        name = socket.gethostname()
        hosts += [name.lower(), socket.getfqdn().lower()]
        with contextlib.suppress(OSError):
            hosts += socket.gethostbyname_ex(name)[2]
    return list(dict.fromkeys(h for h in hosts if h))


class HostCheck:
    """ASGI middleware: answer only requests addressed to an allowed host name, so that a web page
    elsewhere cannot drive the app through the user's browser (DNS rebinding); others get 400."""

    def __init__(self, app, allowed: Sequence[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = {host_name(h) for h in allowed}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or self.any:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if host_name(header) in self.allowed:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": f"host {header!r} is not served here: open the app by the address it "
                                     f"printed, or start it with --allow-host"}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# ---- request size ------------------------------------------------------------------------------
class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, whether announced by
    Content-Length or streamed, before any endpoint parses them."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(send)
                return
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        mb = self.limit / (1 << 20)
        body = json.dumps({"detail": f"upload too large: the limit is {mb:g} MB per request"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# ---- serving -----------------------------------------------------------------------------------
def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line InputError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InputError(None, f"cannot listen on {host}:{port} ({err.strerror}); choose another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(app: FastAPI, sock: socket.socket, log_level: str = "warning"):
    """A uvicorn server for ``app`` on a bound socket (run it with ``server.run(sockets=[sock])``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=1, lifespan="on")
    return uvicorn.Server(config)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/"


def serve(roots: Sequence[str | Path], host: str = "127.0.0.1", port: int = 7860, checkpoint: str | None = None,
          short_side: int | None = None, heartbeat: float = 5.0, max_upload: int = DEFAULT_MAX_UPLOAD,
          allow_hosts: Sequence[str] = (), session_timeout: float = 1800.0) -> None:
    """Serve the app until interrupted, printing its URL first."""
    app = create_app(Roots(list(roots)), default_factory(checkpoint, short_side), heartbeat=heartbeat,
                     max_upload=max_upload, allowed_hosts=hosts_for(host, allow_hosts), session_timeout=session_timeout)
    sock = bind(host, port)
    server = make_server(app, sock)
    shown = ", ".join(str(r) for r in app.state.roots.paths)
    print(f"memvos app: {url_of(sock)} (serving {shown}; Ctrl+C stops)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
