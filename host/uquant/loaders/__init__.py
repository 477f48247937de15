"""Loaders: every accepted input (model object, FX/eager, TorchScript, state_dict file) -> an IR Graph."""
from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..ir import ConversionError, Graph
from .fx import from_module
from .state_dict import from_state_dict

PICKLE_HELP = ("it holds a pickled Python object (e.g. a whole model saved with torch.save(model)); "
               "unpickling runs code from the file, so uquant only does it with --allow-pickle "
               "(Python: allow_pickle=True) for files you trust. Safer: save model.state_dict(), or "
               "torch.jit.save(torch.jit.trace(model, x))")


def load(source, *, name: str | None = None, relu=None, allow_pickle: bool = False) -> Graph:
    """Read a quantized model (object, state_dict mapping, or file path) into the IR."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        return load_file(path, name=name or _name_from(path), relu=relu, allow_pickle=allow_pickle)
    name = name or "model"
    if isinstance(source, torch.jit.ScriptModule):
        from .torchscript import from_script_module
        return from_script_module(source, name)
    if isinstance(source, torch.nn.Module):
        return from_module(source, name)
    if isinstance(source, Mapping):
        return from_state_dict(source, name, relu=relu)
    raise ConversionError(f"cannot convert a {type(source).__name__}: pass a quantized nn.Module, a TorchScript "
                          "module, a state_dict, or a file path")


def _name_from(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c == "_" else "_" for c in path.stem)
    return stem or "model"


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names)


def load_file(path: Path, *, name: str, relu=None, allow_pickle: bool = False) -> Graph:
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if _is_torchscript(path):
        from .torchscript import from_script_module
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # a damaged archive can fail in many ways inside torch
            raise ConversionError(f"{path}: not a readable TorchScript file ({type(e).__name__}: {e})") from None
        return from_script_module(module, name)
    data = path.read_bytes()
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
    except Exception as e:  # truncated or corrupted files raise all sorts of errors inside torch.load
        raise ConversionError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from None
    if isinstance(obj, torch.nn.Module):
        return from_module(obj, name)
    if isinstance(obj, Mapping):
        return from_state_dict(obj, name, relu=relu)
    raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a model or state_dict")
