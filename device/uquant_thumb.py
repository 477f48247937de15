# uquant_thumb: the asm_thumb kernel tier of uquant (ARM MicroPython: RP2040, RP2350, STM32, nRF...).
#
# A whole Linear layer per call, in Thumb-1 code only (ARMv6-M), so the same .mpy runs on Cortex-M0+ and on
# every larger Cortex-M. It computes exactly what uquant_rt.dense computes (the reference), per channel n:
#     acc = sum_k x[k] * W[n*K + k] - c * sx            (sx = sum of x[0:K])
#     a   = clamp(acc - c_lo, 0, Wn)
#     y   = (a * A + Dl) >> S                            (S < 30)
#     y   = the 15-bit limb form of uquant_rt.requant    (S >= 30)
#     y   = the exception's code if (n, a) is listed in E
#     out[n] = T[clip(y, lo, hi)]                        (or clip(y, lo, hi) without a table)
#
#     handle = prepare_dense(K, N, lo, hi, W, P, E, T)   # once, when the model is built (allocates)
#     dense(x, out, handle)                             # per inference: allocates nothing
#
# satfix (uquant_rt.satfix in asm) moves the c_lo words of channels with pairs that saturate on CPUs without
# VNNI, before dense() reads them: about 36 cycles per listed pair.
#
# x and out must be buffers (bytes, bytearray, array): an asm function receives a buffer as its data
# pointer, while a list would arrive as its array of object pointers. This module only imports on ARM
# MicroPython (the @micropython.asm_thumb emitter); elsewhere uquant_rt falls back to slower tiers.
#
# Speed (Cortex-M0+, loads 2 cycles): channels are done four at a time, so each x[k] is loaded once for four
# multiply-adds; the four accumulators live in r8-r11 and the loop is unrolled eight taps deep: 4.75 cycles per
# multiply-accumulate, plus ~80 cycles per output channel to requantize (~110 in the limb form).

import micropython
from micropython import const
from array import array

# The header (array 'i', one per layer) the kernel reads, by word index. Words 0-14 are set by
# prepare_dense; words 15-22 are the kernel's own working state (cursors), rewritten on every call.
_K = const(0)  # taps per channel
_N = const(1)  # channels
_LO = const(2)  # output clip
_HI = const(3)
_W = const(4)  # address of W (N rows of K bytes: weight + 128)
_P = const(5)  # address of P (7 words per channel: c, c_lo, Wn, A, Dh, Dl, S)
_E = const(6)  # address of E (exception triples: channel, a, code; sorted by channel then a)
_T = const(7)  # address of the 256-byte code table, or 0
_EEND = const(8)  # address just past the last exception triple
_K4 = const(9)  # K rounded down to a multiple of 4 (the unrolled part of one channel's dot product)
_KT = const(10)  # K % 4 (its tail)
_K8 = const(11)  # K rounded down to a multiple of 8 (the unrolled part for blocks of four channels)
_K8T = const(12)  # K % 8 (its tail)
_NB = const(13)  # N // 4: blocks of four channels
_NR = const(14)  # N % 4: channels left for the one-channel loop
_XB = const(15)  # working state: address of x
_SX = const(16)  # sum of x[0:K]
_WCUR = const(17)  # row of the next channel in W
_PCUR = const(18)  # words of the next channel in P
_ECUR = const(19)  # next exception triple
_OCUR = const(20)  # next output byte
_NCH = const(21)  # next channel number
_CNT = const(22)  # loop counter: blocks or single channels left
_HWORDS = const(23)

# Thumb-1 encodings the inline assembler has no mnemonic for (emitted with data(2, ...)).
_ADD_R8_R6 = const(0x44B0)  # add r8, r6   (ADD Rdn, Rm: high registers, flags unchanged)
_ADD_R9_R6 = const(0x44B1)  # add r9, r6
_ADD_R10_R6 = const(0x44B2)  # add r10, r6
_ADD_R11_R6 = const(0x44B3)  # add r11, r6
_LDRB_R6_R4_R6 = const(0x5DA6)  # ldrb r6, [r4, r6]   (register offset)


