"""A real MicroPython firmware in the loop: the BBC micro:bit's, booted under qemu.

Debian ships both halves: ``firmware-microbit-micropython`` (MicroPython 1.9.2 for the nRF51, a Cortex-M0 with
16 KB of RAM, about 9 KB of heap) and ``qemu-system-arm`` (its ``-M microbit`` machine). With ``-serial pty`` qemu
puts the board's UART on a pseudo-terminal and names it on its output; uquant's own :class:`uquant.link.Link`
(mpremote's raw-REPL transport) talks to it, so this exercises the same serial path as ``uquant deploy``.

Facts about this firmware worth knowing:

* ``os`` has no ``stat``/``ilistdir`` (no ``mpremote cp``), but ``open(name, "w")`` writes its small flash file
  system, and ``import`` reads from it; files are written here through the raw REPL.
* No ``binascii``, no native/viper emitter, no raw-paste mode (mpremote falls back to the plain raw REPL).
* The raw REPL is entered without a soft reset (``Link(..., soft_reset=False)``): the board starts clean.
* The full ``uquant_rt.py`` does not fit its heap; ``device/uquant_micro.py`` is written there as ``uquant_rt.py``.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

FIRMWARE = Path("/usr/share/firmware-microbit-micropython/firmware.hex")
QEMU = "qemu-system-arm"
_PTY = re.compile(rb"char device redirected to (/dev/\S+)")


def missing_reason() -> str | None:
    """Why the emulated micro:bit cannot run here, or None."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found (Debian package qemu-system-arm)"
    if not FIRMWARE.is_file():
        return f"{FIRMWARE} not found (Debian package firmware-microbit-micropython)"
    return None


