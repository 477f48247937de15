"""`uquant quantize`: torch's own post-training quantization, driven for the user (uquant keeps no quantizer).

A float model (an nn.Module, a traced TorchScript file, a pickled module, or a state_dict plus its class) and
calibration samples go in; torch's FX graph mode quantization runs (prepare_fx, the samples, convert_fx) with the
engine's default QConfigMapping, adjusted so that the model's bytes do not depend on the CPU (below); the
quantized model comes out as a TorchScript file that `uquant convert` reads. With `pt2e=True`, torchao's PT2E
flow (prepare_pt2e / convert_pt2e with its XNNPACKQuantizer, the one whose programs uquant's PT2E loader reads)
runs instead, and the program is saved with torch.export.save (.pt2).

Portability (README, "Platforms"). fbgemm adds u8 x s8 products in int16-saturating pairs on CPUs without VNNI,
so a pair 255 * -128 + 255 * -128 gives other bytes there. The x86/fbgemm default qconfig's `reduce_range`
calibrates activations to codes 0..127, but an input beyond the calibrated range still quantizes up to 255 (and
a layer's output can reach 255), so uquant's proof finds pairs that can saturate. What proves every pair safe is
the weights' range: with 7-bit weights (-64..63) no pair can leave int16 (2 * 255 * 64 = 32640), whatever the
inputs, so activations keep all 8 bits. On the x86 engine, a Conv with symmetric weights runs on oneDNN on VNNI
CPUs and on fbgemm elsewhere (they requantize differently): per-channel *affine* weights keep it on fbgemm
everywhere. qnnpack sums exactly on every CPU: its default qconfig is portable as it is. After quantizing,
uquant lowers the model and reports any step that is still platform-dependent (none is expected).
"""
from __future__ import annotations

import copy
import importlib.util
import io
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .engines import ENGINES
from .ir import ConversionError

PORTABLE_WEIGHTS = (-64, 63)  # 7-bit weight codes: |pair of products| <= 2 * 255 * 64 = 32640 < 2**15
# The module types that carry weights (FX quantizes them with the global qconfig unless an entry overrides it).
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, F.linear, F.conv1d, F.conv2d, F.conv3d)