@micropython.asm_thumb
def _addr(r0):
    # The address of a buffer's data: an asm function receives a buffer argument as its data pointer.
    nop()


@micropython.asm_thumb
def _kernel(r0, r1, r2):
    # r0 = x, r1 = out, r2 = header (see above). Returns 0.
    # r8-r12 belong to the caller: save them (push takes low registers only on ARMv6-M).
    mov(r3, r8)
    mov(r4, r9)
    mov(r5, r10)
    mov(r6, r11)
    push({r3, r4, r5, r6})
    mov(r3, r12)
    push({r3})
    mov(r12, r2)  # r12 = header, for the whole call

    # Working state: cursors at the start of x, out, W, P and E; channel 0.
    str(r0, [r2, 4 * _XB])
    str(r1, [r2, 4 * _OCUR])
    ldr(r3, [r2, 4 * _W])
    str(r3, [r2, 4 * _WCUR])
    ldr(r3, [r2, 4 * _P])
    str(r3, [r2, 4 * _PCUR])
    ldr(r3, [r2, 4 * _E])
    str(r3, [r2, 4 * _ECUR])
    mov(r3, 0)
    str(r3, [r2, 4 * _NCH])

    # sx = sum x[0:K].  r0 = x cursor, r3 = x[k], r5 = sum, r6 = x + K4, r7 = x + K
    ldr(r6, [r2, 4 * _K4])
    add(r6, r6, r0)
    ldr(r7, [r2, 4 * _K])
    add(r7, r7, r0)
    mov(r5, 0)
    b(sx4_test)
    label(sx4)
    ldrb(r3, [r0, 0])
    add(r5, r5, r3)
    ldrb(r3, [r0, 1])
    add(r5, r5, r3)
    ldrb(r3, [r0, 2])
    add(r5, r5, r3)
    ldrb(r3, [r0, 3])
    add(r5, r5, r3)
    add(r0, 4)
    label(sx4_test)
    cmp(r0, r6)
    bcc(sx4)
    b(sx1_test)
    label(sx1)
    ldrb(r3, [r0, 0])
    add(r5, r5, r3)
    add(r0, 1)
    label(sx1_test)
    cmp(r0, r7)
    bcc(sx1)
    str(r5, [r2, 4 * _SX])
    ldr(r3, [r2, 4 * _NB])
    str(r3, [r2, 4 * _CNT])

    # ---- Blocks of four channels n..n+3 -------------------------------------------------------------
    label(blk_next)
    mov(r7, r12)  # r7 = header
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bpl(blk_go)
    b(blk_done)
    label(blk_go)
    str(r3, [r7, 4 * _CNT])
    # r0 = x cursor, r1-r4 = cursors in rows n..n+3 of W, r5 = x[k], r6 = product,
    # r7 = end of the unrolled part, r8-r11 = the four dot products
    ldr(r1, [r7, 4 * _WCUR])
    ldr(r6, [r7, 4 * _K])
    add(r2, r1, r6)
    add(r3, r2, r6)
    add(r4, r3, r6)
    ldr(r0, [r7, 4 * _XB])
    ldr(r7, [r7, 4 * _K8])
    add(r7, r7, r0)
    mov(r5, 0)
    mov(r8, r5)
    mov(r9, r5)
    mov(r10, r5)
    mov(r11, r5)
    b(q8_test)
    label(q8)  # eight taps of four channels: 32 multiply-adds, 40 loads; each group of 13 lines is one tap
    ldrb(r5, [r0, 0])  # x[k+0]
    ldrb(r6, [r1, 0])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 0])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 0])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 0])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    ldrb(r5, [r0, 1])  # x[k+1]
    ldrb(r6, [r1, 1])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 1])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 1])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 1])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    ldrb(r5, [r0, 2])  # x[k+2]
    ldrb(r6, [r1, 2])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 2])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 2])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 2])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    ldrb(r5, [r0, 3])  # x[k+3]
    ldrb(r6, [r1, 3])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 3])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 3])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 3])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    ldrb(r5, [r0, 4])  # x[k+4]
    ldrb(r6, [r1, 4])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 4])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 4])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 4])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    ldrb(r5, [r0, 5])  # x[k+5]
    ldrb(r6, [r1, 5])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 5])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 5])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 5])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    ldrb(r5, [r0, 6])  # x[k+6]
    ldrb(r6, [r1, 6])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 6])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 6])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 6])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    ldrb(r5, [r0, 7])  # x[k+7]
    ldrb(r6, [r1, 7])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 7])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 7])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 7])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    add(r0, 8)
    add(r1, 8)
    add(r2, 8)
    add(r3, 8)
    add(r4, 8)
    label(q8_test)
    cmp(r0, r7)
    bcc(q8)
    mov(r7, r12)  # tail: the last K % 8 taps, one at a time; r7 = end of x
    ldr(r7, [r7, 4 * _K8T])
    add(r7, r7, r0)
    b(q1_test)
    label(q1)
    ldrb(r5, [r0, 0])
    ldrb(r6, [r1, 0])
    mul(r6, r5)
    data(2, _ADD_R8_R6)
    ldrb(r6, [r2, 0])
    mul(r6, r5)
    data(2, _ADD_R9_R6)
    ldrb(r6, [r3, 0])
    mul(r6, r5)
    data(2, _ADD_R10_R6)
    ldrb(r6, [r4, 0])
    mul(r6, r5)
    data(2, _ADD_R11_R6)
    add(r0, 1)
    add(r1, 1)
    add(r2, 1)
    add(r3, 1)
    add(r4, 1)
    label(q1_test)
    cmp(r0, r7)
    bcc(q1)
    mov(r7, r12)
    str(r4, [r7, 4 * _WCUR])  # r4 is now at row n+4: the next block's first row
    mov(r0, r8)  # requantize and store the four channels (chan keeps r8-r11)
    bl(chan)
    mov(r0, r9)
    bl(chan)
    mov(r0, r10)
    bl(chan)
    mov(r0, r11)
    bl(chan)
    b(blk_next)
    label(blk_done)

    # ---- The N % 4 channels left, one at a time ------------------------------------------------------
    ldr(r3, [r7, 4 * _NR])  # r7 = header
    str(r3, [r7, 4 * _CNT])
    label(one_next)
    mov(r7, r12)
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bpl(one_go)
    b(finish)
    label(one_go)
    str(r3, [r7, 4 * _CNT])
    # r0 = x cursor, r1 = cursor in the row of W, r2 = dot product, r5 = x[k], r6 = product, r7 = end
    ldr(r1, [r7, 4 * _WCUR])
    ldr(r0, [r7, 4 * _XB])
    ldr(r7, [r7, 4 * _K4])
    add(r7, r7, r0)
    mov(r2, 0)
    b(s4_test)
    label(s4)
    ldrb(r5, [r0, 0])
    ldrb(r6, [r1, 0])
    mul(r6, r5)
    add(r2, r2, r6)
    ldrb(r5, [r0, 1])
    ldrb(r6, [r1, 1])
    mul(r6, r5)
    add(r2, r2, r6)
    ldrb(r5, [r0, 2])
    ldrb(r6, [r1, 2])
    mul(r6, r5)
    add(r2, r2, r6)
    ldrb(r5, [r0, 3])
    ldrb(r6, [r1, 3])
    mul(r6, r5)
    add(r2, r2, r6)
    add(r0, 4)
    add(r1, 4)
    label(s4_test)
    cmp(r0, r7)
    bcc(s4)
    mov(r7, r12)
    ldr(r7, [r7, 4 * _KT])
    add(r7, r7, r0)
    b(s1_test)
    label(s1)
    ldrb(r5, [r0, 0])
    ldrb(r6, [r1, 0])
    mul(r6, r5)
    add(r2, r2, r6)
    add(r0, 1)
    add(r1, 1)
    label(s1_test)
    cmp(r0, r7)
    bcc(s1)
    mov(r7, r12)
    str(r1, [r7, 4 * _WCUR])
    mov(r0, r2)
    bl(chan)
    b(one_next)

    # ---- Done: give back r8-r12, return 0 (a small int: no allocation) -------------------------------
    label(finish)
    pop({r3})
    mov(r12, r3)
    pop({r3, r4, r5, r6})
    mov(r8, r3)
    mov(r9, r4)
    mov(r10, r5)
    mov(r11, r6)
    mov(r0, 0)
    b(leave)

    # ---- chan: requantize one channel and store its output byte -------------------------------------
    # In: r0 = sum x*w of the channel at the cursors (P, E, out, channel number). Advances those cursors.
    # Uses r0-r7 and the stack; keeps r8-r12 (r12 = header). Returns with bx(lr).
    label(chan)
    mov(r7, r12)  # r7 = header
    ldr(r2, [r7, 4 * _PCUR])  # r2 = this channel's words in P
    ldr(r3, [r2, 0])  # c
    ldr(r4, [r7, 4 * _SX])
    mul(r3, r4)
    sub(r0, r0, r3)  # r0 = acc = sum x*w - c*sx
    ldr(r3, [r2, 4])  # c_lo
    sub(r0, r0, r3)  # r0 = a = acc - c_lo, clamped to [0, Wn]
    bge(ch_pos)
    mov(r0, 0)
    label(ch_pos)
    ldr(r3, [r2, 8])  # Wn
    cmp(r0, r3)
    ble(ch_in)
    mov(r0, r3)
    label(ch_in)
    ldr(r3, [r2, 12])  # r3 = A
    ldr(r4, [r2, 24])  # r4 = S
    ldr(r5, [r2, 20])  # r5 = Dl
    cmp(r4, 30)
    bge(ch_limbs)
    mov(r6, r0)  # direct form: r6 = y = (a*A + Dl) >> S
    mul(r6, r3)
    add(r6, r6, r5)
    asr(r6, r4)
    b(ch_exc)
    label(ch_limbs)
    # limb form, as uquant_rt.requant: (a*A + Dh*2**30 + Dl) >> S with 15-bit limbs, nothing over 2**30
    push({r0, r4})  # keep a and S
    lsl(r6, r0, 17)
    lsr(r6, r6, 17)  # r6 = al = a & 0x7FFF
    lsr(r0, r0, 15)  # r0 = ah = a >> 15
    lsl(r1, r3, 17)
    lsr(r1, r1, 17)  # r1 = Al = A & 0x7FFF
    asr(r3, r3, 15)  # r3 = Ah = A >> 15
    lsl(r7, r5, 17)
    lsr(r7, r7, 17)  # r7 = Dl & 0x7FFF
    asr(r5, r5, 15)  # r5 = Dl >> 15
    mov(r4, r6)
    mul(r4, r1)
    add(r7, r7, r4)  # r7 = lo = al*Al + (Dl & 0x7FFF)
    asr(r7, r7, 15)
    add(r7, r7, r5)  # r7 = (lo >> 15) + (Dl >> 15)
    mov(r4, r0)
    mul(r4, r1)
    add(r7, r7, r4)  # + ah*Al
    mov(r4, r6)
    mul(r4, r3)
    add(r7, r7, r4)  # + al*Ah: r7 = mid
    asr(r7, r7, 15)
    mul(r0, r3)
    add(r0, r0, r7)  # r0 = ah*Ah + (mid >> 15)
    ldr(r4, [r2, 16])
    add(r6, r0, r4)  # r6 = ah*Ah + Dh + (mid >> 15)
    pop({r0, r4})  # r0 = a, r4 = S
    sub(r4, 30)
    asr(r6, r4)  # r6 = y = (...) >> (S - 30)
    mov(r7, r12)
    label(ch_exc)
    # r0 = a, r6 = y, r7 = header. Exceptions: walk the triples of this channel (r1 = channel number,
    # r2 = cursor, r3 = end); one whose a matches gives y.
    add(r2, 28)
    str(r2, [r7, 4 * _PCUR])  # the next channel's words
    ldr(r1, [r7, 4 * _NCH])
    ldr(r2, [r7, 4 * _ECUR])
    ldr(r3, [r7, 4 * _EEND])
    b(ch_etest)
    label(ch_eloop)
    ldr(r4, [r2, 0])  # the triple's channel
    cmp(r4, r1)
    bgt(ch_edone)  # a later channel's: stop here
    blt(ch_enext)
    ldr(r4, [r2, 4])  # its a
    cmp(r4, r0)
    bne(ch_enext)
    ldr(r6, [r2, 8])  # y = its code
    label(ch_enext)
    add(r2, 12)
    label(ch_etest)
    cmp(r2, r3)
    bcc(ch_eloop)
    label(ch_edone)
    str(r2, [r7, 4 * _ECUR])
    add(r1, 1)
    str(r1, [r7, 4 * _NCH])
    ldr(r4, [r7, 4 * _LO])  # y = clip(y, lo, hi)
    cmp(r6, r4)
    bge(ch_lo_ok)
    mov(r6, r4)
    label(ch_lo_ok)
    ldr(r4, [r7, 4 * _HI])
    cmp(r6, r4)
    ble(ch_hi_ok)
    mov(r6, r4)
    label(ch_hi_ok)
    ldr(r4, [r7, 4 * _T])  # y = T[y] when there is a table
    cmp(r4, 0)
    beq(ch_store)
    data(2, _LDRB_R6_R4_R6)
    label(ch_store)
    ldr(r4, [r7, 4 * _OCUR])
    strb(r6, [r4, 0])
    add(r4, 1)
    str(r4, [r7, 4 * _OCUR])
    bx(lr)
    label(leave)


