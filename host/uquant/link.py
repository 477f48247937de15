"""The serial link to a board: find its port, then talk to MicroPython's raw REPL.

The raw REPL itself is mpremote's transport (the same code `mpremote` uses, pinned), so what works with
`mpremote connect PORT` works here, on hardware and on `uquant sim`'s virtual board.
"""
from __future__ import annotations

import ast
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import boards

MPY_ARCHS = [None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
             "xtensawin", "rv32imc", "rv64imc"]  # sys.implementation._mpy >> 10, as MicroPython numbers them


class LinkError(RuntimeError):
    """The board could not be found or reached, or answered something unexpected."""


@dataclass(frozen=True)
class Port:
    device: str
    usb_id: str  # "vid:pid" in lower-case hex, or "" when the port is not USB
    description: str = ""


def usb_ports() -> list[Port]:
    from serial.tools import list_ports

    return [Port(p.device, f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None else "", p.description or "")
            for p in list_ports.comports()]


def sim_dir() -> Path:
    """Where each running `uquant sim` advertises its pseudo-terminal (one small JSON file per sim)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"uquant-sims-{os.getuid()}"


def running_sims() -> list[dict]:
    """The `uquant sim` boards running now: {"device", "pid", "backend", "flash"} each (stale files skipped)."""
    found = []
    for f in sorted(sim_dir().glob("sim-*.json")) if sim_dir().is_dir() else []:
        try:
            info = json.loads(f.read_text())
            os.kill(int(info["pid"]), 0)  # still running?
        except (OSError, ValueError, KeyError):
            continue
        if Path(info["device"]).exists():
            found.append(info)
    return found


def find_port(board: boards.Board | None = None, ports: list[Port] | None = None, sims: list[dict] | None = None) -> str:
    """The one serial port whose USB id belongs to `board` (or to any known board), or the one running
    `uquant sim` (for board "sim", or when no board is named); a clear error otherwise."""
    sims = running_sims() if sims is None else sims
    if board is not None and board.key == "sim":
        if len(sims) == 1:
            return sims[0]["device"]
        if not sims:
            raise LinkError("no `uquant sim` is running: start one (`uquant sim &`), or pass --port with the path "
                            "it printed")
        raise LinkError(f"{len(sims)} `uquant sim` boards are running ({', '.join(s['device'] for s in sims)}): "
                        "pass --port to choose one")
    ports = usb_ports() if ports is None else ports
    known = [board] if board else list(boards.all_boards().values())
    ids = {usb: b.key for b in known for usb in b.usb_ids}
    found = [p.device for p in ports if p.usb_id in ids] + ([s["device"] for s in sims] if board is None else [])
    what = f"a {board.name}" if board else "a MicroPython board or a running `uquant sim`"
    if not found:
        seen = ", ".join(f"{p.device} ({p.usb_id or 'not USB'})" for p in ports) or "no serial ports at all"
        raise LinkError(f"no port looks like {what} (USB ids {', '.join(sorted(ids))}); seen: {seen}. "
                        "Plug the board in, or pass --port")
    if len(found) > 1:
        raise LinkError(f"more than one port looks like {what}: {', '.join(found)}; pass --port to choose one")
    return found[0]


class Link:
    """An open raw-REPL session (a soft reset on entry, as mpremote does). Use as a context manager."""

    def __init__(self, port: str, *, baudrate: int = 115200, soft_reset: bool = True):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        try:
            self.transport = SerialTransport(port, baudrate=baudrate)
            self.transport.enter_raw_repl(soft_reset=soft_reset)
        except (TransportError, OSError) as e:
            raise LinkError(f"{port}: no MicroPython raw REPL there ({e})") from None
        self.port = port

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.transport.exit_raw_repl()
        finally:
            self.transport.close()

    def exec(self, code: str) -> str:
        """Run code on the board; its printed output. An exception on the board raises LinkError with its traceback."""
        from mpremote.transport import TransportExecError

        try:
            return self.transport.exec(code).decode("utf-8", "replace")
        except TransportExecError as e:
            raise LinkError(f"the board raised:\n{e.error_output.strip()}") from None

    def eval(self, expr: str):
        """A Python literal printed by the board (repr), parsed on the host."""
        return ast.literal_eval(self.exec(f"print(repr({expr}))").strip())

    def implementation(self) -> dict:
        """The board's firmware: name, version, .mpy version and architecture (None where it cannot say)."""
        name, version, mpy = self.eval("(__import__('sys').implementation.name, "
                                       "tuple(__import__('sys').implementation.version), "
                                       "getattr(__import__('sys').implementation, '_mpy', None))")
        arch = MPY_ARCHS[mpy >> 10] if mpy is not None and (mpy >> 10) < len(MPY_ARCHS) else None
        return {"name": name, "version": tuple(version), "mpy_version": None if mpy is None else mpy & 0xFF,
                "mpy_arch": arch}