# ---- the qconfig ------------------------------------------------------------------------------------------------
def qconfig_mapping(engine: str):
    """(QConfigMapping, one line saying which qconfig and why) for FX quantization on `engine`."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver, PerChannelMinMaxObserver

    if engine not in ENGINES:
        raise ConversionError(f"engine {engine!r} is not supported: choose one of {', '.join(ENGINES)}")
    mapping = get_default_qconfig_mapping(engine)
    if engine == "qnnpack":
        return mapping, ("qconfig: qnnpack's default (8-bit activations, 8-bit per-tensor weights): qnnpack sums "
                         "exactly on every CPU, so its bytes are the same everywhere")
    lo, hi = PORTABLE_WEIGHTS
    scheme = torch.per_channel_affine if engine == "x86" else torch.per_channel_symmetric
    qc = QConfig(activation=HistogramObserver.with_args(reduce_range=False),
                 weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=scheme, quant_min=lo,
                                                           quant_max=hi))
    old = mapping.global_qconfig
    mapping.set_global(qc)
    for key in list(mapping.object_type_qconfigs):
        if mapping.object_type_qconfigs[key] is old or key in WEIGHTED:
            mapping.set_object_type(key, qc)
    why = (f"qconfig: {engine}'s default, but 7-bit per-channel {'affine' if engine == 'x86' else 'symmetric'} "
           f"weights ({lo}..{hi}) and 8-bit activations: no pair of products can leave int16 (2*255*64 = 32640), "
           "so CPUs without VNNI give the same bytes (reduce_range on activations would not: inputs beyond the "
           "calibrated range reach code 255)")
    if engine == "x86":
        why += "; affine weights keep convolutions on fbgemm on every CPU (oneDNN takes symmetric ones on VNNI)"
    return mapping, why


# ReLU6 on qnnpack. torch's quantized relu6/hardtanh on qnnpack walk a channels-last tensor (what qnnpack's Conv2d
# returns) in the wrong element order, so uquant refuses them there (lower.py). A ReLU6 right after a Conv2d (+ its
# BatchNorm) is the same function as the conv fused with ReLU into an output range of exactly [0, 6] (scale 6/255,
# zero point 0: code 255 is 6.0, and anything above saturates to it), which torch computes correctly.
RELU6_RANGE = (6.0 / 255, 0)


def _is_relu6(gm, node) -> bool:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return isinstance(m, nn.ReLU6) or (type(m) is nn.Hardtanh and (m.min_val, m.max_val) == (0.0, 6.0))
    return node.op == "call_function" and node.target is F.relu6


def fold_relu6(model: nn.Module, mapping):
    """qnnpack: each ReLU6 module right after a Conv2d (or Conv2d -> BatchNorm2d) becomes a ReLU, and that chain
    gets a qconfig whose activation range is fixed to [0, 6] (see RELU6_RANGE). Returns (model, names of the
    ReLU6s replaced); the model is a traced copy when anything changed, `model` itself otherwise."""
    from torch.ao.quantization import QConfig
    from torch.ao.quantization.observer import FixedQParamsObserver

    try:
        gm = torch.fx.symbolic_trace(model).eval()
    except Exception:  # prepare_fx will say why it cannot trace
        return model, []
    scale, zero = RELU6_RANGE
    qconfig = QConfig(activation=FixedQParamsObserver.with_args(scale=scale, zero_point=zero, dtype=torch.quint8,
                                                                quant_min=0, quant_max=255),
                      weight=mapping.global_qconfig.weight)
    folded = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not _is_relu6(gm, node):
            continue
        chain, src = [node.target], node.args[0]
        if (isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1
                and isinstance(gm.get_submodule(src.target), nn.BatchNorm2d)):
            chain.append(src.target)
            src = src.args[0]
        if not (isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1
                and isinstance(gm.get_submodule(src.target), nn.Conv2d)):
            continue
        chain.append(src.target)
        parent, _, leaf = node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, leaf, nn.ReLU().eval())
        for name in chain:
            mapping.set_module_name(name, qconfig)
        folded.append(node.target)
    return (gm, folded) if folded else (model, [])


# ---- inputs -----------------------------------------------------------------------------------------------------
def load_float_model(path, *, model_class: str | None = None, allow_pickle: bool = False) -> nn.Module:
    """A float model from a file: TorchScript (traced), a pickled nn.Module (allow_pickle), or a state_dict with
    model_class ("file.py:Name", a class built without arguments)."""
    from .files import PICKLE_MAGIC, ZIP_MAGIC, text_kind
    from .loaders import PICKLE_HELP, _is_torchscript, check_archive

    path = Path(path)
    if path.is_dir():
        raise ConversionError(f"{path}: is a directory; pass the float model file")
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise ConversionError(f"{path}: is empty (0 bytes): not a readable torch file")
    if text_kind(data) is not None:
        raise ConversionError(f"{path}: is a text file, not a saved model: save the float model with "
                              "torch.jit.save(torch.jit.trace(model, x), path) or torch.save(model.state_dict(), "
                              "path) (with --class file.py:Name)")
    if not data.startswith(ZIP_MAGIC) and not data.startswith(PICKLE_MAGIC):
        raise ConversionError(f"{path}: not a readable torch file: neither a zip archive (torch.save, "
                              "torch.jit.save) nor a pickle (a legacy torch.save)")
    check_archive(path, data)
    if data.startswith(ZIP_MAGIC) and _is_torchscript(path):
        try:
            script = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise ConversionError(f"{path}: not a readable TorchScript file ({type(e).__name__}: {e})") from None
        if is_quantized(script):
            raise _already_quantized(path)
        if model_class:
            raise ConversionError(f"{path}: is a TorchScript file; --class is for a state_dict file")
        return from_torchscript(script, path.name)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Weights only" not in str(e):
            raise ConversionError(f"{path}: not a readable torch file ({e})") from None
        if not allow_pickle:
            raise ConversionError(f"{path}: {PICKLE_HELP}") from None
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        except Exception as e2:
            raise ConversionError(f"{path}: could not unpickle ({type(e2).__name__}: {e2})") from None
    except Exception as e:
        raise ConversionError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from None
    if isinstance(obj, nn.Module):
        if is_quantized(obj):
            raise _already_quantized(path)
        return obj.eval()
    if isinstance(obj, dict):
        if any(isinstance(v, torch.Tensor) and v.is_quantized for v in obj.values()) or any(
                isinstance(k, str) and (k.endswith("_packed_params") or (k.endswith("zero_point") and
                                        k[:-len("zero_point")] + "scale" in obj)) for k in obj):
            raise _already_quantized(path)
        if not model_class:
            raise ConversionError(f"{path}: holds a state_dict (weights only): name the model's class with --class "
                                  "file.py:Name (Python: pass the nn.Module itself)")
        model = build_class(model_class)
        try:
            model.load_state_dict(obj)
        except RuntimeError as e:
            first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)
            raise ConversionError(f"{path}: does not fit {model_class}: {first.strip()}") from None
        return model.eval()
    raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a model or a state_dict")


def _already_quantized(path) -> ConversionError:
    return ConversionError(f"{path}: is already quantized: convert it directly, `uquant convert {path}`")


def build_class(spec: str) -> nn.Module:
    """'file.py:Name' -> Name() from that file."""
    file, _, name = spec.rpartition(":")
    if not file or not name:
        raise ConversionError(f"--class takes file.py:ClassName, got {spec!r}")
    path = Path(file)
    if not path.is_file():
        raise ConversionError(f"--class {spec}: {path}: no such file")
    mod_name = f"_uquant_user_{path.stem}"
    spec_ = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[mod_name] = module
    try:
        spec_.loader.exec_module(module)
    except Exception as e:
        raise ConversionError(f"--class {spec}: importing {path} failed ({type(e).__name__}: {e})") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConversionError(f"--class {spec}: {path} defines no nn.Module class {name!r}")
    try:
        return cls()
    except TypeError as e:
        raise ConversionError(f"--class {spec}: {name}() needs arguments ({e}); give its arguments defaults, or "
                              "quantize in Python: uquant.quantize(model, data)") from None


def is_quantized(model) -> bool:
    """Has torch quantized (or prepared) this model already?"""
    if isinstance(model, torch.jit.ScriptModule):
        try:
            text = str(model.inlined_graph)
        except Exception:
            return False
        return "quantized::" in text or "aten::quantize_per" in text or "quantized_decomposed" in text
    from .loaders.pt2e import is_pt2e

    if isinstance(model, torch.fx.GraphModule) and is_pt2e(model):
        return True
    for m in model.modules():
        mod = type(m).__module__
        if mod.startswith(("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized")):
            return True
        if type(m).__name__.endswith(("Observer", "FakeQuantize")):
            return True
    return any(t.is_quantized for t in model.state_dict().values() if isinstance(t, torch.Tensor))


# TorchScript (traced) -> an FX graph of functional ops, which prepare_fx quantizes like a module's own.
def _conv(x, w, b, stride, padding, dilation, groups):
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.dim() - 2](x, w, b, stride, padding, dilation, groups)


_ATEN = {
    "linear": F.linear, "conv1d": F.conv1d, "conv2d": F.conv2d, "relu": F.relu, "relu_": F.relu,
    "relu6": F.relu6, "hardtanh": F.hardtanh, "hardtanh_": F.hardtanh, "max_pool1d": F.max_pool1d,
    "max_pool2d": F.max_pool2d, "avg_pool1d": F.avg_pool1d, "avg_pool2d": F.avg_pool2d,
    "adaptive_avg_pool1d": F.adaptive_avg_pool1d, "adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "flatten": torch.flatten, "reshape": torch.reshape, "view": torch.reshape, "cat": torch.cat,
    "mul": torch.mul, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "hardsigmoid": F.hardsigmoid,
    "hardswish": F.hardswish, "mean": torch.mean, "leaky_relu": F.leaky_relu, "unflatten": torch.unflatten,
}
_IDENTITY = {"dropout", "dropout_", "contiguous", "detach", "clone"}


def from_torchscript(script: torch.jit.ScriptModule, what: str = "the TorchScript module") -> nn.Module:
    """A float TorchScript module as an nn.Module FX quantization can trace (it cannot trace TorchScript): a
    scripted or traced nn.Sequential of torch.nn layers rebuilt as one, otherwise (traced) an FX GraphModule of
    torch's functional ops (F.linear, F.conv2d, ...) read from the graph, its weights as attributes."""
    rebuilt = _rebuild_sequential(script)
    if rebuilt is not None:
        return rebuilt
    graph = script.inlined_graph
    if any(n.kind() in ("prim::If", "prim::Loop") for n in graph.nodes()):
        raise ConversionError(f"{what}: a scripted forward() with control flow (if/loops): save the float model "
                              "with torch.jit.trace(model, x) instead, or its state_dict with --class file.py:Name")
    root = nn.Module()
    fx = torch.fx.Graph()
    env: dict = {}
    inputs = list(graph.inputs())
    env[inputs[0].unique()] = ("obj", script)
    if len(inputs) != 2:
        raise ConversionError(f"{what}: forward() takes {len(inputs) - 1} inputs; uquant quantizes models with one")
    env[inputs[1].unique()] = fx.placeholder("x")
    tensors: dict[int, torch.fx.Node] = {}

    def arg(v):
        kind, val = env[v.unique()] if isinstance(env.get(v.unique()), tuple) else ("fx", env[v.unique()])
        if kind == "obj":
            if isinstance(val, torch.Tensor):
                if id(val) not in tensors:
                    name = f"w{len(tensors)}"
                    root.register_buffer(name, val.detach().clone())
                    tensors[id(val)] = fx.get_attr(name)
                return tensors[id(val)]
            return val
        return val

    for node in graph.nodes():
        kind = node.kind()
        outs = list(node.outputs())
        if kind == "prim::Constant":
            env[outs[0].unique()] = ("obj", outs[0].toIValue())
        elif kind == "prim::GetAttr":
            src = env[node.input().unique()]
            env[outs[0].unique()] = ("obj", getattr(src[1], node.s("name")))
        elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            vals = [arg(v) for v in node.inputs()]
            static = all(not isinstance(v, torch.fx.Node) for v in vals)
            env[outs[0].unique()] = ("obj", vals) if static else vals
        elif kind.startswith("aten::"):
            op = kind[6:]
            args = [arg(v) for v in node.inputs()]
            if op in _IDENTITY:
                env[outs[0].unique()] = env[next(node.inputs()).unique()]
                continue
            if op == "_convolution":
                if args[6]:
                    raise ConversionError(f"{what}: a transposed convolution is not supported")
                out = fx.call_function(_conv, (args[0], args[1], args[2], args[3], args[4], args[5], args[8]))
            elif op in ("add", "add_", "sub"):
                if len(args) > 2 and args[2] != 1:
                    raise ConversionError(f"{what}: aten::{op} with alpha {args[2]} is not supported")
                out = fx.call_function(torch.add if op != "sub" else torch.sub, tuple(args[:2]))
            elif op == "size":
                out = fx.call_method("size", tuple(args))
            elif op == "Int":
                out = args[0]
            elif op in _ATEN:
                fn = _ATEN[op]
                if op == "mean":
                    args = args[:3]
                out = fx.call_function(fn, tuple(args))
            else:
                raise ConversionError(f"{what}: the float op aten::{op} is not one uquant quantize reads from "
                                      "TorchScript (linear, conv, relu, pooling, flatten/view, add, mul, cat, ...): "
                                      "pass the float model's state_dict with --class file.py:Name instead")
            env[outs[0].unique()] = out
        elif kind == "prim::NumToTensor":
            env[outs[0].unique()] = env[next(node.inputs()).unique()]
        else:
            raise ConversionError(f"{what}: TorchScript node {kind} is not supported: save the float model with "
                                  "torch.jit.trace(model, x), or its state_dict with --class file.py:Name")
    res = [arg(v) for v in graph.outputs()]
    fx.output(res[0] if len(res) == 1 else tuple(res))
    return torch.fx.GraphModule(root, fx).eval()