@micropython.asm_thumb
def _satfix(r0, r1):
    # uquant_rt.satfix: r0 = x, r1 = header (array 'i': K, then the addresses of W, P, S, len(S), the address
    # of B). For each channel listed in S (u16 n, count, taps k), c_lo = B[m] + what saturating each pair
    # (x[k]*w[k] + x[k+1]*w[k+1] beyond int16) takes off, stored in P[7n + 1]. Returns 0.
    mov(r2, r8)
    mov(r3, r9)
    mov(r4, r10)
    mov(r5, r11)
    push({r2, r3, r4, r5})
    mov(r2, r12)
    push({r2})
    mov(r9, r1)  # r9 = header
    ldr(r2, [r1, 12])  # r2 = cursor in S
    ldr(r3, [r1, 16])
    add(r3, r3, r2)
    mov(r8, r3)  # r8 = end of S
    ldr(r3, [r1, 20])
    mov(r10, r3)  # r10 = cursor in B
    label(chan)
    mov(r3, r8)
    cmp(r2, r3)
    bcs(done)
    ldrb(r1, [r2, 0])
    ldrb(r3, [r2, 1])
    lsl(r3, r3, 8)
    orr(r1, r3)  # r1 = n
    ldrb(r4, [r2, 2])
    ldrb(r3, [r2, 3])
    lsl(r3, r3, 8)
    orr(r4, r3)  # r4 = count
    add(r2, 4)
    add(r4, r4, r4)
    add(r4, r4, r2)
    mov(r11, r4)  # r11 = end of the channel's taps
    mov(r7, r9)
    ldr(r3, [r7, 0])
    mov(r4, r1)
    mul(r4, r3)
    ldr(r3, [r7, 4])
    add(r5, r3, r4)  # r5 = row n of W
    mov(r4, 28)
    mul(r4, r1)
    ldr(r3, [r7, 8])
    add(r3, r3, r4)
    add(r3, 4)
    mov(r12, r3)  # r12 = the channel's c_lo word, P[7n + 1]
    mov(r7, r10)
    ldr(r6, [r7, 0])  # r6 = its own c_lo, B[m]
    add(r7, 4)
    mov(r10, r7)
    b(tap_test)
    label(tap)
    ldrb(r1, [r2, 0])
    ldrb(r3, [r2, 1])
    lsl(r3, r3, 8)
    orr(r1, r3)  # r1 = k
    add(r2, 2)
    add(r3, r5, r1)  # r3 = &w[k] (offset binary)
    add(r1, r0, r1)  # r1 = &x[k]
    ldrb(r4, [r3, 0])
    sub(r4, 128)
    ldrb(r7, [r1, 0])
    mul(r4, r7)
    ldrb(r3, [r3, 1])
    sub(r3, 128)
    ldrb(r7, [r1, 1])
    mul(r3, r7)
    add(r4, r4, r3)  # r4 = the pair's exact sum
    asr(r3, r4, 15)
    add(r3, 1)
    cmp(r3, 1)
    bls(tap_test)  # sum >> 15 is 0 or -1: inside int16, nothing to move
    mov(r3, 1)
    lsl(r3, r3, 15)  # 32768
    cmp(r4, 0)
    blt(below)
    sub(r4, r4, r3)
    add(r4, 1)  # sum - 32767
    b(move)
    label(below)
    add(r4, r4, r3)  # sum + 32768
    label(move)
    add(r6, r6, r4)
    label(tap_test)
    mov(r3, r11)
    cmp(r2, r3)
    bcc(tap)
    mov(r3, r12)
    str(r6, [r3, 0])
    b(chan)
    label(done)
    pop({r2})
    mov(r12, r2)
    pop({r2, r3, r4, r5})
    mov(r8, r2)
    mov(r9, r3)
    mov(r10, r4)
    mov(r11, r5)
    mov(r0, 0)


