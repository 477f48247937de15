"""A bare state_dict of a chain of quantized Linear layers -> IR (the form people print and post).

The layers are taken in the state_dict's order (module registration order). A state_dict holds no
forward(), so two things are assumed and checked: the layers form a chain, and whether each one had
a fused ReLU comes from the caller, because it changes the output whenever the zero point is above 0.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..ir import ConversionError, Graph
from .modules import linear_from_weight, qparams

PACKED = "._packed_params._packed_params"
RELU_HELP = ("pass relu='hidden' (a ReLU after every layer but the last; CLI: --relu hidden), relu='none', "
             "or the names of the layers that had one")


def _layer_prefixes(sd: Mapping) -> list[str]:
    return [k[: -len(PACKED)] for k in sd if isinstance(k, str) and k.endswith(PACKED)]


def _input_quantizer(sd: Mapping, first: str):
    """FX stores `<first layer>_input_scale_0`; eager stores a QuantStub's `<name>.scale`."""
    fx = [k for k in sd if isinstance(k, str) and k.endswith("_input_scale_0")]
    if fx:
        key = fx[0]
        zp = key.replace("_input_scale_0", "_input_zero_point_0")
        if zp not in sd:
            raise ConversionError(f"state_dict has {key} but no {zp}")
        return qparams(sd[key], sd[zp], torch.quint8, key), [key, zp]
    stubs = [k[: -len(".scale")] for k in sd if isinstance(k, str) and k.endswith(".scale")
             and k[: -len(".scale")] + PACKED not in sd and k[: -len(".scale")] + ".zero_point" in sd]
    if stubs:
        p = stubs[0]
        return qparams(sd[p + ".scale"], sd[p + ".zero_point"], torch.quint8, p), [p + ".scale", p + ".zero_point"]
    if all(_is_dynamic_layer(sd, p) for p in _layer_prefixes(sd)):
        raise ConversionError(f"state_dict of a dynamically quantized model (torch.ao.quantization.quantize_dynamic): "
                              f"layer '{first}' has packed qint8 weights but its output scale/zero point are the "
                              "placeholders 1.0/0 and nothing quantizes the input (activations stay float at run "
                              "time); uquant needs static quantization (prepare_fx/convert_fx or prepare/convert)")
    raise ConversionError(f"state_dict has no input quantizer (expected a key like '{first}_input_scale_0' "
                          "from FX or '<quant stub>.scale' from eager mode)")


def _is_dynamic_layer(sd: Mapping, p: str) -> bool:
    """quantize_dynamic's Linear stores scale 1.0 and zero point 0 (unused: its output is float)."""
    try:
        return float(sd.get(p + ".scale", 1.0)) == 1.0 and int(sd.get(p + ".zero_point", 0)) == 0
    except Exception:  # not numbers: not a dynamic layer either
        return False


def _not_converted(sd: Mapping) -> None:
    """A state_dict of a float, prepared (observers) or QAT (fake-quantize) model: say which, with a key."""
    keys = [k for k in sd if isinstance(k, str)]
    observers = [k for k in keys if "fake_quant" in k or "activation_post_process" in k]
    if observers:
        raise ConversionError(f"state_dict of a model that is prepared but not converted: it holds observer / "
                              f"fake-quantize entries such as '{observers[0]}'; run convert_fx (FX) or "
                              "torch.ao.quantization.convert (eager), then save the converted model's state_dict")
    floats = [k for k in keys if k.endswith(".weight") and isinstance(sd[k], torch.Tensor)
              and sd[k].is_floating_point()]
    if floats:
        raise ConversionError(f"state_dict of a float (unquantized) model: '{floats[0]}' is a float weight; quantize "
                              "the model (prepare_fx, calibrate, convert_fx) and save the converted model's state_dict")


def _relu_layers(relu, names: list[str]) -> set[str] | None:
    if relu is None:
        return None
    if relu in ("none", False):
        return set()
    if relu == "hidden":
        return set(names[:-1])
    if relu in ("all", True):
        return set(names)
    if isinstance(relu, str):
        relu = [r for r in relu.split(",") if r]
    if isinstance(relu, Sequence) or isinstance(relu, set):
        unknown = set(relu) - set(names)
        if unknown:
            raise ConversionError(f"relu names {sorted(unknown)} are not layers of this state_dict ({names})")
        return set(relu)
    raise ConversionError(f"relu={relu!r} not understood: {RELU_HELP}")


def from_state_dict(sd: Mapping, name: str, relu=None) -> Graph:
    prefixes = _layer_prefixes(sd)
    if not prefixes:
        _not_converted(sd)
        raise ConversionError("state_dict has no quantized Linear layers (no '<layer>._packed_params._packed_params' "
                              "keys); is the model quantized and converted?")
    inp, used = _input_quantizer(sd, prefixes[0])
    graph = Graph(name, inp)
    relus = _relu_layers(relu, prefixes)
    ambiguous = []
    for p in prefixes:
        used += [p + PACKED, p + ".scale", p + ".zero_point", p + "._packed_params.dtype"]
        for k in (p + ".scale", p + ".zero_point"):
            if k not in sd:
                raise ConversionError(f"state_dict lacks {k}")
        packed = sd[p + PACKED]
        if not (isinstance(packed, (tuple, list)) and len(packed) == 2):
            raise ConversionError(f"{p + PACKED}: expected (quantized weight, bias), found {type(packed).__name__}")
        out = qparams(sd[p + ".scale"], sd[p + ".zero_point"], torch.quint8, p)
        has_relu = bool(relus and p in relus)
        op = linear_from_weight(p, packed[0], packed[1], out, has_relu)
        if relus is None and out.zero_point > out.qmin:
            ambiguous.append(f"{p} (output zero point {out.zero_point})")
        if not graph.ops:
            graph.in_features = op.in_features
        graph.ops.append(op)
    if ambiguous:
        raise ConversionError("a state_dict does not record whether a layer had a fused ReLU, and for "
                              f"{', '.join(ambiguous)} it changes the result: {RELU_HELP}")
    extra = [k for k in sd if k not in used]
    if extra:
        raise ConversionError(f"state_dict has keys uquant cannot place in a chain of Linear layers: {extra[:6]}; "
                              "convert the model object or a TorchScript file instead")
    graph.validate()
    return graph