def _rebuild_sequential(script) -> nn.Module | None:
    """nn.Sequential(...) again from a scripted one (whose layers keep their hyperparameters as attributes), or
    None when it is not a Sequential of torch.nn layers whose arguments can all be read back."""
    import inspect

    if getattr(script, "original_name", "") != "Sequential":
        return None
    layers = []
    for _, child in script.named_children():
        cls = getattr(nn, getattr(child, "original_name", ""), None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or cls is nn.Sequential:
            return None
        kwargs = {}
        for name, par in list(inspect.signature(cls.__init__).parameters.items())[1:]:
            if par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD) or name in ("device", "dtype"):
                continue
            try:  # a traced layer keeps none of them: then the graph is read instead (never a default)
                value = getattr(child, name)
            except Exception:
                return None
            if name == "bias" and (value is None or isinstance(value, torch.Tensor)):
                value = value is not None
            if name == "inplace":
                value = False
            if isinstance(value, (torch.Tensor, torch.jit.ScriptModule)):
                return None
            kwargs[name] = value
        try:
            layer = cls(**kwargs)
            layer.load_state_dict(child.state_dict())
        except Exception:
            return None
        layers.append(layer)
    return nn.Sequential(*layers).eval()


def as_samples(data, input_shape=None, what: str = "the calibration data") -> torch.Tensor:
    """Calibration samples as a float32 batch: a tensor, an array, or a .npy/.csv file (one sample per row)."""
    if isinstance(data, (str, Path)):
        from .data import read_array

        x = read_array(data, "--data")
    else:
        x = np.asarray(data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data, np.float32)
        if x.size == 0 or not np.isfinite(x).all():
            raise ValueError(f"{what}: empty, or holds NaN or infinite values")
        if x.ndim == 1:
            x = x.reshape(1, -1)
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        n = int(np.prod(shape))
        if x.size % n:
            raise ValueError(f"{what}: {x.size} values do not make samples of shape {shape} ({n} values each)")
        x = x.reshape((-1,) + shape)
    return torch.from_numpy(np.ascontiguousarray(x, np.float32))


