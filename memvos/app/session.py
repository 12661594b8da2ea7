"""The app's sessions: one opened video, its InteractiveSession, a lock so that one long job
runs at a time, a background propagation with progress, and the liveness of the page that
watches it (a closed tab cancels its propagation)."""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memvos.data.frames import FrameSource, open_frames

log = logging.getLogger(__name__)

SessionFactory = Callable[[object], object]  # frames -> InteractiveSession (or a stand-in)


class Busy(Exception):
    """The session is running a propagation or an export (HTTP 409)."""


class SharedFrames:
    """A frame source safe to read from several threads (the page scrubs while the propagation
    reads), with an LRU cache of decoded frames so backward passes over a video do not re-seek."""

    def __init__(self, source: FrameSource, cache_bytes: int = 256 << 20) -> None:
        self.source = source
        self.path = source.path
        self.names = list(source.names)
        self.fps = source.fps
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0

    def __len__(self) -> int:
        return len(self.names)

    @property
    def size(self) -> tuple[int, int]:
        return self.source.size

    def __getitem__(self, index: int) -> np.ndarray:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        with self._lock:
            frame = self._cache.get(index)
            if frame is not None:
                self._cache.move_to_end(index)
                return frame
            frame = self.source[index]
            if not frame.flags.writeable:  # PIL's arrays are read-only; torch warns about those
                frame = frame.copy()
            self._cache[index] = frame
            self._held += frame.nbytes
            while self._held > self._cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._held -= old.nbytes
            return frame

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


@dataclass
class Progress:
    """What the page shows of the last propagation."""

    state: str = "idle"  # idle | running | finished | cancelled | error
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    error: str | None = None
    reason: str | None = None  # why it was cancelled: "user" or "page closed"
    run: int = 0  # which propagation of the session this is (1, 2, ...)

    def as_json(self) -> dict:
        return dict(vars(self))


class AppSession:
    """One opened video in the app."""

    def __init__(self, sid: str, path: Path, frames: SharedFrames, interactive, heartbeat: float) -> None:
        self.id = sid
        self.path = path
        self.frames = frames
        self.interactive = interactive
        self.heartbeat = heartbeat
        self.lock = threading.Lock()  # held by any change: interact, undo, remove, propagate, export
        self.cancel = threading.Event()
        self.progress = Progress()
        self._versions = itertools.count(1)  # next() is atomic: threads may bump it at once
        self.version = 0  # bumped whenever masks may have changed (the page's cache key)
        self.watchers = 0  # open event streams (pages)
        self.last_seen = time.monotonic()
        self._started = 0.0
        self._thread: threading.Thread | None = None
        self._meta_lock = threading.Lock()

    # ---- liveness ------------------------------------------------------------------------------
    def touch(self) -> None:
        """A client asked something: it is alive."""
        self.last_seen = time.monotonic()

    def watch(self, delta: int) -> None:
        """An event stream opened (+1) or closed (-1)."""
        with self._meta_lock:
            self.watchers += delta
        self.touch()

    def abandoned(self) -> bool:
        """No page holds an event stream and no request came for ``heartbeat`` seconds."""
        return self.watchers <= 0 and time.monotonic() - self.last_seen > self.heartbeat

    # ---- what the page sees --------------------------------------------------------------------
    def info(self) -> dict:
        h, w = self.frames.size
        return {"id": self.id, "path": str(self.path), "name": self.path.name, "frames": len(self.frames),
                "width": w, "height": h, "fps": self.frames.fps, "names": self.frames.names,
                **self.status()}

    def status(self) -> dict:
        """The changing part: objects, annotated frames, version, progress."""
        return {"objects": list(self.interactive.object_ids), "annotated": list(self.interactive.annotated_frames),
                "version": self.version, "progress": self.progress.as_json(),
                "can_undo": self.interactive.can_undo, "can_redo": self.interactive.can_redo}

    def changed(self) -> None:
        """Masks may have changed: the page reloads what it shows."""
        self.version = next(self._versions)

    # ---- changes -------------------------------------------------------------------------------
    def exclusive(self):
        """The session's lock, refused (Busy) rather than waited for while a job runs; the work's
        end counts as activity (a click that took longer than the idle timeout keeps the session)."""
        return _NonBlocking(self.lock, "a propagation or an export is running in this session; wait or cancel it",
                            on_exit=self.touch)

    def start_propagation(self) -> None:
        """Start the propagation in a background thread and return at once (Busy if one runs)."""
        if not self.lock.acquire(blocking=False):
            raise Busy("a propagation is already running in this session")
        try:
            self.cancel.clear()
            self.progress = Progress(state="running", run=self.progress.run + 1)
            self._started = time.monotonic()
            self.touch()
            self._thread = threading.Thread(target=self._propagate, name=f"memvos-propagate-{self.id}", daemon=True)
            self._thread.start()
        except BaseException:
            self.lock.release()
            raise

    def _propagate(self) -> None:
        progress = self.progress
        try:
            finished = self.interactive.propagate(progress=self._on_progress, cancel=self._should_stop)
            progress.state = "finished" if finished else "cancelled"
            if not finished and progress.reason is None:
                progress.reason = "user"
        except Exception as err:
            log.exception("propagation failed")
            progress.state, progress.error = "error", " ".join(str(err).split()) or type(err).__name__
        finally:
            progress.seconds = time.monotonic() - self._started
            self.changed()
            self.lock.release()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.done, self.progress.total = done, total
        self.progress.seconds = time.monotonic() - self._started
        self.changed()

    def _should_stop(self) -> bool:
        if self.cancel.is_set():
            return True
        if self.abandoned():
            self.progress.reason = "page closed"
            log.info("session %s: no page watches it any more; propagation cancelled", self.id)
            return True
        return False

    def request_cancel(self) -> bool:
        """Ask the running propagation to stop after its current frame; False if none runs."""
        if self.progress.state != "running":
            return False
        self.progress.reason = "user"
        self.cancel.set()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background propagation (tests, shutdown); True when none runs."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        self.cancel.set()
        self.wait(30)
        self.frames.close()