class MicroBit:
    """qemu-system-arm -M microbit running the MicroPython firmware; ``.device`` is its UART's pty.

    Use as a context manager, or call start()/stop(). ``link()`` opens a raw-REPL :class:`uquant.link.Link`.
    """

    def __init__(self, firmware: Path = FIRMWARE, boot_timeout: float = 30.0):
        self.firmware = Path(firmware)
        self.boot_timeout = boot_timeout
        self.proc: subprocess.Popen | None = None
        self.device: str | None = None
        self._out = b""

    def __enter__(self) -> MicroBit:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        reason = missing_reason() if self.firmware == FIRMWARE else None
        if reason:
            raise RuntimeError(reason)
        self.proc = subprocess.Popen(
            [QEMU, "-M", "microbit", "-device", f"loader,file={self.firmware}", "-nographic", "-serial", "pty",
             "-monitor", "none"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + self.boot_timeout
        try:
            while self.device is None:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"qemu exited ({self.proc.returncode}): {self._out.decode(errors='replace')}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"qemu named no pty within {self.boot_timeout} s: {self._out!r}")
                time.sleep(0.05)
            self._wait_repl(deadline)
        except BaseException:
            self.stop()
            raise

    def _drain(self) -> None:
        # qemu's output: the pty line first, then anything it says; read on so the pipe never fills
        for line in self.proc.stdout:
            self._out += line
            m = _PTY.search(line)
            if m and self.device is None:
                self.device = m.group(1).decode()

    def _wait_repl(self, deadline: float) -> None:
        # The firmware boots to the friendly REPL; poke it with Ctrl-C until it shows a prompt.
        import serial

        with serial.Serial(self.device, 115200, timeout=0.2) as s:
            seen = b""
            while time.monotonic() < deadline:
                s.write(b"\r\x03")
                seen += s.read(256)
                if b">>> " in seen:
                    time.sleep(0.1)
                    s.reset_input_buffer()
                    return
        raise RuntimeError(f"no MicroPython prompt on {self.device} within {self.boot_timeout} s: {seen[-200:]!r}")

    def link(self):
        """A raw-REPL Link to the board (no soft reset), its writes paced so the board's UART buffer never overflows."""
        from ..link import Link

        link = Link(self.device, soft_reset=False)
        link.transport.serial = _Paced(link.transport.serial)
        return link

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class _Paced:
    """A serial port whose writes go out in small pieces: the firmware's UART receive buffer is small and drops
    what overflows it (mpremote sends 256 bytes at a time, since this firmware has no raw-paste flow control)."""

    def __init__(self, serial, piece: int = 32, pause: float = 0.008):
        self._serial, self._piece, self._pause = serial, piece, pause

    def write(self, data) -> int:
        for i in range(0, len(data), self._piece):
            self._serial.write(data[i:i + self._piece])
            self._serial.flush()
            time.sleep(self._pause)
        return len(data)

    def __getattr__(self, name):
        return getattr(self._serial, name)


def write_file(link, name: str, data: bytes, chunk: int = 192) -> None:
    """Write a file onto the board's flash through the raw REPL (its os lacks what `mpremote cp` needs)."""
    link.exec(f"_f = open({name!r}, 'wb')")
    try:
        for i in range(0, len(data), chunk):
            link.exec(f"_f.write({data[i:i + chunk]!r})")
    finally:
        link.exec("_f.close()\ndel _f")
    size = link.eval(f"__import__('os').size({name!r})")
    if size != len(data):
        raise RuntimeError(f"{name}: wrote {len(data)} bytes, the board has {size}")


def install_runtime(link, source: str, name: str = "uquant_rt") -> None:
    """Define a runtime on the board and make it importable as `name`.

    This heap is too small to compile even uquant_micro.py as one module, so each top-level statement is
    compiled and run on its own in the raw REPL's namespace (``__main__``), and `name`.py re-exports it from there.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    names = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            continue  # a docstring
        link.exec(strip_comments("\n".join(lines[node.lineno - 1:node.end_lineno])))
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        link.exec("import gc\ngc.collect()")
    exported = [n for n in names if not n.startswith("_")]  # what a generated module may use: Model, CorruptModel
    write_file(link, f"{name}.py", f"from __main__ import {', '.join(exported)}\n".encode())
    link.exec(f"import {name}")  # now, while the heap has room to compile it; later imports find it loaded


def strip_comments(source: str) -> str:
    """The source without comments and blank lines: the raw REPL holds the whole text in the heap while compiling."""
    import io
    import tokenize

    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            (row, col), _ = tok.start, tok.end
            lines[row - 1] = lines[row - 1][:col]
    return "\n".join(line.rstrip() for line in lines if line.strip())


def run_model(runtime_source: str, module_source: str, module: str, inputs: list[list[int]],
              boot_timeout: float = 30.0) -> dict:
    """Boot a fresh board, install the runtime (as uquant_rt) and the generated module, run each input.

    Returns {"outputs": [[code, ...], ...], "predictions": [...], "heap_free": free heap at boot,
    "runtime_heap": bytes the runtime holds, "model_heap": bytes the imported model holds}. A model that
    does not fit raises LinkError with the board's MemoryError.
    """
    with MicroBit(boot_timeout=boot_timeout) as board, board.link() as link:
        link.exec("import gc")
        free = lambda: int(link.exec("gc.collect()\nprint(gc.mem_free())"))  # noqa: E731
        f0 = free()
        install_runtime(link, runtime_source)
        runtime = f0 - free()
        write_file(link, f"{module}.py", module_source.encode())
        # Everything after the import runs in the same exec as the import: the raw REPL compiles a whole block
        # before running it, so nothing is parsed once the model holds the heap (the parser needs a contiguous
        # block that a freshly imported model may have cut into pieces). The runner and the inputs exist before.
        link.exec(f"def _t(x):\n gc.collect()\n print(list({module}.run(x)), {module}.predict(x))")
        link.exec(f"_X = {[bytes(x) for x in inputs]!r}")
        f1 = free()  # the model's share is counted from here (the runner and inputs are neither's)
        lines = link.exec(f"import {module}\ngc.collect()\nprint(gc.mem_free())\nfor x in _X:\n _t(x)")
        lines = lines.strip().splitlines()
        f2 = int(lines[0])
        outputs, predictions = [], []
        for line in lines[1:]:
            y, p = line.strip().rsplit(" ", 1)
            outputs.append(ast.literal_eval(y))
            predictions.append(int(p))
        return {"outputs": outputs, "predictions": predictions, "heap_free": f0, "runtime_heap": runtime,
                "model_heap": f1 - f2}
