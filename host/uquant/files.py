"""What kind of file a path holds, read from its first bytes (no torch needed: the CLI's board verbs use it)."""
from __future__ import annotations

ZIP_MAGIC = b"PK\x03\x04"  # torch.save (since 1.6) and torch.jit.save write zip archives
PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and later (a legacy torch.save)
GENERATED_MARK = b"from uquant_rt import Model"  # every module uquant writes imports the runtime so


def text_kind(data: bytes) -> str | None:
    """"module" for a module uquant generated, "text" for another text file (Python source, CSV...), None for
    what may be a saved model (zip archives and pickles are binary)."""
    if data.startswith(ZIP_MAGIC) or data.startswith(PICKLE_MAGIC):
        return None
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "module" if GENERATED_MARK in data else "text"
