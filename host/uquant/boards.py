"""Board profiles (boards/*.toml): architecture, kernel tier, memory budget, USB ids, how files get there.

One TOML file per board; `uquant info MODEL --board pico` and the benchmark read them through here.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"
TIER_FILES = {  # the device files each kernel tier needs, besides the model
    "dsp": ("uquant_rt.py", "uquant_viper.py", "uquant_thumb.py", "uquant_thumbconv.py", "uquant_dsp.py"),
    "thumb": ("uquant_rt.py", "uquant_viper.py", "uquant_thumb.py", "uquant_thumbconv.py"),
    "viper": ("uquant_rt.py", "uquant_viper.py"),
    "bytecode": ("uquant_rt.py",),
}
TIER_LAYOUTS = {"thumb": "thumb", "dsp": "dsp"}  # the dense weight order each tier's kernel reads (codegen.LAYOUTS), if not rows
TIER_EMITTERS = {"dsp": {"asm_thumb", "viper"}, "thumb": {"asm_thumb", "viper"}, "viper": {"viper"}, "bytecode": set()}


@dataclass(frozen=True)
class Board:
    key: str
    name: str
    firmware: str
    mpy_arch: str
    emitters: tuple[str, ...]
    tier: str
    heap_bytes: int
    fs_bytes: int
    usb_ids: tuple[str, ...]
    transport: str
    port: str = ""  # MicroPython's port directory (ports/<port>) and BOARD name that build its firmware (freeze)
    build_board: str = ""

    @property
    def device_files(self) -> tuple[str, ...]:
        return TIER_FILES[self.tier]

    @property
    def dense_layout(self) -> str | None:
        """The order of dense weights this board's kernels read (`convert --board` emits it: no copy on the board)."""
        return TIER_LAYOUTS.get(self.tier)


def load(path: Path) -> Board:
    data = tomllib.loads(path.read_text())
    try:
        board = Board(path.stem, data["name"], data["firmware"], data["mpy_arch"], tuple(data["emitters"]),
                      data["tier"], int(data["heap_bytes"]), int(data["fs_bytes"]), tuple(data["usb_ids"]),
                      data["transport"], data.get("port", ""), data.get("build_board", ""))
    except KeyError as e:
        raise ValueError(f"{path}: missing field {e}") from None
    if board.tier not in TIER_FILES:
        raise ValueError(f"{path}: unknown tier {board.tier!r} (one of {', '.join(TIER_FILES)})")
    if not TIER_EMITTERS[board.tier] <= set(board.emitters):
        raise ValueError(f"{path}: tier {board.tier!r} needs emitters {sorted(TIER_EMITTERS[board.tier])}")
    return board


def all_boards() -> dict[str, Board]:
    return {p.stem: load(p) for p in sorted(BOARDS_DIR.glob("*.toml"))}


def get(key: str) -> Board:
    boards = all_boards()
    if key not in boards:
        raise ValueError(f"unknown board {key!r}: one of {', '.join(boards)}")
    return boards[key]
