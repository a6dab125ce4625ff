"""Runs on another machine, through the system's ``ssh``: the stream (remote side) and its reader here.

``tuitrain watch HOST:RUN_DIR`` runs ``ssh HOST tuitrain stream RUN_DIR``. The stream answers with
one JSON object a line (``"k"`` says which kind)::

    {"k": "hello", "protocol": 1, "version": "0.1.0", "ok": true, "run_dir": "/abs", "state": "running",
     "config": {...}, "checkpoints": [...]}        (ok false: "error", one line, and the stream ends)
    {"k": "history", "records": [...], "pos": {...}, "skipped": 0}   the first screen (sampled, bounded)
    {"k": "batch", "records": [...], "pos": {...}, "skipped": 0}     records as the run writes them
    {"k": "checkpoints", "paths": [...]}                            after a batch holding a save
    {"k": "answer", "id": 3, "answer": {...}}                       a command's answer (the control channel's)
    {"k": "done", "ended": "end"}                                   the run ended (or its process is gone)

and reads commands on stdin, one JSON object a line: ``{"id": 3, "cmd": "pause", "arg": null}``,
relayed to the run's control socket (control.send_command). ``pos`` is the rundir.Position after
the line's records: ``tuitrain stream RUN_DIR --from POS`` goes on after them, none lost or twice
(the history then is not sent again).

The reader (:class:`RemoteBackend`, the dashboard's backend like WatchBackend) checks every record
with records.valid and skips what does not fit; nothing received is ever run or parsed as markup.
When ssh dies it says "reconnecting" and starts it again with backoff from the last position.

``HOST:PATH`` is told from a local path as scp tells it (:func:`split_remote`): an existing local
path is local; otherwise a text whose part before the first colon is non-empty and holds no ``/``
names PATH on HOST. No torch, no textual.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from tuitrain import __version__
from tuitrain.backends import SkipNotice
from tuitrain.errors import UsageError
from tuitrain.records import EXIT_OK, EXIT_USAGE, valid

PROTOCOL = 1
"""The stream's wire version: both sides must speak the same one."""
SSH_ENV = "TUITRAIN_SSH"
REMOTE_ENV = "TUITRAIN_REMOTE"
SSH_OPTIONS = ("-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3")
"""Given before the user's ssh config is read (so they win over it) and harmless to it: no prompt (the
dashboard owns the terminal), a dead connection noticed within about 30 s, no terminal on the far side."""
MAX_LINE = 256 << 20
"""A stream line longer than this is skipped (a history is a few MB; a batch at most Follow's READ_LIMIT per file)."""
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
"""Waits between reconnection attempts (the last one repeats)."""
COMMAND_FIELDS = ("id", "cmd", "arg")
NO_TUITRAIN = 127
NOT_EXECUTABLE = 126
SSH_FAILED = 255


# ----------------------------------------------------------------------------- HOST:PATH


def split_remote(text: str) -> tuple[str, str] | None:
    """``(host, path)`` when ``text`` names a path on another machine, else None (a local path).

    Local wins: an existing path, a text without a colon, one starting with a colon, and one with a
    ``/`` before its first colon (``./a:b``, ``runs/x:y``) are local. ``HOST:`` alone is HOST's home.
    """
    if ":" not in text or os.path.lexists(text):
        return None
    host, path = text.split(":", 1)
    if not host or "/" in host:
        return None
    return host, path


def ssh_argv(host: str, remote_args: list[str], remote: str | None = None) -> list[str]:
    """The ssh command line running ``tuitrain REMOTE_ARGS...`` on ``host``.

    The ssh command comes from $TUITRAIN_SSH (default ``ssh``, split as a shell would), the remote
    tuitrain from ``remote`` or $TUITRAIN_REMOTE (default ``tuitrain``): a command line for the remote
    shell (``~/venv/bin/tuitrain`` works); the arguments are quoted for it.
    """
    ssh = shlex.split(os.environ.get(SSH_ENV, "") or "ssh")
    if host.startswith("-"):
        raise UsageError(f"bad host {host[:40]!r}: a host cannot start with '-'")
    command = f"{remote_tuitrain(remote)} {shlex.join(remote_args)}"
    return [*ssh, *SSH_OPTIONS, host, command]


def remote_tuitrain(remote: str | None = None) -> str:
    """The remote tuitrain command: ``remote``, else $TUITRAIN_REMOTE, else ``tuitrain``."""
    return remote or os.environ.get(REMOTE_ENV, "") or "tuitrain"


