"""The control channel of a live run: a Unix socket only its owner can use.

The socket lives in the run directory (``control.sock``), or, when that path is too long for a
Unix socket, in a private folder (``/tmp/tuitrain-UID``, mode 0700, checked with O_NOFOLLOW before
anything is put there: a symlink, a file or a folder of another user is refused). The socket is
created under umask 077 (mode 0600). Both ends check the other's uid (SO_PEERCRED): the server
refuses other users' connections, and ``ctl``/``watch`` refuse a server that is not theirs. A
channel whose process died is detected by its pid and refused connections, never trusted.

The wire: one JSON line in, one JSON line out, at most MAX_MESSAGE_BYTES each way::

    {"cmd": "lr", "arg": "0.01", "run": "DEV:INODE"}   ->   {"ok": true, ...}
                                                           {"ok": false, "reason": ...}

``cmd`` is one of COMMANDS; ``arg`` a string or null; ``run`` the identity (device and inode) of
the run directory the sender was given, so a copied run (``cp -r``) or a status.json naming
another run's socket never reaches that other run. Every field is checked (types, lengths, no
control characters, save names without folders, load paths absolute: ``ctl`` resolves them in
its caller's folder) and a bad message is answered with the reason and never reaches the engine.
No torch, no textual.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import struct
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import cast

from tuitrain.commands import WIRE_NAMES, Load, Pause, Resume, Save, SetDevice, SetLR, Stop
from tuitrain.config import check_device_name, parse_lr
from tuitrain.errors import UsageError
from tuitrain.records import LIVE_STATES
from tuitrain.rundir import identity, read_status, run_state

SOCKET_NAME = "control.sock"
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS
CLOSE_GRACE_S = 2.0
ANSWER_TIMEOUT_S = 60.0
READ_TIMEOUT_S = 10.0
"""A connection that sends no complete command in this time (the whole message, however slowly it
drips) is answered and closed."""
MAX_CONNECTIONS = 16
"""Connections served at once. More are answered "busy" at once and closed: idle or slow clients can
hold neither more threads nor more file descriptors than this (saves need descriptors too)."""
BUSY_SEND_TIMEOUT_S = 0.5
MAX_MESSAGE_BYTES = 16384
MAX_ARG_CHARS = {"save": 255, "load": 4096, "lr": 64, "device": 32}
MAX_SAVE_NAME_BYTES = 255 - len(".") - len(".sha256") - len(".") - 10 - len(".tmp")
"""The longest checkpoint name whose every file fits a 255-byte file name: a save also writes
``NAME.sha256``, each through the atomic writer's temp file ``.NAME.sha256.PID.tmp`` (PID: at most
10 digits)."""
COMMANDS = WIRE_NAMES  # one name per command, defined with the commands
FIELDS = ("cmd", "arg", "run")


class ChannelError(UsageError):
    """The run is not alive, or the channel cannot be used (exit 2)."""


def private_folder(create: bool = True) -> Path:
    """``/tmp/tuitrain-UID``, checked to be a real folder of ours that nobody else can enter.

    Opened with O_NOFOLLOW|O_DIRECTORY and checked on the open descriptor, so a symlink another user
    planted (to a folder of theirs, or of ours) is refused, never followed. /tmp's sticky bit keeps
    others from replacing the folder afterwards.
    """
    folder = Path(tempfile.gettempdir()) / f"tuitrain-{os.getuid()}"
    if create:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ChannelError(f"cannot create the private socket folder {folder} ({exc.strerror})") from None
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return folder  # not created (a client asking): no socket can be in it either
    except OSError:
        raise ChannelError(f"{folder} is {_what_is(folder)}, not a private folder of this user; refusing to "
                           f"use it for a control socket (remove it)") from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if info.st_uid != os.getuid():
        raise ChannelError(f"{folder} belongs to uid {info.st_uid}, not to this user; refusing to use it for a "
                           f"control socket (remove it)")
    if info.st_mode & 0o077:
        raise ChannelError(f"{folder} can be entered by other users (mode {stat.S_IMODE(info.st_mode):o}); refusing "
                           f"to use it for a control socket (chmod 700 it)")
    return folder


def socket_path(run_dir: str | Path, create: bool = True) -> Path:
    """Where a run's socket goes: in the run dir when the path fits, else in the private folder."""
    run_dir = Path(run_dir).resolve()
    inside = run_dir / SOCKET_NAME
    if len(str(inside)) <= MAX_SOCKET_PATH:
        return inside
    return private_folder(create) / (hashlib.sha256(str(run_dir).encode()).hexdigest()[:20] + ".sock")