def as_labels(labels, n: int) -> np.ndarray:
    if isinstance(labels, (str, Path)):
        from .data import read_array

        y = read_array(labels, "--labels")
    else:
        y = np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels)
    y = y.reshape(-1)
    if y.size != n:
        raise ValueError(f"--labels: {y.size} labels for {n} samples")
    if not np.array_equal(y, np.round(y)):
        raise ValueError("--labels: class indices must be integers")
    return y.astype(np.int64)


# ---- quantizing -------------------------------------------------------------------------------------------------
@dataclass
class Quantized:
    """torch's quantized model, how it was made, and (with labels) its accuracy next to the float model's."""

    model: nn.Module  # the converted GraphModule (FX), or the PT2E program
    engine: str
    flow: str  # "fx" or "pt2e"
    example: torch.Tensor  # one calibration sample (batch of 1): for tracing and the conversion's self-check
    samples: torch.Tensor  # the calibration batch
    choice: str  # one line: which qconfig / quantizer, and why
    float_acc: float | None = None
    quant_acc: float | None = None
    agreement: float | None = None
    portability: list | None = field(default_factory=list)  # (step, why) platform-dependent (none expected)
    unchecked: str = ""  # why uquant could not check the portability (it cannot convert the model)
    n_labelled: int = 0

    @property
    def suffix(self) -> str:
        return ".pt2" if self.flow == "pt2e" else ".pt"

    def save(self, path) -> Path:
        """TorchScript (FX flow) or torch.export (.pt2, PT2E flow): what `uquant convert` reads."""
        path = Path(path)
        if self.flow == "pt2e" and path.suffix != ".pt2":
            raise ValueError(f"{path}: a PT2E program is saved with torch.export.save, whose files uquant reads as "
                             "*.pt2: name the output e.g. model_q.pt2")
        if self.flow == "fx" and path.suffix == ".pt2":
            raise ValueError(f"{path}: the FX flow writes TorchScript; *.pt2 is for --pt2e programs")
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            if self.flow == "pt2e":
                torch.export.save(torch.export.export(self.model, (self.example,)), str(path))
            else:
                torch.jit.save(self.script(), str(path))
        return path

    def convert(self, **kwargs):
        """uquant.convert of the quantized model (checked against torch on the calibration samples)."""
        from .api import convert, torch_engine

        with torch_engine(self.engine):
            return convert(self.script(), self.samples[:64], engine=self.engine, **kwargs)

    def script(self):
        """What `save` writes, in memory: the FX model traced to TorchScript (which uquant reads for every op FX
        makes, functional ones too), or the PT2E program itself."""
        if self.flow == "pt2e":
            return self.model
        from .api import torch_engine

        import warnings

        with torch_engine(self.engine), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # scales read as constants: they are
            return torch.jit.trace(self.model, self.example)

    def lines(self) -> list[str]:
        out = [self.choice]
        if self.float_acc is not None:
            out.append(f"accuracy: float {100 * self.float_acc:.2f} %, quantized {100 * self.quant_acc:.2f} % "
                       f"(top-1 on {self.n_labelled} labelled samples; the two agree on {100 * self.agreement:.2f} %)")
        if self.flow == "fx":
            if self.portability is None:
                out.append(f"portability not checked: uquant cannot convert the quantized model ({self.unchecked})")
            elif self.portability:
                steps = ", ".join(f"{s} ({w})" for s, w in self.portability[:3])
                out.append(f"platform-dependent after all: {steps}")
            else:
                out.append("portable: uquant's proof finds no step whose bytes depend on the CPU")
        return out