def ssh_problem(host: str, code: int, stderr: str, remote: str | None = None) -> str:
    """One line for an ssh that ended with ``code`` before tuitrain answered ("" when it said nothing
    more telling than its own stderr)."""
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if code == SSH_FAILED:
        return f"cannot reach {host} through ssh: {last or 'ssh failed (exit 255)'}"
    if code in (NO_TUITRAIN, NOT_EXECUTABLE):
        return (f"no `{remote_tuitrain(remote)}` to run on {host} ({last or f'exit {code}'}); point "
                f"--remote-tuitrain PATH or {REMOTE_ENV} at the tuitrain there, e.g. ~/venv/bin/tuitrain")
    return ""


def run_remote(host: str, remote_args: list[str], remote: str | None = None) -> int:
    """``tuitrain ctl`` / ``runs`` on ``host``: its output and exit code as its own; ssh's failures
    (unreachable, no tuitrain there) as one line, exit 2."""
    argv = ssh_argv(host, remote_args, remote)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=None, stderr=subprocess.PIPE, text=True,
                              errors="replace", start_new_session=True)
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]!r} ({exc.strerror or exc}); set {SSH_ENV} to your ssh command") from None
    problem = ssh_problem(host, done.returncode, done.stderr, remote)
    if problem:
        raise UsageError(problem)
    sys.stderr.write(done.stderr)
    return done.returncode


# ----------------------------------------------------------------------------- the remote side


class _Out:
    """stdout, one JSON line at a time from several threads; a gone reader ends the stream quietly."""

    def __init__(self, stream: IO[bytes], gone: threading.Event):
        self.stream = stream
        self.gone = gone
        self.lock = threading.Lock()

    def put(self, message: dict) -> None:
        line = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()
        with self.lock:
            if self.gone.is_set():
                return
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # the connection is gone
                self.gone.set()


def stream(run_dir: str, position: str | None = None, metrics_only: bool = False,
           stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> int:
    """``tuitrain stream RUN_DIR [--from POS]``: the hello, the history (or from ``position``, a
    Position as JSON), then the run's records as it writes them, until it ends or stdin closes."""
    from tuitrain.rundir import (
        CONFIG,
        METRICS,
        RECORD_FILES,
        Follow,
        Position,
        list_checkpoints,
        read_json,
        require_run_dir,
        run_state,
    )

    gone = threading.Event()
    out = _Out(stdout or sys.stdout.buffer, gone)
    hello: dict[str, Any] = {"k": "hello", "protocol": PROTOCOL, "version": __version__}
    path = Path(os.path.expanduser(run_dir))
    try:
        require_run_dir(path)
        start = None if position is None else Position.from_dict(_json(position))
    except (UsageError, ValueError) as exc:
        out.put({**hello, "ok": False, "error": str(exc)})
        return EXIT_USAGE
    path = path.resolve()
    out.put({**hello, "ok": True, "run_dir": str(path), "state": run_state(path),
             "config": read_json(path / CONFIG) or {}, "checkpoints": list_checkpoints(path)})
    follow = Follow(path, start, files=(METRICS,) if metrics_only else RECORD_FILES, stop=gone)
    relay = threading.Thread(target=_relay, args=(stdin or sys.stdin.buffer, out, path), daemon=True)
    relay.start()
    if start is None:
        out.put({"k": "history", "records": follow.history(), "pos": follow.position.to_dict(),
                 "skipped": follow.skipped})
    for batch in follow:
        records = [read.record for read in batch]
        out.put({"k": "batch", "records": records, "pos": follow.position.to_dict(), "skipped": follow.skipped})
        if any(r.get("type") == "event" and r.get("event") == "save" for r in records):
            out.put({"k": "checkpoints", "paths": list_checkpoints(path)})
    if follow.ended:
        out.put({"k": "done", "ended": follow.ended})
    relay.join(2.0)  # answers still on their way (a command sent just before the end)
    return EXIT_OK


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("--from takes a position as JSON, e.g. '{\"metrics.jsonl\": 1234}'") from None


def _relay(stdin: IO[bytes], out: _Out, run_dir: Path) -> None:
    """Each command line read on stdin goes to the run's control socket; its answer goes out. At the
    end of stdin (the connection is gone) the stream ends."""
    answering: list[threading.Thread] = []
    for line in iter(stdin.readline, b""):
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict) or set(request) - set(COMMAND_FIELDS) or type(request.get("id")) is not int:
            out.put({"k": "answer", "id": None, "answer": {"ok": False, "bad_input": True,
                                                            "reason": "a command is {\"id\": N, \"cmd\": ..., \"arg\": ...}"}})
            continue
        thread = threading.Thread(target=_answer, args=(out, run_dir, request), daemon=True)
        thread.start()
        answering.append(thread)
    for thread in answering:
        thread.join(5.0)
    out.gone.set()  # stdin closed: nobody reads what follows


