# uquant_thumbconv: asm_thumb convolution and pooling kernels of uquant's "thumb" tier (ARM MicroPython).
#
# One asm call per layer, in Thumb-1 code only (ARMv6-M: Cortex-M0+ and every larger Cortex-M). Each op computes
# exactly the bytes of its bytecode twin in uquant_rt (conv with SAT 0 and 1, maxpool, avgpool):
#
#     h = prepare_conv(g, xzp, lo, hi, W, P, E, T)    # once, when the model is built (allocates); None: declined
#     conv(x, out, h)                                 # per inference: allocates nothing
#     h = prepare_maxpool(g);  maxpool(x, out, h)
#     h = prepare_avgpool(g, R, Q, cls, lo, hi, P, E);  avgpool(x, out, h)
#
# E holds exceptions as flat triples (channel or class, a, code) sorted by channel then a, as for uquant_viper.
# SAT 2 convolutions (fbgemm's im2col order on CPUs without VNNI) are declined: prepare_conv returns None and the
# next module of the tier (uquant_viper) takes the layer.
#
# How a convolution runs (_run, kind 0):
# * Padding: when the layer pads, the input is first copied into the interior of a buffer of the padded size
#   whose border was filled with the input zero point once, by prepare_conv (maxpool pads with 0, which never
#   wins over a real code). Every window then lies inside that buffer: tap t of the window at (oy, ox) of group
#   grp is at  base + TOFF[t],  base = grp * cg*Hp*Wp + oy*SH*Wp + ox*SW.
# * Depthwise layers (one input and one output channel per group) read each window in place through per-tap
#   (offset, w - 128) word pairs, a whole output row per loop with the row state in r8-r12; SAT 1 groups in
#   which some pair of weights can leave int16 add the products in int16-saturating pairs (uquant_rt.
#   channel_sat), the others exactly (the same sum then).
# * Other layers: for each output position the group's window is gathered into `win` (and its sum sx), then
#   every output channel of the group is a dot product over win: eight channels at a time, then four (SAT 0:
#   the weights of four channels at one tap share a word, two exact products per MULS in 16-bit lanes, about
#   3.6 and 3.9 cycles per multiply-add), the rest one at a time (SAT 1 with a depth multiplier of 2: in pairs).
# * chain(): uquant_rt.Model.link runs consecutive conv, pool and table layers of a model in one _run call.
# * Requantization (chan, and inline after each block of four channels): prepare rewrites the channel's words
#   P[7n : 7n+7] as 13 words (c, c_lo, Wn, A|Alo, Dl|Dlo, S', Dh|Ahi, Dhi, S-k, first exception, end of them,
#   code at a = 0, code at a = Wn), read with LDM. An a clamped to 0 or Wn (ReLU's zeros) stores the code
#   prepare computed for it. Otherwise, by the flags above the low byte of S': the direct form (S < 30) or an
#   exact split of the product for S >= 30 (see _split), then the channel's exceptions if it has any, costing
#   ~30-40 cycles per output with the table (an identity table stands in for none). Where y could leave
#   [lo, hi] (checked at prepare: y is monotone in a, so y(0) and y(Wn) bound it), an exception's code could,
#   or no split exists, the general path runs uquant_rt.requant_channel as it is (15-bit limbs and all).
#
# x and out must be buffers (bytes, bytearray, array). This module only imports on ARM MicroPython.

import micropython
from micropython import const
from array import array

# Header words (array 'i', one per layer). LDR reaches 32 words from a base register, so the words the loops
# read (0-31) come first and the rest (read once per layer, group or row, and by the general requant path) sit
# at _COLD + _C_*, read through a second pointer 128 bytes on. Working state is rewritten on every call.
_GB = const(0)  # working state: input of the current group (channel)
_WG = const(1)  # its rows of W, its records, its first output
_QG = const(2)
_OG = const(3)
_GCNT = const(4)  # groups (channels) left
_OYC = const(5)  # output rows left, positions left in the row
_OXC = const(6)
_RB = const(7)  # window base of the row's first position
_B = const(8)  # window base of the current position
_OP = const(9)  # output of the current position (the group's first channel)
_SX = const(10)  # sum of the window
_WCUR = const(11)  # cursors: row of W, record, output byte
_QCUR = const(12)
_OCUR = const(13)
_CNT = const(14)  # channel blocks (or channels) left
_OW = const(15)
_RSTR = const(16)  # SH * Wp: bytes from one output row's windows to the next
_SW = const(17)
_WIN = const(18)  # address of the gathered window
_TOFF = const(19)  # address of the taps' offsets (words); avgpool: of its position records
_TEND = const(20)  # address just past them
_KK = const(21)  # taps per window
_K4 = const(22)  # kk rounded down to 4, kk % 4, kk rounded down to 8, kk % 8, kk rounded down to 2
_KT = const(23)
_K8 = const(24)
_K8T = const(25)
_K2 = const(26)
_NB = const(27)  # blocks of four channels per group
_NR = const(28)  # channels per group done one at a time
_SAT = const(29)
_T = const(30)  # address of the 256-byte code table (identity if the layer has none)
_OHW = const(31)  # outputs per channel
_COLD = const(32)
_C_KIND = const(0)  # 0 conv, 1 maxpool, 2 avgpool
_C_OUT = const(1)  # address of out
_C_XP = const(2)  # address of the padded input buffer, or 0 (no padding: windows read x itself)
_C_NC = const(3)  # padding copy: channels, rows per channel, row bytes, padded row bytes minus row bytes,
_C_H = const(4)  # bytes skipped after each channel, offset of the first interior byte
_C_WD = const(5)
_C_WPD = const(6)
_C_XSKIP = const(7)
_C_XOFF = const(8)
_C_G = const(9)  # groups (conv), channels (pools)
_C_GSTR = const(10)  # bytes from one group's (channel's) input to the next
_C_OH = const(11)
_C_W = const(12)  # address of W
_C_Q = const(13)  # address of the 13-word channel (class) records
_C_LO = const(14)
_C_HI = const(15)
_C_WGS = const(16)  # bytes of W per group
_C_QGS = const(17)  # bytes of records per group
_C_OGS = const(18)  # output bytes per group
_C_CV = const(19)  # avgpool: channels below CV use the records from KOFF bytes on
_C_KOFF = const(20)
_HWORDS = const(53)
_REC = const(13)  # words per channel record

# Thumb-1 encodings the inline assembler has no mnemonic for (emitted with data(2, ...)).
_ADD_R8_R6 = const(0x44B0)  # add r8, r6   (high registers, flags unchanged)
_ADD_R9_R6 = const(0x44B1)
_ADD_R10_R6 = const(0x44B2)
_ADD_R11_R6 = const(0x44B3)
_ADD_R9_R7 = const(0x44B9)  # add r9, r7
_ADD_R11_R7 = const(0x44BB)  # add r11, r7
_STR_R1_SP20 = const(0x9105)  # str r1, [sp, #20]
_STR_R1_SP28 = const(0x9107)  # str r1, [sp, #28]
_LDR_R7_SP24 = const(0x9F06)  # ldr r7, [sp, #24]
_LDR_R5_SP0 = const(0x9D00)  # ldr r5, [sp, #0]
_LDR_R5_SP4 = const(0x9D01)  # ldr r5, [sp, #4]
_ADD_R12_R6 = const(0x44B4)  # add r12, r6
_ADD_LR_R7 = const(0x44BE)  # add lr, r7
_MOV_LR_R5 = const(0x46AE)  # mov lr, r5
_MOV_R6_LR = const(0x4676)  # mov r6, lr
_ADD_SP_8 = const(0xB002)  # add sp, #8
_ADD_SP_12 = const(0xB003)  # add sp, #12
_PUSH_LR = const(0xB500)  # push {lr}
_POP_PC = const(0xBD00)  # pop {pc}
_LDR_R2_SP4 = const(0x9A01)  # ldr r2, [sp, #4]
_STR_R2_SP4 = const(0x9201)  # str r2, [sp, #4]
_LDR_R0_SP0 = const(0x9800)  # ldr r0, [sp, #0]
_LDM_R2_R0_R1_R3_R4 = const(0xCA1B)  # ldm r2!, {r0, r1, r3, r4}
_LDRB_R7_R6_R7 = const(0x5DF7)  # ldrb r7, [r6, r7]   (register offset)
_STRB_R7_R1_R4 = const(0x550F)  # strb r7, [r1, r4]
_ADD_R6_R12 = const(0x4466)  # add r6, r12
_ADD_R9_R11 = const(0x44D9)  # add r9, r11
_ADD_R10_R3 = const(0x449A)  # add r10, r3
_ADD_R9_R10 = const(0x44D1)  # add r9, r10
_ADD_R9_R3 = const(0x4499)  # add r9, r3
_MOV_LR_R3 = const(0x469E)  # mov lr, r3
_MOV_R3_LR = const(0x4673)  # mov r3, lr
_LDRB_R3_R2_R3 = const(0x5CD3)  # ldrb r3, [r2, r3]
_LDRB_R0_R5_R0 = const(0x5C28)  # ldrb r0, [r5, r0]
_LDRB_R3_R5_R3 = const(0x5CEB)  # ldrb r3, [r5, r3]
_LDM_R1_R2_R4 = const(0xC91C)  # ldm r1!, {r2, r3, r4}
_LDM_R1_R3_R4 = const(0xC918)  # ldm r1!, {r3, r4}
_LDM_R3_R1_R6 = const(0xCB42)  # ldm r3!, {r1, r6}
_LDM_R3_R4_R5 = const(0xCB30)  # ldm r3!, {r4, r5}
_LDRB_R4_R2_R4 = const(0x5D14)  # ldrb r4, [r2, r4]
_STR_R3_SP4 = const(0x9301)  # str r3, [sp, #4]
_STR_R3_SP8 = const(0x9302)  # str r3, [sp, #8]
_LDR_R3_SP4 = const(0x9B01)  # ldr r3, [sp, #4]
_LDR_R3_SP0 = const(0x9B00)  # ldr r3, [sp, #0]
_LDR_R6_SP0 = const(0x9E00)  # ldr r6, [sp, #0]
_STR_R4_SP4 = const(0x9401)  # str r4, [sp, #4]
_STR_R4_SP8 = const(0x9402)  # str r4, [sp, #8]
_LDR_R3_SP8 = const(0x9B02)  # ldr r3, [sp, #8]
_LDR_R1_SP20 = const(0x9905)  # ldr r1, [sp, #20]
_STR_R4_SP20 = const(0x9405)  # str r4, [sp, #20]
_LDR_R4_SP4 = const(0x9C01)  # ldr r4, [sp, #4]
_LDR_R5_SP8 = const(0x9D02)  # ldr r5, [sp, #8]
_LDR_R7_SP0 = const(0x9F00)  # ldr r7, [sp, #0]
_LDR_R7_SP16 = const(0x9F04)  # ldr r7, [sp, #16]

