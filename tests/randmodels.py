"""Random quantized models built with torch itself, for the conformance fuzz.

Layers are torch's own quantized modules (nnq.Linear / nniq.LinearReLU) packed for the engine under
test, with scales and zero points drawn from ordinary and extreme ranges, so that torch's kernels --
not a re-implementation -- produce the expected bytes.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*quint8.*|.*qint8.*|.*qint32.*")

import torch.ao.nn.intrinsic.quantized as nniq  # noqa: E402
import torch.ao.nn.quantized as nnq  # noqa: E402

import uquant  # noqa: E402


class Chain(torch.nn.Module):
    """quantize -> Linear(+ReLU) ... -> dequantize, with every layer's codes kept for comparison."""

    def __init__(self, in_scale, in_zp, layers):
        super().__init__()
        self.quant = nnq.Quantize(in_scale, in_zp, torch.quint8)
        self.layers = torch.nn.Sequential(OrderedDict((f"fc{i}", m) for i, m in enumerate(layers)))
        self.dequant = nnq.DeQuantize()

    def forward(self, x):
        return self.dequant(self.layers(self.quant(x)))

    def layer_codes(self, codes: np.ndarray) -> list[np.ndarray]:
        """int_repr() of every layer's output for a batch of input codes."""
        q = torch._make_per_tensor_quantized_tensor(torch.from_numpy(codes.astype(np.uint8)),
                                                    float(self.quant.scale), int(self.quant.zero_point))
        out = []
        for layer in self.layers:
            q = layer(q)
            out.append(q.int_repr().numpy().astype(np.int64))
        return out


def pick(rng, choices):
    return choices[int(rng.integers(len(choices)))]


