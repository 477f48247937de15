"""`uquant sim`: the virtual board on a pty, driven by the real clients (mpremote, ampy) and by pyserial.

mpremote and ampy run as subprocesses, exactly as a user runs them against a board; the lower-level checks
(soft reset, Ctrl-C, the friendly REPL, the interpreter dying) speak the REPL protocol over pyserial. Most tests
share one unix-backend board (each mpremote/ampy invocation soft-resets it anyway); the wasm backend gets the
exec/cp/ls/rm subset and Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from uquant import sim as usim

BIN = Path(sys.executable).parent
MPREMOTE = BIN / "mpremote"
AMPY = BIN / "ampy"


def _require(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("UQUANT_ALLOW_SKIP") == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason} (set UQUANT_ALLOW_SKIP=1 to skip these tests instead)", pytrace=False)


def _client_missing(path: Path) -> str | None:
    return None if path.is_file() else f"{path.name} is not next to {sys.executable}; install the test extras " \
                                        "(`pip install -e '.[test]'`)"


@pytest.fixture(scope="module")
def flash(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flash")


@pytest.fixture(scope="module")
def board(flash):
    _require(usim.missing_reason("unix"))
    with usim.Sim("unix", flash) as b:
        yield b
    assert b.error is None


def mpremote(board, *args, ok=True, timeout=60) -> str:
    """Run `mpremote connect <pty> ARGS...`; its stdout with \\r\\n made \\n."""
    _require(_client_missing(MPREMOTE))
    r = subprocess.run([str(MPREMOTE), "connect", board.device, *args], capture_output=True, timeout=timeout)
    out = r.stdout.replace(b"\r\n", b"\n").decode()
    if ok:
        assert r.returncode == 0, f"mpremote {' '.join(args)} failed ({r.returncode}):\n{out}\n{r.stderr.decode()}"
    return out


def ampy(board, *args, timeout=60) -> str:
    _require(_client_missing(AMPY))
    r = subprocess.run([str(AMPY), "--port", board.device, *args], capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"ampy {' '.join(args)} failed ({r.returncode}):\n{r.stdout.decode()}\n{r.stderr.decode()}"
    return r.stdout.replace(b"\r\n", b"\n").decode()


class Term:
    """A pyserial client that speaks the REPL protocol byte by byte."""

    def __init__(self, device: str):
        import serial

        self.s = serial.Serial(device, timeout=0.05)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.s.close()

    def write(self, data: bytes) -> None:
        self.s.write(data)

    def read_until(self, end: bytes, timeout: float = 20) -> bytes:
        """Everything up to and including the next `end` (what follows stays for the next read)."""
        deadline = time.monotonic() + timeout
        while end not in self.buf:
            assert time.monotonic() < deadline, f"timed out waiting for {end!r}; got {self.buf!r}"
            self.buf += self.s.read(self.s.in_waiting or 1)
        i = self.buf.index(end) + len(end)
        data, self.buf = self.buf[:i], self.buf[i:]
        return data

    def raw(self) -> None:
        self.write(b"\r\x03\r\x01")
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>")

    def start(self, code: str) -> None:
        self.write(code.encode() + b"\x04")
        assert self.read_until(b"OK").endswith(b"OK")

    def result(self) -> tuple[str, str]:
        out = self.read_until(b"\x04")[:-1]
        err = self.read_until(b"\x04")[:-1]
        self.read_until(b">")
        return out.decode(), err.decode()

    def run(self, code: str) -> tuple[str, str]:
        self.start(code)
        return self.result()


# --- mpremote -------------------------------------------------------------------------------------------------


def test_mpremote_exec_uses_raw_paste(board):
    before = board.stats["raw_paste"]
    assert mpremote(board, "exec", "print(1+1)") == "2\n"
    assert board.stats["raw_paste"] > before, "mpremote should have sent its code in raw-paste mode"


def test_mpremote_cp_ls_cat_rm(board, flash, tmp_path):
    src = "def hello():\n    return 'hi from the board'\n"
    (tmp_path / "local.py").write_text(src)
    mpremote(board, "cp", str(tmp_path / "local.py"), ":remote.py")
    assert (flash / "remote.py").read_text() == src  # the board's flash is the host folder
    listing = mpremote(board, "ls")
    assert f"{len(src)} remote.py" in " ".join(listing.split())  # sizes, as a board's littlefs reports them
    assert mpremote(board, "cat", "remote.py") == src
    assert mpremote(board, "exec", "import remote; print(remote.hello())") == "hi from the board\n"
    mpremote(board, "cp", ":remote.py", str(tmp_path / "back.py"))
    assert (tmp_path / "back.py").read_text() == src
    mpremote(board, "rm", "remote.py")
    assert not (flash / "remote.py").exists()
    assert "remote.py" not in mpremote(board, "ls")


def test_mpremote_run(board, tmp_path):
    (tmp_path / "script.py").write_text("import sys\nfor i in range(3):\n    print(sys.platform, i * 10)\n")
    assert mpremote(board, "run", str(tmp_path / "script.py")) == "linux 0\nlinux 10\nlinux 20\n"


def test_raw_paste_flow_control_with_a_big_script(board, tmp_path):
    blob = bytes(range(256)) * 120  # a 30 KB literal: some 240 flow-control windows of 128 bytes
    (tmp_path / "big.py").write_text(f"DATA = {blob!r}\nprint(len(DATA), sum(DATA))\n")
    assert mpremote(board, "run", str(tmp_path / "big.py")) == f"{len(blob)} {sum(blob)}\n"


def test_traceback_comes_back(board):
    out = mpremote(board, "exec", "def f():\n    raise ValueError('boom')\nf()", ok=False)
    assert out == ('Traceback (most recent call last):\n  File "<stdin>", line 3, in <module>\n'
                   '  File "<stdin>", line 2, in f\nValueError: boom\n')


def test_board_identity_and_paths(board):
    out = mpremote(board, "exec", "import sys, os; print(sys.implementation.name, sys.implementation._mpy, "
                                  "sys.path, os.getcwd(), sorted(globals()))")
    name, mpy, rest = out.split(" ", 2)
    assert name == "micropython"
    assert int(mpy) >> 10 == 2 and int(mpy) & 0xFF == 6  # the unix port's own: .mpy v6, arch x64
    assert rest.startswith("['', '.frozen', '/lib'] / ")
    assert "sim_driver" not in rest and "_serve" not in rest  # the driver keeps out of __main__


def test_host_files_import_and_board_files_land_in_the_folder(board, flash):
    (flash / "lib").mkdir(exist_ok=True)
    (flash / "lib" / "hostmod.py").write_text("VALUE = 1234\n")
    out = mpremote(board, "exec", "import hostmod; print(hostmod.VALUE, hostmod.__file__)\n"
                                  "import os\nos.mkdir('data')\nwith open('/data/out.bin', 'wb') as f:\n"
                                  "    f.write(bytes([0, 10, 13, 255]))")
    assert out == "1234 /lib/hostmod.py\n"
    assert (flash / "data" / "out.bin").read_bytes() == bytes([0, 10, 13, 255])


def test_state_does_not_survive_mpremote_invocations(board):
    assert mpremote(board, "exec", "x = 5", "exec", "print(x)") == "5\n"  # one invocation: state kept
    assert "NameError" in mpremote(board, "exec", "print(x)", ok=False)  # mpremote soft-resets on connect


# --- ampy -----------------------------------------------------------------------------------------------------


def test_ampy_put_ls_get_run_rm(board, flash, tmp_path):
    src = "print('from ampy')\n"
    (tmp_path / "a.py").write_text(src)
    ampy(board, "put", str(tmp_path / "a.py"), "amp.py")
    assert (flash / "amp.py").read_text() == src
    assert "/amp.py" in ampy(board, "ls").split()
    assert ampy(board, "get", "amp.py").rstrip("\n") == src.rstrip("\n")
    assert ampy(board, "run", str(tmp_path / "a.py")) == "from ampy\n"
    ampy(board, "rm", "amp.py")
    assert not (flash / "amp.py").exists()


# --- the protocol over pyserial -------------------------------------------------------------------------------


def test_soft_reset_clears_state_keeps_files(board, flash):
    with Term(board.device) as t:
        t.raw()
        assert t.run("import json\nx = 41\nwith open('keep.txt', 'w') as f:\n    f.write('kept')") == ("", "")
        t.write(b"\x04")  # on an empty raw line: soft reset
        assert t.read_until(b"raw REPL; CTRL-B to exit\r\n>").startswith(b"OK\r\nMPY: soft reboot\r\n")
        out, err = t.run("print(open('keep.txt').read())\nimport sys\nprint('json' in sys.modules)")
        assert (out, err) == ("kept\r\nFalse\r\n", "")
        out, err = t.run("print(x)")
        assert "NameError" in err
    assert (flash / "keep.txt").read_text() == "kept"


def test_ctrl_c_interrupts_running_code(board):
    with Term(board.device) as t:
        t.raw()
        assert t.run("n = 7") == ("", "")
        t.start("while True:\n    pass")
        time.sleep(0.2)
        t.write(b"\x03")
        out, err = t.result()
        assert out == ""
        assert err.endswith("KeyboardInterrupt: \r\n") and 'File "<stdin>", line 2' in err
        assert t.run("print(n)") == ("7\r\n", "")  # the unix backend interrupts without losing state


def test_friendly_repl(board):
    with Term(board.device) as t:
        t.raw()
        t.write(b"\x02")  # raw -> friendly: banner and prompt
        assert b"MicroPython v1.29" in t.read_until(b">>> ")
        t.write(b"6 * 7\r")
        assert t.read_until(b">>> ") == b"6 * 7\r\n42\r\n>>> "
        t.write(b"for i in range(2):\r")
        assert t.read_until(b"...     ") == b"for i in range(2):\r\n...     "  # auto-indent after ':'
        t.write(b"print(i * 10)\r\r\r\r")
        assert t.read_until(b">>> ").endswith(b"0\r\n10\r\n>>> ")
        t.write(b"while True: pass\r\r")
        time.sleep(0.2)
        t.write(b"\x03")
        assert t.read_until(b">>> ").endswith(b"KeyboardInterrupt: \r\n>>> ")
        t.write(b"\x05")  # paste mode
        t.read_until(b"=== ")
        t.write(b"a = 2\rprint(a + 1)\r\x04")
        assert t.read_until(b">>> ").endswith(b"\r\n3\r\n>>> ")
        t.write(b"1/0\r")
        assert t.read_until(b">>> ").endswith(b"ZeroDivisionError: divide by zero\r\n>>> ")


def test_the_board_survives_its_interpreter_dying(board):
    with Term(board.device) as t:
        t.raw()
        t.start("while True:\n    pass")
        time.sleep(0.2)
        os.kill(board._interp.proc.pid, signal.SIGKILL)
        out, err = t.result()
        assert "exited unexpectedly" in err
        assert t.run("print('alive')") == ("alive\r\n", "")


# --- the command line -----------------------------------------------------------------------------------------


def test_cli_prints_the_device_then_serves_until_sigterm(tmp_path):
    _require(usim.missing_reason("unix"))
    from uquant.cli import build_parser

    args = build_parser().parse_args(["sim", "--backend", "wasm", "--flash", str(tmp_path)])
    assert args.func is usim.cmd_sim and args.backend == "wasm"

    proc = subprocess.Popen([sys.executable, "-m", "uquant.sim", "--flash", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        device = proc.stdout.readline().decode().strip()
        assert device.startswith("/dev/pts/")
        assert proc.stdout.readline().decode().strip() == str(tmp_path.resolve())
        mpremote(SimpleNamespace(device=device), "exec", "open('cli.txt', 'w').write('via the cli')")
        assert (tmp_path / "cli.txt").read_text() == "via the cli"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


# --- the wasm backend -----------------------------------------------------------------------------------------


def test_wasm_backend_exec_cp_ls_rm(tmp_path):
    _require(usim.missing_reason("wasm"))
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "preloaded.py").write_text("WHERE = 'copied in at start'\n")
    w_src = "def f():\n    return 31\n"
    (tmp_path / "w.py").write_text(w_src)
    with usim.Sim("wasm", flash) as b:
        assert mpremote(b, "exec", "import sys; print(sys.maxsize == 2**31 - 1, sys.implementation._mpy & 0xff)") \
            == "True 6\n"  # 32-bit small ints, like a board
        assert mpremote(b, "exec", "import preloaded; print(preloaded.WHERE)") == "copied in at start\n"
        mpremote(b, "cp", str(tmp_path / "w.py"), ":w.py")
        assert (flash / "w.py").read_text() == w_src
        assert f"{len(w_src)} w.py" in " ".join(mpremote(b, "ls").split())
        assert mpremote(b, "exec", "import w; print(w.f() + 11)") == "42\n"
        mpremote(b, "rm", "w.py")
        assert not (flash / "w.py").exists()
        assert "ENOENT" in mpremote(b, "exec", "open('w.py')", ok=False)  # a board's errno, not the port's 44
        with Term(b.device) as t:  # Ctrl-C: this backend ends the process and starts a fresh interpreter
            t.raw()
            t.start("while True:\n    pass")
            time.sleep(0.2)
            t.write(b"\x03")
            assert "KeyboardInterrupt" in t.result()[1]
            assert t.run("print('again')") == ("again\r\n", "")
        assert b.stats["raw_paste"] > 0 and b.error is None
