"""Built-in example models: the seed question's 2-3-7 MLP, rebuilt from its printed state_dict, and ready-made
TinyML architectures (written from their public descriptions, random weights), FX-quantized for an engine:
kws_ds_cnn, resnet8, lenet5, har_cnn, activation_mlp, mobilenet_v1, lstm_classifier (a quantized LSTM over a
synthetic sensor sequence). Each builder returns (quantized model, the
calibration inputs); `ARCHITECTURES` names them for a loop."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

# The seven inputs from the question, and torch's answer for them (the question's machine: exact sums).
SEED_INPUTS = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.9], [0.0, 0.75], [0.0, 0.25]],
                       np.float32)
SEED_EXPECTED = [0, 1, 2, 3, 4, 5, 1]
# On x86/fbgemm without VNNI, input [1, 1] (codes [255, 255]) meets the third hidden unit's weights [-56, -128]:
# 255*-56 + 255*-128 = -46,920 saturates to -32,768 in fbgemm's int16 pair sum, and the class becomes 2.
SEED_SATURATED = [2, 1, 2, 3, 4, 5, 1]


def seed_expected(engine: str, platform) -> list[int]:
    """torch's predictions for the seven inputs with the seed model on `engine` and a uquant Platform."""
    return SEED_SATURATED if engine != "qnnpack" and platform.saturates else SEED_EXPECTED

_W1 = [[-0.1180, 0.1180], [-0.2949, -0.5308], [-3.3029, -7.5496]]
_B1 = [-0.4747, -0.3563, 7.7603]
_W2 = [[0.4365, 0.4365, -55.4356], [0.4365, 0.0000, 1.3095], [0.4365, 0.0000, -13.9680], [0.4365, -0.4365, 4.3650],
       [0.4365, 0.4365, -3.0555], [0.4365, 0.0000, -1.3095], [0.4365, 0.0000, 3.0555]]
_B2 = [19.2761, -1.0785, 14.2602, -22.3171, 10.1059, 7.2197, -11.7253]


def seed_state_dict() -> OrderedDict:
    """The state_dict exactly as printed in the question (values rounded to four digits as shown there)."""
    w1 = torch.quantize_per_tensor(torch.tensor(_W1), 0.05898105353116989, 0, torch.qint8)
    w2 = torch.quantize_per_tensor(torch.tensor(_W2), 0.43650051951408386, 0, torch.qint8)
    return OrderedDict([
        ("input_layer_input_scale_0", torch.tensor(0.0039)),
        ("input_layer_input_zero_point_0", torch.tensor(0)),
        ("input_layer.scale", torch.tensor(0.0297)),
        ("input_layer.zero_point", torch.tensor(0)),
        ("input_layer._packed_params.dtype", torch.qint8),
        ("input_layer._packed_params._packed_params", (w1, torch.nn.Parameter(torch.tensor(_B1)))),
        ("out.scale", torch.tensor(1.5963)),
        ("out.zero_point", torch.tensor(243)),
        ("out._packed_params.dtype", torch.qint8),
        ("out._packed_params._packed_params", (w2, torch.nn.Parameter(torch.tensor(_B2)))),
    ])


class SeedTorchModel(torch.nn.Module):
    """torch's own quantized modules holding the seed's numbers: quantize -> input_layer -> out -> dequantize."""

    def __init__(self, engine: str = "x86"):
        import torch.ao.nn.quantized as nnq

        super().__init__()
        torch.backends.quantized.engine = engine  # weights are packed for the engine that will run them
        sd = seed_state_dict()
        self.quant = nnq.Quantize(float(sd["input_layer_input_scale_0"]), 0, torch.quint8)
        self.input_layer = nnq.Linear(2, 3)
        self.out = nnq.Linear(3, 7)
        for name in ("input_layer", "out"):
            layer = getattr(self, name)
            w, b = sd[f"{name}._packed_params._packed_params"]
            layer.set_weight_bias(w, b.detach())
            layer.scale = float(sd[f"{name}.scale"])
            layer.zero_point = int(sd[f"{name}.zero_point"])
        self.dequant = nnq.DeQuantize()

    def layer_codes(self, x) -> list[np.ndarray]:
        """int_repr() after quantization and after each layer."""
        q = self.quant(torch.as_tensor(x, dtype=torch.float32))
        out = [q.int_repr().numpy().astype(np.int64)]
        for layer in (self.input_layer, self.out):
            q = layer(q)
            out.append(q.int_repr().numpy().astype(np.int64))
        return out

    def forward(self, x):
        return self.dequant(self.out(self.input_layer(self.quant(x))))