def run_identity(run_dir: str | Path) -> str:
    """The run directory's device and inode (rundir.identity); ChannelError when it cannot be read."""
    found = identity(run_dir)
    if not found:
        raise ChannelError(f"run {run_dir} cannot be read")
    return found


def save_name_problem(name: str) -> str:
    """Why ``name`` cannot be a checkpoint file name in the run's checkpoints folder ("" if it can)."""
    if not name.endswith(".pt") or name == ".pt":
        return "a checkpoint name must end in .pt"
    if "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        return "a checkpoint name must not contain a folder"
    if name.startswith("."):
        return "a checkpoint name must not start with a dot"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a checkpoint name must not hold control characters"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_SAVE_NAME_BYTES:
        return f"a checkpoint name must be at most {MAX_SAVE_NAME_BYTES} bytes (with its sidecar and temp files it fills a 255-byte file name)"
    return ""


def build_command(name: object, arg: object, cmd_id: int, wire: bool = False):
    """A command from its ctl name and argument; UsageError (one line) when either is bad.

    ``wire``: the argument came over the socket, so a load path must already be absolute (the
    sender resolved it in its own folder; the run's folder means nothing to it).
    """
    if not isinstance(name, str) or name not in COMMANDS:
        raise UsageError(f"unknown command {_short(name)} (one of {', '.join(COMMANDS)})")
    if arg is not None and not isinstance(arg, str):
        raise UsageError(f"the argument of {name} must be a string or absent, not {type(arg).__name__}")
    arg = arg or ""
    if name in ("lr", "device") and not arg:
        raise UsageError(f"{name} needs a value, e.g. '{name} {'0.01' if name == 'lr' else 'cpu'}'")
    if name in ("pause", "resume", "stop") and arg:
        raise UsageError(f"{name} takes no argument")
    if arg:
        _check_text(name, arg)
    if name == "pause":
        return Pause(id=cmd_id)
    if name == "resume":
        return Resume(id=cmd_id)
    if name == "save":
        if arg and "." not in arg.rsplit("/", 1)[-1]:
            arg += ".pt"  # `save mine` is mine.pt, as the README's `save [NAME]` reads
        if arg and (problem := save_name_problem(arg)):
            raise UsageError(f"bad checkpoint name {arg!r}: {problem}")
        return Save(arg, id=cmd_id)
    if name == "load":
        if arg and wire and not os.path.isabs(arg):
            raise UsageError(f"load needs an absolute path over the channel, not {arg!r} (ctl resolves it)")
        return Load(arg if wire or not arg else os.path.abspath(arg), id=cmd_id)
    if name == "lr":
        return SetLR(parse_lr(arg), id=cmd_id)
    if name == "device":
        return SetDevice(check_device_name(arg), id=cmd_id)
    return Stop("ctl", id=cmd_id)