def prepare_satfix(W, K, P, S, B):
    # Handle for satfix(): the arguments of uquant_rt.satfix after x (P and B arrays of 32-bit ints, checked there).
    if not isinstance(P, (array, bytearray)) or not isinstance(B, array) or len(S) % 2:
        raise ValueError("uquant_thumb.prepare_satfix: bad arguments")
    return (array("i", (K, _addr(W), _addr(P), _addr(S), len(S), _addr(B))), W, P, S, B)


def satfix(x, handle):
    # Move the c_lo words of the channels with saturating pairs for input codes x (a buffer). Allocates nothing.
    _satfix(x, handle[0])


def _words(v):
    # int32 words for the kernel to read: an array('i'), or little-endian bytes (uquant_rt.as_words) used in
    # place when word-aligned (ldr faults on an unaligned address; a frozen module's bytes may be unaligned).
    if v is None:
        return array("i")
    if isinstance(v, array):
        return v
    if not isinstance(v, (bytes, bytearray)):
        return array("i", v)  # a list or tuple of ints
    if len(v) % 4 == 0 and not _addr(v) & 3:
        return v
    return array("i", v)  # MicroPython copies bytes raw


def _word(v, i):
    # word i of _words(v), from Python
    if not isinstance(v, (bytes, bytearray)):
        return v[i]
    i <<= 2
    return (v[i + 3] ^ 128) - 128 << 24 | v[i + 2] << 16 | v[i + 1] << 8 | v[i]