def _answer(out: _Out, run_dir: Path, request: dict) -> None:
    from tuitrain.control import ChannelError, send_command

    cmd, arg = request.get("cmd"), request.get("arg")
    try:
        if not isinstance(cmd, str) or not (arg is None or isinstance(arg, str)):
            raise UsageError("a command's name is a string, its argument a string or null")
        answer = send_command(run_dir, cmd, arg)
    except ChannelError as exc:
        answer = {"ok": False, "reason": str(exc)}
    except (UsageError, ValueError) as exc:
        answer = {"ok": False, "bad_input": True, "reason": str(exc)}
    except OSError as exc:
        answer = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    out.put({"k": "answer", "id": request["id"], "answer": answer})


# ----------------------------------------------------------------------------- the laptop side


class StreamError(UsageError):
    """The stream could not start: unreachable host, no tuitrain there, another version, not a run."""


class Link:
    """One ssh process running ``tuitrain stream`` on the host; :meth:`connect` reads its hello."""

    def __init__(self, host: str, path: str, position: dict | None = None, remote: str | None = None,
                 metrics_only: bool = False):
        self.host, self.path, self.remote = host, path, remote
        args = ["stream", *(["--from", json.dumps(position)] if position is not None else []),
                *(["--metrics-only"] if metrics_only else []), "--", path]  # a path may start with '-'
        self.argv = ssh_argv(host, args, remote)
        self.proc: subprocess.Popen | None = None
        self.stderr: collections.deque[str] = collections.deque(maxlen=20)
        self.hello: dict = {}
        self._stderr_reader: threading.Thread | None = None
        self._lock = threading.Lock()

    def connect(self) -> dict:
        """Start ssh and read the hello; StreamError (one line) when the stream cannot start."""
        try:
            # Its own session: ssh never touches the dashboard's terminal, and Ctrl-C there is a key.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise StreamError(f"cannot run {self.argv[0]!r} ({exc.strerror or exc}); set {SSH_ENV} to your "
                              f"ssh command") from None
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        hello = self.read()
        if hello is None or hello.get("k") != "hello":
            code = self.wait_exit()
            raise StreamError(self.problem(code) or f"{self.host}'s tuitrain did not start a stream "
                              f"({self.last_error() or f'exit {code}'}); it needs tuitrain {__version__} there")
        if hello.get("protocol") != PROTOCOL:
            self.close()
            theirs = str(hello.get("version"))[:40]
            raise StreamError(f"tuitrain on {self.host} is version {theirs} (stream protocol "
                              f"{str(hello.get('protocol'))[:20]}), this one is {__version__} (protocol {PROTOCOL}): "
                              f"install the same version on both sides")
        if not hello.get("ok"):
            self.close()
            raise StreamError(f"{self.host}: {_text(hello.get('error'), 300) or 'the stream refused to start'}")
        self.hello = hello
        return hello

    def problem(self, code: int) -> str:
        """Why ssh ended, when it ended before tuitrain answered."""
        return ssh_problem(self.host, code, "\n".join(self.stderr), self.remote)

    def last_error(self) -> str:
        """ssh's (or the remote's) last line on stderr."""
        return next((line.strip() for line in reversed(self.stderr) if line.strip()), "")

    def read(self) -> dict | None:
        """The next message (a JSON object), or None at the end (ssh gone, a torn last line dropped)."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            try:
                line = self.proc.stdout.readline(MAX_LINE)
                if not line.endswith(b"\n"):
                    if len(line) < MAX_LINE:
                        return None  # the end: a partial line is never taken
                    while (rest := self.proc.stdout.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                        pass  # too long: skipped whole
                    continue
            except (OSError, ValueError):  # closed by quit() from another thread
                return None
            try:
                message = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(message, dict):
                return message

    def send(self, message: dict) -> bool:
        """One command line to the stream's stdin; False when the connection is gone."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            return False
        with self._lock:
            try:
                proc.stdin.write((json.dumps(message) + "\n").encode())
                proc.stdin.flush()
            except (OSError, ValueError):
                return False
        return True

    def close(self) -> int:
        """End ssh (the remote stream then ends; the run is never touched); its exit code."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        code = proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe:
                    pipe.close()
            except OSError:
                pass
        return code

    def wait_exit(self, timeout: float = 5.0) -> int:
        """ssh's exit code once it ended by itself (killed after ``timeout``)."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        code = self.close()
        if self._stderr_reader is not None:
            self._stderr_reader.join(1.0)  # its last line says why
        return code

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self.stderr.append(raw.decode("utf-8", "replace")[:500])