def parse_request(line: bytes) -> tuple[object, object, str]:
    """(cmd, arg, run) of one wire message; UsageError saying what is wrong with it."""
    if len(line) > MAX_MESSAGE_BYTES:
        raise UsageError(f"message longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        request = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise UsageError("not one JSON object on one line of UTF-8") from None
    if not isinstance(request, dict):
        raise UsageError(f"a message is a JSON object, not {type(request).__name__}")
    unknown = [k for k in request if k not in FIELDS]
    if unknown:
        raise UsageError(f"unknown field {_short(unknown[0])} (fields: {', '.join(FIELDS)})")
    run = request.get("run")
    if not isinstance(run, str):
        raise UsageError("the message lacks the run directory's identity ('run')")
    return request.get("cmd"), request.get("arg"), run


class ControlServer:
    """Accepts commands on the socket, queues them, answers with the engine's event."""

    def __init__(self, run_dir: str | Path, send: Callable[[object], None]):
        self.run_dir = Path(run_dir)
        self.path = socket_path(run_dir)  # checks the private folder before the caller creates anything
        self._send = send
        self._waiters: dict[int, tuple[threading.Event, list]] = {}
        self._answering: set[threading.Thread] = set()
        """Handler threads that hold a command's answer still to send (joined by close)."""
        self._lock = threading.Lock()
        self._next_id = 1_000_000  # far from the dashboard's own ids
        self._sock: socket.socket | None = None
        self._identity = ""
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def start(self) -> None:
        """Bind (replacing a stale socket) and serve in a daemon thread."""
        self._identity = run_identity(self.run_dir)
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(info.st_mode):
                raise ChannelError(f"{self.path} is a folder; the run's control socket goes there (remove it)")
            os.unlink(self.path)  # a stale socket or leftover: the caller checked the run is not alive elsewhere
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)  # the socket is born 0600: no window where others could connect
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise ChannelError(f"cannot create the control socket {self.path} ({exc.strerror or exc})") from None
        finally:
            os.umask(old_umask)
        self._sock = sock
        threading.Thread(target=self._serve, name="tuitrain-control", daemon=True).start()

    def close(self) -> None:
        """Stop accepting and remove the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.path.unlink(missing_ok=True)
        with self._lock:
            for event, slot in self._waiters.values():
                slot.append({"ok": False, "reason": "the run ended before answering"})
                event.set()
            answering = list(self._answering)
        # The process may exit right after this: let the handlers send the answers they hold (a
        # `ctl stop` must hear "done", not a closed channel). Bounded: a stuck client cannot hold it.
        deadline = time.monotonic() + CLOSE_GRACE_S
        for thread in answering:
            thread.join(max(0.0, deadline - time.monotonic()))

    def on_record(self, record: dict) -> None:
        """Called with every record: answers the sender waiting for this command id."""
        cmd_id = record.get("cmd_id")
        if cmd_id is None or record.get("type") != "event":
            return
        with self._lock:
            waiter = self._waiters.pop(cmd_id, None)
        if waiter:
            waiter[1].append(record)
            waiter[0].set()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError as exc:
                if self._sock is not None and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.1)  # out of descriptors: idle connections time out and free some
                    continue
                return  # closed
            if not self._slots.acquire(blocking=False):
                _refuse_busy(conn)
                continue
            try:
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
            except RuntimeError:  # no thread to be had: the connection is refused like an extra one
                self._slots.release()
                _refuse_busy(conn)

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(READ_TIMEOUT_S)
                try:
                    self._answer(conn)
                except Exception as exc:  # never a traceback on the run's terminal for what a client sent
                    _reply(conn, {"ok": False, "reason": f"internal error: {type(exc).__name__}: {exc}"})
        finally:
            with self._lock:
                self._answering.discard(threading.current_thread())
            self._slots.release()

    def _answer(self, conn: socket.socket) -> None:
        if not _same_user(conn):
            _reply(conn, {"ok": False, "reason": "permission denied: not the run's owner"})
            return
        try:
            line = _read_line(conn, deadline=time.monotonic() + READ_TIMEOUT_S)
        except TimeoutError:
            conn.settimeout(READ_TIMEOUT_S)  # the answer gets its own time
            _reply(conn, {"ok": False, "bad_input": True, "reason": f"no command within {READ_TIMEOUT_S:g} s"})
            return
        except OSError:
            return  # the sender left
        conn.settimeout(READ_TIMEOUT_S)  # the answer gets its own time, not what the read left
        with self._lock:
            self._next_id += 1
            cmd_id = self._next_id
        try:
            name, arg, run = parse_request(line)
            if run != self._identity:
                raise UsageError("this control channel belongs to another run directory than the one given "
                                 "(a copy of a live run, or a status.json naming another run's socket)")
            command = build_command(name, arg, cmd_id, wire=True)
        except UsageError as exc:
            _reply(conn, {"ok": False, "bad_input": True, "reason": str(exc)})
            return
        event, slot = threading.Event(), cast(list[dict], [])
        with self._lock:
            self._waiters[cmd_id] = (event, slot)
            self._answering.add(threading.current_thread())
        self._send(command)
        if not event.wait(ANSWER_TIMEOUT_S):
            with self._lock:
                self._waiters.pop(cmd_id, None)
            _reply(conn, {"ok": False, "reason": "no answer from the run (busy or stuck)"})
            return
        _reply(conn, {"ok": True, **slot[0]} if slot[0].get("ok", True) else slot[0])


def send_command(run_dir: str | Path, name: str, arg: str | None = None, timeout: float = ANSWER_TIMEOUT_S + 5) -> dict:
    """Send one command to a live run and return its answer; ChannelError when it is not alive."""
    build_command(name, arg, 0)  # bad input is refused here, before touching the run
    if name == "load" and arg:
        arg = os.path.abspath(arg)  # the caller's folder, never the training process's (no I/O: a loop cannot raise)
    state = run_state(run_dir)
    if state not in LIVE_STATES:
        raise ChannelError(f"run {run_dir} is not alive ({state})")
    message = json.dumps({"cmd": name, "arg": arg, "run": run_identity(run_dir)}) + "\n"
    sock, path = _connect(run_dir, timeout)
    with sock:
        uid = _peer_uid(sock)
        if uid is not None and uid != os.getuid():
            raise ChannelError(f"the control socket {path} is held by uid {uid}, not by this user; refusing to send")
        try:
            try:
                sock.sendall(message.encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # a busy run answers and closes before reading: its answer is read below
            line = _read_line(sock)
        except OSError as exc:  # TimeoutError included
            raise ChannelError(f"run {run_dir} did not answer ({exc})") from None
    if not line:
        raise ChannelError(f"run {run_dir} closed the channel without answering")
    try:
        answer = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise ChannelError(f"run {run_dir} answered something that is not a JSON object")
    return answer


def _connect(run_dir: str | Path, timeout: float) -> tuple[socket.socket, Path]:
    """A connection to the run's socket: the path derived from the run dir given, then the one
    status.json names if it lies in our private folder (a run whose folder was moved). Whichever
    answers, the server checks the run dir's identity, so a wrong socket never runs a command."""
    derived = socket_path(run_dir, create=False)
    candidates = [derived]
    named = (read_status(run_dir) or {}).get("control")
    if isinstance(named, str) and "\0" not in named and named != str(derived):
        if Path(named).parent == private_folder(create=False):
            candidates.append(Path(named))
    problem = ""
    for path in candidates:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except PermissionError:
            sock.close()
            raise ChannelError(f"run {run_dir} belongs to another user") from None
        except OSError as exc:
            sock.close()
            problem = problem or (exc.strerror or str(exc))
            continue
        return sock, path
    raise ChannelError(f"run {run_dir} is not alive (its control channel refused: {problem})")


