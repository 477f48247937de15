"""Tensor plumbing without arithmetic against torch: random FX models whose convs are joined by chunk / split
(+ getitem), the channel shuffle (size() arithmetic, view, transpose, contiguous, view), permute, cat along any
dim and reshapes. These are byte moves on the device ("copy" nodes, views where the codes keep their order); every
output is compared with torch on CPython's bytecode runtime, the 32-bit wasm MicroPython, the unix port's viper
tier and the emulated thumb tier (which leave the copies to the bytecode node)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import uquant
from uquant.hosts.mpmodule import run_batch

nn = torch.nn
PLUMBING = ("shuffle", "chunk_cat", "split_cat", "permute", "transpose", "branch_cat")


class Plumbed(nn.Module):
    """conv -> random plumbing steps -> conv (on whatever shape results), the last conv optional."""

    def __init__(self, rng, C: int, H: int, W: int):
        super().__init__()
        self.c1 = nn.Conv2d(2, C, 3, padding=1)
        self.steps = [PLUMBING[int(i)] for i in rng.integers(0, len(PLUMBING), int(rng.integers(1, 4)))]
        self.dims = [int(rng.integers(1, 4)) for _ in self.steps]
        self.perms = [tuple(int(p) + 1 for p in rng.permutation(3)) for _ in self.steps]
        self.branch = nn.ModuleList()
        self.args = []  # per step, what it needs from the shape it gets (forward itself must not branch on sizes)
        shape = (1, C, H, W)
        for i, s in enumerate(self.steps):
            d, n = self.dims[i], shape[self.dims[i]]
            self.args.append({"shuffle": 2 if shape[1] % 2 == 0 else 1, "chunk_cat": (n % 2 == 0, min(n, 2)),
                              "split_cat": (max(1, n // 3), -(-n // max(1, n // 3)))}.get(s))
            c = shape[1] - shape[1] // 2 if shape[1] > 1 else 1
            self.branch.append(nn.Conv2d(c, c, 1))
            shape = tuple(self.step(i, torch.zeros(shape)).shape)
        self.c2 = nn.Conv2d(shape[1], 3, 1) if rng.random() < 0.6 else None

    def step(self, i, y):
        s, d, arg = self.steps[i], self.dims[i], self.args[i]
        if s == "shuffle":  # torchvision's channel_shuffle (2 groups; an odd channel count: 1)
            n, c, h, w = y.size()
            return y.view(n, arg, c // arg, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        if s == "chunk_cat":
            pieces = y.chunk(2, dim=d)
            if arg[0] or arg[1] == 1:  # equal pieces (or one)
                return torch.cat([pieces[j] for j in reversed(range(arg[1]))], dim=d)
            return torch.cat([pieces[1], pieces[0], pieces[1]], dim=d)
        if s == "split_cat":
            parts = y.split(arg[0], dim=d)
            return torch.cat([parts[j] for j in reversed(range(arg[1]))], dim=d)
        if s == "permute":
            return y.permute(0, *self.perms[i])
        if s == "transpose":
            return torch.transpose(y, 2, 3)
        pieces = y.chunk(2, dim=1)  # shufflenet's unit: half through a conv, then cat
        return torch.cat([pieces[0], self.branch[i](pieces[-1])], dim=1)

    def forward(self, x):
        y = self.c1(x)
        for i in range(len(self.steps)):
            y = self.step(i, y)
        return self.c2(y) if self.c2 is not None else y


def random_plumbed(rng, engine: str):
    while True:
        C, H, W = int(rng.integers(2, 9)), int(rng.integers(2, 7)), int(rng.integers(2, 7))
        torch.manual_seed(int(rng.integers(1 << 30)))
        try:
            m = Plumbed(rng, C, H, W).eval()
        except RuntimeError:  # a random step torch refuses (e.g. a chunk of a size-1 axis)
            continue
        x = torch.randn(64, 2, H, W)
        with uquant.api.torch_engine(engine):
            p = prepare_fx(m, get_default_qconfig_mapping("qnnpack" if engine == "qnnpack" else "fbgemm"), (x[:1],))
            p(x)
            return convert_fx(p), x, m.steps


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_random_plumbing_matches_torch_everywhere(engine, report):
    rng = np.random.default_rng(31 + (engine == "qnnpack"))
    outputs = copies = models = 0
    seen = set()
    while models < 10 or (seen != set(PLUMBING) and models < 25):  # at least 10, until every step was drawn
        k = models
        q, x, steps = random_plumbed(rng, engine)
        seen |= set(steps)
        with uquant.api.torch_engine(engine):
            converted = uquant.convert(q, x[:4], engine=engine, quiet=True)  # self-checks against torch
            xt = torch.randn(24, *x.shape[1:]) * 1.5
            with torch.no_grad():
                want = np.concatenate([q(xt[i:i + 1]).numpy().reshape(1, -1) for i in range(len(xt))])
        out = converted.plan.output
        codes = uquant.quantize_input(xt.reshape(len(xt), -1).numpy(), converted.plan.input)
        got = converted.run_codes(codes)
        assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want), (k, steps)
        mp, _, heap = run_batch(converted.source, converted.module_name, codes, heap=True)
        assert np.array_equal(mp, got), (k, steps)
        assert heap == 0
        vp, _, _ = run_batch(converted.source, converted.module_name, codes, host="unix", tier="viper")
        assert np.array_equal(vp, got), (k, steps)
        outputs += got.size
        models += 1
        copies += sum(s.kind == "copy" for s in converted.plan.steps)
    assert seen == set(PLUMBING)
    report(f"plumbing {engine:<8}: {outputs} outputs of {models} random models ({copies} copy nodes; steps "
           f"{sorted(seen)}) equal torch on CPython, wasm MicroPython and the viper tier")


def test_copy_on_the_thumb_tier_falls_back_to_bytecode():
    from uquant.hosts import thumb
    from uquant.runtime import load_source, rt

    q, x, steps = random_plumbed(np.random.default_rng(3), "qnnpack")
    with uquant.api.torch_engine("qnnpack"):
        converted = uquant.convert(q, x[:4], engine="qnnpack", quiet=True)
    codes = uquant.quantize_input(x[:8].reshape(8, -1).numpy(), converted.plan.input)
    want = converted.run_codes(codes)
    rt.register("uquant_thumb", thumb.emulated_tier())
    rt.TIER = "thumb"
    try:
        module = load_source(converted.source, converted.module_name)
        assert module.model.tier == "thumb"
        got = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes])
    finally:
        rt.TIER = None
        rt.register("uquant_thumb", None)
    assert np.array_equal(got, want)


def test_plumbing_errors_name_the_op():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 4, 1)

        def forward(self, x):
            return torch.transpose(self.c(x), 0, 1)  # moves the batch axis

    x = torch.randn(4, 1, 3, 3)
    with uquant.api.torch_engine("qnnpack"):
        p = prepare_fx(Bad().eval(), get_default_qconfig_mapping("qnnpack"), (x,))
        p(x)
        with pytest.raises(uquant.ConversionError, match="transpose.*batch"):
            uquant.convert(convert_fx(p), engine="qnnpack", input_shape=(1, 3, 3))


class MeanHead(nn.Module):
    def __init__(self, keepdim: bool):
        super().__init__()
        self.c, self.keepdim = nn.Conv2d(2, 12, 3), keepdim
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        y = self.c(x).mean([2, 3], keepdim=self.keepdim)
        return self.fc(torch.flatten(y, 1) if self.keepdim else y)


@pytest.mark.parametrize("keepdim", [False, True])
def test_mean_over_h_w_on_qnnpack(keepdim, report):
    # QNNPACK's global average pooling, the bytes of adaptive_avg_pool2d(x, 1): lowered and proven as that
    rng = np.random.default_rng(50 + keepdim)
    compared = 0
    for k in range(6):
        H, W = (int(v) for v in rng.integers(3, 9, 2))
        torch.manual_seed(k)
        x = torch.randn(64, 2, H, W) * float(rng.uniform(0.5, 3))
        with uquant.api.torch_engine("qnnpack"):
            p = prepare_fx(MeanHead(keepdim).eval(), get_default_qconfig_mapping("qnnpack"), (x[:1],))
            p(x)
            q = convert_fx(p)
            converted = uquant.convert(q, x[:4], engine="qnnpack", quiet=True)
            xt = torch.randn(200, 2, H, W) * 2
            with torch.no_grad():
                want = np.concatenate([q(xt[i:i + 1]).numpy() for i in range(len(xt))])
        assert "avgpool" in {s.kind for s in converted.plan.steps}
        got = converted.run_codes(uquant.quantize_input(xt.reshape(len(xt), -1).numpy(), converted.plan.input))
        out = converted.plan.output
        assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)
        compared += want.size
    report(f"mean([2, 3]{', keepdim' if keepdim else ''}) qnnpack: {compared} outputs of 6 models equal torch")


def test_mean_over_h_w_on_x86_is_refused_by_name():
    x = torch.randn(16, 2, 5, 5)
    with uquant.api.torch_engine("fbgemm"):
        p = prepare_fx(MeanHead(False).eval(), get_default_qconfig_mapping("fbgemm"), (x[:1],))
        p(x)
        with pytest.raises(uquant.ConversionError, match=r"mean over H x W = 3x3 positions of 12 channels: torch sums"):
            uquant.convert(convert_fx(p), engine="fbgemm", input_shape=(2, 5, 5))
