"""`uquant explain` on the seed's model: its real numbers, a trace equal to torch layer by layer, the question's
wrong attempt reproduced, three formats, --layer, exit codes, and the HTML page drawn by a real browser.

Every number checked here comes from torch or the device runtime at test time; the one golden file
(tests/golden/explain_seed_layout.md) holds only the report's headings and table headers.
"""
from __future__ import annotations

import html.parser
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import uquant
from uquant import cli
from uquant.examples import SEED_INPUTS, SeedTorchModel, seed_state_dict
from uquant.explain import NAIVE, report
from uquant.explain_doc import REACH_COLOUR, STEP_COLOUR
from uquant.runtime import rt

from conftest import platform_here, torch_engine

GOLDEN = Path(__file__).parent / "golden" / "explain_seed_layout.md"


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("explain") / "seed_sd.pt"
    torch.save(seed_state_dict(), path)
    return path


def run(capsys, *argv: str):
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def md_tables(md: str, after: str) -> list[tuple[list[str], list[list[str]]]]:
    """The Markdown tables after the first heading containing `after`, up to the next heading of that level."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and after in line)
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    tables, i = [], start + 1
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|-"):
            head = [c.strip() for c in line.strip("|").split(" | ")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split(" | ")])
                i += 1
            tables.append((head, rows))
            continue
        i += 1
    return tables


def column(table, name: str) -> list[str]:
    head, rows = table
    return [r[head.index(name)] for r in rows]


def codes_text(v) -> str:
    return "[" + ", ".join(str(int(c)) for c in v) + "]"


def seed_numbers(engine: str, x):
    """From torch: each layer's input codes, weight codes and qparams, bias, and output int_repr()."""
    with torch_engine(engine):
        m = SeedTorchModel(engine)
        codes = m.layer_codes(np.array([x], np.float32))
        layers = []
        for i, layer in enumerate((m.input_layer, m.out)):
            w = layer.weight()
            layers.append(dict(w=w.int_repr().numpy().astype(np.int64), s_w=w.q_scale(), z_w=w.q_zero_point(),
                               b=layer.bias().detach().numpy().astype(np.float64), s_y=layer.scale,
                               z_y=layer.zero_point, x=codes[i][0], y=codes[i + 1][0]))
        layers[0]["s_x"], layers[0]["z_x"] = float(m.quant.scale), int(m.quant.zero_point)
        layers[1]["s_x"], layers[1]["z_x"] = layers[0]["s_y"], layers[0]["z_y"]
    return layers


# ---------------------------------------------------------------------------------------------------
# the numbers

