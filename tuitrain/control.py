"""The control channel of a live run: a Unix socket only its owner can use.

The socket lives in the run directory (``control.sock``), or, when that path is too long for a
Unix socket, in a private folder (``/tmp/tuitrain-UID``, mode 0700); status.json names it. The
socket is created under umask 077 (mode 0600), and every connection's peer uid is checked
(SO_PEERCRED) against ours. A channel whose process died is detected by its pid and refused
connections, never trusted. One JSON line in (``{"cmd": "lr", "arg": "0.01"}``), one JSON line
out (``{"ok": true, ...}`` or ``{"ok": false, "reason": ...}``). No torch, no textual.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR, Stop
from tuitrain.config import check_device_name, parse_lr
from tuitrain.errors import UsageError
from tuitrain.runlog import STATUS, read_json

SOCKET_NAME = "control.sock"
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS
ANSWER_TIMEOUT_S = 60.0
COMMANDS = ("pause", "resume", "save", "load", "lr", "device", "stop")


class ChannelError(UsageError):
    """The run is not alive, or the channel cannot be used (exit 2)."""


def socket_path(run_dir: str | Path) -> Path:
    """Where a run's socket goes: in the run dir when the path fits, else in a private folder."""
    run_dir = Path(run_dir).resolve()
    inside = run_dir / SOCKET_NAME
    if len(str(inside)) <= MAX_SOCKET_PATH:
        return inside
    private = Path(tempfile.gettempdir()) / f"tuitrain-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    if private.stat().st_uid != os.getuid() or private.stat().st_mode & 0o077:
        raise ChannelError(f"{private} is not a private folder of this user; refusing to put a socket there")
    return private / (hashlib.sha256(str(run_dir).encode()).hexdigest()[:20] + ".sock")


def build_command(name: str, arg: str | None, cmd_id: int):
    """A command from its ctl name and argument; UsageError when either is bad."""
    if name not in COMMANDS:
        raise UsageError(f"unknown command {name!r} (one of {', '.join(COMMANDS)})")
    if name in ("lr", "device") and not arg:
        raise UsageError(f"{name} needs a value, e.g. 'lr 0.01' or 'device cpu'")
    if name in ("pause", "resume", "stop") and arg:
        raise UsageError(f"{name} takes no argument")
    if name == "pause":
        return Pause(id=cmd_id)
    if name == "resume":
        return Resume(id=cmd_id)
    if name == "save":
        return Save(arg or "", id=cmd_id)
    if name == "load":
        return Load(str(Path(arg).resolve()) if arg else "", id=cmd_id)
    if name == "lr":
        return SetLR(parse_lr(arg), id=cmd_id)
    if name == "device":
        return SetDevice(check_device_name(arg), id=cmd_id)
    return Stop("ctl", id=cmd_id)


class ControlServer:
    """Accepts commands on the socket, queues them, answers with the engine's event."""

    def __init__(self, run_dir: str | Path, send: Callable[[object], None]):
        self.path = socket_path(run_dir)
        self._send = send
        self._waiters: dict[int, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        self._next_id = 1_000_000  # far from the dashboard's own ids
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Bind (replacing a stale socket) and serve in a daemon thread."""
        if self.path.exists():
            self.path.unlink()  # the caller checked the run is not alive elsewhere
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)  # the socket is born 0600: no window where others could connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(8)
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
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            if not _same_user(conn):
                _reply(conn, {"ok": False, "reason": "permission denied: not the run's owner"})
                return
            try:
                request = json.loads(_read_line(conn))
                with self._lock:
                    self._next_id += 1
                    cmd_id = self._next_id
                command = build_command(str(request.get("cmd", "")), request.get("arg"), cmd_id)
            except (ValueError, UsageError, AttributeError) as exc:
                _reply(conn, {"ok": False, "bad_input": True, "reason": str(exc)})
                return
            event, slot = threading.Event(), []
            with self._lock:
                self._waiters[cmd_id] = (event, slot)
            self._send(command)
            if not event.wait(ANSWER_TIMEOUT_S):
                with self._lock:
                    self._waiters.pop(cmd_id, None)
                _reply(conn, {"ok": False, "reason": "no answer from the run (busy or stuck)"})
                return
            _reply(conn, {"ok": True, **slot[0]} if slot[0].get("ok", True) else slot[0])


def send_command(run_dir: str | Path, name: str, arg: str | None = None, timeout: float = ANSWER_TIMEOUT_S + 5) -> dict:
    """Send one command to a live run and return its answer; ChannelError when it is not alive."""
    from tuitrain.runs import run_state

    build_command(name, arg, 0)  # bad input is refused here, before touching the run
    state = run_state(run_dir)
    if state not in ("running", "paused", "starting"):
        raise ChannelError(f"run {run_dir} is not alive ({state})")
    status = read_json(Path(run_dir) / STATUS) or {}
    path = status.get("control") or str(socket_path(run_dir))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ChannelError(f"run {run_dir} is not alive (its control channel refused: {exc.strerror})") from None
    except PermissionError:
        raise ChannelError(f"run {run_dir} belongs to another user") from None
    with sock:
        sock.sendall((json.dumps({"cmd": name, "arg": arg}) + "\n").encode())
        try:
            line = _read_line(sock)
        except (TimeoutError, OSError) as exc:
            raise ChannelError(f"run {run_dir} did not answer ({exc})") from None
    if not line:
        raise ChannelError(f"run {run_dir} closed the channel without answering")
    return json.loads(line)


def _same_user(conn: socket.socket) -> bool:
    """SO_PEERCRED where the platform has it; elsewhere the 0600 socket file is the guarantee."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _read_line(sock: socket.socket, limit: int = 65536) -> str:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _reply(conn: socket.socket, answer: dict) -> None:
    try:
        conn.sendall((json.dumps(answer, default=str) + "\n").encode())
    except OSError:
        pass  # the sender left; the event is in metrics.jsonl anyway
