"""torch's own output codes for a model file, the reference `uquant verify` compares a board with.

A TorchScript file (or, with the explicit opt-in, a pickled module) is run as it is. A bare state_dict has no
forward(), so torch's quantized modules are rebuilt from it: Quantize, then Linear or LinearReLU per layer
(ReLUs as given by --relu), exactly what the state_dict's own model computed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from . import engines
from .plan import Plan


def state_dict_chain(sd: Mapping, relu) -> torch.nn.Module:
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    from .loaders.state_dict import PACKED, _input_quantizer, _layer_prefixes, _relu_layers

    prefixes = _layer_prefixes(sd)
    (inp, _) = _input_quantizer(sd, prefixes[0])
    relus = _relu_layers(relu, prefixes) or set()
    layers = [nnq.Quantize(inp.scale, inp.zero_point, torch.quint8)]
    for p in prefixes:
        w, b = sd[p + PACKED]
        layer = (nniq.LinearReLU if p in relus else nnq.Linear)(w.shape[1], w.shape[0])
        layer.set_weight_bias(w, None if b is None else b.detach())
        layer.scale, layer.zero_point = float(sd[p + ".scale"]), int(sd[p + ".zero_point"])
        layers.append(layer)
    return torch.nn.Sequential(*layers).eval()


def load_torch_model(path: Path, *, relu=None, allow_pickle: bool = False) -> torch.nn.Module:
    from .loaders import _is_torchscript

    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu").eval()
    obj = torch.load(str(path), map_location="cpu", weights_only=not allow_pickle)
    if isinstance(obj, Mapping):
        return state_dict_chain(obj, relu)
    return obj.eval()


def torch_codes_fn(model: torch.nn.Module, plan: Plan) -> Callable[[np.ndarray], np.ndarray]:
    """codes (batch, n_in) -> torch's final output codes (batch, n_out), one sample per call as on the board.

    The codes go in as their exact float values, which torch's input quantizer maps back to the same codes;
    a float output is quantized back with the output's scale (exact for a dequantized code).
    """
    qi, qo = plan.input, plan.output

    def run(codes: np.ndarray) -> np.ndarray:
        x = engines.dequantize(np.asarray(codes, np.int64), qi.scale, qi.zero_point).astype(np.float32)
        x = torch.from_numpy(x).reshape((-1,) + tuple(plan.input_shape))
        rows = []
        with torch.no_grad():
            for i in range(len(x)):
                y = model(x[i:i + 1])
                y = y.int_repr().numpy() if y.is_quantized else engines.quantize(
                    y.float().numpy(), qo.scale, qo.zero_point, qo.dtype)
                rows.append(np.asarray(y, np.int64).reshape(-1))
        return np.array(rows)

    return run