def prepare_dense(K, N, lo, hi, W, P, E, T):
    # Once per layer, when the model is built: check the sizes and fill the header. The handle keeps W, P,
    # E and T alive, since the header only holds their addresses.
    P = _words(P)
    E = _words(E)
    nP = len(P) if isinstance(P, array) else len(P) >> 2
    nE = len(E) if isinstance(E, array) else len(E) >> 2
    if K < 1 or N < 1 or len(W) < K * N or nP < 7 * N or nE % 3 or not 0 <= lo <= hi <= 255:
        raise ValueError("uquant_thumb.prepare_dense: bad layer")
    if T is not None and len(T) != 256:
        raise ValueError("uquant_thumb.prepare_dense: the table must have 256 entries")
    last = 0
    for i in range(0, nE, 3):  # the kernel walks E once, channel after channel
        n = _word(E, i)
        if not last <= n < N:
            raise ValueError("uquant_thumb.prepare_dense: exceptions must be sorted by channel")
        last = n
    H = array("i", [0] * _HWORDS)
    H[_K] = K
    H[_N] = N
    H[_LO] = lo
    H[_HI] = hi
    H[_W] = _addr(W)
    H[_P] = _addr(P)
    H[_E] = _addr(E)
    H[_EEND] = H[_E] + 4 * nE
    H[_T] = 0 if T is None else _addr(T)
    H[_K4] = K - K % 4
    H[_KT] = K % 4
    H[_K8] = K - K % 8
    H[_K8T] = K % 8
    H[_NB] = N // 4
    H[_NR] = N % 4
    return (H, W, P, E, T)


def dense(x, out, handle):
    # out[0:N] = the layer's output codes for input codes x[0:K]. Allocates nothing.
    _kernel(x, out, handle[0])
