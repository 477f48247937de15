# uquant_thumb: the asm_thumb kernel tier of uquant (ARM MicroPython: RP2040, RP2350, STM32, nRF...).
#
# A whole Linear layer per call, in Thumb-1 code only (ARMv6-M), so the same .mpy runs on Cortex-M0+ and on
# every larger Cortex-M. It computes exactly what uquant_rt.dense computes (the reference), per channel n:
#     acc = sum_k x[k] * W[n*K + k] - c * sx            (sx = sum of x[0:K])
#     a   = clamp(acc - c_lo, 0, Wn)
#     y   = (a * A + Dl) >> S                            (S < 30)
#     y   = (a * A + Dh * 2**30 + Dl) >> S               (S >= 30: a 64-bit product from 16-bit limbs)
#     y   = the exception's code if (n, a) is listed in E (the first such triple)
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
# Speed (Cortex-M0+: loads 2 cycles, LDM 1+N, MULS 1): the weights are read a word at a time in the layout
# of uquant_rt.thumb_index (bytes of several channels at one tap per word). A word masked with 0x00FF00FF holds
# two channels' weights in 16-bit lanes, so one MULS by x[k] gives two exact products (each < 2**16); the
# packed sums wrap, but each upper lane is also summed alone, which gives both exactly. Channels go six at a
# time when K is even (then blocks of four, then single rows as in W), so x[k] is loaded once per six
# multiply-adds: 3.56 cycles per multiply-accumulate in the unrolled loop (3.75 in blocks of four), plus
# 75-100 cycles per output channel for requantization, exceptions and block bookkeeping (the bench MLP's
# channels use the limb form): 4.20 kernel cycles per MAC over the bench's 64-256-256-10 MLP.

import micropython
from micropython import const
from array import array

# The header (array 'i', one per layer) the kernel reads, by word index. Words 0-12 and 21-24 are set by
# prepare_dense; words 13-20 are the kernel's own working state (cursors), rewritten on every call.
_LO = const(0)  # output clip: y - lo is kept within [0, RANGE] (LO, RANGE and TL are read together)
_RANGE = const(1)  # hi - lo
_TL = const(2)  # address of T[lo] (T: the code table, or the identity)
_K = const(3)  # taps per channel
_N = const(4)  # channels
_W = const(5)  # address of the weights in the kernel's order (uquant_rt.thumb_index)
_P = const(6)  # address of P (7 words per channel: c, c_lo, Wn, A, Dh, Dl, S)
_E = const(7)  # address of the exceptions: triples (key, a, code), key = address just past the channel's P words
_K8 = const(8)  # K rounded down to a multiple of 8 (the unrolled part of the blocks' dot products)
_K8T = const(9)  # K % 8 (its tail)
_NB = const(10)  # blocks of four channels (after the blocks of six)
_NR = const(11)  # channels left for the one-channel loop
_MASK = const(12)  # 0x00FF00FF
_XB = const(13)  # working state: address of x
_SX = const(14)  # sum of x[0:K]
_WCUR = const(15)  # next weights to read
_PCUR = const(16)  # words of the next channel in P
_OCUR = const(17)  # next output byte
_ECUR = const(18)  # next exception triple
_NEXTP = const(19)  # its key (0 when there is none left)
_CNT = const(20)  # loop counter: blocks or single channels left
_K4 = const(21)  # K rounded down to a multiple of 4 (the unrolled part of one channel's dot product)
_KT = const(22)  # K % 4 (its tail)
_NB6 = const(23)  # blocks of six channels (K even only), then _NB blocks of four, then _NR single channels
_K2E = const(24)  # K rounded down to a multiple of 2 (K itself: blocks of six are for even K)
_HWORDS = const(25)