def kws_ds_cnn(engine: str = "fbgemm"):
    """A keyword-spotting DS-CNN (the shape of ARM's ML-KWS DS-CNN, narrowed): input 1x49x10 (49 MFCC frames of
    10 coefficients), Conv2d(1, 64, (10, 4), stride 2, padding (5, 1)) + ReLU, four depthwise-separable blocks
    (depthwise Conv2d(64, 64, 3, padding 1, groups 64) + ReLU, pointwise Conv2d(64, 64, 1) + ReLU), global average
    pooling and Linear(64, 12). FX-quantized for `engine` (x86's default qconfig mapping for fbgemm and x86,
    qnnpack's for qnnpack) and calibrated on random inputs, untrained: speed and exactness do not depend on the
    weights. Returns (quantized model, example inputs)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(0)
    nn = torch.nn
    layers = [nn.Conv2d(1, 64, (10, 4), stride=2, padding=(5, 1)), nn.ReLU()]
    for _ in range(4):
        layers += [nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.ReLU(), nn.Conv2d(64, 64, 1), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 12)]
    model = nn.Sequential(*layers).eval()
    x = torch.randn(64, 1, 49, 10)
    torch.backends.quantized.engine = engine
    prepared = prepare_fx(model, get_default_qconfig_mapping("qnnpack" if engine == "qnnpack" else "x86"), (x,))
    with torch.no_grad():
        prepared(x)
    return convert_fx(prepared), x


def _fx_quantize(model, x, engine: str):
    """FX-quantize `model` for `engine` (x86's default qconfig mapping for fbgemm and x86, qnnpack's for qnnpack),
    calibrated on `x`."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = engine
    prepared = prepare_fx(model, get_default_qconfig_mapping("qnnpack" if engine == "qnnpack" else "x86"), (x,))
    with torch.no_grad():
        prepared(x)
    return convert_fx(prepared)


class _ResidualBlock(torch.nn.Module):
    """MLPerf Tiny's ResNet-8 stage: conv 3x3 (stride s) + BN + ReLU, conv 3x3 + BN, plus the shortcut (the
    identity, or a 1x1 conv with stride s where the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity())
        self.relu2 = nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class ResNet8(torch.nn.Module):
    """MLPerf Tiny's CIFAR-10 ResNet-8: 3x32x32 input, conv 3x3 16 + BN + ReLU, three residual stages of 16, 32
    and 64 channels (strides 1, 2, 2; 1x1 downsampling shortcuts), global average pooling, Linear(64, 10)."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv = nn.Conv2d(3, 16, 3, 1, 1)
        self.bn = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.stages = nn.Sequential(_ResidualBlock(16, 16, 1), _ResidualBlock(16, 32, 2), _ResidualBlock(32, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.stages(self.relu(self.bn(self.conv(x)))))))


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm random statistics and affine terms (a fresh one is the identity, so the folded convs
    would be the raw convs): untrained models that still exercise the folding. Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2), (m.running_mean, -0.2, 0.2),
                                  (m.running_var, 0.5, 1.5)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    return model.eval()


def resnet8(engine: str = "fbgemm"):
    """MLPerf Tiny's CIFAR-10 ResNet-8 (ResNet8 above, ~78k parameters), random weights (and random BatchNorm
    statistics, so the folded convs are not trivial), FX-quantized for `engine` and calibrated on random inputs,
    untrained. Returns (quantized model, example inputs of shape (64, 3, 32, 32))."""
    torch.manual_seed(0)
    model = randomize_batchnorm(ResNet8())
    x = torch.randn(64, 3, 32, 32)
    return _fx_quantize(model, x, engine), x


def lenet5(engine: str = "fbgemm"):
    """LeNet-5 on 1x28x28 (MNIST): conv 5x5 6 (padding 2) + ReLU, max pool 2, conv 5x5 16 + ReLU, max pool 2,
    Linear 400-120-84-10 with ReLUs (~61k parameters)."""
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10)).eval()
    x = torch.rand(64, 1, 28, 28)
    return _fx_quantize(model, x, engine), x