def _same_user(conn: socket.socket) -> bool:
    """SO_PEERCRED where the platform has it; elsewhere the 0600 socket file is the guarantee."""
    uid = _peer_uid(conn)
    return uid is None or uid == os.getuid()


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (for a client: the server's, as it was at listen)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def _read_line(sock: socket.socket, limit: int = MAX_MESSAGE_BYTES, deadline: float | None = None) -> bytes:
    """Bytes up to the first newline (without it), or up to ``limit`` + 1 bytes (then too long).
    ``deadline`` (time.monotonic): TimeoutError unless the whole line is in by then, however the
    bytes trickle in (a per-read timeout lets a byte every few seconds hold the connection forever)."""
    data = b""
    while b"\n" not in data and len(data) <= limit:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the message did not complete in time")
            sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].strip() if b"\n" in data else data.strip()


def _refuse_busy(conn: socket.socket) -> None:
    """Answer a connection over MAX_CONNECTIONS at once and close it (never blocks for long)."""
    with conn:
        try:
            conn.settimeout(BUSY_SEND_TIMEOUT_S)
        except OSError:
            return
        _reply(conn, {"ok": False, "reason": f"the run is busy ({MAX_CONNECTIONS} control connections are "
                                             f"open); try again"})


def _reply(conn: socket.socket, answer: dict) -> None:
    try:
        conn.sendall((json.dumps(answer, default=str) + "\n").encode())
    except OSError:
        pass  # the sender left; the event is in metrics.jsonl anyway


def _check_text(name: str, arg: str) -> None:
    """Bounded length, encodable, no NUL or other control characters (a NUL in a file name raised
    ValueError deep in the engine and ended the run)."""
    if len(arg) > MAX_ARG_CHARS.get(name, 0):
        raise UsageError(f"the argument of {name} is longer than {MAX_ARG_CHARS.get(name, 0)} characters")
    bad = next((c for c in arg if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        raise UsageError(f"the argument of {name} holds a control character ({bad!r})")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _what_is(path: Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return f"unusable ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a folder"