def random_chain(rng: np.random.Generator, engine: str, depth=None, extreme=None) -> Chain:
    """A random MLP of 1-4 layers, widths 1-64, for `engine` (weights are packed for it)."""
    torch.backends.quantized.engine = engine
    torch.manual_seed(int(rng.integers(2 ** 31)))  # torch draws the weights: keep every run the same
    depth = depth or int(rng.integers(1, 5))
    widths = [int(pick(rng, [1, 2, 3, 7, 16, 33, 64]) if rng.random() < 0.5 else rng.integers(1, 65))
              for _ in range(depth + 1)]
    extreme = rng.random() < 0.25 if extreme is None else extreme
    reduce_range = rng.random() < 0.5
    in_scale = float(10 ** rng.uniform(-3, 0)) if not extreme else float(10 ** rng.uniform(-6, 2))
    in_zp = int(pick(rng, [0, 0, 128, 255, int(rng.integers(0, 256))]))
    # Activations: the standard deviation of a layer's real output, as a calibrated observer would see it.
    x_std = in_scale * 60
    layers = []
    for i in range(depth):
        K, N = widths[i], widths[i + 1]
        per_channel = rng.random() < 0.5
        w_std = float(10 ** rng.uniform(-2, 0))
        w = torch.randn(N, K) * w_std
        if per_channel:
            w = w * torch.from_numpy(10 ** rng.uniform(-1, 1, (N, 1))).float()
            scales = w.abs().amax(1).clamp_min(1e-8) / 127
            zps = torch.zeros(N, dtype=torch.long)
            if rng.random() < 0.3 and engine != "qnnpack":
                zps = torch.from_numpy(rng.integers(-20, 21, N))
            qw = torch.quantize_per_channel(w, scales.double(), zps, 0, torch.qint8)
        else:
            scale = float(w.abs().max().clamp_min(1e-8)) / 127
            zp = 0 if rng.random() < 0.7 else int(rng.integers(-20, 21))
            qw = torch.quantize_per_tensor(w, scale, zp, torch.qint8)
        bias = None if rng.random() < 0.15 else torch.randn(N) * float(x_std * w_std * np.sqrt(K)) * float(rng.uniform(0, 3))
        y_std = x_std * w_std * np.sqrt(K) + 1e-12
        relu = rng.random() < 0.5
        levels = 127 if reduce_range else 255
        span = float(y_std * 6 * 10 ** rng.uniform(-1, 0.5))
        if extreme:
            span *= float(10 ** rng.uniform(-2, 2))
        out_scale = span / levels
        if relu:
            out_zp = int(pick(rng, [0, 0, int(rng.integers(0, 40)), 255]))
        else:
            out_zp = int(pick(rng, [levels // 2, 0, 255, int(rng.integers(0, 256))]))
        layer = (nniq.LinearReLU if relu else nnq.Linear)(K, N)
        layer.set_weight_bias(qw, bias)
        layer.scale = float(out_scale)
        layer.zero_point = out_zp
        layers.append(layer)
        x_std = span / 6
    return Chain(in_scale, in_zp, layers).eval()


def random_codes(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Input codes: mostly uniform, some rows at the ends of the range, some near a random centre."""
    x = rng.integers(0, 256, (n, k))
    m = rng.random(n)
    x[m < 0.1] = rng.choice([0, 255], (int((m < 0.1).sum()), k))
    centre = rng.integers(0, 256, (n, 1))
    near = (m >= 0.1) & (m < 0.4)
    x[near] = np.clip(centre + rng.integers(-8, 9, (n, k)), 0, 255)[near]
    return x


def quantized_conv(rng: np.random.Generator, engine: str, dim: int, cin: int, cout: int, k: int, stride: int,
                   pad: int, dil: int, groups: int):
    """A quantized Conv1d/Conv2d (+ReLU, at random) of that geometry: random per-channel or per-tensor weights,
    bias, output scale and zero point; and the input scale they were drawn for."""
    cls = {(1, False): nnq.Conv1d, (1, True): nniq.ConvReLU1d, (2, False): nnq.Conv2d, (2, True): nniq.ConvReLU2d}
    relu = bool(rng.random() < 0.5)
    conv = cls[(dim, relu)](cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups)
    wshape = (cout, cin // groups) + ((k,) if dim == 1 else (k, k))
    w = torch.randn(wshape) * float(10 ** rng.uniform(-2, 0))
    if rng.random() < 0.5:
        scales = w.reshape(cout, -1).abs().amax(1).clamp_min(1e-8) / 127
        zps = torch.zeros(cout, dtype=torch.long)
        if rng.random() < 0.3 and engine != "qnnpack":
            zps = torch.from_numpy(rng.integers(-10, 11, cout))
        qw = torch.quantize_per_channel(w, scales.double(), zps, 0, torch.qint8)
    else:
        zp = 0 if rng.random() < 0.7 else int(rng.integers(-10, 11))
        qw = torch.quantize_per_tensor(w, float(w.abs().max().clamp_min(1e-8)) / 127, zp, torch.qint8)
    in_scale = float(10 ** rng.uniform(-3, 0))
    taps = (cin // groups) * (k if dim == 1 else k * k)
    y_std = in_scale * 60 * float(qw.dequantize().abs().mean()) * np.sqrt(taps) + 1e-9
    bias = None if rng.random() < 0.2 else torch.randn(cout) * y_std
    conv.set_weight_bias(qw, bias)
    conv.scale = float(y_std * 6 * 10 ** rng.uniform(-1, 0.5) / 255)
    conv.zero_point = int(pick(rng, [0, 128, 255, int(rng.integers(0, 256))]) if not relu else pick(rng, [0, 0, 30]))
    return conv, in_scale


def random_conv(rng: np.random.Generator, engine: str, dim: int = 2):
    """One random quantized Conv1d/Conv2d (+ReLU) layer and an input shape for it."""
    torch.backends.quantized.engine = engine
    torch.manual_seed(int(rng.integers(2 ** 31)))
    g = int(pick(rng, [1, 1, 2, 4, -1]))
    if g == -1:  # depthwise
        C = int(pick(rng, [1, 3, 4, 8])) if dim == 1 or engine != "fbgemm" else int(pick(rng, [1, 3, 5]))
        groups, cin, cout = C, C, C * int(pick(rng, [1, 1, 2]))
    else:
        groups = g
        cin, cout = g * int(pick(rng, [1, 2, 3])), g * int(pick(rng, [1, 2, 4]))
    k = int(pick(rng, [1, 2, 3, 5]))
    stride, pad, dil = int(pick(rng, [1, 1, 2])), int(pick(rng, [0, 1, 2])), int(pick(rng, [1, 1, 2]))
    size = int(rng.integers(max(k * dil - 2 * pad, 1), 11))
    shape = (cin, size) if dim == 1 else (cin, size, int(rng.integers(max(k * dil - 2 * pad, 1), 11)))
    conv, in_scale = quantized_conv(rng, engine, dim, cin, cout, k, stride, pad, dil, groups)
    layers = [conv]
    if rng.random() < 0.4:
        pk = int(pick(rng, [2, 3]))
        pool = (torch.nn.MaxPool1d if dim == 1 else torch.nn.MaxPool2d)(pk, stride=int(pick(rng, [1, 2])),
                                                                        padding=int(rng.integers(0, pk // 2 + 1)))
        out_size = (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
        if out_size >= pk:
            layers.append(pool)
    in_zp = int(pick(rng, [0, 128, 255, int(rng.integers(0, 256))]))
    return Chain(in_scale, in_zp, layers).eval(), shape


def fx_mlp_file(path):
    """A user's own MLP: FX-quantized with the x86 default qconfig (per-channel weights, reduce_range), calibrated
    on its training-like data, saved as TorchScript."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4)).eval()
    x = torch.rand(256, 8) * 2
    with torch.no_grad():
        for w in (model[0].weight, model[2].weight):  # large weights, so that int16 pairs can saturate
            w.mul_(4)
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x[:1],))
    prepared(x)
    q = convert_fx(prepared)
    torch.jit.save(torch.jit.trace(q, x[:1]), str(path))
    return path


def torch_final_codes(chain, codes, shape=None):
    """torch's final output codes for a batch of input codes, one row per sample (raw bytes for qint8)."""
    batch = codes if shape is None else codes.reshape((-1,) + shape)
    return chain.layer_codes(batch)[-1].reshape(len(codes), -1) % 256


def random_models(rng, engine, platform="here"):
    """Random MLPs and random conv(+pool) layers (1-D and 2-D): (torch's codes, converted model, input codes)."""
    i = 0
    while True:
        i += 1
        if i % 3 == 1:
            chain, shape = random_chain(rng, engine), None
        else:
            chain, shape = random_conv(rng, engine, dim=1 + i % 2)
        n_in = chain.layers[0].in_features if shape is None else int(np.prod(shape))
        codes = random_codes(rng, 40, n_in)
        try:
            want = torch_final_codes(chain, codes, shape)
        except RuntimeError:
            continue  # a shape torch itself refuses (e.g. a pool window larger than its input)
        example = None if shape is None else torch.randn((4,) + shape)
        yield want, uquant.convert(chain, example, engine=engine, platform=platform), codes