def quantize(float_model, calibration_data, engine: str = "x86", *, labels=None, input_shape=None,
             pt2e: bool = False, model_class: str | None = None, allow_pickle: bool = False) -> Quantized:
    """Post-training quantization by torch: FX graph mode with `engine`'s default qconfig made portable (see the
    module's docstring), or torchao's PT2E flow (pt2e=True). float_model: an nn.Module, or a file (TorchScript,
    a pickled module with allow_pickle, a state_dict with model_class="file.py:Name"). calibration_data: a
    tensor/array (a batch) or a .npy/.csv file (one sample per row, reshaped to input_shape). labels: class
    indices (or a file of them) to compare float and quantized top-1 accuracy."""
    if engine not in ENGINES:
        raise ConversionError(f"engine {engine!r} is not supported: choose one of {', '.join(ENGINES)}")
    if isinstance(float_model, (str, Path)):
        model = load_float_model(float_model, model_class=model_class, allow_pickle=allow_pickle)
    elif isinstance(float_model, torch.jit.ScriptModule):
        if is_quantized(float_model):
            raise ConversionError("the model is already quantized: convert it directly, uquant.convert(model)")
        model = from_torchscript(float_model)
    elif isinstance(float_model, nn.Module):
        if is_quantized(float_model):
            raise ConversionError("the model is already quantized: convert it directly, uquant.convert(model)")
        model = copy.deepcopy(float_model).eval()
    else:
        raise ConversionError(f"cannot quantize a {type(float_model).__name__}: pass a float nn.Module or a file")
    x = as_samples(calibration_data, input_shape)
    import contextlib

    try:  # (an FX GraphModule prints its own traceback to stderr when a call fails: the one line below says it)
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            y_float = model(x)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"the calibration samples (shape {tuple(x.shape[1:])} each) do not run through the float "
                         f"model ({type(e).__name__}: {msg}); give each sample's shape with --input-shape, e.g. "
                         "1,8,8 (Python: input_shape=)") from None
    y = as_labels(labels, len(x)) if labels is not None else None
    if pt2e:
        q = _pt2e(model, x, engine)
    else:
        q = _fx(model, x, engine)
    if y is not None:
        p_float = y_float.reshape(len(x), -1).argmax(1).numpy()
        p_quant = _predict(q, x)
        q.float_acc = float((p_float == y).mean())
        q.quant_acc = float((p_quant == y).mean())
        q.agreement = float((p_float == p_quant).mean())
        q.n_labelled = len(y)
    return q