# Thumb-1 encodings the inline assembler has no mnemonic for (emitted with data(2, ...)).
_ADD_R8_R5 = const(0x44A8)  # add r8, r5   (ADD Rdn, Rm: high registers, flags unchanged)
_ADD_R8_R6 = const(0x44B0)  # add r8, r6
_ADD_R9_R7 = const(0x44B9)  # add r9, r7
_ADD_R10_R5 = const(0x44AA)  # add r10, r5
_ADD_R10_R6 = const(0x44B2)  # add r10, r6
_ADD_R11_R7 = const(0x44BB)  # add r11, r7
_LDM_R1_R5_R6 = const(0xC960)  # ldm r1!, {r5, r6}
_LDM_R1_R5 = const(0xC920)  # ldm r1!, {r5}
_LDM_R1_R2_R5_R6 = const(0xC964)  # ldm r1!, {r2, r5, r6}
_ADD_R12_R2 = const(0x4494)  # add r12, r2
_ADD_LR_R2 = const(0x4496)  # add lr, r2
_ADD_R12_R5 = const(0x44AC)  # add r12, r5
_ADD_LR_R5 = const(0x44AE)  # add lr, r5
_MOV_LR_R4 = const(0x46A6)  # mov lr, r4
_MOV_R5_LR = const(0x4675)  # mov r5, lr
_LDR_R7_SP0 = const(0x9F00)  # ldr r7, [sp, 0]
_LDR_R7_SP4 = const(0x9F01)  # ldr r7, [sp, 4]
_LDM_R7_R1_R3 = const(0xCF0E)  # ldm r7!, {r1, r2, r3}
_LDM_R7_R3_R6 = const(0xCF78)  # ldm r7!, {r3, r4, r5, r6}
_LDM_R6_R4_R5 = const(0xCE30)  # ldm r6!, {r4, r5}
_LDRB_R3_R4_R3 = const(0x5CE3)  # ldrb r3, [r4, r3]
_CMP_R8_R11 = const(0x45D8)  # cmp r8, r11
_UXTH_R2_R0 = const(0xB282)  # uxth r2, r0
_UXTH_R3_R3 = const(0xB29B)  # uxth r3, r3
_UXTH_R5_R0 = const(0xB285)  # uxth r5, r0
_ADCS_R1_R5 = const(0x4169)  # adcs r1, r5
_ADCS_R1_R7 = const(0x4179)  # adcs r1, r7

