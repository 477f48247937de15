"""Loaders: every accepted input (model object, FX/eager, TorchScript, state_dict file) -> an IR Graph."""
from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..files import PICKLE_MAGIC, ZIP_MAGIC, text_kind
from ..ir import ConversionError, Graph
from .fx import from_module
from .state_dict import from_state_dict

PICKLE_HELP = ("it holds a pickled Python object (e.g. a whole model saved with torch.save(model)); "
               "unpickling runs code from the file, so uquant only does it with --allow-pickle "
               "(Python: allow_pickle=True) for files you trust. Safer: save model.state_dict(), or "
               "torch.jit.save(torch.jit.trace(model, x))")


def load(source, *, name: str | None = None, relu=None, allow_pickle: bool = False, input_shape=None) -> Graph:
    """Read a quantized model (object, state_dict mapping, or file path) into the IR. input_shape: one sample's
    shape where known (an LSTM is unrolled over its time steps while loading)."""
    if isinstance(source, (str, Path)) and Path(source).suffix == ".pt2":  # torch.export.save of a PT2E program
        from .pt2e import from_pt2e
        return from_pt2e(_export_load(Path(source)), name or _name_from(Path(source)))
    if isinstance(source, (str, Path)):
        path = Path(source)
        return load_file(path, name=name or _name_from(path), relu=relu, allow_pickle=allow_pickle,
                         input_shape=input_shape)
    name = name or "model"
    if isinstance(source, torch.jit.ScriptModule):
        from .torchscript import from_script_module
        return from_script_module(source, name)
    from .pt2e import from_pt2e, is_pt2e
    if isinstance(source, torch.export.ExportedProgram) or (isinstance(source, torch.nn.Module) and is_pt2e(source)):
        return from_pt2e(source, name)
    if isinstance(source, torch.nn.Module):
        return from_module(source, name, input_shape)
    if isinstance(source, Mapping):
        return from_state_dict(source, name, relu=relu)
    raise ConversionError(f"cannot convert a {type(source).__name__}: pass a quantized nn.Module, a TorchScript "
                          "module, a state_dict, or a file path")