@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_seed_report_holds_its_real_numbers_and_a_trace_equal_to_torch(seed_file, capsys, engine):
    x = [0.0, 0.75]
    rc, md, err = run(capsys, "explain", seed_file, "--relu", "hidden", "--engine", engine, "--input", "0,0.75",
                      "--format", "markdown")
    assert rc == 0, err
    sd = seed_state_dict()
    # which tensor each scale belongs to, with the state_dict's own names and values
    (head, rows), = md_tables(md, "Which tensor")
    where = {r[0]: r for r in rows}
    assert where["input x"][2] == f"{float(sd['input_layer_input_scale_0']):.6g}"
    assert "input_layer_input_scale_0" in where["input x"][5]
    assert where["input_layer w"][2] == f"{sd['input_layer._packed_params._packed_params'][0].q_scale():.10g}"
    assert where["input_layer y"][2] == f"{float(sd['input_layer.scale']):.6g}"
    assert (where["out y"][2], where["out y"][3]) == (f"{float(sd['out.scale']):.6g}", str(int(sd["out.zero_point"])))

    conv = uquant.convert(seed_file, engine=engine, relu="hidden")
    nodes = conv.device_module.model.layers  # the device runtime's own parameter words
    torch_layers = seed_numbers(engine, x)
    for name, node, t in zip(("input_layer", "out"), nodes, torch_layers):
        K, N, lo, hi, Wbytes, P = node.args[:6]
        P = [rt.word(P, i) for i in range(7 * N)]  # int32 little-endian bytes, as the module stores them
        device_table, = [tb for tb in md_tables(md, f"Layer {name}:") if tb[0][0] == "ch"]
        assert len(device_table[1]) == N
        for col, k in (("c", 0), ("c_lo", 1), ("W", 2), ("A", 3), ("S", 6)):
            assert column(device_table, col) == [str(P[7 * n + k]) for n in range(N)], col
        D = [P[7 * n + 5] + (P[7 * n + 4] << 30 if P[7 * n + 6] >= 30 else 0) for n in range(N)]
        assert column(device_table, "D") == [str(d) for d in D]
        # the bias in accumulator units: b / (s_x * s_w), as torch's numbers give it
        got = np.array([float(v) for v in column(device_table, "b in acc units (torch)")])
        assert np.allclose(got, t["b"] / (t["s_x"] * t["s_w"]), rtol=1e-4, atol=0.6)
        # the offset-binary weights the device holds are torch's int8 weights + 128
        assert bytes(Wbytes) == bytes((t["w"] + 128).astype(np.uint8).reshape(-1).tolist())
        # the trace: exact accumulators, and every code equal to torch's int_repr()
        trace, = md_tables(md, f". {name}")
        acc = (t["w"] - t["z_w"]) @ (t["x"] - t["z_x"])
        assert column(trace, "acc") == [str(int(a)) for a in acc]
        assert column(trace, "torch int_repr") == [str(int(v)) for v in t["y"]]
        assert column(trace, "device code") == [str(int(v)) for v in t["y"]]
        assert set(column(trace, "equal")) == {"yes"}
    out_table, = md_tables(md, "Output")
    with torch_engine(engine), torch.no_grad():
        y = SeedTorchModel(engine)(torch.tensor([x]))[0]
    assert column(out_table, "class") == [str(int(y.argmax()))] * 2
    assert column(out_table, "codes")[1] == codes_text(torch_layers[-1]["y"])
    assert "every code equal to torch's: yes" in md
    if engine == "qnnpack":
        assert "bq_n  = sat_int32(rint(" in md
    else:
        assert "fma(b_n, r, f32(acc_n))" in md


def test_mistakes_reproduce_the_questions_attempt(seed_file):
    """The question's W1 = w / s_w, b1 = bias / s_w, Z1 = saturate(round(inputs @ W1.T + b1)), per seed input."""
    sd = seed_state_dict()
    w, b = sd["input_layer._packed_params._packed_params"]
    W1 = w.dequantize().double().numpy() / w.q_scale()
    b1 = b.detach().double().numpy() / w.q_scale()
    Z1 = np.clip(np.round(SEED_INPUTS.astype(np.float64) @ W1.T + b1), 0, 255).astype(int)
    assert Z1[1].tolist() == [0, 0, 76]  # the README's figure for input [1, 0]
    conv = uquant.convert(seed_file, engine="x86", relu="hidden")
    for x, z in zip(SEED_INPUTS, Z1):
        md, ok = report(seed_file, x, "markdown", relu="hidden", converted=conv)
        assert ok
        table = next(tb for tb in md_tables(md, "Common mistakes") if tb[0][0] == "attempt")
        row = {r[0]: r for r in table[1]}
        first = row[NAIVE][1]
        torch_first = row["torch's own int_repr()"][1]
        assert first.split(" (")[0] == codes_text(z)
        assert first.endswith("(differs)") == (codes_text(z) != torch_first)
        for name in ("bias divided by the weight scale only", "float inputs not quantized first",
                     "missing requantization by s_x*s_w/s_y", "zero points ignored"):
            assert name in row
    # the user's own numbers recognised
    md, _ = report(seed_file, SEED_INPUTS[1], "markdown", relu="hidden", converted=conv, got=[0, 0, 76])
    assert "[0, 0, 76] is what 'a naive integer version: float inputs times the weight codes, bias / s_w, no " \
           "requantization' gives at layer input_layer" in md
    assert "the question's attempt" not in md  # named for what it computes, not for the README's question
    assert "the README's seed question tries this" in md