def _fx(model: nn.Module, x: torch.Tensor, engine: str) -> Quantized:
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from .api import torch_engine

    mapping, why = qconfig_mapping(engine)
    if engine == "qnnpack":
        model, folded = fold_relu6(model, mapping)
        if folded:
            why += (f"; {len(folded)} ReLU6 after a Conv2d fused into it as ReLU with the output range fixed to "
                    "[0, 6] (torch's quantized relu6 is wrong on qnnpack's channels-last tensors; this is the same "
                    "function, computed correctly)")
    with torch_engine(engine), torch.no_grad():
        try:
            prepared = prepare_fx(model, mapping, (x[:1],))
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else ""
            raise ConversionError(f"torch's FX quantization cannot trace the model ({type(e).__name__}: {msg}); "
                                  "make its forward() traceable by torch.fx (no data-dependent control flow)") from None
        for i in range(0, len(x), 256):
            prepared(x[i:i + 256])
        qmodel = convert_fx(prepared)
    q = Quantized(qmodel, engine, "fx", x[:1], x, why)
    try:  # lowering proves, step by step, whether torch's bytes can depend on the CPU
        q.portability = q.convert().plan.platform_dependent
    except ConversionError as e:
        q.portability = None
        q.unchecked = str(e)
    return q


def _pt2e(model: nn.Module, x: torch.Tensor, engine: str) -> Quantized:
    import contextlib
    import logging

    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)  # a deprecation note torchao's import triggers in torch
    try:  # torchao prints, on import, every optional CUDA kernel library it cannot load: not the user's concern
        with contextlib.redirect_stderr(io.StringIO()):
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    except ImportError as e:
        raise ConversionError(f"--pt2e needs torchao (pip install torchao), which is not importable here ({e})") from None
    finally:
        pytree_log.setLevel(level)
    import warnings

    with warnings.catch_warnings():  # "XNNPACKQuantizer is deprecated!": it is the quantizer uquant's loader reads
        warnings.simplefilter("ignore", UserWarning)
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    with torch.no_grad():
        try:
            exported = torch.export.export(model, (x[:1],)).module()
            prepared = prepare_pt2e(exported, quantizer)
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else ""
            raise ConversionError(f"torch.export / prepare_pt2e failed on the model ({type(e).__name__}: {msg})") from None
        for i in range(len(x)):  # the exported program is specialised to a batch of one
            prepared(x[i:i + 1])
        program = convert_pt2e(prepared)
    why = ("quantizer: torchao's XNNPACKQuantizer, symmetric per-channel int8 weights, int8 activations (PT2E "
           "programs compute in float32, the same on every CPU; the device agrees with them within one code)")
    return Quantized(program, engine, "pt2e", x[:1], x, why)


