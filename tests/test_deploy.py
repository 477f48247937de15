"""Deploy pieces that need no board: port auto-detection, which files go, the frozen manifest, the mip package."""
from __future__ import annotations

import json

import pytest

from uquant import boards
from uquant.deploy import plan_files, write_manifest
from uquant.link import LinkError, Port, find_port
from uquant.runtime import DEVICE_DIR

PICO = Port("/dev/ttyACM0", "2e8a:0005", "Board in FS mode")
ESP32 = Port("/dev/ttyUSB0", "10c4:ea60", "CP2102 USB to UART")
MOUSE = Port("/dev/ttyS0", "", "ttyS0")
KEYBOARD = Port("/dev/ttyACM1", "046d:c31c", "keyboard")


def test_auto_detection_picks_the_one_board_among_other_ports():
    assert find_port(None, [MOUSE, PICO, KEYBOARD], []) == "/dev/ttyACM0"
    assert find_port(boards.get("esp32"), [PICO, ESP32, MOUSE], []) == "/dev/ttyUSB0"


def test_auto_detection_says_when_there_is_none():
    with pytest.raises(LinkError, match=r"no port looks like a MicroPython board.*ttyS0 \(not USB\).*--port"):
        find_port(None, [MOUSE, KEYBOARD], [])
    with pytest.raises(LinkError, match="no serial ports at all"):
        find_port(boards.get("pico"), [], [])


def test_auto_detection_says_when_there_are_several():
    two = Port("/dev/ttyACM2", "2e8a:0005")
    with pytest.raises(LinkError, match=r"more than one.*ttyACM0.*ttyACM2.*--port"):
        find_port(boards.get("pico"), [PICO, two, ESP32], [])
    with pytest.raises(LinkError, match="more than one"):
        find_port(None, [PICO, ESP32], [])


def test_auto_detection_finds_a_running_sim():
    sim = {"device": "/dev/pts/7", "pid": 1, "backend": "unix", "flash": "/tmp/f"}
    assert find_port(boards.get("sim"), [MOUSE, PICO], [sim]) == "/dev/pts/7"
    assert find_port(None, [MOUSE], [sim]) == "/dev/pts/7"  # predict/verify: a sim counts as a board
    with pytest.raises(LinkError, match="more than one.*ttyACM0.*/dev/pts/7"):
        find_port(None, [PICO], [sim])
    with pytest.raises(LinkError, match=r"no `uquant sim` is running: start one") as e:
        find_port(boards.get("sim"), [MOUSE], [])
    assert "Plug" not in str(e.value)


def test_files_are_mpy_for_the_boards_arch_else_source(tmp_path):
    module = tmp_path / "model_q.py"
    module.write_text("X = 1\n")
    mp = {"name": "micropython", "version": (1, 29, 0), "mpy_version": 6, "mpy_arch": "armv6m"}
    files = plan_files(module, boards.get("pico").device_files, mp)
    assert [f.name for f in files] == ["uquant_rt.mpy", "uquant_viper.mpy", "uquant_thumb.mpy", "uquant_thumbconv.mpy",
                                      "model_q.mpy"]
    assert all(f.data[:2] == b"M\x06" and f.stale.endswith(".py") for f in files)
    old = dict(mp, mpy_version=5)  # firmware older than our .mpy format: ship source
    assert [f.name for f in plan_files(module, ("uquant_rt.py",), old)] == ["uquant_rt.py", "model_q.py"]
    cp = {"name": "circuitpython", "version": (9, 2, 0), "mpy_version": 6, "mpy_arch": "armv6m"}
    files = plan_files(module, boards.get("circuitpython-rp2040").device_files, cp)
    assert [f.name for f in files] == ["uquant_rt.py", "model_q.py"] and files[1].data == b"X = 1\n"


def test_manifest_freezes_the_tier_files_and_the_model(tmp_path):
    module = tmp_path / "model_q.py"
    module.write_text("X = 1\n")
    path = write_manifest(module, boards.get("esp32"), tmp_path / "frozen")
    text = path.read_text()
    assert 'include("$(PORT_DIR)/boards/manifest.py")' in text
    assert "# In MicroPython's ports/esp32 directory: make BOARD=ESP32_GENERIC FROZEN_MANIFEST=" in text
    assert [line for line in text.splitlines() if line.startswith("module(")] == [
        'module("uquant_rt.py")', 'module("uquant_viper.py")', 'module("model_q.py")']
    assert (tmp_path / "frozen" / "uquant_viper.py").read_text() == (DEVICE_DIR / "uquant_viper.py").read_text()


def test_mip_package_lists_every_device_file():
    pkg = json.loads((DEVICE_DIR / "package.json").read_text())
    listed = {target for target, _ in pkg["urls"]}
    assert listed == {p.name for p in DEVICE_DIR.glob("*.py")}
    assert all((DEVICE_DIR / url).is_file() for _, url in pkg["urls"]) and pkg["version"]


def test_circuitpython_deploys_source_onto_the_drive_atomically(tmp_path):
    from uquant.deploy import deploy_to_drive

    drive = tmp_path / "CIRCUITPY"
    drive.mkdir()
    (drive / "model_q.mpy").write_bytes(b"stale")
    module = tmp_path / "model_q.py"
    module.write_text("X = 1\n")
    board = boards.get("circuitpython-rp2040")
    assert deploy_to_drive(drive, module, board, log=lambda *a: None) == ["uquant_rt.py", "model_q.py"]
    assert (drive / "uquant_rt.py").read_text() == (DEVICE_DIR / "uquant_rt.py").read_text()
    assert not (drive / "model_q.mpy").exists() and not list(drive.glob("*.part"))
    assert deploy_to_drive(drive, module, board, log=lambda *a: None) == []  # unchanged: skipped
    with pytest.raises(LinkError, match="not a mounted drive"):
        deploy_to_drive(tmp_path / "nope", module, board)


def test_deploy_notes_weights_laid_out_for_another_board(tmp_path):
    import uquant
    from uquant.deploy import layout_note, module_layout
    from uquant.examples import seed_state_dict

    c = uquant.convert(seed_state_dict(), relu="hidden", engine="x86")
    rows = c.save(tmp_path / "rows_q.py")
    laid = c.for_board("pico").save(tmp_path / "laid_q.py")
    assert (module_layout(rows.read_text()), module_layout(laid.read_text())) == (None, "thumb")
    assert layout_note(laid, boards.get("pico")) is None and layout_note(rows, boards.get("esp32")) is None
    assert "convert --board pico" in layout_note(rows, boards.get("pico"))
    note = layout_note(laid, boards.get("circuitpython-rp2040"))
    assert "thumb order" in note and "copies them" in note


def test_deploy_refuses_a_model_too_big_for_the_board_before_copying(tmp_path, monkeypatch, capsys):
    import dataclasses

    import uquant
    from uquant.cli import main
    from uquant.examples import seed_state_dict
    from uquant.info import fit_report, module_memory

    module = uquant.convert(seed_state_dict(), relu="hidden", engine="x86").save(tmp_path / "seed_q.py")
    mem = module_memory(module)
    assert mem["weights"] == 27 and mem["buffers"] >= 10
    tiny = dataclasses.replace(boards.get("pico"), heap_bytes=5000)
    text, fits = fit_report(mem, module.read_text(), "seed_q", tiny)
    assert not fits and "DOES NOT FIT" in text
    monkeypatch.setattr(boards, "get", lambda key: tiny)
    assert main(["deploy", str(module), "--board", "pico", "--port", "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert "does not fit pico" in err and "B over" in err and "--force" in err