def test_mistakes_rows_follow_their_recipe(seed_file):
    """Each classic mistake, recomputed here from torch's tensors for input [1, 0], layer 1."""
    x = np.array([1.0, 0.0])
    t = seed_numbers("x86", x)[0]
    acc = (t["w"] - t["z_w"]) @ (t["x"] - t["z_x"])
    M = t["s_x"] * t["s_w"] / t["s_y"]
    want = {
        "bias divided by the weight scale only": np.rint(M * (acc + t["b"] / t["s_w"])) + t["z_y"],
        "float inputs not quantized first": np.rint(M * ((t["w"] - t["z_w"]) @ x + t["b"] / (t["s_x"] * t["s_w"])))
        + t["z_y"],
        "missing requantization by s_x*s_w/s_y": np.rint(acc + t["b"] / (t["s_x"] * t["s_w"])) + t["z_y"],
    }
    md, _ = report(seed_file, x, "markdown", relu="hidden")
    rows = {r[0]: r for r in next(tb for tb in md_tables(md, "Common mistakes") if tb[0][0] == "attempt")[1]}
    for name, y in want.items():
        assert rows[name][1].split(" (")[0] == codes_text(np.clip(y, 0, 255)), name


# ---------------------------------------------------------------------------------------------------
# formats, layout, filter, exit codes

def layout(md: str) -> str:
    """Headings and table headers only: the report's shape, no numbers and not the platform's name (the CPU's)."""
    lines = md.splitlines()
    keep = [line for line, nxt in zip(lines, lines[1:] + [""])
            if line.startswith("#") or (line.startswith("| ") and nxt.startswith("|-"))]
    return "\n".join(re.sub(r"\d+", "N", line.replace(platform_here().name, "P")) for line in keep) + "\n"