def har_cnn(engine: str = "fbgemm"):
    """A 1-D human-activity-recognition CNN on 3x128 (three accelerometer axes, 128 samples): Conv1d(3, 32, 5) +
    BatchNorm + ReLU, max pool 2, Conv1d(32, 64, 5) + BatchNorm + ReLU, max pool 2, global average pooling,
    Linear(64, 6)."""
    torch.manual_seed(0)
    nn = torch.nn
    model = randomize_batchnorm(nn.Sequential(
        nn.Conv1d(3, 32, 5), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(32, 64, 5), nn.BatchNorm1d(64),
        nn.ReLU(), nn.MaxPool1d(2), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 6)))
    x = torch.randn(64, 3, 128)
    return _fx_quantize(model, x, engine), x


def activation_mlp(engine: str = "fbgemm"):
    """An MLP 32-64-64-64-64-4 whose hidden layers end in Hardswish, Sigmoid, Tanh and LeakyReLU (code tables)."""
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(32, 64), nn.Hardswish(), nn.Linear(64, 64), nn.Sigmoid(), nn.Linear(64, 64),
                          nn.Tanh(), nn.Linear(64, 64), nn.LeakyReLU(0.1), nn.Linear(64, 4)).eval()
    x = torch.randn(256, 32)
    return _fx_quantize(model, x, engine), x


def mobilenet_v1(engine: str = "fbgemm", alpha: float = 0.25, size: int = 96, classes: int = 2):
    """MobileNetV1 (width alpha, size x size RGB input) as MLPerf Tiny's visual wake words uses it: a 3x3 stride-2
    conv, then 13 depthwise-separable blocks (depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU), global average
    pooling and Linear(., classes). alpha 0.25, 96x96: ~210k parameters, 7.5M MACs."""
    torch.manual_seed(0)
    nn = torch.nn

    def block(c_in, c_out, stride):
        return [nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(),
                nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    widths = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    c = [max(8, int(w * alpha)) for w in [32] + widths]
    layers = [nn.Conv2d(3, c[0], 3, 2, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU()]
    for i, s in enumerate(strides):
        layers += block(c[i], c[i + 1], s)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[-1], classes)]
    model = randomize_batchnorm(nn.Sequential(*layers))
    x = torch.rand(32, 3, size, size) * 2 - 1
    return _fx_quantize(model, x, engine), x


def anomaly_autoencoder(engine: str = "fbgemm"):
    """MLPerf Tiny's anomaly-detection autoencoder (Linear 640-128-128-128-128-8-128-128-128-128-640, ReLU between,
    ~270k parameters: bigger than a Pico's RAM as a module, see `uquant convert --weights`), random weights,
    FX-quantized for `engine` and calibrated on random inputs, untrained. Returns (quantized model, example inputs
    of shape (64, 640))."""
    torch.manual_seed(0)
    nn = torch.nn
    sizes = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    x = torch.randn(64, 640)
    return _fx_quantize(nn.Sequential(*layers).eval(), x, engine), x


def mobilenet_v3_small(engine: str = "fbgemm", width_mult: float = 0.25, size: int = 32, eager: bool = False):
    """torchvision's MobileNetV3-Small (squeeze-and-excitation blocks: global pooling, 1x1 convs, hardsigmoid and a
    per-channel broadcasting mul; hardswish), random weights, `width_mult` narrowing every layer, quantized for
    `engine` and calibrated on random 3 x size x size inputs, untrained. FX by default (torchvision's
    mobilenet_v3_small); eager=True: torchvision's QuantizableMobileNetV3 of the same configuration, fused and
    quantized in eager mode. x86's default qconfig for fbgemm and x86, qnnpack's for qnnpack. Needs torchvision
    (make setup installs it). Returns (quantized model, example inputs of shape (64, 3, size, size))."""
    from . import torchvision_models

    tvm = torchvision_models.load()
    torch.manual_seed(0)
    x = torch.rand(64, 3, size, size) * 2 - 1
    if not eager:
        model = tvm.models.mobilenet_v3_small(weights=None, width_mult=width_mult).eval()
        return _fx_quantize(model, x, engine), x
    from torchvision.models.mobilenetv3 import _mobilenet_v3_conf
    from torchvision.models.quantization import mobilenetv3 as qmv3

    setting, last = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=width_mult)
    model = qmv3.QuantizableMobileNetV3(setting, last, block=qmv3.QuantizableInvertedResidual).eval()
    model.fuse_model()
    torch.backends.quantized.engine = engine
    model.qconfig = torch.ao.quantization.get_default_qconfig("qnnpack" if engine == "qnnpack" else "x86")
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        model(x)
    return torch.ao.quantization.convert(model), x