_IDENTITY = bytes(range(256))  # the table of a layer without one
_NONE = array("i", (0, 0, 0))  # stands in for an empty exception list
_PADS = {}  # padded input buffers by (C, H, W, PH, PW, fill)


@micropython.asm_thumb
def _addr(r0):
    # The address of a buffer's data: an asm function receives a buffer argument as its data pointer.
    nop()


@micropython.asm_thumb
def _run(r0, r1, r2):
    # r0 = x, r1 = out, r2 = header: one layer; or r1 = 0, r2 = a chain (see chain()): its layers in turn.
    # Returns 0. body runs one layer (r0 = its input, r1 = its output, r2 = its header) and returns: r8-r12
    # belong to the caller; the header stays at [sp, 0] for the whole layer (chan and the pool bodies rely on
    # it), r12 = what chan adds to its output cursor.
    cmp(r1, 0)
    beq(go_chain)
    bl(body)
    bl(leave)  # (a jump)
    label(go_chain)
    bl(chain)  # (a jump)
    label(body)
    data(2, _PUSH_LR)
    mov(r3, r8)
    mov(r4, r9)
    mov(r5, r10)
    mov(r6, r11)
    push({r3, r4, r5, r6})
    mov(r3, r12)
    push({r3})
    push({r3, r4})  # two scratch words, [sp, 4] and [sp, 8] below
    push({r2})
    mov(r3, r2)
    add(r3, 128)  # r3 = the cold words
    str(r1, [r3, 4 * _C_OUT])
    ldr(r3, [r3, 4 * _C_XP])
    cmp(r3, 0)
    beq(nocopy)
    bl(copy)  # r0 = the padded buffer, its interior now x
    label(nocopy)
    data(2, _LDR_R7_SP0)
    mov(r6, r7)
    add(r6, 128)  # r6 = the cold words
    ldr(r3, [r6, 4 * _C_KIND])
    cmp(r3, 1)
    bne(not_max)
    bl(maxpool)  # (a jump: the pool bodies end at finish)
    label(not_max)
    cmp(r3, 2)
    bne(conv)
    bl(avgpool)

    # ---- conv: r0 = input (x or the padded buffer), r7 = header ----------------------------------------
    label(conv)
    str(r0, [r7, 4 * _GB])
    ldr(r3, [r6, 4 * _C_W])
    str(r3, [r7, 4 * _WG])
    ldr(r3, [r6, 4 * _C_Q])
    str(r3, [r7, 4 * _QG])
    ldr(r3, [r6, 4 * _C_OUT])
    str(r3, [r7, 4 * _OG])
    ldr(r3, [r7, 4 * _OHW])
    mov(r12, r3)
    ldr(r3, [r6, 4 * _C_G])
    str(r3, [r7, 4 * _GCNT])
    label(grp)
    ldr(r3, [r7, 4 * _GB])
    str(r3, [r7, 4 * _RB])
    ldr(r3, [r7, 4 * _OG])
    str(r3, [r7, 4 * _OP])
    mov(r6, r7)
    add(r6, 128)
    ldr(r3, [r6, 4 * _C_OH])
    str(r3, [r7, 4 * _OYC])
    label(row)
    ldr(r3, [r7, 4 * _NB])
    cmp(r3, 0)
    bge(row_gen)
    # ---- depthwise (one channel per group), a row of positions: no gather. The group's tap block is
    # (bytes of the taps taken two at a time; flags: 1 pairs, 2 an odd tap), then per tap (offset, w - 128);
    # pairs: int16-saturating pair sums (SAT 1 where a pair can leave int16). Row state in r8 (positions
    # left), r9 (window base), r10 (output), r11 (SW), r12 (the channel's record); [sp, 4] = the tap block,
    # [sp, 8] = the table.
    ldr(r3, [r7, 4 * _OW])
    mov(r8, r3)
    ldr(r3, [r7, 4 * _RB])
    mov(r9, r3)
    ldr(r3, [r7, 4 * _OP])
    mov(r10, r3)
    ldr(r3, [r7, 4 * _SW])
    mov(r11, r3)
    ldr(r3, [r7, 4 * _QG])
    mov(r12, r3)
    ldr(r3, [r7, 4 * _WG])
    data(2, _STR_R3_SP4)
    ldr(r3, [r7, 4 * _T])
    data(2, _STR_R3_SP8)
    label(dw_pos)
    # r0 = dot, r1 = end of the paired taps, r2 = window base, r3 = tap cursor, r4-r6 temporaries, r7 = sx
    mov(r2, r9)
    data(2, _LDR_R3_SP4)
    data(2, _LDM_R3_R1_R6)  # r1 = bytes of paired taps, r6 = flags
    add(r1, r1, r3)
    mov(r0, 0)
    mov(r7, 0)
    lsr(r6, r6, 1)  # carry: pairs
    bcc(dwe_test)
    b(dwp_test)
    label(dwe)
    data(2, _LDM_R3_R4_R5)  # offset, w - 128
    data(2, _LDRB_R4_R2_R4)
    add(r7, r7, r4)
    mul(r5, r4)
    add(r0, r0, r5)
    data(2, _LDM_R3_R4_R5)
    data(2, _LDRB_R4_R2_R4)
    add(r7, r7, r4)
    mul(r5, r4)
    add(r0, r0, r5)
    label(dwe_test)
    cmp(r3, r1)
    bcc(dwe)
    b(dw_tail)
    label(dwp)
    data(2, _LDM_R3_R4_R5)
    data(2, _LDRB_R4_R2_R4)
    add(r7, r7, r4)
    mul(r5, r4)
    mov(r6, r5)
    data(2, _LDM_R3_R4_R5)
    data(2, _LDRB_R4_R2_R4)
    add(r7, r7, r4)
    mul(r5, r4)
    add(r5, r5, r6)  # the pair's sum
    asr(r6, r5, 15)
    add(r6, 1)
    cmp(r6, 1)
    bls(dwp_ok)
    mov(r6, 1)
    lsl(r6, r6, 15)
    cmp(r5, 0)
    blt(dwp_neg)
    sub(r5, r6, 1)
    b(dwp_ok)
    label(dwp_neg)
    neg(r5, r6)
    label(dwp_ok)
    add(r0, r0, r5)
    label(dwp_test)
    cmp(r3, r1)
    bcc(dwp)
    label(dw_tail)
    data(2, _LDR_R4_SP4)
    ldr(r4, [r4, 4])
    lsr(r4, r4, 2)  # carry: an odd tap left
    bcc(dw_req)
    data(2, _LDM_R3_R4_R5)
    data(2, _LDRB_R4_R2_R4)
    add(r7, r7, r4)
    mul(r5, r4)
    add(r0, r0, r5)
    label(dw_req)
    mov(r1, r12)
    mov(r6, r10)
    data(2, _LDR_R5_SP8)
    bl(chan)
    data(2, _ADD_R9_R11)  # next position
    mov(r3, 1)
    data(2, _ADD_R10_R3)
    mov(r3, r8)
    sub(r3, 1)
    mov(r8, r3)
    bne(dw_pos)
    data(2, _LDR_R7_SP0)
    mov(r3, r10)
    str(r3, [r7, 4 * _OP])
    b(row_done)
    label(row_gen)
    ldr(r3, [r7, 4 * _RB])
    str(r3, [r7, 4 * _B])
    ldr(r3, [r7, 4 * _OW])
    str(r3, [r7, 4 * _OXC])
    label(pos)
    # gather the window: r0 = win cursor, r1 = offsets cursor, r2 = window base, r6 = end, r7 = sx
    ldr(r0, [r7, 4 * _WIN])
    ldr(r1, [r7, 4 * _TOFF])
    ldr(r2, [r7, 4 * _B])
    ldr(r6, [r7, 4 * _K8])
    add(r6, r6, r0)
    mov(r7, 0)
    b(g4_test)
    label(g4)
    ldr(r3, [r1, 0])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 0])
    add(r7, r7, r3)
    ldr(r3, [r1, 4])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 1])
    add(r7, r7, r3)
    ldr(r3, [r1, 8])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 2])
    add(r7, r7, r3)
    ldr(r3, [r1, 12])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 3])
    add(r7, r7, r3)
    ldr(r3, [r1, 16])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 4])
    add(r7, r7, r3)
    ldr(r3, [r1, 20])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 5])
    add(r7, r7, r3)
    ldr(r3, [r1, 24])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 6])
    add(r7, r7, r3)
    ldr(r3, [r1, 28])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 7])
    add(r7, r7, r3)
    add(r0, 8)
    add(r1, 32)
    label(g4_test)
    cmp(r0, r6)
    bcc(g4)
    data(2, _LDR_R6_SP0)
    ldr(r6, [r6, 4 * _K8T])
    add(r6, r6, r0)
    b(g1_test)
    label(g1)
    ldr(r3, [r1, 0])
    data(2, _LDRB_R3_R2_R3)
    strb(r3, [r0, 0])
    add(r7, r7, r3)
    add(r0, 1)
    add(r1, 4)
    label(g1_test)
    cmp(r0, r6)
    bcc(g1)
    data(2, _LDR_R3_SP0)  # r3 = header
    str(r7, [r3, 4 * _SX])
    ldr(r4, [r3, 4 * _WG])
    data(2, _STR_R4_SP4)  # [sp, 4] = cursor in W
    ldr(r4, [r3, 4 * _NB])
    data(2, _STR_R4_SP8)  # [sp, 8] = blocks left
    ldr(r1, [r3, 4 * _QG])  # r1, r5, r6, r7: what the requantizations read (record, table, output, sx)
    ldr(r6, [r3, 4 * _OP])
    ldr(r5, [r3, 4 * _T])

    # ---- blocks of four channels ---------------------------------------------------------------------
    label(blk_next)
    data(2, _LDR_R3_SP8)  # blocks of four left: two at a time while two are left
    sub(r3, 2)
    bmi(blk_4)
    bl(b8_go)  # (a jump)
    label(blk_4)
    add(r3, 1)
    bpl(blk_go)
    b(blk_done)
    label(blk_go)
    data(2, _STR_R3_SP8)
    push({r1, r5, r6, r7})  # until the dot products are done (the header is at [sp, 16] meanwhile)
    # The block's weights are one word per tap (channels n0-n3 in its bytes). Masked with 0x00FF00FF a word
    # holds n0, n2 in 16-bit lanes, shifted right by 8 and masked n1, n3: one MULS by win[k] gives two exact
    # products (each < 2**16). r8 += n0 | n2 << 16 (wraps), r9 += n1 | n3 << 16, r10 += n2, r11 += n3; then
    # n0 = r8 - (r10 << 16), n1 = r9 - (r11 << 16) exactly. r0 = win cursor, r1 = cursor in the words, r2 = end,
    # r3 = mask, r4 = taps in the tail, r5 = win[k], r6, r7 = lanes. 3.9 cycles per multiply-add.
    data(2, _LDR_R1_SP20)
    data(2, _LDR_R7_SP16)
    ldr(r0, [r7, 4 * _WIN])
    ldr(r2, [r7, 4 * _K8])
    add(r2, r2, r0)
    ldr(r4, [r7, 4 * _K8T])
    mov(r3, 255)
    lsl(r5, r3, 16)
    orr(r3, r5)
    mov(r5, 0)
    mov(r8, r5)
    mov(r9, r5)
    mov(r10, r5)
    mov(r11, r5)
    b(q8_test)
    label(q8)
    ldrb(r5, [r0, 0])
    ldr(r6, [r1, 0])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldrb(r5, [r0, 1])
    ldr(r6, [r1, 4])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldrb(r5, [r0, 2])
    ldr(r6, [r1, 8])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldrb(r5, [r0, 3])
    ldr(r6, [r1, 12])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldrb(r5, [r0, 4])
    ldr(r6, [r1, 16])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldrb(r5, [r0, 5])
    ldr(r6, [r1, 20])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldrb(r5, [r0, 6])
    ldr(r6, [r1, 24])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldrb(r5, [r0, 7])
    ldr(r6, [r1, 28])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    add(r0, 8)
    add(r1, 32)
    label(q8_test)
    cmp(r0, r2)
    bcc(q8)
    add(r2, r0, r4)
    b(q1_test)
    label(q1)
    ldrb(r5, [r0, 0])
    ldr(r6, [r1, 0])  # the four channels' weights at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)  # lanes n0, n2
    and_(r7, r3)  # lanes n1, n3
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    add(r0, 1)
    add(r1, 4)
    label(q1_test)
    cmp(r0, r2)
    bcc(q1)
    data(2, _STR_R1_SP20)  # r1 is at the next block's words
    mov(r2, r10)  # the low lanes
    lsl(r2, r2, 16)
    mov(r3, r8)
    sub(r3, r3, r2)
    mov(r8, r3)
    mov(r2, r11)
    lsl(r2, r2, 16)
    mov(r3, r9)
    sub(r3, r3, r2)
    mov(r9, r3)
    pop({r1, r5, r6, r7})
    label(i0_start)
    mov(r0, r8)  # chan, inline: its direct and split forms and the clamped codes
    data(2, _LDM_R1_R2_R4)
    mul(r2, r7)
    sub(r0, r0, r2)
    sub(r0, r0, r3)
    bmi(i0_neg)
    cmp(r0, r4)
    bgt(i0_big)
    data(2, _LDM_R1_R2_R4)
    cmp(r4, 31)
    bhi(i0_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    b(i0_done)
    label(i0_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)
    lsr(r3, r4, 9)
    bne(i0_rest)
    data(2, _LDM_R1_R3_R4)
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    b(i0_done)
    label(i0_neg)
    ldr(r0, [r1, 32])
    b(i0_st)
    label(i0_big)
    ldr(r0, [r1, 36])
    label(i0_st)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    b(i0_done)
    label(i0_rest)
    bl(ch_other2)
    label(i0_done)
    mov(r0, r9)  # chan, inline: its direct and split forms and the clamped codes
    data(2, _LDM_R1_R2_R4)
    mul(r2, r7)
    sub(r0, r0, r2)
    sub(r0, r0, r3)
    bmi(i1_neg)
    cmp(r0, r4)
    bgt(i1_big)
    data(2, _LDM_R1_R2_R4)
    cmp(r4, 31)
    bhi(i1_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    b(i1_done)
    label(i1_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)
    lsr(r3, r4, 9)
    bne(i1_rest)
    data(2, _LDM_R1_R3_R4)
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    b(i1_done)
    label(i1_neg)
    ldr(r0, [r1, 32])
    b(i1_st)
    label(i1_big)
    ldr(r0, [r1, 36])
    label(i1_st)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    b(i1_done)
    label(i1_rest)
    bl(ch_other2)
    label(i1_done)
    mov(r0, r10)  # chan, inline: its direct and split forms and the clamped codes
    data(2, _LDM_R1_R2_R4)
    mul(r2, r7)
    sub(r0, r0, r2)
    sub(r0, r0, r3)
    bmi(i2_neg)
    cmp(r0, r4)
    bgt(i2_big)
    data(2, _LDM_R1_R2_R4)
    cmp(r4, 31)
    bhi(i2_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    b(i2_done)
    label(i2_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)
    lsr(r3, r4, 9)
    bne(i2_rest)
    data(2, _LDM_R1_R3_R4)
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    b(i2_done)
    label(i2_neg)
    ldr(r0, [r1, 32])
    b(i2_st)
    label(i2_big)
    ldr(r0, [r1, 36])
    label(i2_st)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    b(i2_done)
    label(i2_rest)
    bl(ch_other2)
    label(i2_done)
    mov(r0, r11)  # chan, inline: its direct and split forms and the clamped codes
    data(2, _LDM_R1_R2_R4)
    mul(r2, r7)
    sub(r0, r0, r2)
    sub(r0, r0, r3)
    bmi(i3_neg)
    cmp(r0, r4)
    bgt(i3_big)
    data(2, _LDM_R1_R2_R4)
    cmp(r4, 31)
    bhi(i3_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    b(i3_done)
    label(i3_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)
    lsr(r3, r4, 9)
    bne(i3_rest)
    data(2, _LDM_R1_R3_R4)
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    b(i3_done)
    label(i3_neg)
    ldr(r0, [r1, 32])
    b(i3_st)
    label(i3_big)
    ldr(r0, [r1, 36])
    label(i3_st)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    b(i3_done)
    label(i3_rest)
    bl(ch_other2)
    label(i3_done)
    b(blk_next)
    label(blk_done)
    data(2, _LDR_R7_SP0)
    ldr(r3, [r7, 4 * _NR])
    cmp(r3, 0)
    bne(one_init)
    b(pos_done)
    label(one_init)
    str(r3, [r7, 4 * _CNT])
    str(r1, [r7, 4 * _QCUR])
    str(r6, [r7, 4 * _OCUR])
    data(2, _LDR_R3_SP4)
    str(r3, [r7, 4 * _WCUR])

    # ---- the group's other channels, one at a time ----------------------------------------------------
    label(one_next)
    data(2, _LDR_R7_SP0)
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bpl(one_go)
    b(pos_done)
    label(one_go)
    str(r3, [r7, 4 * _CNT])
    # r0 = win cursor, r1 = cursor in the row of W, r2 = dot product, r7 = end
    ldr(r1, [r7, 4 * _WCUR])
    ldr(r0, [r7, 4 * _WIN])
    mov(r2, 0)
    ldr(r3, [r7, 4 * _SAT])
    cmp(r3, 0)
    bne(sat_go)
    ldr(r7, [r7, 4 * _K4])
    add(r7, r7, r0)
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
    data(2, _LDR_R7_SP0)
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
    b(one_req)
    # SAT 1 (uquant_rt.channel_sat): raw products x * (w - 128) in consecutive pairs, each pair sum saturated
    # to int16, then the odd tap
    label(sat_go)
    ldr(r7, [r7, 4 * _K2])
    add(r7, r7, r0)
    b(p_test)
    label(p)
    ldrb(r5, [r0, 0])
    ldrb(r6, [r1, 0])
    sub(r6, 128)
    mul(r6, r5)
    ldrb(r5, [r0, 1])
    ldrb(r3, [r1, 1])
    sub(r3, 128)
    mul(r3, r5)
    add(r6, r6, r3)  # the pair's sum
    asr(r3, r6, 15)
    add(r3, 1)
    cmp(r3, 1)
    bls(p_ok)  # sum >> 15 is 0 or -1: inside int16
    mov(r3, 1)
    lsl(r3, r3, 15)
    cmp(r6, 0)
    blt(p_neg)
    sub(r6, r3, 1)  # 32767
    b(p_ok)
    label(p_neg)
    neg(r6, r3)  # -32768
    label(p_ok)
    add(r2, r2, r6)
    add(r0, 2)
    add(r1, 2)
    label(p_test)
    cmp(r0, r7)
    bcc(p)
    data(2, _LDR_R7_SP0)
    ldr(r3, [r7, 4 * _KK])
    ldr(r7, [r7, 4 * _WIN])
    add(r7, r7, r3)
    cmp(r0, r7)
    bcs(one_req)
    ldrb(r5, [r0, 0])
    ldrb(r6, [r1, 0])
    sub(r6, 128)
    mul(r6, r5)
    add(r2, r2, r6)
    add(r1, 1)
    label(one_req)
    data(2, _LDR_R7_SP0)
    str(r1, [r7, 4 * _WCUR])
    ldr(r1, [r7, 4 * _QCUR])
    ldr(r6, [r7, 4 * _OCUR])
    ldr(r5, [r7, 4 * _T])
    ldr(r7, [r7, 4 * _SX])
    mov(r0, r2)
    bl(chan)
    data(2, _LDR_R7_SP0)
    str(r1, [r7, 4 * _QCUR])
    str(r6, [r7, 4 * _OCUR])
    b(one_next)

    # ---- next position, row, group ---------------------------------------------------------------------
    label(pos_done)
    ldr(r3, [r7, 4 * _OP])
    add(r3, 1)
    str(r3, [r7, 4 * _OP])
    ldr(r3, [r7, 4 * _B])
    ldr(r4, [r7, 4 * _SW])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _B])
    ldr(r3, [r7, 4 * _OXC])
    sub(r3, 1)
    str(r3, [r7, 4 * _OXC])
    beq(row_done)
    b(pos)
    label(row_done)
    ldr(r3, [r7, 4 * _RB])
    ldr(r4, [r7, 4 * _RSTR])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _RB])
    ldr(r3, [r7, 4 * _OYC])
    sub(r3, 1)
    str(r3, [r7, 4 * _OYC])
    beq(grp_done)
    b(row)
    label(grp_done)
    mov(r6, r7)
    add(r6, 128)
    ldr(r3, [r7, 4 * _GB])
    ldr(r4, [r6, 4 * _C_GSTR])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _GB])
    ldr(r3, [r7, 4 * _WG])
    ldr(r4, [r6, 4 * _C_WGS])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _WG])
    ldr(r3, [r7, 4 * _QG])
    ldr(r4, [r6, 4 * _C_QGS])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _QG])
    ldr(r3, [r7, 4 * _OG])
    ldr(r4, [r6, 4 * _C_OGS])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _OG])
    ldr(r3, [r7, 4 * _GCNT])
    sub(r3, 1)
    str(r3, [r7, 4 * _GCNT])
    beq(finish)
    b(grp)

    # ---- done: give back r8-r12, return 0 -----------------------------------------------------------------
    label(finish)
    pop({r2})
    pop({r3, r4})
    pop({r3})
    mov(r12, r3)
    pop({r3, r4, r5, r6})
    mov(r8, r3)
    mov(r9, r4)
    mov(r10, r5)
    mov(r11, r6)
    mov(r0, 0)
    data(2, _POP_PC)

    # ---- chan: requantize one output and store it -------------------------------------------------------
    # In: r0 = dot product, r1 = the channel's record, r5 = table, r6 = output byte, r7 = sx, r12 = output
    # step. Out: r1 at the next record, r6 stepped by r12. Uses r0, r2-r4; keeps r5, r7, r8-r12. Called with
    # the header at [sp, 0].
    label(chan)
    data(2, _LDM_R1_R2_R4)  # c, c_lo, Wn
    mul(r2, r7)
    sub(r0, r0, r2)  # acc = dot - c * sx
    sub(r0, r0, r3)  # a = clamp(acc - c_lo, 0, Wn)
    bmi(ch_neg)
    cmp(r0, r4)
    bgt(ch_big)
    label(ch_in)
    data(2, _LDM_R1_R2_R4)  # A, Dl, S' (direct form) or Alo, Dlo, 0x100 | k (split form), ...
    cmp(r4, 31)
    bhi(ch_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)  # y = (a * A + Dl) >> S, inside [lo, hi]
    data(2, _LDRB_R0_R5_R0)  # T[y]
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    bx(lr)
    label(ch_neg)  # a clamped to 0 or Wn: the output code prepare computed for it (exceptions, clip, table)
    ldr(r0, [r1, 32])
    b(ch_end)
    label(ch_big)
    ldr(r0, [r1, 36])
    label(ch_end)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    bx(lr)
    label(ch_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)  # the low byte of S' shifts: r2 = y (direct form) or (a * Alo + Dlo) >> k (split form)
    lsr(r3, r4, 9)  # 0: split form, 1: split form with exceptions, 2: direct form with exceptions, 4: general
    bne(ch_other2)
    # split form: y = (a * Ahi + Dhi + ((a * Alo + Dlo) >> k)) >> (S - k)
    data(2, _LDM_R1_R3_R4)  # Ahi, Dhi
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])  # S - k
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)  # T[y]
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    bx(lr)
    label(ch_other2)
    cmp(r3, 1)
    bne(ch_other3)
    data(2, _LDM_R1_R3_R4)  # Ahi, Dhi
    mul(r3, r0)
    add(r3, r3, r4)
    add(r2, r2, r3)
    ldr(r4, [r1, 0])
    asr(r2, r4)  # r2 = y, r0 = a
    add(r1, 4)
    b(ch_exc)
    label(ch_other3)
    cmp(r3, 2)
    bne(ch_slow)
    add(r1, 12)  # direct form: r2 = y, r0 = a
    label(ch_exc)
    # r0 = a, r2 = y, r1 at the record's last two words (first exception, end): the one whose a matches
    # gives the code (the host's codes lie in [lo, hi], checked by prepare)
    data(2, _LDM_R1_R3_R4)
    push({r1})
    b(ex_test)
    label(ex_loop)
    ldr(r1, [r3, 4])
    cmp(r1, r0)
    bne(ex_next)
    ldr(r2, [r3, 8])
    b(ex_done)
    label(ex_next)
    add(r3, 12)
    label(ex_test)
    cmp(r3, r4)
    bcc(ex_loop)
    label(ex_done)
    pop({r1})
    add(r1, 8)
    mov(r0, r2)
    data(2, _LDRB_R0_R5_R0)  # T[y]
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    bx(lr)
    label(ch_slow)
    # uquant_rt.requant_channel: r0 = a, r4 = 0x800 | S, [r1 - 12] = A, [r1 - 8] = Dl, [r1] = Dh, [r1 + 12] = first exception,
    # [r1 + 16] = end
    push({r1, r5, r6, r7})
    mov(r2, r1)
    sub(r2, 12)
    ldr(r3, [r2, 4])  # Dl
    ldr(r2, [r2, 0])  # A
    lsl(r4, r4, 24)
    lsr(r4, r4, 24)  # S
    cmp(r4, 30)
    bge(sl_limbs)
    mov(r6, r2)
    mul(r6, r0)
    add(r6, r6, r3)
    asr(r6, r4)
    b(sl_exc)
    label(sl_limbs)
    push({r0, r4})
    lsl(r6, r0, 17)
    lsr(r6, r6, 17)  # r6 = al = a & 0x7FFF
    lsr(r0, r0, 15)  # r0 = ah
    lsl(r5, r2, 17)
    lsr(r5, r5, 17)  # r5 = Al
    asr(r2, r2, 15)  # r2 = Ah
    lsl(r7, r3, 17)
    lsr(r7, r7, 17)  # r7 = Dl & 0x7FFF
    asr(r3, r3, 15)  # r3 = Dl >> 15
    mov(r4, r6)
    mul(r4, r5)
    add(r7, r7, r4)  # lo
    asr(r7, r7, 15)
    add(r7, r7, r3)
    mov(r4, r0)
    mul(r4, r5)
    add(r7, r7, r4)
    mov(r4, r6)
    mul(r4, r2)
    add(r7, r7, r4)  # mid
    asr(r7, r7, 15)
    mul(r0, r2)
    add(r0, r0, r7)
    ldr(r4, [r1, 0])
    add(r6, r0, r4)  # ah*Ah + Dh + (mid >> 15)
    pop({r0, r4})
    sub(r4, 30)
    asr(r6, r4)
    label(sl_exc)
    ldr(r2, [r1, 12])
    ldr(r3, [r1, 16])
    b(sl_test)
    label(sl_loop)
    ldr(r4, [r2, 4])
    cmp(r4, r0)
    bne(sl_next)
    ldr(r6, [r2, 8])
    b(sl_clip)
    label(sl_next)
    add(r2, 12)
    label(sl_test)
    cmp(r2, r3)
    bcc(sl_loop)
    label(sl_clip)
    data(2, _LDR_R7_SP16)
    add(r7, 128)
    ldr(r4, [r7, 4 * _C_LO])
    cmp(r6, r4)
    bge(sl_lo)
    mov(r6, r4)
    label(sl_lo)
    ldr(r4, [r7, 4 * _C_HI])
    cmp(r6, r4)
    ble(sl_hi)
    mov(r6, r4)
    label(sl_hi)
    mov(r0, r6)
    pop({r1, r5, r6, r7})
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    bx(lr)

    # ---- copy: x into the interior of the padded buffer. In: r0 = x; out: r0 = the buffer. Uses r1-r7.
    label(copy)
    data(2, _LDR_R7_SP0)
    add(r7, 128)  # r7 = the cold words
    ldr(r1, [r7, 4 * _C_XP])
    ldr(r3, [r7, 4 * _C_XOFF])
    add(r1, r1, r3)
    ldr(r4, [r7, 4 * _C_NC])
    label(cp_c)
    ldr(r5, [r7, 4 * _C_H])
    label(cp_r)
    ldr(r6, [r7, 4 * _C_WD])
    add(r6, r6, r0)
    sub(r6, 1)  # r6 = the row's last byte: pairs while r0 < r6, then maybe that byte
    b(cp_test)
    label(cp_b)
    ldrb(r3, [r0, 0])
    strb(r3, [r1, 0])
    ldrb(r3, [r0, 1])
    strb(r3, [r1, 1])
    add(r0, 2)
    add(r1, 2)
    label(cp_test)
    cmp(r0, r6)
    bcc(cp_b)
    bne(cp_end)
    ldrb(r3, [r0, 0])
    strb(r3, [r1, 0])
    add(r0, 1)
    add(r1, 1)
    label(cp_end)
    ldr(r3, [r7, 4 * _C_WPD])
    add(r1, r1, r3)
    sub(r5, 1)
    bne(cp_r)
    ldr(r3, [r7, 4 * _C_XSKIP])
    add(r1, r1, r3)
    sub(r4, 1)
    bne(cp_c)
    ldr(r0, [r7, 4 * _C_XP])
    bx(lr)

    # ---- maxpool (uquant_rt.maxpool): r0 = input, r7 = header ------------------------------------------
    label(maxpool)
    ldr(r1, [r6, 4 * _C_OUT])  # r1 = output cursor
    str(r0, [r7, 4 * _GB])
    ldr(r3, [r6, 4 * _C_G])
    str(r3, [r7, 4 * _GCNT])
    ldr(r3, [r7, 4 * _K4])  # 2x2 windows (columns adjacent): the offset of the window's second row, else 0
    cmp(r3, 0)
    bne(mpf)
    b(mp_c)
    # ---- 2x2 windows, the whole layer: r9 = the row's first window, r10 = RSTR, r11 = second row offset,
    # r12 = OW, r8 = rows left, lr = OH, [sp, 4] = channels left, [sp, 8] = bytes from a channel's last row to
    # the next channel's first; r6 = SW, r7 = 1: two windows per loop (stride 2, even rows)
    label(mpf)
    mov(r11, r3)
    mov(r9, r0)
    ldr(r3, [r7, 4 * _RSTR])
    mov(r10, r3)
    ldr(r3, [r7, 4 * _OW])
    mov(r12, r3)
    ldr(r3, [r6, 4 * _C_G])
    data(2, _STR_R3_SP4)
    ldr(r3, [r6, 4 * _C_KOFF])
    data(2, _STR_R3_SP8)
    ldr(r3, [r6, 4 * _C_OH])
    data(2, _MOV_LR_R3)
    ldr(r6, [r7, 4 * _SW])
    ldr(r7, [r7, 4 * _KT])
    label(mpf_c)
    data(2, _MOV_R3_LR)
    mov(r8, r3)
    label(mpf_row)
    mov(r2, r9)
    mov(r3, r11)
    add(r3, r3, r2)
    mov(r0, r12)
    cmp(r7, 0)
    beq(mpf1)
    label(mpf2)
    ldrb(r4, [r2, 0])
    ldrb(r5, [r2, 1])
    cmp(r4, r5)
    bcs(mpf2a)
    mov(r4, r5)
    label(mpf2a)
    ldrb(r5, [r3, 0])
    cmp(r4, r5)
    bcs(mpf2b)
    mov(r4, r5)
    label(mpf2b)
    ldrb(r5, [r3, 1])
    cmp(r4, r5)
    bcs(mpf2c)
    mov(r4, r5)
    label(mpf2c)
    strb(r4, [r1, 0])
    ldrb(r4, [r2, 2])
    ldrb(r5, [r2, 3])
    cmp(r4, r5)
    bcs(mpf2d)
    mov(r4, r5)
    label(mpf2d)
    ldrb(r5, [r3, 2])
    cmp(r4, r5)
    bcs(mpf2e)
    mov(r4, r5)
    label(mpf2e)
    ldrb(r5, [r3, 3])
    cmp(r4, r5)
    bcs(mpf2f)
    mov(r4, r5)
    label(mpf2f)
    strb(r4, [r1, 1])
    add(r1, 2)
    add(r2, 4)
    add(r3, 4)
    sub(r0, 2)
    bne(mpf2)
    b(mpf_row_end)
    label(mpf1)
    ldrb(r4, [r2, 0])
    ldrb(r5, [r2, 1])
    cmp(r4, r5)
    bcs(mpf1a)
    mov(r4, r5)
    label(mpf1a)
    ldrb(r5, [r3, 0])
    cmp(r4, r5)
    bcs(mpf1b)
    mov(r4, r5)
    label(mpf1b)
    ldrb(r5, [r3, 1])
    cmp(r4, r5)
    bcs(mpf1c)
    mov(r4, r5)
    label(mpf1c)
    strb(r4, [r1, 0])
    add(r1, 1)
    add(r2, r2, r6)
    add(r3, r3, r6)
    sub(r0, 1)
    bne(mpf1)
    label(mpf_row_end)
    data(2, _ADD_R9_R10)
    mov(r3, r8)
    sub(r3, 1)
    mov(r8, r3)
    bne(mpf_row)
    data(2, _LDR_R3_SP8)
    data(2, _ADD_R9_R3)
    data(2, _LDR_R3_SP4)
    sub(r3, 1)
    data(2, _STR_R3_SP4)
    bne(mpf_c)
    b(finish)
    label(mp_c)
    ldr(r3, [r7, 4 * _GB])
    str(r3, [r7, 4 * _RB])
    mov(r6, r7)
    add(r6, 128)
    ldr(r3, [r6, 4 * _C_OH])
    str(r3, [r7, 4 * _OYC])
    label(mp_row)
    ldr(r2, [r7, 4 * _RB])  # r2 = window base
    label(mp_any)
    ldr(r3, [r7, 4 * _OW])
    str(r3, [r7, 4 * _OXC])
    label(mp_pos)
    ldr(r4, [r7, 4 * _TOFF])  # r4 = offsets cursor, r6 = their end, r5 = best
    ldr(r6, [r7, 4 * _TEND])
    mov(r5, 0)
    label(mp_t)
    ldr(r3, [r4, 0])
    data(2, _LDRB_R3_R2_R3)
    cmp(r3, r5)
    bls(mp_n)
    mov(r5, r3)
    label(mp_n)
    add(r4, 4)
    cmp(r4, r6)
    bcc(mp_t)
    strb(r5, [r1, 0])
    add(r1, 1)
    ldr(r3, [r7, 4 * _SW])
    add(r2, r2, r3)
    ldr(r3, [r7, 4 * _OXC])
    sub(r3, 1)
    str(r3, [r7, 4 * _OXC])
    bne(mp_pos)
    label(mp_row_done)
    ldr(r3, [r7, 4 * _RB])
    ldr(r4, [r7, 4 * _RSTR])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _RB])
    ldr(r3, [r7, 4 * _OYC])
    sub(r3, 1)
    str(r3, [r7, 4 * _OYC])
    bne(mp_row)
    mov(r6, r7)
    add(r6, 128)
    ldr(r3, [r7, 4 * _GB])
    ldr(r4, [r6, 4 * _C_GSTR])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _GB])
    ldr(r3, [r7, 4 * _GCNT])
    sub(r3, 1)
    str(r3, [r7, 4 * _GCNT])
    bne(mp_c)
    b(finish)

    # ---- avgpool (uquant_rt.avgpool): r0 = x, r7 = header. Position records (5 words): offset of the
    # window's first byte, rows, columns, byte offset of the class record, taps * zp.
    label(avgpool)
    mov(r3, 1)
    mov(r12, r3)  # chan's output step
    ldr(r3, [r6, 4 * _C_OUT])
    str(r3, [r7, 4 * _OCUR])
    str(r0, [r7, 4 * _GB])
    mov(r3, 0)
    str(r3, [r7, 4 * _GCNT])  # channel number, counting up
    label(ap_c)
    mov(r6, r7)
    add(r6, 128)
    ldr(r3, [r7, 4 * _GCNT])
    ldr(r4, [r6, 4 * _C_G])
    cmp(r3, r4)
    bge(ap_done)
    ldr(r5, [r6, 4 * _C_Q])
    ldr(r4, [r6, 4 * _C_CV])
    cmp(r3, r4)
    bge(ap_q)
    ldr(r4, [r6, 4 * _C_KOFF])
    add(r5, r5, r4)
    label(ap_q)
    str(r5, [r7, 4 * _QG])
    ldr(r3, [r7, 4 * _TOFF])
    str(r3, [r7, 4 * _WCUR])
    ldr(r3, [r7, 4 * _OHW])
    str(r3, [r7, 4 * _OXC])
    label(ap_p)
    ldr(r2, [r7, 4 * _WCUR])  # r2 = position record
    ldr(r0, [r7, 4 * _GB])
    ldr(r3, [r2, 0])
    add(r0, r0, r3)  # r0 = the window row's first byte
    ldr(r4, [r2, 4])  # r4 = rows left
    mov(r5, 0)  # r5 = sum
    label(ap_r)
    ldr(r6, [r2, 8])
    add(r6, r6, r0)
    mov(r1, r0)
    label(ap_b)
    ldrb(r3, [r1, 0])
    add(r5, r5, r3)
    add(r1, 1)
    cmp(r1, r6)
    bcc(ap_b)
    ldr(r3, [r7, 4 * _SW])
    add(r0, r0, r3)
    sub(r4, 1)
    bne(ap_r)
    ldr(r3, [r2, 16])
    sub(r0, r5, r3)  # acc = sum - taps * zp
    ldr(r1, [r2, 12])
    ldr(r3, [r7, 4 * _QG])
    add(r1, r1, r3)  # the class record
    add(r2, 20)
    str(r2, [r7, 4 * _WCUR])
    ldr(r6, [r7, 4 * _OCUR])
    ldr(r5, [r7, 4 * _T])
    mov(r7, 0)  # sx (the records' c is 0)
    bl(chan)
    data(2, _LDR_R7_SP0)
    str(r6, [r7, 4 * _OCUR])
    ldr(r3, [r7, 4 * _OXC])
    sub(r3, 1)
    str(r3, [r7, 4 * _OXC])
    bne(ap_p)
    mov(r6, r7)
    add(r6, 128)
    ldr(r3, [r7, 4 * _GB])
    ldr(r4, [r6, 4 * _C_GSTR])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _GB])
    ldr(r3, [r7, 4 * _GCNT])
    add(r3, 1)
    str(r3, [r7, 4 * _GCNT])
    b(ap_c)
    label(ap_done)
    b(finish)

    # ---- blocks of eight channels: two blocks of four in one pass over the window (x[k] loaded once for
    # eight multiply-adds; 3.6 cycles per multiply-add). Per tap two words (n0-n3, n4-n7), lanes as in the
    # blocks of four; sums in r8-r11 (n0-n3: n0 | n2 << 16, n1 | n3 << 16, n2, n3) and r2, r4, r12, lr (n4-n7
    # likewise). n4-n7 wait in the header's _WCUR.._CNT words (the single channels set them afterwards) while
    # n0-n3 are requantized, then go through the blocks of four's requantization.
    label(b8_go)
    data(2, _STR_R3_SP8)
    push({r1, r5, r6, r7})
    data(2, _LDR_R1_SP20)
    data(2, _LDR_R7_SP16)
    ldr(r0, [r7, 4 * _WIN])
    ldr(r2, [r7, 4 * _K8])
    add(r2, r2, r0)
    ldr(r3, [r7, 4 * _K8T])
    add(r3, r3, r2)
    push({r2, r3})  # [sp, 0] = end of the unrolled taps, [sp, 4] = end of the window; header at [sp, 24]
    mov(r3, 255)
    lsl(r5, r3, 16)
    orr(r3, r5)
    mov(r5, 0)
    mov(r8, r5)
    mov(r9, r5)
    mov(r10, r5)
    mov(r11, r5)
    mov(r12, r5)
    data(2, _MOV_LR_R5)
    mov(r2, 0)
    mov(r4, 0)
    b(c8_test)
    label(c8)
    ldrb(r5, [r0, 0])
    ldr(r6, [r1, 0])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 4])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    ldrb(r5, [r0, 1])
    ldr(r6, [r1, 8])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 12])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    ldrb(r5, [r0, 2])
    ldr(r6, [r1, 16])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 20])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    ldrb(r5, [r0, 3])
    ldr(r6, [r1, 24])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 28])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    ldrb(r5, [r0, 4])
    ldr(r6, [r1, 32])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 36])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    ldrb(r5, [r0, 5])
    ldr(r6, [r1, 40])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 44])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    ldrb(r5, [r0, 6])
    ldr(r6, [r1, 48])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 52])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    ldrb(r5, [r0, 7])
    ldr(r6, [r1, 56])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 60])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    add(r0, 8)
    add(r1, 64)
    label(c8_test)
    data(2, _LDR_R5_SP0)
    cmp(r0, r5)
    bcs(c8_end)
    b(c8)
    label(c8_end)
    b(c1_test)
    label(c1)
    ldrb(r5, [r0, 0])
    ldr(r6, [r1, 0])  # channels n0-n3 at this tap
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    data(2, _ADD_R8_R6)
    data(2, _ADD_R9_R7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R10_R6)
    data(2, _ADD_R11_R7)
    ldr(r6, [r1, 4])  # n4-n7
    lsr(r7, r6, 8)
    and_(r6, r3)
    and_(r7, r3)
    mul(r6, r5)
    mul(r7, r5)
    add(r2, r2, r6)
    add(r4, r4, r7)
    lsr(r6, r6, 16)
    lsr(r7, r7, 16)
    data(2, _ADD_R12_R6)
    data(2, _ADD_LR_R7)
    add(r0, 1)
    add(r1, 8)
    label(c1_test)
    data(2, _LDR_R5_SP4)
    cmp(r0, r5)
    bcc(c1)
    data(2, _STR_R1_SP28)  # the next block's words
    data(2, _LDR_R7_SP24)  # header
    mov(r6, r12)
    lsl(r5, r6, 16)
    sub(r2, r2, r5)
    str(r2, [r7, 4 * _WCUR])  # n4
    str(r6, [r7, 4 * _OCUR])  # n6
    data(2, _MOV_R6_LR)
    lsl(r5, r6, 16)
    sub(r4, r4, r5)
    str(r4, [r7, 4 * _QCUR])  # n5
    str(r6, [r7, 4 * _CNT])  # n7
    ldr(r3, [r7, 4 * _OHW])
    mov(r12, r3)
    mov(r6, r10)
    lsl(r6, r6, 16)
    mov(r5, r8)
    sub(r5, r5, r6)
    mov(r8, r5)
    mov(r6, r11)
    lsl(r6, r6, 16)
    mov(r5, r9)
    sub(r5, r5, r6)
    mov(r9, r5)
    data(2, _ADD_SP_8)
    pop({r1, r5, r6, r7})
    mov(r0, r8)  # chan, inline: its direct and split forms and the clamped codes
    data(2, _LDM_R1_R2_R4)
    mul(r2, r7)
    sub(r0, r0, r2)
    sub(r0, r0, r3)
    bmi(j0_neg)
    cmp(r0, r4)
    bgt(j0_big)
    data(2, _LDM_R1_R2_R4)
    cmp(r4, 31)
    bhi(j0_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    b(j0_done)
    label(j0_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)
    lsr(r3, r4, 9)
    bne(j0_rest)
    data(2, _LDM_R1_R3_R4)
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    b(j0_done)
    label(j0_neg)
    ldr(r0, [r1, 32])
    b(j0_st)
    label(j0_big)
    ldr(r0, [r1, 36])
    label(j0_st)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    b(j0_done)
    label(j0_rest)
    bl(ch_other2)
    label(j0_done)
    mov(r0, r9)  # chan, inline: its direct and split forms and the clamped codes
    data(2, _LDM_R1_R2_R4)
    mul(r2, r7)
    sub(r0, r0, r2)
    sub(r0, r0, r3)
    bmi(j1_neg)
    cmp(r0, r4)
    bgt(j1_big)
    data(2, _LDM_R1_R2_R4)
    cmp(r4, 31)
    bhi(j1_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    b(j1_done)
    label(j1_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)
    lsr(r3, r4, 9)
    bne(j1_rest)
    data(2, _LDM_R1_R3_R4)
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    b(j1_done)
    label(j1_neg)
    ldr(r0, [r1, 32])
    b(j1_st)
    label(j1_big)
    ldr(r0, [r1, 36])
    label(j1_st)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    b(j1_done)
    label(j1_rest)
    bl(ch_other2)
    label(j1_done)
    mov(r0, r10)  # chan, inline: its direct and split forms and the clamped codes
    data(2, _LDM_R1_R2_R4)
    mul(r2, r7)
    sub(r0, r0, r2)
    sub(r0, r0, r3)
    bmi(j2_neg)
    cmp(r0, r4)
    bgt(j2_big)
    data(2, _LDM_R1_R2_R4)
    cmp(r4, 31)
    bhi(j2_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    b(j2_done)
    label(j2_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)
    lsr(r3, r4, 9)
    bne(j2_rest)
    data(2, _LDM_R1_R3_R4)
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    b(j2_done)
    label(j2_neg)
    ldr(r0, [r1, 32])
    b(j2_st)
    label(j2_big)
    ldr(r0, [r1, 36])
    label(j2_st)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    b(j2_done)
    label(j2_rest)
    bl(ch_other2)
    label(j2_done)
    mov(r0, r11)  # chan, inline: its direct and split forms and the clamped codes
    data(2, _LDM_R1_R2_R4)
    mul(r2, r7)
    sub(r0, r0, r2)
    sub(r0, r0, r3)
    bmi(j3_neg)
    cmp(r0, r4)
    bgt(j3_big)
    data(2, _LDM_R1_R2_R4)
    cmp(r4, 31)
    bhi(j3_other)
    mul(r0, r2)
    add(r0, r0, r3)
    asr(r0, r4)
    data(2, _LDRB_R0_R5_R0)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 28)
    b(j3_done)
    label(j3_other)
    mul(r2, r0)
    add(r2, r2, r3)
    asr(r2, r4)
    lsr(r3, r4, 9)
    bne(j3_rest)
    data(2, _LDM_R1_R3_R4)
    mul(r3, r0)
    add(r3, r3, r4)
    add(r3, r3, r2)
    ldr(r4, [r1, 0])
    asr(r3, r4)
    data(2, _LDRB_R3_R5_R3)
    strb(r3, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 20)
    b(j3_done)
    label(j3_neg)
    ldr(r0, [r1, 32])
    b(j3_st)
    label(j3_big)
    ldr(r0, [r1, 36])
    label(j3_st)
    strb(r0, [r6, 0])
    data(2, _ADD_R6_R12)
    add(r1, 40)
    b(j3_done)
    label(j3_rest)
    bl(ch_other2)
    label(j3_done)
    data(2, _LDR_R3_SP0)  # header: n4-n7 to the blocks of four's requantization
    ldr(r0, [r3, 4 * _WCUR])
    mov(r8, r0)
    ldr(r0, [r3, 4 * _QCUR])
    mov(r9, r0)
    ldr(r0, [r3, 4 * _OCUR])
    mov(r10, r0)
    ldr(r0, [r3, 4 * _CNT])
    mov(r11, r0)
    bl(i0_start)  # (a jump)

    # ---- a chain: r0 = x, r2 = the chain's words: count, then per layer its input (0: x), output, header
    # (segments for a table) and kind (0: body, 1: code table, as _lut). [sp, 0] = x, [sp, 4] = cursor,
    # [sp, 8] = layers left.
    label(chain)
    ldr(r3, [r2, 0])
    add(r2, 4)
    push({r0, r2, r3})
    label(cn_next)
    data(2, _LDR_R3_SP8)
    sub(r3, 1)
    bmi(cn_end)
    data(2, _STR_R3_SP8)
    data(2, _LDR_R2_SP4)
    data(2, _LDM_R2_R0_R1_R3_R4)
    data(2, _STR_R2_SP4)
    cmp(r0, 0)
    bne(cn_src)
    data(2, _LDR_R0_SP0)
    label(cn_src)
    mov(r2, r3)
    cmp(r4, 0)
    bne(cn_lut)
    bl(body)
    b(cn_next)
    label(cn_lut)  # _lut's loop
    ldr(r3, [r2, 0])
    add(r2, 4)
    label(cl_seg)
    cmp(r3, 0)
    beq(cn_next)
    ldr(r4, [r2, 0])
    ldr(r5, [r2, 4])
    ldr(r6, [r2, 8])
    add(r2, 12)
    sub(r3, 1)
    b(cl_test)
    label(cl_loop)
    add(r7, r0, r4)
    ldrb(r7, [r7, 0])
    data(2, _LDRB_R7_R6_R7)
    data(2, _STRB_R7_R1_R4)
    add(r4, 1)
    label(cl_test)
    cmp(r4, r5)
    blt(cl_loop)
    b(cl_seg)
    label(cn_end)
    data(2, _ADD_SP_12)
    mov(r0, 0)
    label(leave)


def _header(kind):
    H = array("i", bytes(4 * _HWORDS))
    H[_COLD + _C_KIND] = kind
    H[_T] = _addr(_IDENTITY)
    return H


def _padding(H, C, Hi, Wd, PH, PW, fill):
    # The padded input buffer (border = fill) and the copy's words, or None without padding. Returns (buffer,
    # padded row bytes, padded channel bytes).
    if not PH and not PW:
        return None, Wd, Hi * Wd
    Hp = Hi + 2 * PH
    Wp = Wd + 2 * PW
    key = (C, Hi, Wd, PH, PW, fill)  # layers of one padded shape and fill share a buffer: each call rewrites
    xp = _PADS.get(key)  # its interior before reading it, and nothing ever writes its border
    if xp is None:
        xp = bytearray(bytes((fill,)) * (C * Hp * Wp))
        _PADS[key] = xp
    H[_COLD + _C_XP] = _addr(xp)
    H[_COLD + _C_NC] = C
    H[_COLD + _C_H] = Hi
    H[_COLD + _C_WD] = Wd
    H[_COLD + _C_WPD] = Wp - Wd
    H[_COLD + _C_XSKIP] = 2 * PH * Wp
    H[_COLD + _C_XOFF] = PH * Wp + PW
    return xp, Wp, Hp * Wp


def _taps(H, cg, KH, KW, DH, DW, Wp, HWp):
    # Offsets of a window's taps from its first byte, in uquant_rt.conv's order (channel, row, column).
    n = cg * KH * KW
    toff = array("i", bytes(4 * n))
    t = 0
    for c in range(cg):
        for ky in range(KH):
            for kx in range(KW):
                toff[t] = c * HWp + ky * DH * Wp + kx * DW
                t += 1
    H[_KK] = n
    H[_TOFF] = _addr(toff)
    H[_TEND] = H[_TOFF] + 4 * n
    return toff


def _int32s(v):
    # Words (int32 little-endian bytes, uquant_rt.as_words; or a sequence of ints) as an array('i'). The kernels
    # read the records _records builds from them, so for P this is a temporary.
    if v is None:
        return array("i")
    if isinstance(v, (bytes, bytearray)):
        try:
            return array("i", v)  # MicroPython copies bytes raw
        except TypeError:  # CPython
            a = array("i")
            a.frombytes(v)
            return a
    return array("i", v)


def _fixes(E, N):
    # Exception triples (n, a, code) as an array, checked sorted by (n, a); and each n's [first, end) index.
    E = _int32s(E)
    if len(E) % 3:
        raise ValueError("uquant_thumbconv: exceptions are not (channel, a, code) triples")
    first = {}
    last = {}
    for j in range(0, len(E), 3):
        if not 0 <= E[j] < N or (j and (E[j - 3], E[j - 2]) >= (E[j], E[j + 1])):
            raise ValueError("uquant_thumbconv: exceptions must name channels < %d, sorted by (channel, a)" % N)
        if E[j] not in first:
            first[E[j]] = j
        last[E[j]] = j + 3
    return E, first, last


def _requant(a, A, Dh, Dl, S):
    # uquant_rt.requant's y for a clamped a (every intermediate within +-2**30)
    if S < 30:
        return (a * A + Dl) >> S
    al = a & 0x7FFF
    ah = a >> 15
    Al = A & 0x7FFF
    Ah = A >> 15
    lo = al * Al + (Dl & 0x7FFF)
    mid = ah * Al + al * Ah + (Dl >> 15) + (lo >> 15)
    return (ah * Ah + Dh + (mid >> 15)) >> (S - 30)


def _code(a, A, Dh, Dl, S, E, j, end, lo, hi, T):
    # The output code of a clamped a, as uquant_rt.requant_channel and the table give it.
    y = _requant(a, A, Dh, Dl, S)
    while j < end:
        if E[j + 1] == a:
            y = E[j + 2]
            break
        j += 3
    y = lo if y < lo else hi if y > hi else y
    return y if T is None else T[y]


def _split(Wn, A, Dh, Dl, S):
    # The split form of a limb-form channel, or None: with A = Ahi * 2**k + Alo and D = Dh * 2**30 + Dl =
    # Dhi * 2**k + Dlo (0 <= Alo, Dlo < 2**k),  y = (a * Ahi + Dhi + ((a * Alo + Dlo) >> k)) >> (S - k)  exactly,
    # and for a in [0, Wn] every term stays within +-2**30 (k is chosen so that a * Alo + Dlo < 2**30).
    if A < 0 or Wn < 0:
        return None
    k = 30
    w = Wn + 1
    while w > 1:
        w = (w + 1) >> 1
        k -= 1
    if k > S:
        k = S
    if k < 1 or k > 29 or Dl < 0 or Dl > 0x3FFFFFFF:
        return None
    if Dh:
        if not -(1 << (k - 1)) < Dh < 1 << (k - 1):
            return None
        Dhi = Dh * (1 << (30 - k)) + (Dl >> k)
    else:
        Dhi = Dl >> k
    m = (1 << k) - 1
    Ahi = A >> k
    room = 0x3FFFFFFF - (Dhi if Dhi > 0 else -Dhi) - (1 << (30 - k))
    if room < 0 or (Ahi and Wn > room // Ahi):
        return None
    return Ahi, A & m, Dhi, Dl & m, k


def _records(N, words, n_words, E, lo, hi, T, sat):
    # The 13-word records chan reads (see the top of the file), from n_words requantization words per channel
    # or class (7: c first; 6: avgpool's, c = 0).
    E, first, last = _fixes(E, N)
    base = _addr(E) if len(E) else _addr(_NONE)
    Q = array("i", bytes(4 * _REC * N))
    for n in range(N):
        p = n_words * n
        c = words[p] if n_words == 7 else 0
        p += n_words - 6
        c_lo, Wn, A, Dh, Dl, S = words[p], words[p + 1], words[p + 2], words[p + 3], words[p + 4], words[p + 5]
        if Wn < 0:
            raise ValueError("uquant_thumbconv: bad requantization words")
        split = _split(Wn, A, Dh, Dl, S) if S >= 30 else None
        y0 = _requant(0, A, Dh, Dl, S)
        y1 = _requant(Wn, A, Dh, Dl, S)
        exc = n in first
        slow = min(y0, y1) < lo or max(y0, y1) > hi or (S >= 30 and split is None)
        if exc:
            for j in range(first[n], last[n], 3):
                if not lo <= E[j + 2] <= hi:
                    slow = True
        r = _REC * n
        Q[r] = c - 128 if sat else c
        Q[r + 1] = c_lo
        Q[r + 2] = Wn
        Q[r + 9] = base + 4 * first.get(n, 0)
        Q[r + 10] = base + 4 * last.get(n, 0)
        Q[r + 11] = _code(0, A, Dh, Dl, S, E, first.get(n, 0), last.get(n, 0), lo, hi, T)
        Q[r + 12] = _code(Wn, A, Dh, Dl, S, E, first.get(n, 0), last.get(n, 0), lo, hi, T)
        if slow or split is None:
            Q[r + 3] = A
            Q[r + 4] = Dl
            Q[r + 5] = 0x800 | S if slow else 0x400 | S if exc else S
            Q[r + 6] = Dh
        else:
            Ahi, Alo, Dhi, Dlo, k = split
            Q[r + 3] = Alo
            Q[r + 4] = Dlo
            Q[r + 5] = 0x300 | k if exc else 0x100 | k
            Q[r + 6] = Ahi
            Q[r + 7] = Dhi
            Q[r + 8] = S - k
    return Q, E


def prepare_conv(g, xzp, lo, hi, W, P, E, T):
    # Handle for conv(): arguments as for uquant_rt.conv, except E = sorted flat (n, a, code) triples and no
    # window buffer (the handle owns one). None for SAT 2 (the next module of the tier takes the layer).
    P = _int32s(P)
    if len(g) != 16:
        raise ValueError("uquant_thumbconv: conv geometry has 16 entries")
    C, Hi, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT = g
    if SAT == 2:
        return None
    if G < 1 or C % G or N % G or SAT not in (0, 1) or not 0 <= lo <= hi <= 255 or not 0 <= xzp <= 255:
        raise ValueError("uquant_thumbconv: bad conv layer")
    if min(OH, OW, KH, KW, SH, SW, DH, DW) < 1 or min(PH, PW) < 0:
        raise ValueError("uquant_thumbconv: bad conv geometry")
    if T is not None and len(T) != 256:
        raise ValueError("uquant_thumbconv: a code table has 256 entries")
    cg = C // G
    ng = N // G
    kk = cg * KH * KW
    if len(W) != N * kk or len(P) != 7 * N:
        raise ValueError("uquant_thumbconv: conv weights or words do not match the geometry")
    H = _header(0)
    xp, Wp, HWp = _padding(H, C, Hi, Wd, PH, PW, xzp)
    if (OH - 1) * SH + (KH - 1) * DH >= HWp // Wp or (OW - 1) * SW + (KW - 1) * DW >= Wp:
        raise ValueError("uquant_thumbconv: conv windows leave the padded input")
    toff = _taps(H, cg, KH, KW, DH, DW, Wp, HWp)
    win = bytearray(kk + 8)
    dw = cg == 1 and ng == 1
    Q, E = _records(N, P, 7, E, lo, hi, T, SAT or dw)
    taps = None
    if dw:  # per group: bytes of the paired taps, flags (1 pairs, 2 odd tap), then each tap's offset, w - 128
        taps = array("i", bytes(4 * (2 + 2 * kk) * G))
        j = 0
        for grp in range(G):
            i = grp * kk
            mode = 2 if kk % 2 else 0
            if SAT:  # pairs only where a pair can leave int16
                for k in range(0, kk - 1, 2):
                    w0 = W[i + k] - 128
                    w1 = W[i + k + 1] - 128
                    if 255 * ((w0 if w0 > 0 else 0) + (w1 if w1 > 0 else 0)) > 32767:
                        mode |= 1
                    if 255 * ((w0 if w0 < 0 else 0) + (w1 if w1 < 0 else 0)) < -32768:
                        mode |= 1
            taps[j] = 8 * (kk - kk % 2)
            taps[j + 1] = mode
            j += 2
            for t in range(kk):
                taps[j] = toff[t]
                taps[j + 1] = W[i + t] - 128
                j += 2
    wgs = ng * kk
    if not dw and not SAT and ng >= 4:  # per group: its blocks of four channels as words (one per tap, the
        wgs = (ng * kk + 3) & ~3  # channels in its bytes), then its other channels' rows; groups word-aligned
        tb = bytearray(wgs * G)
        for grp in range(G):
            j = grp * wgs
            n0 = grp * ng
            nb = ng // 4
            for b in range(0, nb - 1, 2):  # pairs of blocks (blocks of eight): per tap n0-n3, then n4-n7
                for k in range(kk):
                    for i in range(8):
                        tb[j] = W[(n0 + 4 * b + i) * kk + k]
                        j += 1
            if nb % 2:
                for k in range(kk):
                    for i in range(4):
                        tb[j] = W[(n0 + 4 * nb - 4 + i) * kk + k]
                        j += 1
            for n in range(n0 + ng - ng % 4, n0 + ng):
                for k in range(kk):
                    tb[j] = W[n * kk + k]
                    j += 1
        taps = _int32s(tb)  # word-aligned
    if T is not None:
        H[_T] = _addr(T)
    H[_COLD + _C_G] = G
    H[_COLD + _C_GSTR] = cg * HWp
    H[_COLD + _C_OH] = OH
    H[_OW] = OW
    H[_RSTR] = SH * Wp
    H[_SW] = SW
    H[_WIN] = _addr(win)
    H[_COLD + _C_W] = _addr(W) if taps is None else _addr(taps)
    H[_COLD + _C_Q] = _addr(Q)
    H[_NB] = 0 if SAT else ng // 4
    H[_NR] = ng if SAT else ng % 4
    H[_OHW] = OH * OW
    H[_K8] = kk - kk % 8
    H[_K8T] = kk % 8
    H[_K4] = kk - kk % 4
    H[_KT] = kk % 4
    H[_K2] = kk - kk % 2
    H[_SAT] = SAT
    H[_COLD + _C_LO] = lo
    H[_COLD + _C_HI] = hi
    H[_COLD + _C_WGS] = 4 * (2 + 2 * kk) if dw else wgs
    if dw:
        H[_NB] = -1
    H[_COLD + _C_QGS] = 4 * _REC * ng
    H[_COLD + _C_OGS] = ng * OH * OW
    return (H, W, Q, E, T, win, xp, toff, taps)


def conv(x, out, handle):
    # out = the convolution of the handle's layer over the CHW codes x (as uquant_rt.conv). Allocates nothing.
    _run(x, out, handle[0])


def prepare_maxpool(g):
    # Handle for maxpool(): g as for uquant_rt.maxpool (C, H, Wd, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW).
    if len(g) != 13:
        raise ValueError("uquant_thumbconv: maxpool geometry has 13 entries")
    C, Hi, Wd, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW = g
    if min(C, OH, OW, KH, KW, SH, SW, DH, DW) < 1 or min(PH, PW) < 0:
        raise ValueError("uquant_thumbconv: bad maxpool geometry")
    H = _header(1)
    xp, Wp, HWp = _padding(H, C, Hi, Wd, PH, PW, 0)  # 0 never beats a real code, and every window has one
    if (OH - 1) * SH + (KH - 1) * DH >= HWp // Wp or (OW - 1) * SW + (KW - 1) * DW >= Wp:
        return None  # a window reaching past the padding (ceil mode): left to the next module
    toff = _taps(H, 1, KH, KW, DH, DW, Wp, HWp)
    if KH == 2 and KW == 2 and DW == 1:
        H[_K4] = DH * Wp  # the 2x2 loop
        H[_KT] = 1 if SW == 2 and OW % 2 == 0 else 0
        H[_COLD + _C_KOFF] = HWp - OH * SH * Wp
    H[_COLD + _C_G] = C
    H[_COLD + _C_GSTR] = HWp
    H[_COLD + _C_OH] = OH
    H[_OW] = OW
    H[_RSTR] = SH * Wp
    H[_SW] = SW
    return (H, xp, toff)


def maxpool(x, out, handle):
    # out = the max over each window of each channel of x (as uquant_rt.maxpool). Allocates nothing.
    _run(x, out, handle[0])


def prepare_avgpool(g, R, Q, cls, lo, hi, P, E):
    # Handle for avgpool(): arguments as for uquant_rt.avgpool, except E = sorted flat (class, a, code) triples.
    P = _int32s(P)
    if len(g) != 8:
        raise ValueError("uquant_thumbconv: avgpool geometry has 8 entries")
    C, Hi, Wd, OH, OW, zp, cv, K = g
    n_cls = K * (2 if cv else 1)
    if len(P) != 6 * n_cls or len(R) != 2 * OH or len(Q) != 2 * OW or len(cls) != OH * OW or not 0 <= lo <= hi <= 255:
        raise ValueError("uquant_thumbconv: bad avgpool layer")
    H = _header(2)
    recs = array("i", bytes(20 * OH * OW))
    j = 0
    for oy in range(OH):
        y0 = R[2 * oy]
        y1 = R[2 * oy + 1]
        for ox in range(OW):
            x0 = Q[2 * ox]
            x1 = Q[2 * ox + 1]
            k = cls[oy * OW + ox]
            if not (0 <= y0 < y1 <= Hi and 0 <= x0 < x1 <= Wd and 0 <= k < K):
                return None  # an empty window: left to the next module
            recs[j] = y0 * Wd + x0
            recs[j + 1] = y1 - y0
            recs[j + 2] = x1 - x0
            recs[j + 3] = 4 * _REC * k
            recs[j + 4] = (y1 - y0) * (x1 - x0) * zp
            j += 5
    Qr, E = _records(n_cls, P, 6, E, lo, hi, None, 0)
    H[_COLD + _C_G] = C
    H[_COLD + _C_GSTR] = Hi * Wd
    H[_SW] = Wd  # the input row's bytes
    H[_TOFF] = _addr(recs)
    H[_COLD + _C_Q] = _addr(Qr)
    H[_COLD + _C_CV] = cv
    H[_COLD + _C_KOFF] = 4 * _REC * K
    H[_OHW] = OH * OW
    H[_COLD + _C_LO] = lo
    H[_COLD + _C_HI] = hi
    return (H, recs, Qr, E)


def avgpool(x, out, handle):
    # out = the average pooling of the handle's layer over x (as uquant_rt.avgpool). Allocates nothing.
    _run(x, out, handle[0])


# ---- code tables: out[i] = T[x[i]] over segments (uquant_rt.lut) --------------------------------------------------



@micropython.asm_thumb
def _lut(r0, r1, r2):
    # r0 = x, r1 = out, r2 = segments (array 'i'): count, then per segment start, stop, address of its 256-byte
    # table. About 9 cycles per byte. Returns 0.
    push({r4, r5, r6, r7})
    ldr(r3, [r2, 0])
    add(r2, 4)
    label(seg)
    cmp(r3, 0)
    beq(done)
    ldr(r4, [r2, 0])  # i = start
    ldr(r5, [r2, 4])  # stop
    ldr(r6, [r2, 8])  # T
    add(r2, 12)
    sub(r3, 1)
    b(test)
    label(loop)
    add(r7, r0, r4)
    ldrb(r7, [r7, 0])  # x[i]
    data(2, _LDRB_R7_R6_R7)  # T[x[i]]
    data(2, _STRB_R7_R1_R4)  # out[i] =
    add(r4, 1)
    label(test)
    cmp(r4, r5)
    blt(loop)
    b(seg)
    label(done)
    pop({r4, r5, r6, r7})
    mov(r0, 0)


def prepare_table(n, T, n_vec, Tt, cuts, HW):
    # Handle for table(): the arguments of uquant_rt's table node (T on torch's SIMD-block positions, Tt on the
    # scalar tail; cuts per channel for channels-last tensors, see uquant_rt.simd_cuts), as segments.
    if len(T) != 256 or len(Tt) != 256:
        raise ValueError("uquant_thumbconv: a code table has 256 entries")
    if cuts is None:
        segs = ((0, n_vec, T), (n_vec, n, Tt))
    else:
        segs = []
        for c in range(len(cuts)):
            segs.append((c * HW, c * HW + cuts[c], T))
            segs.append((c * HW + cuts[c], c * HW + HW, Tt))
    H = array("i", [len(segs)] + [0] * (3 * len(segs)))
    for j in range(len(segs)):
        a, b, t = segs[j]
        H[1 + 3 * j] = a
        H[2 + 3 * j] = b
        H[3 + 3 * j] = _addr(t)
    return (H, T, Tt, n)


def table(x, out, handle):
    # out[i] = the table of i's segment at x[i], for i < n. Allocates nothing.
    if len(x) < handle[3] or len(out) < handle[3]:
        raise ValueError("uquant_thumbconv.table: buffer too small")
    _lut(x, out, handle[0])


def chain(items):
    # (machine code, its argument) for uquant_rt.Model.link to run consecutive layers of this module in one
    # call f(x, 0, arg): items = (op, handle, input buffer or None for x, output buffer) of layers the model
    # built, whose buffer sizes it checked; None if one of them is not this module's.
    H = array("i", bytes(4 * (1 + 4 * len(items))))
    H[0] = len(items)
    j = 1
    for op, handle, src, out in items:
        if op != "conv" and op != "maxpool" and op != "avgpool" and op != "table":
            return None
        H[j] = 0 if src is None else _addr(src)
        H[j + 1] = _addr(out)
        H[j + 2] = _addr(handle[0])
        H[j + 3] = 1 if op == "table" else 0
        j += 4
    return (_run, H)


def direct(op, handle):
    # (machine code, its argument) for uquant_rt.Model.link to call without the wrappers above: a layer the
    # model built, whose buffer sizes it checked
    if op == "table":
        return (_lut, handle[0])
    return (_run, handle[0]) if op == "conv" or op == "maxpool" or op == "avgpool" else None