def _predict(q: Quantized, x: torch.Tensor) -> np.ndarray:
    from .api import torch_engine

    out = []
    with torch_engine(q.engine), torch.no_grad():
        if q.flow == "pt2e":
            for i in range(len(x)):
                out.append(q.model(x[i:i + 1]).reshape(1, -1))
        else:
            for i in range(0, len(x), 256):
                y = q.model(x[i:i + 256])
                out.append((y.dequantize() if y.is_quantized else y).reshape(len(y), -1))
    return torch.cat(out).argmax(1).numpy()


# ---- the command ------------------------------------------------------------------------------------------------
def cmd_quantize(args) -> int:
    from .info import parse_shape

    shape = parse_shape(args.input_shape)
    out = Path(args.output or ("build/model_q.pt2" if args.pt2e else "build/model_q.pt"))
    if args.pt2e and out.suffix != ".pt2":
        raise ValueError(f"{out}: --pt2e writes a torch.export program, which uquant reads as *.pt2: e.g. -o "
                         f"{out.with_suffix('.pt2')}")
    if not args.pt2e and out.suffix == ".pt2":
        raise ValueError(f"{out}: the FX flow writes TorchScript (.pt); *.pt2 is for --pt2e")
    q = quantize(args.model, args.data, engine=args.engine, labels=args.labels, input_shape=shape, pt2e=args.pt2e,
                 model_class=args.model_class, allow_pickle=args.allow_pickle)
    q.save(out)
    print(f"{out}: {Path(args.model).name} quantized by torch ({'PT2E' if args.pt2e else 'FX graph mode'}, engine "
          f"{args.engine}), calibrated on {len(q.samples)} samples from {Path(args.data).name}")
    for line in q.lines():
        print(f"  {line}")
    if args.convert is None:
        print(f"  next: uquant convert {out} --engine {args.engine}"
              + (f" --input-shape {args.input_shape}" if args.input_shape else "") + f" -o {out.with_suffix('.py')}")
        return 0
    import argparse

    from .cli import cmd_convert

    module = Path(args.convert) if isinstance(args.convert, str) else out.with_suffix(".py")
    if module.suffix != ".py":
        raise ValueError(f"--convert {module}: the module to write must be a .py file")
    conv_args = argparse.Namespace(
        model=str(out), output=str(module), engine=args.engine, platform=args.platform, relu=None,
        allow_pickle=False, name=args.name, input_shape=args.input_shape, input_unit=args.input_unit,
        input_units=None, output_unit=args.output_unit, labels=args.class_names, raw_range=args.raw_range,
        data=str(args.data), board=getattr(args, "board", None), weights=None, weights_buffer=None)
    return cmd_convert(conv_args)


class _CallableModule(type(sys)):
    """`uquant.quantize(...)` is this function even once `uquant.quantize` the submodule is imported (importing a
    submodule binds its name on the package, over the lazily exported function)."""

    def __call__(self, *args, **kwargs):
        return quantize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
