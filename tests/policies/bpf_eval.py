"""A small classic-BPF interpreter for seccomp programs, so verdicts can be unit-tested
without installing anything. Covers the instructions libseccomp and our prologue emit."""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_BIT = 0x40000000
M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Call:
    nr: int
    arch: int = AUDIT_ARCH_X86_64
    args: tuple[int, ...] = (0, 0, 0, 0, 0, 0)

    def data(self) -> bytes:
        args = tuple(self.args) + (0,) * (6 - len(self.args))
        return struct.pack("=iIQ6Q", self.nr, self.arch, 0, *args)


def _alu(op: int, a: int, src: int) -> int:
    if op == 0x00:
        return a + src
    if op == 0x10:
        return a - src
    if op == 0x20:
        return a * src
    if op == 0x40:
        return a | src
    if op == 0x50:
        return a & src
    if op == 0x60:
        return a << src
    if op == 0x70:
        return a >> src
    if op == 0x80:
        return -a
    if op == 0xA0:
        return a ^ src
    raise ValueError(f"ALU op {op:#x}")


@functools.lru_cache(maxsize=32)
def _decode(program: bytes) -> tuple[tuple[int, int, int, int], ...]:
    # Decoded once per program: tests sweep thousands of calls through the same one.
    return tuple(struct.iter_unpack("=HBBI", program))


def run(program: bytes, call: Call) -> int:
    """The 32-bit SECCOMP_RET_* value `program` returns for `call`."""
    insns = _decode(program)
    data = call.data()
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00:  # LD
            mode = code & 0xE0
            if mode == 0x20:  # ABS, W
                a = struct.unpack_from("=I", data, k)[0]
            elif mode == 0x00:  # IMM
                a = k
            elif mode == 0x60:  # MEM
                a = mem[k]
            else:
                raise ValueError(f"LD mode {code:#x}")
        elif cls == 0x01:  # LDX
            x = k if code & 0xE0 == 0x00 else mem[k]
        elif cls == 0x02:  # ST
            mem[k] = a
        elif cls == 0x03:  # STX
            mem[k] = x
        elif cls == 0x04:  # ALU
            src = x if code & 0x08 else k
            op = code & 0xF0
            a = _alu(code & 0xF0, a, src) & M32
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            src = x if code & 0x08 else k
            cond = {
                0x10: a == src,
                0x20: a > src,
                0x30: a >= src,
                0x40: (a & src) != 0,
            }[op]
            pc += jt if cond else jf
        elif cls == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:  # MISC
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