_IDENTITY = bytes(range(256))  # the code table of layers without one


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

    # Working state: cursors at the start of x, out, W, P and the exceptions.
    str(r0, [r2, 4 * _XB])
    str(r1, [r2, 4 * _OCUR])
    ldr(r3, [r2, 4 * _W])
    str(r3, [r2, 4 * _WCUR])
    ldr(r3, [r2, 4 * _P])
    str(r3, [r2, 4 * _PCUR])
    ldr(r3, [r2, 4 * _E])
    str(r3, [r2, 4 * _ECUR])
    ldr(r3, [r3, 0])
    str(r3, [r2, 4 * _NEXTP])

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
    ldr(r3, [r2, 4 * _NB6])
    str(r3, [r2, 4 * _CNT])

    # ---- Blocks of six channels a..f = n..n+5 -------------------------------------------------------
    # Per pair of taps k, k+1 three words: e[k] | e[k+1] << 8 | f[k] << 16 | f[k+1] << 24, then a-d of tap k,
    # then a-d of tap k+1 (as in the blocks of four below). Masked, the first word gives the lanes e, f of
    # tap k; shifted right by 8 and masked, those of tap k+1. Six accumulators: r8-r11 as below, r12 = sum(e) +
    # sum(f) << 16 and lr = sum(f); x[k] is loaded once for six channels. The header and the loop ends go on
    # the stack: [sp] = end of the unrolled part of x, [sp+4] = end of its pairs, [sp+8] = header.
    label(b6_next)
    mov(r7, r12)  # r7 = header
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bpl(b6_go)
    b(b6_done)
    label(b6_go)
    str(r3, [r7, 4 * _CNT])
    # r0 = x cursor, r1 = weight cursor, r2 = e, f word, r3 = mask, r4 = x[k], r5, r6 = a-d words, r7 = temp
    ldr(r1, [r7, 4 * _WCUR])
    ldr(r0, [r7, 4 * _XB])
    ldr(r2, [r7, 4 * _K8])
    add(r2, r2, r0)
    ldr(r3, [r7, 4 * _K2E])
    add(r3, r3, r0)
    push({r2, r3, r7})
    ldr(r3, [r7, 4 * _MASK])
    mov(r4, 0)
    mov(r8, r4)
    mov(r9, r4)
    mov(r10, r4)
    mov(r11, r4)
    mov(r12, r4)
    data(2, _MOV_LR_R4)
    b(p8_test)
    label(p8)  # eight taps of six channels: 48 multiply-adds in 24 MULs
    data(2, _LDM_R1_R2_R5_R6)  # taps k+0, k+1: e, f; a-d; a-d
    ldrb(r4, [r0, 0])  # x[k+0]
    lsr(r7, r5, 8)
    and_(r7, r3)
    and_(r5, r3)
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    lsr(r5, r2, 8)  # e, f of tap k+1, kept for later
    and_(r2, r3)  # e, f of tap k+0
    mul(r2, r4)
    data(2, _ADD_R12_R2)
    lsr(r2, r2, 16)
    data(2, _ADD_LR_R2)
    ldrb(r4, [r0, 1])  # x[k+1]
    lsr(r7, r6, 8)
    and_(r7, r3)
    and_(r6, r3)
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    and_(r5, r3)
    mul(r5, r4)
    data(2, _ADD_R12_R5)
    lsr(r5, r5, 16)
    data(2, _ADD_LR_R5)
    data(2, _LDM_R1_R2_R5_R6)  # taps k+2, k+3: e, f; a-d; a-d
    ldrb(r4, [r0, 2])  # x[k+2]
    lsr(r7, r5, 8)
    and_(r7, r3)
    and_(r5, r3)
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    lsr(r5, r2, 8)  # e, f of tap k+3, kept for later
    and_(r2, r3)  # e, f of tap k+2
    mul(r2, r4)
    data(2, _ADD_R12_R2)
    lsr(r2, r2, 16)
    data(2, _ADD_LR_R2)
    ldrb(r4, [r0, 3])  # x[k+3]
    lsr(r7, r6, 8)
    and_(r7, r3)
    and_(r6, r3)
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    and_(r5, r3)
    mul(r5, r4)
    data(2, _ADD_R12_R5)
    lsr(r5, r5, 16)
    data(2, _ADD_LR_R5)
    data(2, _LDM_R1_R2_R5_R6)  # taps k+4, k+5: e, f; a-d; a-d
    ldrb(r4, [r0, 4])  # x[k+4]
    lsr(r7, r5, 8)
    and_(r7, r3)
    and_(r5, r3)
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    lsr(r5, r2, 8)  # e, f of tap k+5, kept for later
    and_(r2, r3)  # e, f of tap k+4
    mul(r2, r4)
    data(2, _ADD_R12_R2)
    lsr(r2, r2, 16)
    data(2, _ADD_LR_R2)
    ldrb(r4, [r0, 5])  # x[k+5]
    lsr(r7, r6, 8)
    and_(r7, r3)
    and_(r6, r3)
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    and_(r5, r3)
    mul(r5, r4)
    data(2, _ADD_R12_R5)
    lsr(r5, r5, 16)
    data(2, _ADD_LR_R5)
    data(2, _LDM_R1_R2_R5_R6)  # taps k+6, k+7: e, f; a-d; a-d
    ldrb(r4, [r0, 6])  # x[k+6]
    lsr(r7, r5, 8)
    and_(r7, r3)
    and_(r5, r3)
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    lsr(r5, r2, 8)  # e, f of tap k+7, kept for later
    and_(r2, r3)  # e, f of tap k+6
    mul(r2, r4)
    data(2, _ADD_R12_R2)
    lsr(r2, r2, 16)
    data(2, _ADD_LR_R2)
    ldrb(r4, [r0, 7])  # x[k+7]
    lsr(r7, r6, 8)
    and_(r7, r3)
    and_(r6, r3)
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    and_(r5, r3)
    mul(r5, r4)
    data(2, _ADD_R12_R5)
    lsr(r5, r5, 16)
    data(2, _ADD_LR_R5)
    add(r0, 8)
    label(p8_test)
    data(2, _LDR_R7_SP0)
    cmp(r0, r7)
    bcs(p2_test)
    b(p8)
    label(p2)  # the pairs left
    data(2, _LDM_R1_R2_R5_R6)  # taps k+0, k+1: e, f; a-d; a-d
    ldrb(r4, [r0, 0])  # x[k+0]
    lsr(r7, r5, 8)
    and_(r7, r3)
    and_(r5, r3)
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    lsr(r5, r2, 8)  # e, f of tap k+1, kept for later
    and_(r2, r3)  # e, f of tap k+0
    mul(r2, r4)
    data(2, _ADD_R12_R2)
    lsr(r2, r2, 16)
    data(2, _ADD_LR_R2)
    ldrb(r4, [r0, 1])  # x[k+1]
    lsr(r7, r6, 8)
    and_(r7, r3)
    and_(r6, r3)
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    and_(r5, r3)
    mul(r5, r4)
    data(2, _ADD_R12_R5)
    lsr(r5, r5, 16)
    data(2, _ADD_LR_R5)
    add(r0, 2)
    label(p2_test)
    data(2, _LDR_R7_SP4)
    cmp(r0, r7)
    bcc(p2)
    label(p_end)
    pop({r5, r6, r7})  # r7 = header
    str(r1, [r7, 4 * _WCUR])  # the next block's weights
    mov(r0, r10)  # the six dot products, pushed for chan: a, b, c, d, e, f
    lsl(r0, r0, 16)
    mov(r1, r8)
    sub(r0, r1, r0)
    mov(r1, r11)
    lsl(r1, r1, 16)
    mov(r2, r9)
    sub(r1, r2, r1)
    mov(r2, r10)
    mov(r3, r11)
    data(2, _MOV_R5_LR)
    lsl(r4, r5, 16)
    mov(r6, r12)
    sub(r4, r6, r4)
    mov(r12, r7)
    push({r0, r1, r2, r3, r4, r5})
    ldr(r4, [r7, 4 * _PCUR])  # chan's state
    mov(r8, r4)
    ldr(r4, [r7, 4 * _OCUR])
    mov(r9, r4)
    ldr(r4, [r7, 4 * _SX])
    mov(r10, r4)
    ldr(r4, [r7, 4 * _NEXTP])
    mov(r11, r4)
    pop({r0})
    bl(chan)
    pop({r0})
    bl(chan)
    pop({r0})
    bl(chan)
    pop({r0})
    bl(chan)
    pop({r0})
    bl(chan)
    pop({r0})
    bl(chan)
    mov(r7, r12)
    mov(r4, r8)
    str(r4, [r7, 4 * _PCUR])
    mov(r4, r9)
    str(r4, [r7, 4 * _OCUR])
    mov(r4, r11)
    str(r4, [r7, 4 * _NEXTP])
    b(b6_next)
    label(b6_done)
    ldr(r3, [r7, 4 * _NB])  # r7 = header
    str(r3, [r7, 4 * _CNT])

    # ---- Blocks of four channels a, b, c, d = n..n+3 ------------------------------------------------
    # Their weights are one word per tap: a | b << 8 | c << 16 | d << 24. Masked with 0x00FF00FF, a word holds
    # two channels in 16-bit lanes, and one MUL by x[k] gives both products (each < 2**16). The packed sums
    # r8 = sum(a) + sum(c) << 16 and r9 = sum(b) + sum(d) << 16 (mod 2**32) are kept with the upper lanes'
    # own sums r10 = sum(c) and r11 = sum(d), from which sum(a) = r8 - r10 << 16 exactly.
    label(blk_next)
    mov(r7, r12)  # r7 = header
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bpl(blk_go)
    b(blk_done)
    label(blk_go)
    str(r3, [r7, 4 * _CNT])
    # r0 = x cursor, r1 = weight cursor, r2 = end of the unrolled part, r3 = mask, r4 = x[k],
    # r5, r6 = weight words, r7 = lanes b, d
    ldr(r1, [r7, 4 * _WCUR])
    ldr(r0, [r7, 4 * _XB])
    ldr(r2, [r7, 4 * _K8])
    add(r2, r2, r0)
    ldr(r3, [r7, 4 * _MASK])
    mov(r4, 0)
    mov(r8, r4)
    mov(r9, r4)
    mov(r10, r4)
    mov(r11, r4)
    b(q8_test)
    label(q8)  # eight taps of four channels: 32 multiply-adds in 16 MULs
    data(2, _LDM_R1_R5_R6)  # the words of taps k+0, k+1
    ldrb(r4, [r0, 0])  # x[k+0]
    lsr(r7, r5, 8)
    and_(r7, r3)  # r7 = channels b, d of tap k+0 (16-bit lanes)
    and_(r5, r3)  # r5 = channels a, c
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    ldrb(r4, [r0, 1])  # x[k+1]
    lsr(r7, r6, 8)
    and_(r7, r3)  # r7 = channels b, d of tap k+1 (16-bit lanes)
    and_(r6, r3)  # r6 = channels a, c
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    data(2, _LDM_R1_R5_R6)  # the words of taps k+2, k+3
    ldrb(r4, [r0, 2])  # x[k+2]
    lsr(r7, r5, 8)
    and_(r7, r3)  # r7 = channels b, d of tap k+2 (16-bit lanes)
    and_(r5, r3)  # r5 = channels a, c
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    ldrb(r4, [r0, 3])  # x[k+3]
    lsr(r7, r6, 8)
    and_(r7, r3)  # r7 = channels b, d of tap k+3 (16-bit lanes)
    and_(r6, r3)  # r6 = channels a, c
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    data(2, _LDM_R1_R5_R6)  # the words of taps k+4, k+5
    ldrb(r4, [r0, 4])  # x[k+4]
    lsr(r7, r5, 8)
    and_(r7, r3)  # r7 = channels b, d of tap k+4 (16-bit lanes)
    and_(r5, r3)  # r5 = channels a, c
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    ldrb(r4, [r0, 5])  # x[k+5]
    lsr(r7, r6, 8)
    and_(r7, r3)  # r7 = channels b, d of tap k+5 (16-bit lanes)
    and_(r6, r3)  # r6 = channels a, c
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    data(2, _LDM_R1_R5_R6)  # the words of taps k+6, k+7
    ldrb(r4, [r0, 6])  # x[k+6]
    lsr(r7, r5, 8)
    and_(r7, r3)  # r7 = channels b, d of tap k+6 (16-bit lanes)
    and_(r5, r3)  # r5 = channels a, c
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    ldrb(r4, [r0, 7])  # x[k+7]
    lsr(r7, r6, 8)
    and_(r7, r3)  # r7 = channels b, d of tap k+7 (16-bit lanes)
    and_(r6, r3)  # r6 = channels a, c
    mul(r6, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    add(r0, 8)
    label(q8_test)
    cmp(r0, r2)
    bcc(q8)
    mov(r7, r12)  # tail: the last K % 8 taps, one at a time; r2 = end of x
    ldr(r2, [r7, 4 * _K8T])
    add(r2, r2, r0)
    b(q1_test)
    label(q1)
    data(2, _LDM_R1_R5)
    ldrb(r4, [r0, 0])
    lsr(r7, r5, 8)
    and_(r7, r3)
    and_(r5, r3)
    mul(r5, r4)
    mul(r7, r4)
    data(2, _ADD_R8_R5)
    data(2, _ADD_R9_R7)
    lsr(r5, r5, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R5)
    data(2, _ADD_R11_R7)
    add(r0, 1)
    label(q1_test)
    cmp(r0, r2)
    bcc(q1)
    mov(r7, r12)
    str(r1, [r7, 4 * _WCUR])  # the next block's weights
    mov(r0, r10)  # the four dot products, pushed for chan: a, b, c, d
    lsl(r0, r0, 16)
    mov(r1, r8)
    sub(r0, r1, r0)
    mov(r1, r11)
    lsl(r1, r1, 16)
    mov(r2, r9)
    sub(r1, r2, r1)
    mov(r2, r10)
    mov(r3, r11)
    push({r0, r1, r2, r3})
    ldr(r4, [r7, 4 * _PCUR])  # chan's state: r8 = P cursor, r9 = out cursor, r10 = sx, r11 = next key
    mov(r8, r4)
    ldr(r4, [r7, 4 * _OCUR])
    mov(r9, r4)
    ldr(r4, [r7, 4 * _SX])
    mov(r10, r4)
    ldr(r4, [r7, 4 * _NEXTP])
    mov(r11, r4)
    pop({r0})
    bl(chan)
    pop({r0})
    bl(chan)
    pop({r0})
    bl(chan)
    pop({r0})
    bl(chan)
    mov(r7, r12)
    mov(r4, r8)
    str(r4, [r7, 4 * _PCUR])
    mov(r4, r9)
    str(r4, [r7, 4 * _OCUR])
    mov(r4, r11)
    str(r4, [r7, 4 * _NEXTP])
    b(blk_next)
    label(blk_done)

    # ---- The N % 4 channels left, one at a time (their rows are plain: K bytes each) -----------------
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
    ldr(r4, [r7, 4 * _PCUR])
    mov(r8, r4)
    ldr(r4, [r7, 4 * _OCUR])
    mov(r9, r4)
    ldr(r4, [r7, 4 * _SX])
    mov(r10, r4)
    ldr(r4, [r7, 4 * _NEXTP])
    mov(r11, r4)
    mov(r0, r2)
    bl(chan)
    mov(r7, r12)
    mov(r4, r8)
    str(r4, [r7, 4 * _PCUR])
    mov(r4, r9)
    str(r4, [r7, 4 * _OCUR])
    mov(r4, r11)
    str(r4, [r7, 4 * _NEXTP])
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
    # In: r0 = sum x*w of the channel; r8 = its words in P, r9 = its output byte, r10 = sx, r11 = the key of
    # the next exception (r8 and r9 advance, r11 moves past the channel's exceptions). Uses r0-r7; keeps
    # r12 = header. Returns with bx(lr).
    label(chan)
    mov(r7, r8)
    data(2, _LDM_R7_R1_R3)  # r1 = c, r2 = c_lo, r3 = Wn
    mov(r4, r10)
    mul(r1, r4)
    sub(r0, r0, r1)  # acc = sum x*w - c*sx
    sub(r0, r0, r2)  # r0 = a = acc - c_lo, clamped to [0, Wn]
    bge(ch_pos)
    mov(r0, 0)
    label(ch_pos)
    cmp(r0, r3)
    ble(ch_in)
    mov(r0, r3)
    label(ch_in)
    data(2, _LDM_R7_R3_R6)  # r3 = A, r4 = Dh, r5 = Dl, r6 = S
    mov(r8, r7)  # the next channel's words (and this channel's exception key)
    cmp(r6, 30)
    bge(ch_limbs)
    mul(r3, r0)  # direct form: r3 = y = (a*A + Dl) >> S
    add(r3, r3, r5)
    asr(r3, r6)
    label(ch_exc)
    data(2, _CMP_R8_R11)  # exceptions for this channel?
    beq(ch_fix)
    label(ch_clip)  # r3 = y: out = T[clip(y, lo, hi)] = TL[clip(y - lo, 0, hi - lo)]
    mov(r6, r12)
    data(2, _LDM_R6_R4_R5)  # r4 = lo, r5 = hi - lo; r6 = &TL
    sub(r3, r3, r4)
    cmp(r3, r5)
    bhi(ch_clamp)  # unsigned: below 0 or above hi - lo
    label(ch_store)
    ldr(r4, [r6, 0])
    data(2, _LDRB_R3_R4_R3)
    mov(r4, r9)
    strb(r3, [r4, 0])
    add(r4, 1)
    mov(r9, r4)
    bx(lr)
    label(ch_clamp)
    cmp(r3, 0)
    blt(ch_low)
    mov(r3, r5)
    b(ch_store)
    label(ch_low)
    mov(r3, 0)
    b(ch_store)
    label(ch_limbs)
    # limb form: y = (a*A + Dh*2**30 + Dl) >> S with a < 2**28, A < 2**29, 0 <= Dl < 2**30, S >= 30:
    # r1:r2 = a*A + Dl in 64 bits from 16-bit limbs, then y = (((r1:r2) >> 30) + Dh) >> (S - 30)
    lsr(r1, r0, 16)  # a1
    data(2, _UXTH_R2_R0)  # a0
    lsr(r7, r3, 16)  # A1
    data(2, _UXTH_R3_R3)  # A0
    mul(r2, r3)  # r2 = a0*A0
    mul(r3, r1)  # r3 = a1*A0
    mul(r1, r7)  # r1 = a1*A1
    add(r2, r2, r5)  # r1:r2 += Dl
    mov(r5, 0)  # (MOVS keeps the carry)
    data(2, _ADCS_R1_R5)
    data(2, _UXTH_R5_R0)  # a0
    mul(r7, r5)  # r7 = a0*A1
    add(r7, r7, r3)  # r7 = mid = a0*A1 + a1*A0 < 2**30
    lsl(r3, r7, 16)
    lsr(r7, r7, 16)
    add(r2, r2, r3)  # r1:r2 += mid << 16
    data(2, _ADCS_R1_R7)
    lsl(r1, r1, 2)
    lsr(r2, r2, 30)
    add(r1, r1, r2)  # r1 = (a*A + Dl) >> 30
    add(r3, r1, r4)  # + Dh
    sub(r6, 30)
    asr(r3, r6)
    b(ch_exc)
    label(ch_fix)
    # this channel's exceptions: the first triple whose a matches gives y. r2 = cursor, r7 = key
    mov(r6, r12)
    ldr(r2, [r6, 4 * _ECUR])
    mov(r7, r8)
    label(ch_eloop)
    ldr(r1, [r2, 0])
    cmp(r1, r7)
    bne(ch_edone)  # another channel's (or the end): stop
    ldr(r1, [r2, 4])
    cmp(r1, r0)
    bne(ch_enext)
    ldr(r3, [r2, 8])
    mov(r0, 0)  # matched: no later triple can (every a is >= 0)
    sub(r0, 1)
    label(ch_enext)
    add(r2, 12)
    b(ch_eloop)
    label(ch_edone)
    str(r2, [r6, 4 * _ECUR])
    mov(r11, r1)
    b(ch_clip)
    label(leave)


@micropython.asm_thumb
def _satfix(r0, r1):
    # uquant_rt.satfix: r0 = x, r1 = header (array 'i': K, then the addresses of G, P, S, len(S), the address
    # of B; G holds the weights w[k], w[k+1] of every listed pair, in the order of S). For each channel listed
    # in S (u16 n, count, taps k), c_lo = B[m] + what saturating each pair (x[k]*w[k] + x[k+1]*w[k+1] beyond
    # int16) takes off, stored in P[7n + 1]. Returns 0.
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
    ldr(r5, [r1, 4])  # r5 = cursor in G
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
    add(r1, r0, r1)  # r1 = &x[k]
    ldrb(r4, [r5, 0])  # w[k] (offset binary)
    sub(r4, 128)
    ldrb(r7, [r1, 0])
    mul(r4, r7)
    ldrb(r3, [r5, 1])
    sub(r3, 128)
    ldrb(r7, [r1, 1])
    mul(r3, r7)
    add(r5, 2)
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


def prepare_satfix(W, K, P, S, B, at=None):
    # Handle for satfix(): the arguments of uquant_rt.satfix after x (P a bytearray or array of int32 words, B an
    # array, checked there). The weights of the listed pairs are copied out of W (2 bytes per pair), so satfix
    # never reads W itself; at(K, N, n, k): where row n, tap k sits in W (uquant_rt.thumb_index for W in this
    # module's DENSE_LAYOUT), None for plain rows.
    if not isinstance(P, (array, bytearray)) or not isinstance(B, array) or len(S) % 2:
        raise ValueError("uquant_thumb.prepare_satfix: bad arguments")
    N = len(P) // 7 if isinstance(P, array) else len(P) // 28
    G = bytearray(len(S))  # at most 2 bytes per tap listed
    j = g = 0
    while j + 4 <= len(S):
        n = S[j] | S[j + 1] << 8
        c = S[j + 2] | S[j + 3] << 8
        j += 4
        for _ in range(c):
            k = S[j] | S[j + 1] << 8
            j += 2
            if at is None:
                G[g] = W[n * K + k]
                G[g + 1] = W[n * K + k + 1]
            else:
                G[g] = W[at(K, N, n, k)]
                G[g + 1] = W[at(K, N, n, k + 1)]
            g += 2
    return (array("i", (K, _addr(G), _addr(P), _addr(S), len(S), _addr(B))), G, P, S, B)


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


def _count(v):
    # number of words in _words(v)
    return len(v) if isinstance(v, array) else len(v) >> 2


# The order dense() reads the weights in (uquant_rt.thumb_index): uquant_rt lays W out so, once, when a module
# holds plain rows; `uquant convert --board pico` emits it, so the board holds no second copy.
DENSE_LAYOUT = "thumb"


def prepare_dense(K, N, lo, hi, W, P, E, T):
    # Once per layer, when the model is built: check the sizes and fill the header. W is in DENSE_LAYOUT order.
    # The handle keeps every buffer the header points to alive. P is read as given on every call (satfix may move
    # its c_lo words between calls); E is copied with each channel's number replaced by its key.
    P = _words(P)
    E = _words(E)
    nE = _count(E)
    if K < 1 or N < 1 or len(W) < K * N or _count(P) < 7 * N or nE % 3 or not 0 <= lo <= hi <= 255:
        raise ValueError("uquant_thumb.prepare_dense: bad layer")
    if K > 16512:  # 255 * 255 * K < 2**30: every sum the kernel forms stays a 32-bit int
        raise ValueError("uquant_thumb.prepare_dense: more than 16512 taps")
    if T is not None and len(T) != 256:
        raise ValueError("uquant_thumb.prepare_dense: the table must have 256 entries")
    for n in range(N):
        p = 7 * n
        if _word(P, p + 6) >= 30 and not (0 <= _word(P, p + 2) < 1 << 28 and 0 <= _word(P, p + 3) < 1 << 29
                                         and 0 <= _word(P, p + 5) < 1 << 30):
            raise ValueError("uquant_thumb.prepare_dense: limb words out of range")
    nb6, nb, nr = _blocks(K, N)
    if _addr(W) & 3:  # LDM needs words: a frozen bytes constant may sit anywhere (a bytearray's data is aligned)
        W = bytearray(W)
    pa = _addr(P)
    if pa & 3:
        raise ValueError("uquant_thumb.prepare_dense: unaligned buffers")
    last = 0
    Ex = array("i", [0] * (nE + 3))  # (key, a, code) triples, then a (0, 0, 0) end mark
    for i in range(0, nE, 3):  # the kernel walks them once, channel after channel
        n = _word(E, i)
        if not last <= n < N:
            raise ValueError("uquant_thumb.prepare_dense: exceptions must be sorted by channel")
        last = n
        a = _word(E, i + 1)
        Ex[i] = pa + 28 * (n + 1)
        Ex[i + 1] = a if a >= 0 else -2  # (a clamped a is never negative: such a triple never matches)
        Ex[i + 2] = _word(E, i + 2)
    T = _IDENTITY if T is None else T
    H = array("i", [0] * _HWORDS)
    H[_LO] = lo
    H[_RANGE] = hi - lo
    H[_TL] = _addr(T) + lo
    H[_K] = K
    H[_N] = N
    H[_W] = _addr(W)
    H[_P] = pa
    H[_E] = _addr(Ex)
    H[_K8] = K - K % 8
    H[_K8T] = K % 8
    H[_NB] = nb
    H[_NR] = nr
    H[_NB6] = nb6
    H[_K2E] = K - K % 2
    H[_MASK] = 0xFF | 0xFF << 16
    H[_K4] = K - K % 4
    H[_KT] = K % 4
    return (H, W, P, Ex, T)


def _blocks(K, N):
    # (blocks of six channels, blocks of four, single rows): uquant_rt.thumb_blocks, which defines the order
    nb6 = N // 6 if K % 2 == 0 else 0
    nb4 = (N - 6 * nb6) // 4
    return nb6, nb4, N - 6 * nb6 - 4 * nb4


def dense(x, out, handle):
    # out[0:N] = the layer's output codes for input codes x[0:K]. Allocates nothing.
    _kernel(x, out, handle[0])


def direct(op, handle):
    # (machine code, its argument) for uquant_rt.Model.link to call without the wrapper above: a layer the
    # model built, whose buffer sizes it checked
    return (_kernel, handle[0]) if op == "dense" else None