def _text(value: object, limit: int = 200) -> str:
    """Text from the other side, safe to show: a string, printable characters only, bounded."""
    if not isinstance(value, str):
        return ""
    return "".join(c if c.isprintable() else "?" for c in value[:limit])


def _strings(value: object, limit: int = 1000) -> list[str]:
    """A list of strings from the other side (anything else: empty)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and len(v) < 4096 for v in value):
        return []
    return value[:limit]


def link_record(host: str, state: str, reason: str = "") -> dict:
    """A record made here (never written to a run): the connection to ``host`` is ``state``."""
    return {"type": "link", "host": host, "state": state, "reason": reason, "time": time.time()}


class RemoteBackend:
    """A run on another machine, followed through ``ssh HOST tuitrain stream`` (see the module's text).

    The first connection is made here, so its failure is one line before any screen opens. Commands
    go through the stream's stdin to the run's control socket; their events come back with the records.
    """

    quit_stops_run = False

    def __init__(self, host: str, path: str, remote: str | None = None, metrics_only: bool = False):
        self.host, self.path, self.remote, self.metrics_only = host, path, remote, metrics_only
        self._link = Link(host, path, None, remote, metrics_only)
        hello = self._link.connect()
        self.remote_dir = _text(hello.get("run_dir"), 4096) or path
        self.run_dir = f"{host}:{self.remote_dir}"
        """What the status line shows: the host and the run's folder there."""
        self.state = _text(hello.get("state"), 20) or "unknown"
        self.controls = self.state in ("starting", "running", "paused")
        config = hello.get("config")
        self.config: dict = config if isinstance(config, dict) else {}
        self._checkpoints = _strings(hello.get("checkpoints"))
        self.position: dict | None = None
        """Where the records received end (Position.to_dict); None until the history arrived."""
        self.skipped = 0
        """Records received but not shown: they do not fit the record format (records.valid)."""
        self.received: list[dict] = []
        """Every record handed on, in order, when ``keep`` is set (tests compare it with the run's files)."""
        self.keep = False
        self.connects = 1
        self._stop = threading.Event()
        self._ids = iter(range(1, 1 << 62))
        self._pending: dict[int, str] = {}
        self._emit = None
        self._skip_notice = SkipNotice(f"from {host}")

    @property
    def link(self) -> Link:
        """The connection in use (a new one after each reconnection)."""
        return self._link

    # The dashboard's backend interface (backends.Backend).
    def run(self, emit) -> None:
        """Emit the history (replayed), then the records as they come, reconnecting when ssh dies,
        until the run ends or the viewer leaves."""
        self._emit = emit
        emit([link_record(self.host, "connected")])
        attempt = 0
        while not self._stop.is_set():
            ended = self._follow(self._link, emit)
            code = self._link.close() if ended or self._stop.is_set() else self._link.wait_exit()
            self._fail_pending(f"the connection to {self.host} dropped before the answer")
            if ended or self._stop.is_set():
                break
            reason = self._link.problem(code) or self._link.last_error() or f"ssh exited {code}"
            while not self._stop.is_set():
                wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                emit([link_record(self.host, "reconnecting", f"{reason}; again in {wait:g} s")])
                attempt += 1
                if self._stop.wait(wait):
                    break
                link = Link(self.host, self.path, self.position, self.remote, self.metrics_only)
                try:
                    link.connect()
                except StreamError as exc:
                    reason = str(exc)
                    continue
                self._link, attempt = link, 0
                if self._stop.is_set():  # quit() came while this one connected: it closed the one before
                    link.close()
                    break
                self.connects += 1
                emit([link_record(self.host, "connected")])
                break
        self.controls = False

    def _follow(self, link: Link, emit) -> bool:
        """Read one connection's messages; True when the run ended (nothing more will come)."""
        while (message := link.read()) is not None:
            kind = message.get("k")
            if kind in ("history", "batch"):
                records = self._checked(message.get("records"))
                if kind == "history":
                    records = [{"type": "replay", "begin": True}, *records, {"type": "replay", "begin": False}]
                self.position = self._position(message.get("pos"))
                records += self._skip_notice(self.skipped)
                if records:
                    emit(records)
            elif kind == "checkpoints":
                self._checkpoints = _strings(message.get("paths"))
            elif kind == "answer":
                self._answered(message.get("id"), message.get("answer"))
            elif kind == "done":
                return True
            if self._stop.is_set():
                return True
        return False

    def _checked(self, records: object) -> list[dict]:
        if not isinstance(records, list):
            return []
        good = [r for r in records if valid(r) and r.get("type") not in ("replay", "link")]
        self.skipped += len(records) - len(good)
        if self.keep:
            self.received += good
        for record in good:
            if record.get("type") == "event" and record.get("event") == "end":
                self.state = record.get("status") if isinstance(record.get("status"), str) else "done"
            elif record.get("type") == "event" and record.get("event") == "start":
                self.state = "running"
        return good

    def _position(self, pos: object) -> dict | None:
        from tuitrain.rundir import Position

        try:
            return Position.from_dict(pos).to_dict()
        except ValueError:
            return self.position  # a bad position is never handed back; the last good one stays

    def send(self, command) -> None:
        """Through the stream to the run's control socket; a refusal the run never saw comes back here."""
        from tuitrain.commands import to_wire

        name, arg = to_wire(command)
        cmd_id = next(self._ids)
        self._pending[cmd_id] = name
        if not self._link.send({"id": cmd_id, "cmd": name, "arg": arg}):
            self._answered(cmd_id, {"ok": False, "reason": f"not connected to {self.host} (reconnecting)"})

    def _answered(self, cmd_id: object, answer: object) -> None:
        name = self._pending.pop(cmd_id, None) if isinstance(cmd_id, int) else None
        if name is None or not isinstance(answer, dict):
            return
        if not answer.get("ok") and "cmd_id" not in answer and self._emit:
            # The run never saw it, so no event will come with the records: say so here.
            self._emit([{"type": "event", "event": name, "ok": False, "local": True, "step": 0,
                         "time": time.time(), "reason": _text(answer.get("reason"), 300)}])

    def _fail_pending(self, reason: str) -> None:
        for cmd_id in list(self._pending):
            self._answered(cmd_id, {"ok": False, "reason": reason})

    def devices(self) -> list[str]:
        """The devices the run's machine had at its start (its config.json)."""
        return _strings(self.config.get("devices")) or ["cpu"]

    def checkpoints(self) -> list[str]:
        """The run's checkpoints (paths on the host), newest first, as the stream last said."""
        return list(self._checkpoints)

    def quit(self, reason: str = "quit") -> None:
        """Leave: ssh is ended; the run trains on."""
        self._stop.set()
        self._link.close()


class RemoteRun:
    """A run on another machine in the comparison (compare_app): its config, name and state, and its
    metrics.jsonl records through a :class:`RemoteBackend` followed in a thread."""

    def __init__(self, host: str, path: str, remote: str | None = None):
        import queue

        self.host, self.path, self.remote = host, path, remote
        self.backend = RemoteBackend(host, path, remote, metrics_only=True)
        self.config = self.backend.config
        self.name = Path(self.backend.remote_dir).name or self.backend.remote_dir
        self._records: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self._history = threading.Event()
        self._thread: threading.Thread | None = None

    def __str__(self) -> str:
        return self.backend.run_dir

    def state(self) -> str:
        """The run's state as the host said it, then as its records tell it."""
        return self.backend.state

    def start(self) -> None:
        """Follow the run in a thread (records wait in a queue for :meth:`poll`). Followed before (the
        comparison comes back from a run opened alone, and :meth:`stop` ended that connection): a
        new connection, whose history comes again."""
        import queue

        again = self._thread is not None
        self._records = queue.SimpleQueue()
        self._history = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(again,), daemon=True)
        self._thread.start()

    def _run(self, again: bool) -> None:
        try:
            if again:
                self.backend = RemoteBackend(self.host, self.path, self.remote, metrics_only=True)
            self.backend.run(self._take)
        except StreamError:  # the host went away meanwhile: the row keeps its last state, no curves
            pass
        finally:
            self._history.set()

    def _take(self, records: list[dict]) -> None:
        for record in records:
            if record.get("type") == "replay" and not record.get("begin"):
                self._history.set()
            elif record.get("type") not in ("replay", "link"):
                self._records.put(record)

    def history(self, timeout: float = 60.0) -> list[dict]:
        """The run's history (waits for it, at most ``timeout`` seconds)."""
        self._history.wait(timeout)
        return self.poll()

    def poll(self) -> list[dict]:
        """The records that arrived since the last call."""
        found = []
        while not self._records.empty():
            found.append(self._records.get())
        return found

    def stop(self) -> None:
        """Stop following (ssh is ended; the run trains on)."""
        self.backend.quit()