def test_markdown_layout_matches_golden(seed_file):
    md, _ = report(seed_file, [1, 0.5], "markdown", relu="hidden")
    if os.environ.get("UQUANT_REGOLD"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(layout(md))
    assert layout(md) == GOLDEN.read_text()


def test_text_format(seed_file, capsys):
    rc, out, err = run(capsys, "explain", seed_file, "--relu", "hidden", "--input", "1,0")
    assert rc == 0, err
    assert out.startswith(f"uquant explain: seed_sd (engine x86, platform {platform_here().name})\n=====")
    for heading in ("Which tensor each scale and zero point belongs to", "Layer input_layer: Linear 2 -> 3 + ReLU",
                    "What torch computes (engine x86: fbgemm requantization)", "Trace of one input",
                    "Common mistakes, worked out for this input"):
        assert f"\n{heading}" in out
    assert "|" not in out and "<" not in out  # no Markdown tables, no HTML
    # without --input: the explanation alone, and a pointer to the trace
    rc, out, _ = run(capsys, "explain", seed_file, "--relu", "hidden")
    assert rc == 0 and "Trace of one input" not in out and "Pass one input (--input" in out


def test_layer_filter(seed_file, capsys):
    rc, md, err = run(capsys, "explain", seed_file, "--relu", "hidden", "--input", "1,0", "--layer", "out",
                      "--format", "markdown")
    assert rc == 0, err
    assert "## Layer out: Linear 3 -> 7" in md and "## Layer input_layer" not in md
    assert "### 3. out" in md and ". input_layer" not in md
    assert "Which tensor each scale" in md  # the overview stays
    rc, _, err = run(capsys, "explain", seed_file, "--relu", "hidden", "--layer", "nope")
    assert rc == 2 and err.strip() == ("uquant: error: no layer 'nope' in this model; its layers: input_layer, out")


@pytest.mark.parametrize("args, fragment", [
    (["--input", "1,0,3"], "--input has 3 values; the model takes 2"),
    (["--input", "1,x"], "--input takes comma-separated numbers"),
    (["--input", "1,nan"], "--input must be finite numbers"),
    (["--got", "0,0,76"], "--got needs --input"),
    (["--input", "1,0", "--got", "a"], "--got takes comma-separated integer codes"),
])
def test_input_errors_exit_2(seed_file, capsys, args, fragment):
    rc, out, err = run(capsys, "explain", seed_file, "--relu", "hidden", *args)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uquant: error: ") and fragment in lines[0], err


def test_cli_exit_codes(seed_file, capsys, monkeypatch, tmp_path):
    # as a user runs it: the console script, success and a clean error
    script = Path(sys.executable).with_name("uquant")
    p = subprocess.run([str(script), "explain", str(seed_file), "--relu", "hidden", "--input", "1,0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "every code equal to torch's: yes" in p.stdout, p.stderr
    p = subprocess.run([str(script), "explain", str(seed_file)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--relu hidden" in p.stderr
    rc, _, err = run(capsys, "explain", tmp_path / "missing.pt")
    assert rc == 2 and "no such file" in err
    rc, _, _ = run(capsys, "explain", seed_file, "--format", "pdf")
    assert rc == 2  # argparse
    # -o writes the file
    rc, out, _ = run(capsys, "explain", seed_file, "--relu", "hidden", "-o", tmp_path / "r" / "seed.md",
                     "--format", "markdown")
    assert rc == 0 and (tmp_path / "r" / "seed.md").read_text().startswith("# uquant explain")
    # a trace that disagrees with torch exits 1 (torch's values tampered with here)
    import uquant.explain as E

    real = E.torch_values

    def tampered(*a):
        v = real(*a)
        v["input_layer"] = v["input_layer"] + 1
        return v

    monkeypatch.setattr(E, "torch_values", tampered)
    rc, out, _ = run(capsys, "explain", seed_file, "--relu", "hidden", "--input", "1,0")
    assert rc == 1 and "every code equal to torch's: NO" in out


# ---------------------------------------------------------------------------------------------------
# other models: per-channel weights, a convolution (the report holds for what convert accepts)

def test_random_models_trace_equal_to_torch():
    sys.path.insert(0, str(Path(__file__).parent))
    from randmodels import random_chain, random_conv

    for engine, seed in (("fbgemm", 3), ("qnnpack", 5), ("x86", 8)):
        rng = np.random.default_rng(seed)
        m = random_chain(rng, engine)
        x = rng.uniform(-0.5, 2, m.layers[0].weight().shape[1]).astype(np.float32)
        text, ok = report(m, x, "html", engine=engine, converted=uquant.convert(m, x[None], engine=engine))
        assert ok and "every code equal to torch&#x27;s: yes" in text
    rng = np.random.default_rng(101)
    m, shape = random_conv(rng, "x86", dim=2)
    x = rng.uniform(0, 0.3, int(np.prod(shape))).astype(np.float32)
    conv = uquant.convert(m, x.reshape((1,) + shape), engine="x86")
    text, ok = report(m, x, "markdown", engine="x86", converted=conv)
    assert ok and "A convolution: one exact accumulator per output position" in text


# ---------------------------------------------------------------------------------------------------
# HTML: one self-contained page, strictly parsed, and drawn by a real browser where one is installed

class _Strict(html.parser.HTMLParser):
    VOID = {"meta", "br", "img", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def seed_html(seed_file) -> str:
    text, ok = report(seed_file, [1, 0], "html", relu="hidden")
    assert ok
    return text


def test_html_is_one_well_formed_self_contained_page(seed_html):
    p = _Strict()
    p.feed(seed_html)
    p.close()
    assert not p.errors and not p.stack, (p.errors, p.stack)
    tags = [t for t, _ in p.tags]
    assert tags[:2] == ["html", "head"] and tags.count("html") == 1 and tags.count("body") == 1
    for tag, attrs in p.tags:  # nothing loaded from elsewhere
        assert tag not in ("script", "link", "img", "iframe"), tag
        for k, v in attrs.items():
            assert not (k in ("src", "href") and v), (tag, k, v)
    svgs = re.findall(r"<svg\b.*?</svg>", seed_html, re.S)
    # per layer one picture per channel plus one close-up: 3 + 1 and 7 + 1
    assert len(svgs) == 12
    conv = uquant.convert(seed_state_dict(), engine="x86", relu="hidden")
    for svg, (layer, n) in zip(svgs, [("input_layer", n) for n in range(3)] + [("input_layer", None)]
                               + [("out", n) for n in range(7)] + [("out", None)]):
        root = ET.fromstring(svg)  # strict XML
        ns = "{http://www.w3.org/2000/svg}"
        assert root.tag == f"{ns}svg"
        label = root.get("aria-label")
        assert label.startswith(layer) and (n is None or label == f"{layer} channel {n}")
        polyline = root.find(f"{ns}polyline")
        assert polyline.get("stroke") == STEP_COLOUR
        pts = [tuple(map(float, p.split(","))) for p in polyline.get("points").split()]
        ys = [y for _, y in pts]
        assert all(a >= b - 1e-6 for a, b in zip(ys, ys[1:]))  # codes only rise: a monotone step function
        reach = [r for r in root.iter(f"{ns}rect") if r.get("fill") == REACH_COLOUR]
        assert len(reach) == 1
        step = next(s for s in conv.plan.steps if s.name == layer)
        ch = n if n is not None else int(re.search(r"channel (\d+)", label).group(1))
        title = reach[0].find(f"{ns}title").text
        assert title == f"reachable accumulators {int(step.acc_lo[ch])} .. {int(step.acc_hi[ch])}"
        assert root.find(f"{ns}circle") is not None  # this input's accumulator


def _png_pixels(data: bytes) -> np.ndarray:
    """An 8-bit RGB(A) PNG (what a headless Chromium screenshot is) -> (H, W, 3) array.

    PNG rows are filtered against the pixel to the left and the row above; undoing that runs along
    anti-diagonals, which numpy does a diagonal at a time.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0
    c = 3 if ctype == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w * c + 1)
    filt, x = raw[:, 0].astype(np.int32), raw[:, 1:].astype(np.int32).reshape(h, w, c)
    out = np.zeros((h + 1, w + 1, c), np.int32)  # a row and a column of zeros in front
    for t in range(h + w - 1):
        y = np.arange(max(0, t - w + 1), min(h, t + 1))
        i = t - y
        a, b, d = out[y + 1, i], out[y, i + 1], out[y, i]  # left, up, up-left
        p = a + b - d
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - d)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, d))
        f = filt[y][:, None]
        pred = np.select([f == 1, f == 2, f == 3, f == 4], [a, b, (a + b) // 2, paeth], 0)
        out[y + 1, i + 1] = (x[y, i] + pred) & 255
    return out[1:, 1:, :3]


def _chromium() -> str | None:
    return os.environ.get("UQUANT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (Debian package 'chromium'); the strict "
                    "parse above still checks the page")
def test_html_renders_in_headless_chromium(seed_html, tmp_path):
    page = tmp_path / "seed.html"
    page.write_text(seed_html)
    shot = tmp_path / "seed.png"
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
                            "--window-size=1200,2600", f"--screenshot={shot}", page.as_uri()],
                           capture_output=True, text=True, timeout=90)
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    px = _png_pixels(shot.read_bytes())
    assert px.shape[:2] == (2600, 1200)

    def count(hex_colour: str, tol: int = 12) -> int:
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(px - rgb).max(-1) <= tol).sum())

    # the steps (red) and the reachable ranges (shaded) were drawn: the SVG rendered, not just the text
    assert count(STEP_COLOUR) > 2000, count(STEP_COLOUR)
    assert count(REACH_COLOUR) > 20000, count(REACH_COLOUR)
    assert (px < 100).all(-1).sum() > 5000  # text


def test_bias_implied_column_takes_the_input_zero_point_back_out(seed_file):
    """The "bias implied by c_lo, D" column is the bias the device's integers carry, in accumulator units: with a
    non-zero input zero point (folded into c_lo as z_x * sum_k (w_nk - z_w)) it still equals torch's bias in
    accumulator units, and the table's note says what the column holds."""
    from randmodels import random_chain

    rng = np.random.default_rng(3)
    checked = 0
    while checked < 2:
        chain = random_chain(rng, "x86")
        conv = uquant.convert(chain, engine="x86")
        if conv.plan.input.zero_point == 0:
            continue
        md, ok = report(chain, None, "markdown", converted=conv)
        first = conv.plan.steps[0]
        table = next(tb for tb in md_tables(md, f"Layer {first.name}") if "bias implied by c_lo, D" in tb[0])
        col_b, col_i = table[0].index("b in acc units (torch)"), table[0].index("bias implied by c_lo, D")
        for r in table[1]:
            if r[col_i] != "-":
                b, implied = float(r[col_b]), float(r[col_i])
                assert abs(implied - b) <= 1 + 1e-3 * abs(b), (r, table[0])
                checked += 1
        zx = conv.plan.input.zero_point
        assert "'bias implied by c_lo, D': the bias, in accumulator units, that the device's integers carry" in md
        assert "offset_n = z_x * sum_k (w_nk - z_w), the input zero point's sum over the channel's weights" in md
        assert f"here z_x = {zx}, so offset_n = {zx} * sum_k (w_nk - z_w)" in md
    md, _ = report(seed_file, None, "markdown", relu="hidden")
    assert "here z_x = 0, so nothing is folded in (offset_n = 0)" in md


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (Debian package 'chromium')")
def test_html_wide_tables_do_not_scroll_sideways_at_1200px(seed_html, tmp_path):
    """Wide tables (the device's 14 columns per channel, the mistakes' code lists) wrap and shrink to the page: at a
    1200 px window no table or formula reaches past the window's right edge or scrolls inside its box."""
    assert "overflow-x: auto" not in seed_html and "white-space: nowrap" not in seed_html
    probe = ("<script>var r=0,s=0;document.querySelectorAll('table,pre,.wide').forEach(function(t){"
             "r=Math.max(r,t.getBoundingClientRect().right);s=Math.max(s,t.scrollWidth-t.clientWidth)});"
             "document.title='W '+Math.ceil(r)+' '+s+' '+document.documentElement.scrollWidth+' '+window.innerWidth;"
             "</script>")
    page = tmp_path / "probe.html"  # a copy with a measuring script (the report itself has none)
    page.write_text(seed_html.replace("</body>", probe + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            f"--user-data-dir={profile}", "--window-size=1200,900", "--dump-dom", page.as_uri()],
                           capture_output=True, text=True, timeout=90)
    m = re.search(r"<title>W (\d+) (\d+) (\d+) (\d+)</title>", p.stdout)
    assert m, p.stdout[-1000:] + p.stderr[-1000:]
    right, inner_scroll, page_width, window = map(int, m.groups())
    assert right <= window and inner_scroll == 0 and page_width <= window, m.group(0)


def test_info_counts_torch_parameters(seed_file, capsys):
    """`uquant info` (the issue's other half): layers, shapes, MACs, bytes, RAM -- and torch's parameter count."""
    rc, out, err = run(capsys, "info", seed_file, "--relu", "hidden")
    assert rc == 0, err
    m = SeedTorchModel("x86")
    w = sum(layer.weight().numel() for layer in (m.input_layer, m.out))
    b = sum(layer.bias().numel() for layer in (m.input_layer, m.out))
    assert f"torch parameters        {w + b} ({w} weights + {b} biases)" in out
    for field in ("MACs per inference", "activation peak", "total RAM at run time"):
        assert field in out