def _export_load(path: Path):
    """torch.export.load of a .pt2 file, after the same whole-file checks as every other archive."""
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    check_archive(path, path.read_bytes())
    try:
        return torch.export.load(str(path))
    except Exception as e:  # a damaged or foreign archive fails in many ways inside torch.export
        raise ConversionError(f"{path}: not a readable torch.export (.pt2) file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _name_from(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c == "_" else "_" for c in path.stem)
    return stem or "model"




def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception:  # not a zip, or a damaged one (zipfile raises many kinds of errors on those)
        return False
    return any("/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names)


def check_archive(path: Path, data: bytes) -> None:
    """A zip archive (torch.save / torch.jit.save) must be whole: every record's CRC-32 is checked here,
    because torch.load does not check them and reads a flipped bit as a different weight or scale.

    Archives written with torch.serialization.set_crc32_options(False) store no CRCs (all 0): nothing to check.
    Legacy (non-zip) files carry no checksum at all.
    """
    if not data.startswith(ZIP_MAGIC):
        return
    kind = "torch file"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            if any("/code/" in i.filename or i.filename.endswith("constants.pkl") for i in infos):
                kind = "TorchScript file"
            if not any(i.CRC for i in infos if i.file_size):
                return
            bad = z.testzip()
    except Exception as e:  # truncated or damaged: the directory or a header does not parse
        raise ConversionError(f"{path}: not a readable {kind}: its zip archive is damaged or truncated "
                              f"({type(e).__name__}: {e}); save or copy the file again") from None
    if bad is not None:
        raise ConversionError(f"{path}: not a readable {kind}: corrupted, the CRC-32 of its record '{bad}' does not "
                              "match its contents; save or copy the file again")
    _check_storages(path, kind, data)


# bytes per element of the storage types torch's pickles name (an unknown one is not checked)
_STORAGE_BYTES = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                  "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                  "QInt8Storage": 1, "QUInt8Storage": 1, "QInt32Storage": 4, "UntypedStorage": 1}


class _Inert:
    """Stands for every object a probed pickle builds: nothing from the file is imported or run."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


class _StorageProbe(pickle.Unpickler):
    """Reads a torch pickle only to list the tensor storages it refers to: (type name, record key, elements)."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.storages: list[tuple[str, str, int]] = []

    def find_class(self, module, name):
        return type(name, (_Inert,), {})

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            self.storages.append((getattr(pid[1], "__name__", ""), str(pid[2]), pid[4]))
        return _Inert()


def _check_storages(path: Path, kind: str, data: bytes) -> None:
    """Every tensor storage a torch archive's pickles refer to must be a record at least as long as the tensor
    needs: torch.jit.load of an archive whose storage record is short crashes the process (segmentation fault,
    torch 2.13), so a crafted or inconsistent file is refused here instead."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        sizes = {i.filename: i.file_size for i in z.infolist()}
        for pkl, folder in (("data.pkl", "data"), ("constants.pkl", "constants")):
            records = [n for n in sizes if n.endswith("/" + pkl) and n.count("/") == 1]
            for rec in records:
                probe = _StorageProbe(z.read(rec))
                try:
                    probe.load()
                except Exception as e:  # not a pickle torch wrote
                    raise ConversionError(f"{path}: not a readable {kind}: its record '{rec}' does not parse "
                                          f"({type(e).__name__}: {e})") from None
                prefix = rec[: -len(pkl)]
                for type_name, key, numel in probe.storages:
                    name = f"{prefix}{folder}/{key}"
                    need = _STORAGE_BYTES.get(type_name, 0) * numel if isinstance(numel, int) else 0
                    if name not in sizes:
                        raise ConversionError(f"{path}: not a readable {kind}: it refers to a tensor record '{name}' "
                                              "that it does not hold")
                    if sizes[name] < need:
                        raise ConversionError(f"{path}: not a readable {kind}: record '{name}' holds "
                                              f"{sizes[name]} bytes, its tensor needs {need}")


def _missing_global(message: str) -> str | None:
    """The global a weights-only load refused, if it cannot exist: a name cut short in a damaged file (only
    modules already imported are looked at; nothing is imported for the file)."""
    import re
    import sys

    m = re.search(r"GLOBAL ([\w.]+)", message)
    if not m or "." not in m.group(1):
        return None
    module, _, attr = m.group(1).rpartition(".")
    if module in sys.modules and not hasattr(sys.modules[module], attr):
        return m.group(1)
    return None


def load_file(path: Path, *, name: str, relu=None, allow_pickle: bool = False, input_shape=None) -> Graph:
    if path.is_dir():
        raise ConversionError(f"{path}: is a directory; pass the model file (TorchScript, state_dict, .pt2)")
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConversionError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if not data:
        raise ConversionError(f"{path}: is empty (0 bytes): not a readable torch file; save or copy it again")
    kind = text_kind(data)
    if kind == "module":
        raise ConversionError(f"{path}: is a module uquant generated (the board's side), not a torch model: pass "
                              "the model file it was converted from; `uquant run` runs the module itself")
    if kind == "text":
        raise ConversionError(f"{path}: is a text file (Python source?), not a saved model: save the quantized "
                              "model with torch.jit.save(torch.jit.trace(model, x), path) or "
                              "torch.save(model.state_dict(), path), or convert it in Python: uquant.convert(model)")
    if not data.startswith(ZIP_MAGIC) and not data.startswith(PICKLE_MAGIC):
        raise ConversionError(f"{path}: not a readable torch file: neither a zip archive (torch.save, torch.jit.save) "
                              "nor a pickle (a legacy torch.save)")
    check_archive(path, data)
    if _is_torchscript(path):
        from .torchscript import from_script_module
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # a damaged archive can fail in many ways inside torch
            raise ConversionError(f"{path}: not a readable TorchScript file ({type(e).__name__}: {e})") from None
        return from_script_module(module, name)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Weights only" not in str(e):
            raise ConversionError(f"{path}: not a readable torch file ({e})") from None
        missing = _missing_global(str(e))
        if missing and missing.startswith("__main__."):
            raise ConversionError(f"{path}: it holds a pickled {missing}, a class defined in the script that saved "
                                  "it, which is not importable here: save the model with "
                                  "torch.jit.save(torch.jit.trace(model, x), path) or its state_dict, or convert it "
                                  "in that script: uquant.convert(model)") from None
        if missing:
            raise ConversionError(f"{path}: not a readable torch file: damaged or truncated (it names "
                                  f"'{missing}', which does not exist)") from None
        if not allow_pickle:
            raise ConversionError(f"{path}: {PICKLE_HELP}") from None
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        except Exception as e2:
            raise ConversionError(f"{path}: could not unpickle ({type(e2).__name__}: {e2})") from None
    except Exception as e:  # truncated or corrupted files raise all sorts of errors inside torch.load
        raise ConversionError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from None
    if isinstance(obj, torch.nn.Module):
        return from_module(obj, name, input_shape)
    if isinstance(obj, Mapping):
        return from_state_dict(obj, name, relu=relu)
    raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a model or state_dict")