class SensorLSTM(torch.nn.Module):
    """An LSTM over a sensor sequence, its last hidden state -> Linear to the classes. The zero initial state is
    made in forward(): FX's custom-module flow for quantized LSTMs needs (h0, c0) passed explicitly."""

    def __init__(self, features: int = 3, hidden: int = 16, classes: int = 4):
        super().__init__()
        self.lstm = torch.nn.LSTM(features, hidden, batch_first=True)
        self.fc = torch.nn.Linear(hidden, classes)

    def forward(self, x):
        h0 = x.new_zeros(1, x.size(0), self.lstm.hidden_size)
        out, _ = self.lstm(x, (h0, h0))
        return self.fc(out[:, -1])


def sensor_sequences(n: int, steps: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic 3-axis sensor recordings (n, steps, 3) and their classes (n,): class k is a sinusoid of frequency
    (k + 1) / steps cycles per step on a random axis mix and phase, plus noise and a small offset."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    t = torch.arange(steps, dtype=torch.float32)
    phase = torch.rand(n, 1, generator=g) * 6.2832
    wave = torch.sin(6.2832 * (labels[:, None] + 1).float() * t / steps + phase)  # (n, steps)
    mix = torch.randn(n, 1, 3, generator=g)
    x = wave[:, :, None] * mix + 0.2 * torch.randn(n, steps, 3, generator=g) + 0.1 * torch.randn(n, 1, 3, generator=g)
    return x, labels


def lstm_classifier(engine: str = "fbgemm", hidden: int = 16, steps: int = 20):
    """A sensor-sequence classifier: LSTM(3 -> hidden) over `steps` time steps, the last hidden state -> Linear 4
    classes (SensorLSTM), random weights, quantized by quantize_lstm for `engine` and calibrated on synthetic
    sensor sequences. uquant unrolls the LSTM over the time steps. Returns (quantized model, the calibration
    sequences (64, steps, 3))."""
    torch.manual_seed(0)
    model = SensorLSTM(3, hidden, 4).eval()
    x, _ = sensor_sequences(64, steps)
    return quantize_lstm(model, x, engine), x


def quantize_lstm(model: torch.nn.Module, x: torch.Tensor, engine: str = "x86") -> torch.nn.Module:
    """torch's static quantization of a model holding nn.LSTM: FX with the custom-module flow (nn.LSTM ->
    quantizable.LSTM, observed and calibrated on x, -> quantized.LSTM) and the engine's default qconfig. Leaves
    torch.backends.quantized.engine set to `engine` (run the result with it)."""
    import torch.ao.nn.quantizable as nnqa
    import torch.ao.nn.quantized as nnq
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import ConvertCustomConfig, PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = engine
    prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("qnnpack" if engine == "qnnpack" else "x86"),
                          (x,), prepare_custom_config=PrepareCustomConfig().set_float_to_observed_mapping(
                              torch.nn.LSTM, nnqa.LSTM))
    with torch.no_grad():
        prepared(x)
    return convert_fx(prepared, convert_custom_config=ConvertCustomConfig().set_observed_to_quantized_mapping(
        nnqa.LSTM, nnq.LSTM))


# The ready-made architectures, by name: each builder(engine) -> (quantized model, calibration inputs)
ARCHITECTURES = {"kws_ds_cnn": kws_ds_cnn, "resnet8": resnet8, "lenet5": lenet5, "har_cnn": har_cnn,
                 "activation_mlp": activation_mlp, "mobilenet_v1": mobilenet_v1,
                 "anomaly_autoencoder": anomaly_autoencoder, "lstm_classifier": lstm_classifier}