class _NonBlocking:
    """Context manager: take a lock without waiting, or raise Busy."""

    def __init__(self, lock: threading.Lock, message: str, on_exit: Callable[[], None] | None = None) -> None:
        self.lock, self.message, self.on_exit = lock, message, on_exit

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            raise Busy(self.message)

    def __exit__(self, *exc) -> None:
        self.lock.release()
        if self.on_exit is not None:
            self.on_exit()


class AppState:
    """Sessions by id; opens videos through the session factory (the model loads once, lazily)."""

    def __init__(self, factory: SessionFactory, heartbeat: float = 5.0, max_sessions: int = 8,
                 idle_timeout: float = 1800.0) -> None:
        self.factory = factory
        self.heartbeat = heartbeat
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout  # seconds a session without a page is kept (to reopen it)
        self.sessions: OrderedDict[str, AppSession] = OrderedDict()
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def open(self, path: Path) -> AppSession:
        """Open a video file or frame folder (already checked against the roots) as a new session."""
        frames = SharedFrames(open_frames(path))
        try:
            interactive = self.factory(frames)
        except BaseException:
            frames.close()
            raise
        sid = f"{next(self._counter)}-{secrets.token_hex(4)}"
        session = AppSession(sid, path, frames, interactive, self.heartbeat)
        with self._lock:
            self.sessions[sid] = session
            evicted = self._evict() + self._expired()
        for old in evicted:
            old.close()
        return session

    def sweep(self) -> list[str]:
        """Close the sessions no page has watched or asked about for ``idle_timeout`` seconds."""
        with self._lock:
            expired = self._expired()
        for session in expired:
            log.info("session %s (%s): no page for %.0f s, closed", session.id, session.path.name, self.idle_timeout)
            session.close()
        return [s.id for s in expired]

    def _expired(self) -> list[AppSession]:
        now = time.monotonic()
        out = [s for s in self.sessions.values() if s.watchers <= 0 and s.progress.state != "running"
               and not s.lock.locked() and now - s.last_seen > self.idle_timeout]
        for session in out:
            del self.sessions[session.id]
        return out

    def _evict(self) -> list[AppSession]:
        """Drop the least recently used idle sessions beyond ``max_sessions``."""
        out = []
        for sid in list(self.sessions):
            if len(self.sessions) <= self.max_sessions:
                break
            if self.sessions[sid].progress.state != "running":
                out.append(self.sessions.pop(sid))
        return out

    def get(self, sid: str) -> AppSession:
        self.sweep()
        with self._lock:
            session = self.sessions.get(sid)
            if session is None:
                raise KeyError(sid)
            self.sessions.move_to_end(sid)
        session.touch()
        return session

    def close(self, sid: str) -> None:
        with self._lock:
            session = self.sessions.pop(sid, None)
        if session is None:
            raise KeyError(sid)
        session.close()

    def close_all(self) -> None:
        with self._lock:
            sessions, self.sessions = list(self.sessions.values()), OrderedDict()
        for session in sessions:
            session.close()


def default_factory(checkpoint: str | None = None, short_side: int | None = None,
                    device: str = "cpu") -> SessionFactory:
    """Sessions on the shipped model for their frame size and the interaction network (or
    ``checkpoint``), each model loaded once, on first use."""
    from memvos.inference.interactive import InteractiveConfig, InteractiveSession, interactive_models, session_config

    processing = short_side or InteractiveConfig().max_short_side
    models = interactive_models(checkpoint, device, processing)

    def make(frames):
        model, config = models(frames)
        sizing = {"max_short_side": short_side} if short_side else {}
        return InteractiveSession(frames, model=model, config=session_config(config, device=device, **sizing))

    return make
