"""What many tests share: the repository root and the ways to wait for something to happen.

Waiting always polls a condition with a deadline (never a bare sleep), so a slow machine makes a
test slower, not flaky.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import shlex
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuitrain.rundir import RunLog

if TYPE_CHECKING:
    import torch

    from tuitrain.compare_app import CompareApp
    from tuitrain.control import ControlServer

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the working folder of the CLI subprocesses)."""


def wait(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` every 0.1 s until it is true; fail the test naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def until(pilot, condition: Callable[[], object], what: str, tries: int = 300) -> None:
    """In a Pilot test: let the app run until ``condition`` is true (at most ``tries`` x 50 ms)."""
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def ready(pilot, app, step: int = 150) -> None:
    """Until the fake backend's scripted records are in (tests/fakes.py: RUNNING at step 150)."""
    await until(pilot, lambda: app.run_state.state == "RUNNING" and app.run_state.step == step,
                "the scripted records", tries=100)
    await pilot.pause()  # and one frame drawn with them


def record_run(run_dir: Path | str, records: list[dict], state: str) -> RunLog:
    """A run directory written by hand: config.json, ``records``, and status.json in ``state``
    (alive: this process's pid). Returns the open RunLog, to write more as a live run would."""
    log = RunLog(run_dir)
    log.write_config({"dataset": "synthetic", "devices": ["cpu"]})
    for record in records:
        log.write(record)
    log.write_status({"state": state, "pid": os.getpid(), "host": socket.gethostname()})
    return log


def serve_ssh(folder: str) -> None:
    """An SSH server on a loopback port for the remote tests (asyncssh; run in its own process).

    ``folder`` holds host_key and authorized_keys; the port is written to ``folder/port``. Each
    command runs through the shell in ``folder/home``, with this process's environment (the tests'
    venv first on PATH), its stdin, stdout and stderr relayed and its exit code returned, as sshd does.
    A closed connection closes the command's stdin.
    """
    import asyncio

    import asyncssh

    base = Path(folder)

    async def relay_out(source, sink) -> None:
        while data := await source.read(65536):
            try:
                sink.write(data)
            except Exception:  # the client is gone: keep draining so the command is never blocked
                pass

    async def handle(process) -> None:
        proc = await asyncio.create_subprocess_shell(
            process.command or "true", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=base / "home", start_new_session=True)

        async def feed() -> None:
            try:
                while data := await process.stdin.read(65536):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except Exception:
                pass
            finally:
                proc.stdin.close()

        feeder = asyncio.ensure_future(feed())
        await asyncio.gather(relay_out(proc.stdout, process.stdout), relay_out(proc.stderr, process.stderr))
        code = await proc.wait()
        feeder.cancel()
        try:
            process.exit(code)
        except Exception:
            pass

    async def main() -> None:
        server = await asyncssh.create_server(
            asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[str(base / "host_key")],
            authorized_client_keys=str(base / "authorized_keys"), process_factory=handle, encoding=None)
        port = server.sockets[0].getsockname()[1]
        (base / "port.tmp").write_text(str(port))
        os.replace(base / "port.tmp", base / "port")
        await asyncio.Event().wait()

    asyncio.run(main())


class SshBox:
    """A real SSH server on a loopback port for the remote tests, reached as host ``testbox`` by the
    system's ssh through ``env``'s TUITRAIN_SSH (``ssh -F FOLDER/config``). Its keys, known_hosts and
    config live in ``folder``; the user's ~/.ssh is never read or written. OpenSSH's sshd where it is
    installed, else asyncssh's server (:func:`serve_ssh`). :meth:`close` ends it."""

    host = "testbox"

    def __init__(self, folder: Path):
        import shutil
        import subprocess
        import sys

        self.folder = folder
        self.home = folder / "home"
        """Where commands run (asyncssh's server; sshd runs them in the user's home: use absolute paths)."""
        self.home.mkdir(parents=True)
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)],
                           check=True)
        os.chmod(folder / "client_key", 0o600)
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        host_pub = (folder / "host_key.pub").read_text().split()
        (folder / "known_hosts").write_text(f"{self.host} {host_pub[0]} {host_pub[1]}\n")
        bin_dir = str(Path(sys.executable).parent)
        server_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        server_env.pop("TUITRAIN_REMOTE", None)
        sshd = shutil.which("sshd") or (os.path.exists("/usr/sbin/sshd") and "/usr/sbin/sshd")
        if sshd:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            (folder / "sshd_config").write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
                f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\nStrictModes no\n"
                f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nSetEnv PATH={server_env['PATH']}\n")
            self.server = subprocess.Popen([sshd, "-D", "-e", "-f", str(folder / "sshd_config")], env=server_env,
                                           stderr=open(folder / "server.log", "wb"))
        else:
            code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.helpers import serve_ssh; serve_ssh({str(folder)!r})"
            self.server = subprocess.Popen([sys.executable, "-c", code], env=server_env,
                                           stderr=open(folder / "server.log", "wb"))
            wait(lambda: (folder / "port").exists() or self.server.poll() is not None, "the SSH server's port", 30)
            port = int((folder / "port").read_text())
        wait(lambda: _accepts(port), "the SSH server to listen", 30)
        (folder / "config").write_text(
            f"Host {self.host}\n  HostName 127.0.0.1\n  Port {port}\n  User {_user()}\n"
            f"  IdentityFile {folder / 'client_key'}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
            f"  UserKnownHostsFile {folder / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
            f"  HostKeyAlias {self.host}\n  StrictHostKeyChecking yes\n  PasswordAuthentication no\n  LogLevel ERROR\n")
        self.env = {**server_env, "TUITRAIN_SSH": f"ssh -F {folder / 'config'}"}
        """The environment of a client-side tuitrain: the system's ssh with this config."""

    def close(self) -> None:
        """End the server (and the commands it still runs end with their connections)."""
        self.server.terminate()
        try:
            self.server.wait(10)
        except Exception:
            self.server.kill()
            self.server.wait()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


PANE_WRAPPER = """
# Runs a command in a tmux pane and writes its exit code (tests/helpers.py, Pane).
import os, signal, subprocess, sys
rc_file, own_session, cmd = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
child = subprocess.Popen(cmd, start_new_session=own_session)
# As a login shell does when its terminal hangs up: SIGHUP passed on to the job, then (here) wait
# for it to write its exit code. A handler, not SIG_IGN: the child got SIGHUP's default at exec.
signal.signal(signal.SIGHUP, (lambda *a: None) if own_session else (lambda *a: child.send_signal(signal.SIGHUP)))
rc = child.wait()
with open(rc_file + ".tmp", "w") as fh:
    fh.write(str(rc))
os.replace(rc_file + ".tmp", rc_file)
"""


class Pane:
    """``tuitrain ARGS`` in a detached tmux session of its own (unique name) at 120x40, through
    PANE_WRAPPER, which writes the exit code to ``rc_file`` (``own_session``: the command in a
    session of its own, so tmux's SIGHUP to the pane's process group misses it)."""

    def __init__(self, tmp_path: Path, args: list[str], own_session: bool = False):
        self.name = f"tuitrain-test-{uuid.uuid4().hex[:8]}"
        self.rc_file = tmp_path / "rc"
        wrapper = tmp_path / "wrapper.py"
        wrapper.write_text(PANE_WRAPPER)
        # The tmux server runs commands in its own environment: this test's settings go explicitly.
        env = [f"PYTHONPATH={ROOT}", f"TUITRAIN_DATA={tmp_path / 'data'}"]
        cmd = ["env", *env, sys.executable, str(wrapper), str(self.rc_file), "1" if own_session else "0",
               sys.executable, "-m", "tuitrain", *args]
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", "-c", str(ROOT),
                        shlex.join(cmd)], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True).stdout

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)

    def exit_code(self, timeout: float) -> int:
        """The command's exit code, once it has exited (fails the test after ``timeout``)."""
        wait(self.rc_file.exists, "the run's process to exit", timeout)
        return int(self.rc_file.read_text())


SLOW_MLP = """
import time
import torch.nn as nn

class SlowMLP(nn.Module):
    '''An MLP whose training steps take at least 0.1 s each: a run that lasts however fast the machine.'''

    def __init__(self, num_classes=10, in_channels=1, image_size=28):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))

    def forward(self, x):
        if self.training:
            time.sleep(0.1)
        return self.net(x)
"""


def slow_model(folder: Path) -> str:
    """``--model`` of a model whose training steps take at least 0.1 s (SLOW_MLP), written to ``folder``:
    a test that acts on a run while it trains needs the run not to end first on an idle machine."""
    path = folder / "slow_mlp.py"
    path.write_text(SLOW_MLP)
    return f"{path}:SlowMLP"


# ----------------------------------------------------------------- shared by several test files
def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as a gzipped IDX file (the format of the MNIST family)."""
    header = struct.pack(">I", 0x800 + array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.contiguous().numpy().tobytes()))


def write_fashion_mnist(root: Path, n_train: int = 2000, n_test: int = 500, folder: str = "FashionMNIST") -> Path:
    """A small learnable stand-in for Fashion-MNIST in DIR/FashionMNIST/raw/*.gz; returns DIR."""
    import torch

    from tuitrain.data import synthetic

    ds = synthetic(seed=7)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte.gz", ds.train_x[:n_train, 0])
    write_idx(raw / "train-labels-idx1-ubyte.gz", ds.train_y[:n_train].to(torch.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte.gz", ds.val_x[:n_test, 0])
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", ds.val_y[:n_test].to(torch.uint8))
    return root


def train_to_the_end(config, whole_step: bool = False):
    """(engine, records) of a run trained to its end on this thread (status done asserted).
    ``whole_step``: steps through graphstep.WholeStep, without a capture on the CPU."""
    from tuitrain.engine import Engine
    from tuitrain.graphstep import WholeStep

    records: list[dict] = []
    engine = Engine(config, records.append)
    engine.setup()
    if whole_step:
        engine.whole_step = WholeStep(engine, capture=False)
    result = engine.run()
    assert result.status == "done", result.message
    return engine, records


class EngineRun:
    """An Engine running in a thread, collecting its records, with helpers to wait on them."""

    def __init__(self, config):
        from tuitrain.engine import Engine

        self.records: list[dict] = []
        self._cond = threading.Condition()
        self.commands: queue.Queue = queue.Queue()
        self.engine = Engine(config, self._report, self.commands)
        self.engine.setup()
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, record: dict) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def _run(self) -> None:
        self.result = self.engine.run()

    def start(self) -> EngineRun:
        self.thread.start()
        return self

    def send(self, cmd) -> None:
        self.commands.put(cmd)

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        """The first record (in order) matching ``predicate``; fails the test on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for a record")
                self._cond.wait(left)

    def wait_event(self, name: str, cmd_id: int | None = None, timeout: float = 30.0) -> dict:
        return self.wait_for(
            lambda r: r.get("type") == "event" and r["event"] == name and (cmd_id is None or r.get("cmd_id") == cmd_id),
            timeout,
        )

    def steps(self) -> list[int]:
        with self._cond:
            return [r["step"] for r in self.records if r.get("type") == "step"]

    def join(self, timeout: float = 60.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "engine did not finish"
        return self.result



class Recorder:
    """The ``send`` of a ControlServer: records each command and answers it at once, like the engine."""

    def __init__(self):
        self.commands: list = []
        self.server: ControlServer | None = None

    def __call__(self, command) -> None:
        self.commands.append(command)
        self.server.on_record({"type": "event", "event": type(command).__name__.lower(), "ok": True,
                               "cmd_id": command.id})


def raw(path: Path, payload: bytes) -> dict:
    """Send raw bytes to a socket and return the one answer line as JSON."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.split(b"\n")
    assert len(lines) == 2 and lines[1] == b"", data  # exactly one line
    return json.loads(lines[0])



def same_tree(a, b) -> bool:
    """Equal nested checkpoint contents: tensors by dtype, shape and value, NaN equal to NaN."""
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_tree(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)



COMPARE_BASE = {"dataset": "fashion-mnist", "model": "cnn", "epochs": 2, "optimizer": "adam", "seed": 0,
                "device": "auto", "data_dir": "/data", "devices": ["cpu"], "host": "h", "started": 1.0}
COMPARE_SWEEP = [(lr, bs) for lr in (0.01, 0.003, 0.001, 0.0003) for bs in (50, 100)]


def write_compare_run(path, lr: float, batch_size: int, accs: list[float], monitor: str | None = None) -> None:
    """A finished run; with a monitor its val_loss rises with val_acc, so the two orders differ."""
    from tests.fakes import start_event

    log = RunLog(path)
    log.write_config({**COMPARE_BASE, "lr": lr, "batch_size": batch_size, "run_dir": str(path),
                      **({"monitor": monitor} if monitor else {})})
    steps = 1000 // batch_size
    log.write(start_event(steps_per_epoch=steps, batch_size=batch_size, time=0.0))
    for epoch, acc in enumerate(accs, start=1):
        for step in range((epoch - 1) * steps + 1, epoch * steps + 1):
            log.write({"type": "step", "step": step, "epoch": epoch, "loss": 1.0 / step, "lr": lr, "time": float(step)})
        log.write({"type": "epoch", "epoch": epoch, "step": epoch * steps, "val_acc": acc, "val_loss": acc if monitor else 1 - acc,
                   "train_loss": 0.5, "train_acc": 0.5, "lr": lr, "time": float(epoch * steps)})
    log.close()


async def compare_loaded(pilot, app) -> None:
    """Wait until a CompareApp has read every run's history."""
    for _ in range(100):
        await pilot.pause(0.02)
        if len(app._loaded) == len(app.runs):
            return
    raise AssertionError("the runs' histories never arrived")



def compare_sweep(tmp_path) -> CompareApp:
    """A CompareApp on a finished sweep of 8 runs (every pair of COMPARE_SWEEP) under tmp_path."""
    from tuitrain.compare_app import CompareApp
    from tuitrain.rundir import expand_runs

    for i, (lr, bs) in enumerate(COMPARE_SWEEP):
        run = tmp_path / "sweep" / f"{i + 1:02d}-lr={lr}-batch_size={bs}"
        write_compare_run(run, lr, bs, [0.5 + i / 100, 0.6 + i / 50])
        (run / "status.json").write_text(json.dumps({"state": "done"}))  # finished, as a sweep's runs are
    return CompareApp(expand_runs([str(tmp_path / "sweep")]))



async def settle_dashboard(pilot) -> None:
    """Let a dashboard on a FakeBackend reach RUNNING with curves, then draw what timers draw."""
    from tuitrain.widgets.curves import Curves
    from tuitrain.widgets.status import StatusLine

    app = pilot.app
    for _ in range(50):
        await pilot.pause()
        if app.query_one(StatusLine).state == "RUNNING" and len(app.query_one(Curves).train_loss):
            break
    app.query_one(Curves).redraw()
    app.query_one(StatusLine).refresh_text()  # normally on a timer: drawn now so the snapshot is stable
    await pilot.pause()


def read_steps(run_dir: Path) -> list[dict]:
    """The step records of a run directory's metrics.jsonl."""
    from tuitrain.rundir import read_records

    return [r for r in read_records(run_dir / "metrics.jsonl") if r["type"] == "step"]


def run_ctl(run_dir: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`tuitrain ctl RUN_DIR ARGS...` in a fresh interpreter, from the folder cwd."""
    return subprocess.run([sys.executable, "-m", "tuitrain", "ctl", str(run_dir), *args], capture_output=True,
                          text=True, timeout=90, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def event_record(name: str, step: int = 150, **details) -> dict:
    """An ok event record as the engine writes it."""
    return {"type": "event", "event": name, "step": step, "epoch": 1, "time": 0.0, "ok": True, **details}
