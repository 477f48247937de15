# uquant_dsp: the DSP kernel tier of uquant, for Cortex-M cores with the DSP extension (RP2350's Cortex-M33,
# Cortex-M4/M7/M55 boards): dense and conv layers in asm_thumb with SMLAD, two 16x16 multiply-adds per instruction.
#
# It computes exactly what uquant_rt.dense and uquant_rt.conv compute (the reference; see uquant_thumb.py's header
# for the dense formula), with the same Python API as uquant_thumb (dense) and uquant_viper (conv):
#     h = prepare_dense(K, N, lo, hi, W, P, E, T);  dense(x, out, h)
#     h = prepare_conv(g, xzp, lo, hi, W, P, E, T); conv(x, out, h)     (h is None: a layer this tier leaves to the
#                                                                          next module of the tier)
# prepare_* allocate once, when the model is built; dense() and conv() allocate nothing.
#
# Dense (the weights in DENSE_LAYOUT = "dsp" order: uquant_rt.dsp_index, dsp_flip; `uquant convert --board pico2`
# writes it, any other module is copied into it when the model is built). Rows go six at a time, interleaved per
# group of four taps (one weight word per row per group: one cursor, word loads), then a block of four when N % 6 >= 4,
# then plain rows. In each word the bytes of taps 0 and 2 hold u = w + 128 (0..255), those of taps 1 and 3 hold w
# itself as a signed byte (u XOR 0x80), so the raw word read as two int16 lanes is (u0 + 256*w1, u2 + 256*w3). The
# input is unpacked once per call into X, two words per group: Y = (x1 - 255, x3 - 255) and
# Z = (256*(x0 - 128) - (x1 - 255), 256*(x2 - 128) - (x3 - 255)), both within int16. Then per four taps and channel
#     SMLAD(raw, Y) + SMLAD(UXTB16(raw), Z) = 256 * (u0*(x0-128) + w1*(x1-255) + u2*(x2-128) + w3*(x3-255))
# one load, one UXTB16 and two SMLAD for four multiply-adds; six channels per pass share X's two words. The sum D
# over a chunk of at most 256 taps stays within +-32640*256 < 2**23, so 256*D fits an int32; chunks are folded
# (ASR 8) into the channel's sum, which starts at Cn + 128*(sum of the odd taps' codes), Cn a per-channel constant
# prepare_dense computes from W: that gives back sum x*u, the reference's accumulator. Pad taps past K have zero
# lanes in Y and Z (the weight bytes read past a row, at most 3 bytes past W's end, are multiplied by 0). sx, the
# sum of the input codes, comes from USADA8. Each channel is then requantized as uquant_rt.requant_channel does
# (direct or 15-bit limb form, exceptions, clip, table) in Thumb-2 (SMULL, MLA, MLS, IT); a layer that clips to
# [0, 255] without a table takes a USAT path (FAST 1). Such a layer whose P is read-only (not satfix's bytearray)
# is recast when it is built (FAST 2, prepare_dense and _recast): c_lo and c*sx (c shared by the channels) go into
# the channel's starting sum, so the sum is a = acc - c_lo itself, and each channel's requantization becomes
#     y = USAT8(((a*A' + D') >> 32) >> s')     (one SMLAL; A', D' = A, D scaled by 2**(32-S) when S <= 32)
# on the unclamped a, which prepare_dense proved gives the clamped a's code (A >= 0, y(0) <= 0, y(Wn) >= 255).
# Channels with exceptions take that form then scan them (unless one sits at a = 0 or Wn); a channel outside
# these bounds or with another c takes a general path (P's words, as FAST 1). FAST 2 is used where it is cheaper.
#
# Conv (weights in plain rows, unchanged): input codes x and stored weights u = w + 128 both fit signed 16-bit
# lanes. Each output position's window is gathered into X in "pair order": four taps k..k+3 become the words
# (x0, x2) and (x1, x3), which is what UXTB16 makes of four weight bytes (w0, w2) and, rotated by 8, (w1, w3); four
# rows per pass, per four taps and four channels 6 loads, 8 UXTB16 and 8 SMLAD. When the layer pads, the input is
# first copied into a per-layer image XP with the zero point around it, so every window is inside the image; the
# outputs are strided by OH*OW. Layers this tier does not cover (fbgemm's saturating forms SAT 1 and 2, windows
# beyond 64 KiB of image) get None from prepare_conv.
#
# Speed (Cortex-M33 cycle model of uquant.hosts.thumb, emulated): the dense 32-tap loop takes 228-230 cycles for
# 192 multiply-adds (1.19-1.20 per MAC); a block of six channels costs about 180 cycles besides with FAST 2
# (requantization 12 cycles per output in the SMLAL form, about 20 with one exception, 30 with more; FAST 1 about
# 34 per output and 350 per block, 47 per output without USAT). Whole layers, kernel cycles per MAC: the bench's
# 64-256-256-10 MLP 1.47 (layers 1.76, 1.38, 1.89; it was 1.63 with FAST 1: 2.14, 1.48, 1.99), its digits CNN 5.2
# (conv: small windows, the requantization and the gather weigh; conv loop 1.57 per MAC).
#
# Memory per layer, besides the model's own data: X (2 bytes per tap, rounded up to 4 taps), a 33-word header;
# dense adds Cn (a word per channel) and, with FAST 2, Q (3 words per channel: 6,264 bytes for the bench MLP's 522
# channels); conv adds 32 words, the window's offsets (2 bytes per tap) and, when the layer pads, the padded image
# (one byte per padded input position). Reads past a weight row stay within 3 bytes after W's last byte
# (multiplied by X's zeros).
#
# Import: only on a core with the DSP extension. sys.implementation._mpy names the firmware's native architecture:
# anything but armv7em/armv7emsp/armv7emdp (an RP2040's armv6m, x64, xtensa, RISC-V) raises ImportError before any
# asm is assembled, and uquant_rt falls back to the next tier (uquant_thumb). MicroPython calls every Thumb-2 build
# armv7em*, a Cortex-M3 too, so on a bare-metal board the core itself is asked as well: ID_ISAR3.SIMD_instrs (SCB,
# 0xE000ED6C, present on every ARMv7-M and ARMv8-M Mainline core) is 3 when SMLAD and UXTB16 exist (Cortex-M4, M7,
# M33 as on the RP2350), 1 on a Cortex-M3. (The unix port on ARM Linux is not probed: ARMv7-A has these
# instructions, and the SCB is not mapped there.) CPython imports this file only through the host's emulator
# (uquant.hosts.thumb.emulated_dsp_tier), which supplies the micropython module.

import sys
import micropython
from micropython import const
from array import array

_BOARD = sys.implementation.name != "cpython"
if _BOARD and (getattr(sys.implementation, "_mpy", 0) >> 10) & 0x3F not in (6, 7, 8):
    raise ImportError("uquant_dsp needs an ARMv7E-M (DSP extension) firmware")

# The header (array 'i', one per layer) the kernel reads, by word index (all below 32: Thumb-1 offsets).
_LO = const(0)  # output clip (LO, HI, T, OSTR: read together)
_HI = const(1)
_T = const(2)  # address of the 256-byte code table, or 0
_OSTR = const(3)  # output stride in bytes: 1 (dense) or OH*OW (conv)
_K = const(4)  # taps per channel (dense K, conv C/G*KH*KW)
_NB = const(5)  # channels // 4 (dense N, conv N/G): blocks of four
_NR = const(6)  # channels % 4
_W = const(7)  # address of W (rows of K bytes: weight + 128)
_P = const(8)  # address of P (7 words per channel: c, c_lo, Wn, A, Dh, Dl, S); dense FAST 2: of Q
_E = const(9)  # address of E (exception triples: channel, a, code; sorted by channel then a)
_EEND = const(10)  # address just past the last exception triple
_X = const(11)  # address of X, the input unpacked to halfwords in pair order (K4 of them, pads stay 0)
_X32 = const(12)  # 2 * (K4 rounded down to 32): bytes of X the 32-tap loop reads
_X4 = const(13)  # 2 * K4 (K rounded up to 4)
_MODE = const(14)  # 0 dense, 1 conv
_K4F = const(15)  # K rounded down to 4 (dense unpack)
_KT = const(16)  # K % 4
_SX = const(17)  # working state: sum of the input codes (window)
_WCUR = const(18)  # row of the next channel in W
_PCUR = const(19)  # words of the next channel in P (PCUR, ECUR, OCUR, NCH: read and written together)
_ECUR = const(20)  # next exception triple
_OCUR = const(21)  # next output byte
_NCH = const(22)  # next channel number
_CNT = const(23)  # blocks or single channels left
_CG = const(24)  # conv: address of the geometry words below
_OG = const(25)  # conv working state: out + first channel of the group * OH*OW
_WG = const(26)  # W + first channel of the group * K
_PG = const(27)  # P + first channel of the group * 28
_NG0 = const(28)  # first channel of the group
_FAST = const(29)  # dense: 1 when the layer clips to [0, 255] and has no table (USAT), 2 when besides every
# channel's requantization was recast for SMLAL (prepare_dense: Q)
_PR = const(30)  # dense, FAST 2: the address of P (_P then holds Q's, see prepare_dense)
_OB = const(31)  # dense: out, where this call's outputs start
_C0 = const(32)  # dense: the c the layer's fast channels share (0 unless FAST 2): _SXO = 128*sxo - C0*sx
_HWORDS = const(33)
# dense mode uses the conv words above for its own
_DX32 = const(24)  # 8 * (K // 32 * 4): bytes of X the dense 32-tap loop reads
_DXF = const(25)  # 8 * (K // 4): bytes of X in whole groups of four taps
_CN = const(26)  # address of Cn (a word per channel, see prepare_dense)
_CCUR = const(27)  # the next channel's Cn
_SXO = const(28)  # working state: 128 * the sum of the odd taps' codes
_D4C = const(13)  # 1 when a block of four rows follows the blocks of six (N % 6 >= 4)
_D4 = const(12)  # working state: _D4C, cleared once that block ran

# Conv geometry words (array 'i'), by index
_XP = const(0)  # address of the padded image, or 0 (the layer does not pad: windows read x)
_C = const(1)
_H = const(2)
_WD = const(3)
_HP = const(4)  # H + 2*PH
_WP = const(5)  # Wd + 2*PW
_PH = const(6)
_PW = const(7)
_FILL = const(8)  # the input zero point
_XPW = const(9)  # words of XP
_G = const(10)
_OH = const(11)
_OW = const(12)
_RSTEP = const(13)  # SH * WP: image bytes between output rows
_SW = const(14)
_GSTR = const(15)  # C/G * HP * WP: image bytes between groups
_TAB = const(16)  # address of the window's offsets (u16), pair order for the first F taps, then the rest
_F = const(17)  # taps in whole groups of four (K rounded down to 4)
_R = const(18)  # K % 4
_NG = const(19)  # channels per group
_OHW = const(20)  # OH * OW
_WGS = const(21)  # NG * K: W bytes per group
_PGS = const(22)  # NG * 28: P bytes per group
_GI = const(23)  # working state: group, its image offset, output row, its image offset, column, position,
_GB = const(24)  # exception cursor at the group's first channel, the image the windows read, out
_OYI = const(25)
_RB = const(26)
_OXI = const(27)
_POS = const(28)
_EG = const(29)
_XB = const(30)
_OUTB = const(31)
_CWORDS = const(32)


@micropython.asm_thumb
def _addr(r0):
    # The address of a buffer's data: an asm function receives a buffer argument as its data pointer.
    nop()


@micropython.asm_thumb
def _id_isar3():
    # The core's ID_ISAR3 register (the ARMv7-M ARM's CPUID scheme: SIMD_instrs in bits 7:4).
    movw(r0, 0xED6C)
    movt(r0, 0xE000)
    ldr(r0, [r0, 0])


if _BOARD and sys.platform != "linux" and (_id_isar3() >> 4) & 0xF < 3:
    raise ImportError("uquant_dsp: this core lacks the DSP extension (ID_ISAR3.SIMD_instrs < 3)")


@micropython.asm_thumb
def _kernel(r0, r1, r2):
    # r0 = x, r1 = out, r2 = header. Returns 0. Stack while running: [sp] = header; the dot product's frame below.
    data(2, 0xE92D, 0x5F00)  # push.w {r8-r12, lr}: the caller's
    push({r2})
    ldr(r3, [r2, 4 * _MODE])
    cmp(r3, 0)
    bne_w(conv)

    # ---- dense: unpack x into X (pair order) and sum it, then one dot pass over all channels ------------------
    label(dense)
    str(r1, [r2, 4 * _OCUR])
    str(r1, [r2, 4 * _OB])
    ldr(r3, [r2, 4 * _W])
    str(r3, [r2, 4 * _WCUR])
    ldr(r3, [r2, 4 * _P])
    str(r3, [r2, 4 * _PCUR])
    ldr(r3, [r2, 4 * _E])
    str(r3, [r2, 4 * _ECUR])
    mov(r3, 0)
    str(r3, [r2, 4 * _NCH])
    ldr(r3, [r2, 4 * _X])  # r3 = X cursor
    ldr(r4, [r2, 4 * _K4F])
    add(r4, r4, r0)  # r4 = end of x's whole groups of four
    mov(r5, 0)  # r5 = sx
    mov(r6, 0)
    mov(r8, r6)  # r8 = the sum of the odd taps' codes
    data(2, 0xF04F, 0x19FF)  # mov.w r9, #0x00FF00FF
    b(u_test)
    label(u4)  # four codes x0..x3 -> Z = (256*(x0-128) - (x1-255), 256*(x2-128) - (x3-255)), Y = (x1-255, x3-255)
    ldr(r7, [r0, 0])  # (x may be unaligned: the M33 allows it)
    add(r0, 4)
    data(2, 0xFA3F, 0xF297)  # uxtb16 r2, r7, ror 8: (x1, x3)
    data(2, 0xFA3F, 0xF187)  # uxtb16 r1, r7: (x0, x2)
    data(2, 0xFB72, 0x8806)  # usada8 r8, r2, r6, r8: sxo += x1 + x3
    data(2, 0xFAD2, 0xF209)  # ssub16 r2, r2, r9: Y
    lsl(r1, r1, 8)
    data(2, 0xF081, 0x2180)  # eor.w r1, r1, #0x80008000: (256*(x0-128), 256*(x2-128)) in 16-bit lanes
    data(2, 0xFAD1, 0xF102)  # ssub16 r1, r1, r2: Z
    str(r1, [r3, 0])
    str(r2, [r3, 4])
    add(r3, 8)
    data(2, 0xFB77, 0x5506)  # usada8 r5, r7, r6, r5: sx += the four bytes (r6 = 0)
    label(u_test)
    cmp(r0, r4)
    bcc(u4)
    data(2, 0x9F00)  # ldr r7, [sp, #0]: header
    ldr(r4, [r7, 4 * _KT])  # the last K % 4 codes, the missing taps' lanes 0
    cmp(r4, 0)
    beq(u_done)
    ldrb(r1, [r0, 0])
    add(r5, r5, r1)
    sub(r1, 128)
    lsl(r1, r1, 8)
    mov(r2, 0)
    cmp(r4, 1)
    beq(u_t1)
    ldrb(r2, [r0, 1])
    add(r5, r5, r2)
    data(2, 0x4490)  # add r8, r2
    sub(r2, 255)
    sub(r1, r1, r2)
    label(u_t1)
    strh(r1, [r3, 0])
    strh(r2, [r3, 4])
    mov(r1, 0)
    cmp(r4, 3)
    bne(u_t2)
    ldrb(r1, [r0, 2])
    add(r5, r5, r1)
    sub(r1, 128)
    lsl(r1, r1, 8)
    label(u_t2)
    strh(r1, [r3, 2])
    label(u_done)
    str(r5, [r7, 4 * _SX])
    mov(r1, r8)
    lsl(r1, r1, 7)
    data(2, 0xF8D7, 0x2080)  # ldr.w r2, [r7, #4*C0]
    data(2, 0xFB02, 0x1115)  # mls r1, r2, r5, r1
    str(r1, [r7, 4 * _SXO])  # 128 * sxo - C0 * sx
    bl(ddot)
    cmp(r0, r0)  # b.w: finish is out of b's range
    beq_w(finish)

    # ---- dot: the channels at the cursors (WCUR, PCUR, ECUR, OCUR, NCH) against X; NB blocks of four, NR single --
    # Frame: [sp] = end of the 32-tap loop in X, [sp+4] = end of X, [sp+8] = return address, [sp+12] = header.
    label(dot)
    data(2, 0xB500)  # push {lr}
    data(2, 0xB082)  # sub sp, #8
    data(2, 0x9F03)  # ldr r7, [sp, #12]: header
    ldr(r3, [r7, 4 * _X])
    ldr(r4, [r7, 4 * _X32])
    add(r4, r4, r3)
    data(2, 0x9400)  # str r4, [sp, #0]
    ldr(r4, [r7, 4 * _X4])
    add(r4, r4, r3)
    data(2, 0x9401)  # str r4, [sp, #4]
    ldr(r3, [r7, 4 * _NB])
    str(r3, [r7, 4 * _CNT])
    label(blk_next)
    data(2, 0x9F03)  # ldr r7, [sp, #12]
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bpl(blk_go)
    b(blk_done)
    label(blk_go)
    str(r3, [r7, 4 * _CNT])
    # r0 = X cursor, r1 r2 r3 lr = cursors in rows n..n+3, r4 r5 = X words, r6 r7 = weight words, r8-r11 = the
    # four sums, r12 = the odd weights
    ldr(r1, [r7, 4 * _WCUR])
    ldr(r6, [r7, 4 * _K])
    add(r2, r1, r6)
    add(r3, r2, r6)
    add(r4, r3, r6)
    data(2, 0x46A6)  # mov lr, r4
    add(r4, r4, r6)
    str(r4, [r7, 4 * _WCUR])  # row n+4: the next block's
    ldr(r0, [r7, 4 * _X])
    mov(r5, 0)
    mov(r8, r5)
    mov(r9, r5)
    mov(r10, r5)
    mov(r11, r5)
    b(q32_test)
    label(q32)  # 32 taps of four channels: 128 multiply-adds
    ldr(r4, [r0, 0])  # (x0, x2) of the four taps
    ldr(r5, [r0, 4])  # (x1, x3)
    ldr(r6, [r1, 0])  # four weights of row n
    ldr(r7, [r2, 0])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 0])  # row n+2
    data(2, 0xF8DE, 0x7000)  # ldr.w r7, [lr, #0]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    ldr(r4, [r0, 8])  # (x0, x2) of the four taps
    ldr(r5, [r0, 12])  # (x1, x3)
    ldr(r6, [r1, 4])  # four weights of row n
    ldr(r7, [r2, 4])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 4])  # row n+2
    data(2, 0xF8DE, 0x7004)  # ldr.w r7, [lr, #4]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    ldr(r4, [r0, 16])  # (x0, x2) of the four taps
    ldr(r5, [r0, 20])  # (x1, x3)
    ldr(r6, [r1, 8])  # four weights of row n
    ldr(r7, [r2, 8])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 8])  # row n+2
    data(2, 0xF8DE, 0x7008)  # ldr.w r7, [lr, #8]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    ldr(r4, [r0, 24])  # (x0, x2) of the four taps
    ldr(r5, [r0, 28])  # (x1, x3)
    ldr(r6, [r1, 12])  # four weights of row n
    ldr(r7, [r2, 12])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 12])  # row n+2
    data(2, 0xF8DE, 0x700C)  # ldr.w r7, [lr, #12]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    ldr(r4, [r0, 32])  # (x0, x2) of the four taps
    ldr(r5, [r0, 36])  # (x1, x3)
    ldr(r6, [r1, 16])  # four weights of row n
    ldr(r7, [r2, 16])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 16])  # row n+2
    data(2, 0xF8DE, 0x7010)  # ldr.w r7, [lr, #16]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    ldr(r4, [r0, 40])  # (x0, x2) of the four taps
    ldr(r5, [r0, 44])  # (x1, x3)
    ldr(r6, [r1, 20])  # four weights of row n
    ldr(r7, [r2, 20])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 20])  # row n+2
    data(2, 0xF8DE, 0x7014)  # ldr.w r7, [lr, #20]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    ldr(r4, [r0, 48])  # (x0, x2) of the four taps
    ldr(r5, [r0, 52])  # (x1, x3)
    ldr(r6, [r1, 24])  # four weights of row n
    ldr(r7, [r2, 24])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 24])  # row n+2
    data(2, 0xF8DE, 0x7018)  # ldr.w r7, [lr, #24]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    ldr(r4, [r0, 56])  # (x0, x2) of the four taps
    ldr(r5, [r0, 60])  # (x1, x3)
    ldr(r6, [r1, 28])  # four weights of row n
    ldr(r7, [r2, 28])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 28])  # row n+2
    data(2, 0xF8DE, 0x701C)  # ldr.w r7, [lr, #28]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    add(r0, 64)
    add(r1, 32)
    add(r2, 32)
    add(r3, 32)
    data(2, 0xF10E, 0x0E20)  # add.w lr, lr, #32
    label(q32_test)
    data(2, 0x9E00)  # ldr r6, [sp, #0]
    cmp(r0, r6)
    bcc_w(q32)
    b(q4_test)
    label(q4)  # four taps
    ldr(r4, [r0, 0])  # (x0, x2) of the four taps
    ldr(r5, [r0, 4])  # (x1, x3)
    ldr(r6, [r1, 0])  # four weights of row n
    ldr(r7, [r2, 0])  # row n+1
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6: (w0, w2)
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8: (w1, w3)
    data(2, 0xFB2C, 0x9905)  # smlad r9, r12, r5, r9
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7: (w0, w2)
    data(2, 0xFB27, 0x9904)  # smlad r9, r7, r4, r9
    ldr(r6, [r3, 0])  # row n+2
    data(2, 0xF8DE, 0x7000)  # ldr.w r7, [lr, #0]: row n+3
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0xAA05)  # smlad r10, r12, r5, r10
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xAA04)  # smlad r10, r6, r4, r10
    data(2, 0xFA3F, 0xFC97)  # uxtb16 r12, r7, ror 8
    data(2, 0xFB2C, 0xBB05)  # smlad r11, r12, r5, r11
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xBB04)  # smlad r11, r7, r4, r11
    add(r0, 8)
    add(r1, 4)
    add(r2, 4)
    add(r3, 4)
    data(2, 0xF10E, 0x0E04)  # add.w lr, lr, #4
    label(q4_test)
    data(2, 0x9E01)  # ldr r6, [sp, #4]
    cmp(r0, r6)
    bcc(q4)
    # requantize and store the four channels (uquant_rt.requant_channel), the cursors in r8-r11
    data(2, 0xE92D, 0x0F00)  # push.w {r8, r9, r10, r11}: the sums, channel n first
    data(2, 0x9F07)  # ldr r7, [sp, #28]: header
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE890, 0x0F00)  # ldm.w r0, {r8-r11}: P, E, out cursors, channel number
    data(2, 0xF8D7, 0xC044)  # ldr.w r12, [r7, #4*SX]
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0: lr = the channel of the next exception, -1 if none is left
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]
    data(2, 0xBC01)  # pop {r0}: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dir0)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_exc0)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ew0)
    label(rq_clip0)
    data(2, 0xE897, 0x0078)  # ldm.w r7, {r3, r4, r5, r6}: lo, hi, T, output stride
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF88A, 0x1000)  # strb.w r1, [r10]
    data(2, 0x44B2)  # add r10, r6
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xBC01)  # pop {r0}: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dir1)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_exc1)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ew1)
    label(rq_clip1)
    data(2, 0xE897, 0x0078)  # ldm.w r7, {r3, r4, r5, r6}: lo, hi, T, output stride
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF88A, 0x1000)  # strb.w r1, [r10]
    data(2, 0x44B2)  # add r10, r6
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xBC01)  # pop {r0}: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dir2)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_exc2)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ew2)
    label(rq_clip2)
    data(2, 0xE897, 0x0078)  # ldm.w r7, {r3, r4, r5, r6}: lo, hi, T, output stride
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF88A, 0x1000)  # strb.w r1, [r10]
    data(2, 0x44B2)  # add r10, r6
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xBC01)  # pop {r0}: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dir3)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_exc3)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ew3)
    label(rq_clip3)
    data(2, 0xE897, 0x0078)  # ldm.w r7, {r3, r4, r5, r6}: lo, hi, T, output stride
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF88A, 0x1000)  # strb.w r1, [r10]
    data(2, 0x44B2)  # add r10, r6
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE880, 0x0F00)  # stm.w r0, {r8-r11}: the cursors, for the next pass
    b(blk_next)
    label(blk_done)
    ldr(r3, [r7, 4 * _NR])
    str(r3, [r7, 4 * _CNT])
    label(one_next)
    data(2, 0x9F03)  # ldr r7, [sp, #12]
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bpl(one_go)
    b(dot_done)
    label(one_go)
    str(r3, [r7, 4 * _CNT])
    ldr(r1, [r7, 4 * _WCUR])
    ldr(r6, [r7, 4 * _K])
    add(r6, r6, r1)
    str(r6, [r7, 4 * _WCUR])
    ldr(r0, [r7, 4 * _X])
    mov(r5, 0)
    mov(r8, r5)
    b(s_test)
    label(s1)  # four taps of one channel
    ldr(r4, [r0, 0])
    ldr(r5, [r0, 4])
    ldr(r6, [r1, 0])
    data(2, 0xFA3F, 0xFC96)  # uxtb16 r12, r6, ror 8
    data(2, 0xFB2C, 0x8805)  # smlad r8, r12, r5, r8
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x8804)  # smlad r8, r6, r4, r8
    add(r0, 8)
    add(r1, 4)
    label(s_test)
    data(2, 0x9E01)  # ldr r6, [sp, #4]
    cmp(r0, r6)
    bcc(s1)
    data(2, 0xF84D, 0x8D04)  # push.w {r8}: the sums, channel n first
    data(2, 0x9F04)  # ldr r7, [sp, #16]: header
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE890, 0x0F00)  # ldm.w r0, {r8-r11}: P, E, out cursors, channel number
    data(2, 0xF8D7, 0xC044)  # ldr.w r12, [r7, #4*SX]
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0: lr = the channel of the next exception, -1 if none is left
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]
    data(2, 0xBC01)  # pop {r0}: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dir4)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_exc4)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ew4)
    label(rq_clip4)
    data(2, 0xE897, 0x0078)  # ldm.w r7, {r3, r4, r5, r6}: lo, hi, T, output stride
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF88A, 0x1000)  # strb.w r1, [r10]
    data(2, 0x44B2)  # add r10, r6
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE880, 0x0F00)  # stm.w r0, {r8-r11}: the cursors, for the next pass
    b(one_next)
    label(dot_done)
    data(2, 0xB002)  # add sp, #8
    data(2, 0xBD00)  # pop {pc}

    # the requantization's less common paths (direct form, exceptions), out of line
    label(rq_dir0)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    b(rq_exc0)
    label(rq_ew0)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewl0)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewl0)
    b(rq_clip0)
    label(rq_dir1)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    b(rq_exc1)
    label(rq_ew1)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewl1)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewl1)
    b(rq_clip1)
    label(rq_dir2)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    b(rq_exc2)
    label(rq_ew2)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewl2)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewl2)
    b(rq_clip2)
    label(rq_dir3)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    b(rq_exc3)
    label(rq_ew3)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewl3)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewl3)
    b(rq_clip3)
    label(rq_dir4)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    b(rq_exc4)
    label(rq_ew4)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewl4)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewl4)
    b(rq_clip4)

    # ---- ddot: the dense layer's channels against X (offset form); NB blocks of six, NR single -----------------
    # Frame: [sp..sp+20] = the six channels' sums, [sp+24] unused, [sp+28] = end of the chunk's whole groups,
    # [sp+32] = end of the 32-tap loop in X, [sp+36] = end of X's whole groups, [sp+40] = return address,
    # [sp+44] = header. Each accumulator holds 256 * its chunk's sum D (|D| < 2**23: chunks of at most 256 taps).
    label(ddot)
    data(2, 0xB500)  # push {lr}
    data(2, 0xB08A)  # sub sp, #40
    data(2, 0x9F0B)  # ldr r7, [sp, #44]: header
    ldr(r3, [r7, 4 * _X])
    ldr(r4, [r7, 4 * _DX32])
    add(r4, r4, r3)
    data(2, 0x9408)  # str r4, [sp, #32]
    ldr(r4, [r7, 4 * _DXF])
    add(r4, r4, r3)
    data(2, 0x9409)  # str r4, [sp, #36]
    ldr(r3, [r7, 4 * _CN])
    str(r3, [r7, 4 * _CCUR])
    ldr(r3, [r7, 4 * _D4C])
    str(r3, [r7, 4 * _D4])
    ldr(r3, [r7, 4 * _NB])
    str(r3, [r7, 4 * _CNT])
    label(dblk_next)  # r7 = header (every way here keeps it)
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bmi_w(dblk_done)
    str(r3, [r7, 4 * _CNT])
    ldr(r1, [r7, 4 * _WCUR])  # r1 = the block's weights (six rows interleaved, uquant_rt.dsp_index); the loops
    # leave it at the next block's (6*K bytes on), which dlast stores
    ldr(r0, [r7, 4 * _CCUR])  # the sums start at the channels' constants Cn + 128 * (sum of odd taps' codes)
    data(2, 0xE8B0, 0x017C)  # ldm.w r0!, {r2, r3, r4, r5, r6, r8}
    str(r0, [r7, 4 * _CCUR])
    ldr(r0, [r7, 4 * _SXO])
    add(r2, r2, r0)
    add(r3, r3, r0)
    add(r4, r4, r0)
    add(r5, r5, r0)
    add(r6, r6, r0)
    data(2, 0x4480)  # add r8, r0
    data(2, 0xE88D, 0x017C)  # stm.w sp, {r2, r3, r4, r5, r6, r8}
    ldr(r0, [r7, 4 * _X])
    mov(r7, 0)
    mov(r8, r7)
    mov(r9, r7)
    mov(r10, r7)
    mov(r11, r7)
    mov(r12, r7)
    label(dchunk)  # r0 = X cursor, r1 = W cursor, r2 r3 = X words, r4-r6 = weight words, r7-r12 = the sums
    data(2, 0xF200, 0x2500)  # addw r5, r0, #512: 64 groups (256 taps) at most per chunk
    data(2, 0x9C08)  # ldr r4, [sp, #32]
    cmp(r5, r4)
    it(cc)
    mov(r4, r5)
    data(2, 0x46A6)  # mov lr, r4: end of the chunk's 32-tap loop
    data(2, 0x9C09)  # ldr r4, [sp, #36]
    cmp(r5, r4)
    it(cc)
    mov(r4, r5)
    data(2, 0x9407)  # str r4, [sp, #28]: end of the chunk's whole groups
    b(d32_test)
    label(d32)  # 32 taps of six channels: 192 multiply-adds
    ldr(r2, [r0, 0])  # Z: (x0, x2) in offset form
    ldr(r3, [r0, 4])  # Y: (x1, x3) - 255
    ldr(r4, [r1, 0])
    ldr(r5, [r1, 4])
    ldr(r6, [r1, 8])
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    ldr(r4, [r1, 12])
    ldr(r5, [r1, 16])
    ldr(r6, [r1, 20])
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    ldr(r2, [r0, 8])
    ldr(r3, [r0, 12])
    ldr(r4, [r1, 24])
    ldr(r5, [r1, 28])
    ldr(r6, [r1, 32])
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    ldr(r4, [r1, 36])
    ldr(r5, [r1, 40])
    ldr(r6, [r1, 44])
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    ldr(r2, [r0, 16])
    ldr(r3, [r0, 20])
    ldr(r4, [r1, 48])
    ldr(r5, [r1, 52])
    ldr(r6, [r1, 56])
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    ldr(r4, [r1, 60])
    ldr(r5, [r1, 64])
    ldr(r6, [r1, 68])
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    ldr(r2, [r0, 24])
    ldr(r3, [r0, 28])
    ldr(r4, [r1, 72])
    ldr(r5, [r1, 76])
    ldr(r6, [r1, 80])
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    ldr(r4, [r1, 84])
    ldr(r5, [r1, 88])
    ldr(r6, [r1, 92])
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    ldr(r2, [r0, 32])
    ldr(r3, [r0, 36])
    ldr(r4, [r1, 96])
    ldr(r5, [r1, 100])
    ldr(r6, [r1, 104])
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    ldr(r4, [r1, 108])
    ldr(r5, [r1, 112])
    ldr(r6, [r1, 116])
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    ldr(r2, [r0, 40])
    ldr(r3, [r0, 44])
    ldr(r4, [r1, 120])
    ldr(r5, [r1, 124])
    data(2, 0xF8D1, 0x6080)  # ldr.w r6, [r1, #128]
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    data(2, 0xF8D1, 0x4084)  # ldr.w r4, [r1, #132]
    data(2, 0xF8D1, 0x5088)  # ldr.w r5, [r1, #136]
    data(2, 0xF8D1, 0x608C)  # ldr.w r6, [r1, #140]
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    ldr(r2, [r0, 48])
    ldr(r3, [r0, 52])
    data(2, 0xF8D1, 0x4090)  # ldr.w r4, [r1, #144]
    data(2, 0xF8D1, 0x5094)  # ldr.w r5, [r1, #148]
    data(2, 0xF8D1, 0x6098)  # ldr.w r6, [r1, #152]
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    data(2, 0xF8D1, 0x409C)  # ldr.w r4, [r1, #156]
    data(2, 0xF8D1, 0x50A0)  # ldr.w r5, [r1, #160]
    data(2, 0xF8D1, 0x60A4)  # ldr.w r6, [r1, #164]
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    ldr(r2, [r0, 56])
    ldr(r3, [r0, 60])
    data(2, 0xF8D1, 0x40A8)  # ldr.w r4, [r1, #168]
    data(2, 0xF8D1, 0x50AC)  # ldr.w r5, [r1, #172]
    data(2, 0xF8D1, 0x60B0)  # ldr.w r6, [r1, #176]
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    data(2, 0xF8D1, 0x40B4)  # ldr.w r4, [r1, #180]
    data(2, 0xF8D1, 0x50B8)  # ldr.w r5, [r1, #184]
    data(2, 0xF8D1, 0x60BC)  # ldr.w r6, [r1, #188]
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    add(r0, 64)
    data(2, 0xF201, 0x01C0)  # addw r1, r1, #192
    label(d32_test)
    data(2, 0x4570)  # cmp r0, lr
    bcc_w(d32)
    data(2, 0xF8DD, 0xE01C)  # ldr.w lr, [sp, #28]
    b(d4_test)
    label(d4)  # four taps
    ldr(r2, [r0, 0])  # Z: (x0, x2) in offset form
    ldr(r3, [r0, 4])  # Y: (x1, x3) - 255
    ldr(r4, [r1, 0])
    ldr(r5, [r1, 4])
    ldr(r6, [r1, 8])
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    data(2, 0xFB25, 0x8803)  # smlad r8, r5, r3, r8
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0x8802)  # smlad r8, r5, r2, r8
    data(2, 0xFB26, 0x9903)  # smlad r9, r6, r3, r9
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0x9902)  # smlad r9, r6, r2, r9
    ldr(r4, [r1, 12])
    ldr(r5, [r1, 16])
    ldr(r6, [r1, 20])
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    data(2, 0xFB25, 0xBB03)  # smlad r11, r5, r3, r11
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xBB02)  # smlad r11, r5, r2, r11
    data(2, 0xFB26, 0xCC03)  # smlad r12, r6, r3, r12
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xCC02)  # smlad r12, r6, r2, r12
    add(r0, 8)
    add(r1, 24)
    label(d4_test)
    data(2, 0x4570)  # cmp r0, lr
    bcc(d4)
    data(2, 0xE89D, 0x407C)  # ldm.w sp, {r2-r6, lr}: the sums so far
    data(2, 0xEB02, 0x2227)  # add.w r2, r2, r7, asr #8
    data(2, 0xEB03, 0x2328)  # add.w r3, r3, r8, asr #8
    data(2, 0xEB04, 0x2429)  # add.w r4, r4, r9, asr #8
    data(2, 0xEB05, 0x252A)  # add.w r5, r5, r10, asr #8
    data(2, 0xEB06, 0x262B)  # add.w r6, r6, r11, asr #8
    data(2, 0xEB0E, 0x2E2C)  # add.w r14, r14, r12, asr #8
    data(2, 0xE88D, 0x407C)  # stm.w sp, {r2-r6, lr}
    data(2, 0x9C09)  # ldr r4, [sp, #36]
    cmp(r0, r4)
    bcs(dtail)
    mov(r7, 0)  # a chunk of a long row: its sums are folded, next chunk
    mov(r8, r7)
    mov(r9, r7)
    mov(r10, r7)
    mov(r11, r7)
    mov(r12, r7)
    b(dchunk)
    label(dtail)  # the last K % 4 taps: six rows of KT bytes, packed (a chunk of their own)
    data(2, 0x9D0B)  # ldr r5, [sp, #44]: header
    ldr(r5, [r5, 4 * _KT])
    cmp(r5, 0)
    beq(dlast)
    mov(r7, 0)
    mov(r8, r7)
    mov(r9, r7)
    mov(r10, r7)
    mov(r11, r7)
    mov(r12, r7)
    ldr(r2, [r0, 0])
    ldr(r3, [r0, 4])
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0x7703)  # smlad r7, r4, r3, r7
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x7702)  # smlad r7, r4, r2, r7
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0x8803)  # smlad r8, r4, r3, r8
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x8802)  # smlad r8, r4, r2, r8
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0xBB03)  # smlad r11, r4, r3, r11
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xBB02)  # smlad r11, r4, r2, r11
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0xCC03)  # smlad r12, r4, r3, r12
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xCC02)  # smlad r12, r4, r2, r12
    data(2, 0xE89D, 0x407C)  # ldm.w sp, {r2-r6, lr}: the sums so far
    data(2, 0xEB02, 0x2227)  # add.w r2, r2, r7, asr #8
    data(2, 0xEB03, 0x2328)  # add.w r3, r3, r8, asr #8
    data(2, 0xEB04, 0x2429)  # add.w r4, r4, r9, asr #8
    data(2, 0xEB05, 0x252A)  # add.w r5, r5, r10, asr #8
    data(2, 0xEB06, 0x262B)  # add.w r6, r6, r11, asr #8
    data(2, 0xEB0E, 0x2E2C)  # add.w r14, r14, r12, asr #8
    data(2, 0xE88D, 0x407C)  # stm.w sp, {r2-r6, lr}
    label(dlast)
    # requantize and store the six channels (uquant_rt.requant_channel), the cursors in r8-r11
    data(2, 0x9F0B)  # ldr r7, [sp, #44]: header
    str(r1, [r7, 4 * _WCUR])  # the next block's rows
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE890, 0x0F00)  # ldm.w r0, {r8-r11}: P, E, out cursors, channel number
    data(2, 0xF8D7, 0xC044)  # ldr.w r12, [r7, #4*SX]
    ldr(r0, [r7, 4 * _FAST])
    cmp(r0, 2)
    beq_w(rqg_six)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0: lr = the channel of the next exception, -1 if none is left
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]
    cmp(r0, 0)
    bne_w(rqf_six)
    data(2, 0x9800)  # ldr r0, [sp, #0]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dird0)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excd0)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewd0)
    label(rq_clipd0)
    data(2, 0xE897, 0x0038)  # ldm.w r7, {r3, r4, r5}: lo, hi, T
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0x9801)  # ldr r0, [sp, #4]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dird1)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excd1)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewd1)
    label(rq_clipd1)
    data(2, 0xE897, 0x0038)  # ldm.w r7, {r3, r4, r5}: lo, hi, T
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    label(rq_ch2)  # a block of four enters here (its sums in the frame words of channels 2..5)
    data(2, 0x9802)  # ldr r0, [sp, #8]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dird2)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excd2)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewd2)
    label(rq_clipd2)
    data(2, 0xE897, 0x0038)  # ldm.w r7, {r3, r4, r5}: lo, hi, T
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0x9803)  # ldr r0, [sp, #12]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dird3)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excd3)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewd3)
    label(rq_clipd3)
    data(2, 0xE897, 0x0038)  # ldm.w r7, {r3, r4, r5}: lo, hi, T
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0x9804)  # ldr r0, [sp, #16]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dird4)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excd4)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewd4)
    label(rq_clipd4)
    data(2, 0xE897, 0x0038)  # ldm.w r7, {r3, r4, r5}: lo, hi, T
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0x9805)  # ldr r0, [sp, #20]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dird5)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excd5)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewd5)
    label(rq_clipd5)
    data(2, 0xE897, 0x0038)  # ldm.w r7, {r3, r4, r5}: lo, hi, T
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE880, 0x0F00)  # stm.w r0, {r8-r11}: the cursors, for the next pass
    cmp(r0, r0)  # b.w
    beq_w(dblk_next)
    label(rqf_six)  # the same when the layer clips to [0, 255] without a table (FAST)
    data(2, 0x9800)  # ldr r0, [sp, #0]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dirf0)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excf0)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewf0)
    label(rq_clipf0)
    data(2, 0xF381, 0x0108)  # usat r1, #8, r1: y = clip(y, 0, 255), no table
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0x9801)  # ldr r0, [sp, #4]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dirf1)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excf1)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewf1)
    label(rq_clipf1)
    data(2, 0xF381, 0x0108)  # usat r1, #8, r1: y = clip(y, 0, 255), no table
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    label(rqf_ch2)
    data(2, 0x9802)  # ldr r0, [sp, #8]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dirf2)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excf2)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewf2)
    label(rq_clipf2)
    data(2, 0xF381, 0x0108)  # usat r1, #8, r1: y = clip(y, 0, 255), no table
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0x9803)  # ldr r0, [sp, #12]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dirf3)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excf3)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewf3)
    label(rq_clipf3)
    data(2, 0xF381, 0x0108)  # usat r1, #8, r1: y = clip(y, 0, 255), no table
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0x9804)  # ldr r0, [sp, #16]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dirf4)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excf4)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewf4)
    label(rq_clipf4)
    data(2, 0xF381, 0x0108)  # usat r1, #8, r1: y = clip(y, 0, 255), no table
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0x9805)  # ldr r0, [sp, #20]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dirf5)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excf5)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewf5)
    label(rq_clipf5)
    data(2, 0xF381, 0x0108)  # usat r1, #8, r1: y = clip(y, 0, 255), no table
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE880, 0x0F00)  # stm.w r0, {r8-r11}: the cursors, for the next pass
    cmp(r0, r0)  # b.w
    beq_w(dblk_next)
    label(dblk_done)
    ldr(r3, [r7, 4 * _D4])  # a block of four rows next (N % 6 >= 4)? once
    cmp(r3, 0)
    beq_w(d4b_done)
    mov(r3, 0)
    str(r3, [r7, 4 * _D4])
    ldr(r1, [r7, 4 * _WCUR])  # four rows interleaved
    ldr(r6, [r7, 4 * _K])
    lsl(r4, r6, 2)
    add(r4, r4, r1)
    str(r4, [r7, 4 * _WCUR])
    ldr(r0, [r7, 4 * _CCUR])
    data(2, 0xE8B0, 0x0078)  # ldm.w r0!, {r3, r4, r5, r6}: Cn
    str(r0, [r7, 4 * _CCUR])
    ldr(r0, [r7, 4 * _SXO])
    add(r3, r3, r0)
    add(r4, r4, r0)
    add(r5, r5, r0)
    add(r6, r6, r0)
    data(2, 0xAA02)  # add r2, sp, #8: the sums of channels 2..5
    data(2, 0xC278)  # stmia r2!, {r3, r4, r5, r6}
    ldr(r0, [r7, 4 * _X])
    mov(r7, 0)
    mov(r8, r7)
    mov(r9, r7)
    mov(r10, r7)
    mov(r11, r7)
    mov(r12, r7)
    label(echunk)  # as dchunk, four rows: r7 = a weight word, r8 = 0, r9-r12 = the sums
    data(2, 0xF200, 0x2500)  # addw r5, r0, #512
    data(2, 0x9C08)  # ldr r4, [sp, #32]
    cmp(r5, r4)
    it(cc)
    mov(r4, r5)
    data(2, 0x46A6)  # mov lr, r4
    data(2, 0x9C09)  # ldr r4, [sp, #36]
    cmp(r5, r4)
    it(cc)
    mov(r4, r5)
    data(2, 0x9407)  # str r4, [sp, #28]
    b(e32_test)
    label(e32)
    ldr(r2, [r0, 0])
    ldr(r3, [r0, 4])
    ldr(r4, [r1, 0])
    ldr(r5, [r1, 4])
    ldr(r6, [r1, 8])
    ldr(r7, [r1, 12])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    ldr(r2, [r0, 8])
    ldr(r3, [r0, 12])
    ldr(r4, [r1, 16])
    ldr(r5, [r1, 20])
    ldr(r6, [r1, 24])
    ldr(r7, [r1, 28])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    ldr(r2, [r0, 16])
    ldr(r3, [r0, 20])
    ldr(r4, [r1, 32])
    ldr(r5, [r1, 36])
    ldr(r6, [r1, 40])
    ldr(r7, [r1, 44])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    ldr(r2, [r0, 24])
    ldr(r3, [r0, 28])
    ldr(r4, [r1, 48])
    ldr(r5, [r1, 52])
    ldr(r6, [r1, 56])
    ldr(r7, [r1, 60])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    ldr(r2, [r0, 32])
    ldr(r3, [r0, 36])
    ldr(r4, [r1, 64])
    ldr(r5, [r1, 68])
    ldr(r6, [r1, 72])
    ldr(r7, [r1, 76])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    ldr(r2, [r0, 40])
    ldr(r3, [r0, 44])
    ldr(r4, [r1, 80])
    ldr(r5, [r1, 84])
    ldr(r6, [r1, 88])
    ldr(r7, [r1, 92])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    ldr(r2, [r0, 48])
    ldr(r3, [r0, 52])
    ldr(r4, [r1, 96])
    ldr(r5, [r1, 100])
    ldr(r6, [r1, 104])
    ldr(r7, [r1, 108])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    ldr(r2, [r0, 56])
    ldr(r3, [r0, 60])
    ldr(r4, [r1, 112])
    ldr(r5, [r1, 116])
    ldr(r6, [r1, 120])
    ldr(r7, [r1, 124])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    add(r0, 64)
    add(r1, 128)
    label(e32_test)
    data(2, 0x4570)  # cmp r0, lr
    bcc_w(e32)
    data(2, 0xF8DD, 0xE01C)  # ldr.w lr, [sp, #28]
    b(e4_test)
    label(e4)
    ldr(r2, [r0, 0])
    ldr(r3, [r0, 4])
    ldr(r4, [r1, 0])
    ldr(r5, [r1, 4])
    ldr(r6, [r1, 8])
    ldr(r7, [r1, 12])
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    data(2, 0xFB25, 0xAA03)  # smlad r10, r5, r3, r10
    data(2, 0xFA3F, 0xF585)  # uxtb16 r5, r5
    data(2, 0xFB25, 0xAA02)  # smlad r10, r5, r2, r10
    data(2, 0xFB26, 0xBB03)  # smlad r11, r6, r3, r11
    data(2, 0xFA3F, 0xF686)  # uxtb16 r6, r6
    data(2, 0xFB26, 0xBB02)  # smlad r11, r6, r2, r11
    data(2, 0xFB27, 0xCC03)  # smlad r12, r7, r3, r12
    data(2, 0xFA3F, 0xF787)  # uxtb16 r7, r7
    data(2, 0xFB27, 0xCC02)  # smlad r12, r7, r2, r12
    add(r0, 8)
    add(r1, 16)
    label(e4_test)
    data(2, 0x4570)  # cmp r0, lr
    bcc(e4)
    mov(r7, 0)
    data(2, 0xE89D, 0x407C)  # ldm.w sp, {r2-r6, lr}: the sums so far
    data(2, 0xEB02, 0x2227)  # add.w r2, r2, r7, asr #8
    data(2, 0xEB03, 0x2328)  # add.w r3, r3, r8, asr #8
    data(2, 0xEB04, 0x2429)  # add.w r4, r4, r9, asr #8
    data(2, 0xEB05, 0x252A)  # add.w r5, r5, r10, asr #8
    data(2, 0xEB06, 0x262B)  # add.w r6, r6, r11, asr #8
    data(2, 0xEB0E, 0x2E2C)  # add.w r14, r14, r12, asr #8
    data(2, 0xE88D, 0x407C)  # stm.w sp, {r2-r6, lr}
    data(2, 0x9C09)  # ldr r4, [sp, #36]
    cmp(r0, r4)
    bcs(etail)
    mov(r9, r7)
    mov(r10, r7)
    mov(r11, r7)
    mov(r12, r7)
    b(echunk)
    label(etail)
    data(2, 0x9D0B)  # ldr r5, [sp, #44]: header
    ldr(r5, [r5, 4 * _KT])
    cmp(r5, 0)
    beq(elast)
    mov(r9, r7)
    mov(r10, r7)
    mov(r11, r7)
    mov(r12, r7)
    ldr(r2, [r0, 0])
    ldr(r3, [r0, 4])
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0x9903)  # smlad r9, r4, r3, r9
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x9902)  # smlad r9, r4, r2, r9
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0xAA03)  # smlad r10, r4, r3, r10
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xAA02)  # smlad r10, r4, r2, r10
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0xBB03)  # smlad r11, r4, r3, r11
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xBB02)  # smlad r11, r4, r2, r11
    ldr(r4, [r1, 0])
    add(r1, r1, r5)
    data(2, 0xFB24, 0xCC03)  # smlad r12, r4, r3, r12
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0xCC02)  # smlad r12, r4, r2, r12
    data(2, 0xE89D, 0x407C)  # ldm.w sp, {r2-r6, lr}: the sums so far
    data(2, 0xEB02, 0x2227)  # add.w r2, r2, r7, asr #8
    data(2, 0xEB03, 0x2328)  # add.w r3, r3, r8, asr #8
    data(2, 0xEB04, 0x2429)  # add.w r4, r4, r9, asr #8
    data(2, 0xEB05, 0x252A)  # add.w r5, r5, r10, asr #8
    data(2, 0xEB06, 0x262B)  # add.w r6, r6, r11, asr #8
    data(2, 0xEB0E, 0x2E2C)  # add.w r14, r14, r12, asr #8
    data(2, 0xE88D, 0x407C)  # stm.w sp, {r2-r6, lr}
    label(elast)
    data(2, 0x9F0B)  # ldr r7, [sp, #44]: header
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE890, 0x0F00)  # ldm.w r0, {r8-r11}: P, E, out cursors, channel number
    data(2, 0xF8D7, 0xC044)  # ldr.w r12, [r7, #4*SX]
    ldr(r0, [r7, 4 * _FAST])
    cmp(r0, 2)
    beq_w(rqg_four)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0: lr = the channel of the next exception, -1 if none is left
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]
    cmp(r0, 0)
    bne_w(rqf_ch2)
    cmp(r0, r0)  # b.w
    beq_w(rq_ch2)
    label(d4b_done)
    ldr(r3, [r7, 4 * _NR])
    str(r3, [r7, 4 * _CNT])
    label(dsn_next)
    data(2, 0x9F0B)  # ldr r7, [sp, #44]: header
    ldr(r3, [r7, 4 * _CNT])
    sub(r3, 1)
    bmi_w(ddot_done)  # one channel, a plain row
    str(r3, [r7, 4 * _CNT])
    ldr(r1, [r7, 4 * _WCUR])
    ldr(r6, [r7, 4 * _K])
    add(r6, r6, r1)
    str(r6, [r7, 4 * _WCUR])
    ldr(r0, [r7, 4 * _CCUR])
    ldr(r2, [r0, 0])  # Cn
    add(r0, 4)
    str(r0, [r7, 4 * _CCUR])
    ldr(r0, [r7, 4 * _SXO])
    add(r2, r2, r0)
    data(2, 0x9200)  # str r2, [sp, #0]
    ldr(r0, [r7, 4 * _X])
    mov(r5, 0)
    mov(r8, r5)
    label(dsc)
    data(2, 0xF200, 0x2500)  # addw r5, r0, #512
    data(2, 0x9C09)  # ldr r4, [sp, #36]
    cmp(r5, r4)
    it(cc)
    mov(r4, r5)
    data(2, 0x46A6)  # mov lr, r4
    b(ds_test)
    label(ds4)
    ldr(r2, [r0, 0])
    ldr(r3, [r0, 4])
    ldr(r4, [r1, 0])
    data(2, 0xFB24, 0x8803)  # smlad r8, r4, r3, r8
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x8802)  # smlad r8, r4, r2, r8
    add(r0, 8)
    add(r1, 4)
    label(ds_test)
    data(2, 0x4570)  # cmp r0, lr
    bcc(ds4)
    data(2, 0x9A00)  # ldr r2, [sp, #0]
    data(2, 0xEB02, 0x2228)  # add.w r2, r2, r8, asr #8
    data(2, 0x9200)  # str r2, [sp, #0]
    data(2, 0x9C09)  # ldr r4, [sp, #36]
    cmp(r0, r4)
    bcs(ds_tail)
    mov(r5, 0)
    mov(r8, r5)
    b(dsc)
    label(ds_tail)
    data(2, 0x9D0B)  # ldr r5, [sp, #44]: header
    ldr(r5, [r5, 4 * _KT])
    cmp(r5, 0)
    beq(ds_last)
    mov(r5, 0)
    mov(r8, r5)
    ldr(r2, [r0, 0])
    ldr(r3, [r0, 4])
    ldr(r4, [r1, 0])
    data(2, 0xFB24, 0x8803)  # smlad r8, r4, r3, r8
    data(2, 0xFA3F, 0xF484)  # uxtb16 r4, r4
    data(2, 0xFB24, 0x8802)  # smlad r8, r4, r2, r8
    data(2, 0x9A00)  # ldr r2, [sp, #0]
    data(2, 0xEB02, 0x2228)  # add.w r2, r2, r8, asr #8
    data(2, 0x9200)  # str r2, [sp, #0]
    label(ds_last)
    data(2, 0x9F0B)  # ldr r7, [sp, #44]: header
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE890, 0x0F00)  # ldm.w r0, {r8-r11}: P, E, out cursors, channel number
    data(2, 0xF8D7, 0xC044)  # ldr.w r12, [r7, #4*SX]
    ldr(r0, [r7, 4 * _FAST])
    cmp(r0, 2)
    beq_w(rqg_one)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0: lr = the channel of the next exception, -1 if none is left
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]
    cmp(r0, 0)
    bne_w(rqf_one)
    data(2, 0x9800)  # ldr r0, [sp, #0]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dirds)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excds)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewds)
    label(rq_clipds)
    data(2, 0xE897, 0x0038)  # ldm.w r7, {r3, r4, r5}: lo, hi, T
    cmp(r1, r3)  # y = clip(y, lo, hi)
    it(lt)
    mov(r1, r3)
    cmp(r1, r4)
    it(gt)
    mov(r1, r4)
    cmp(r5, 0)  # y = T[y] when there is a table
    it(ne)
    data(2, 0x5C69)  # ldrb r1, [r5, r1]
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE880, 0x0F00)  # stm.w r0, {r8-r11}: the cursors, for the next pass
    cmp(r0, r0)  # b.w
    beq_w(dsn_next)
    label(rqf_one)
    data(2, 0x9800)  # ldr r0, [sp, #0]: sum x*w
    data(2, 0xE8B8, 0x000E)  # ldm.w r8!, {r1, r2, r3}: c, c_lo, Wn
    data(2, 0xFB01, 0x001C)  # mls r0, r1, r12, r0: acc = sum x*w - c*sx
    sub(r0, r0, r2)  # a = acc - c_lo, clamped to [0, Wn]
    it(lt)
    mov(r0, 0)
    cmp(r0, r3)
    it(gt)
    mov(r0, r3)
    data(2, 0xE8B8, 0x0078)  # ldm.w r8!, {r3, r4, r5, r6}: A, Dh, Dl, S
    cmp(r6, 30)
    blt_w(rq_dirfs)
    # S >= 30: y = (a*A + Dh*2**30 + Dl) >> S, which uquant_rt.requant forms in 15-bit limbs; here exactly in
    # 64 bits: SMULL, adds with carry, then (v << 2) >> (S - 30) from the high word (|v| < 2**60)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    label(rq_excfs)
    # r0 = a, r1 = y. Exceptions: only when the next one is this channel's
    data(2, 0x45DE)  # cmp lr, r11
    beq_w(rq_ewfs)
    label(rq_clipfs)
    data(2, 0xF381, 0x0108)  # usat r1, #8, r1: y = clip(y, 0, 255), no table
    data(2, 0xF80A, 0x1B01)  # strb.w r1, [r10], #1: dense outputs are consecutive
    data(2, 0xF10B, 0x0B01)  # add.w r11, r11, #1
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE880, 0x0F00)  # stm.w r0, {r8-r11}: the cursors, for the next pass
    cmp(r0, r0)  # b.w
    beq_w(dsn_next)
    label(ddot_done)
    data(2, 0xB00A)  # add sp, #40
    data(2, 0xBD00)  # pop {pc}

    # ---- FAST 2: the requantization prepare_dense recast for SMLAL. Per channel Q holds A', D'lo and
    # (D'hi << 8) | s' (bit 7 set: a channel the general path rqg_sp takes; bits 7 and 6: the SMLAL form, then its
    # exceptions; bit 5 too: just one); the frame word is a = acc - c_lo, unclamped (prepare_dense proved the clamp
    # changes no output code), and y = ((a*A' + D') >> 32) >> s'. r8 = Q at the block's first channel.
    label(rqg_six)
    data(2, 0x9800)  # ldr r0, [sp, #0]: a
    data(2, 0xF8D8, 0x3000)  # ldr.w r3, [r8, #0]: A'
    data(2, 0xF8D8, 0x4004)  # ldr.w r4, [r8, #4]: D'lo
    data(2, 0xF8D8, 0x6008)  # ldr.w r6, [r8, #8]: (D'hi << 8) | s'
    lsl(r1, r6, 24)  # bit 7 -> N
    bmi_w(rqg_s0)
    asr(r5, r6, 8)  # D'hi
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3: r5:r4 = a*A' + D'
    asr(r5, r6)  # y = high word >> s' (the low byte of r6)
    label(rqg_c0)
    data(2, 0xF385, 0x0508)  # usat r5, #8, r5: y = clip(y, 0, 255)
    data(2, 0xF80A, 0x5B01)  # strb.w r5, [r10], #1
    data(2, 0x9801)  # ldr r0, [sp, #4]: a
    data(2, 0xF8D8, 0x300C)  # ldr.w r3, [r8, #12]: A'
    data(2, 0xF8D8, 0x4010)  # ldr.w r4, [r8, #16]: D'lo
    data(2, 0xF8D8, 0x6014)  # ldr.w r6, [r8, #20]: (D'hi << 8) | s'
    lsl(r1, r6, 24)  # bit 7 -> N
    bmi_w(rqg_s1)
    asr(r5, r6, 8)  # D'hi
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3: r5:r4 = a*A' + D'
    asr(r5, r6)  # y = high word >> s' (the low byte of r6)
    label(rqg_c1)
    data(2, 0xF385, 0x0508)  # usat r5, #8, r5: y = clip(y, 0, 255)
    data(2, 0xF80A, 0x5B01)  # strb.w r5, [r10], #1
    label(rqg_ch2)
    data(2, 0x9802)  # ldr r0, [sp, #8]: a
    data(2, 0xF8D8, 0x3018)  # ldr.w r3, [r8, #24]: A'
    data(2, 0xF8D8, 0x401C)  # ldr.w r4, [r8, #28]: D'lo
    data(2, 0xF8D8, 0x6020)  # ldr.w r6, [r8, #32]: (D'hi << 8) | s'
    lsl(r1, r6, 24)  # bit 7 -> N
    bmi_w(rqg_s2)
    asr(r5, r6, 8)  # D'hi
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3: r5:r4 = a*A' + D'
    asr(r5, r6)  # y = high word >> s' (the low byte of r6)
    label(rqg_c2)
    data(2, 0xF385, 0x0508)  # usat r5, #8, r5: y = clip(y, 0, 255)
    data(2, 0xF80A, 0x5B01)  # strb.w r5, [r10], #1
    data(2, 0x9803)  # ldr r0, [sp, #12]: a
    data(2, 0xF8D8, 0x3024)  # ldr.w r3, [r8, #36]: A'
    data(2, 0xF8D8, 0x4028)  # ldr.w r4, [r8, #40]: D'lo
    data(2, 0xF8D8, 0x602C)  # ldr.w r6, [r8, #44]: (D'hi << 8) | s'
    lsl(r1, r6, 24)  # bit 7 -> N
    bmi_w(rqg_s3)
    asr(r5, r6, 8)  # D'hi
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3: r5:r4 = a*A' + D'
    asr(r5, r6)  # y = high word >> s' (the low byte of r6)
    label(rqg_c3)
    data(2, 0xF385, 0x0508)  # usat r5, #8, r5: y = clip(y, 0, 255)
    data(2, 0xF80A, 0x5B01)  # strb.w r5, [r10], #1
    data(2, 0x9804)  # ldr r0, [sp, #16]: a
    data(2, 0xF8D8, 0x3030)  # ldr.w r3, [r8, #48]: A'
    data(2, 0xF8D8, 0x4034)  # ldr.w r4, [r8, #52]: D'lo
    data(2, 0xF8D8, 0x6038)  # ldr.w r6, [r8, #56]: (D'hi << 8) | s'
    lsl(r1, r6, 24)  # bit 7 -> N
    bmi_w(rqg_s4)
    asr(r5, r6, 8)  # D'hi
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3: r5:r4 = a*A' + D'
    asr(r5, r6)  # y = high word >> s' (the low byte of r6)
    label(rqg_c4)
    data(2, 0xF385, 0x0508)  # usat r5, #8, r5: y = clip(y, 0, 255)
    data(2, 0xF80A, 0x5B01)  # strb.w r5, [r10], #1
    data(2, 0x9805)  # ldr r0, [sp, #20]: a
    data(2, 0xF8D8, 0x303C)  # ldr.w r3, [r8, #60]: A'
    data(2, 0xF8D8, 0x4040)  # ldr.w r4, [r8, #64]: D'lo
    data(2, 0xF8D8, 0x6044)  # ldr.w r6, [r8, #68]: (D'hi << 8) | s'
    lsl(r1, r6, 24)  # bit 7 -> N
    bmi_w(rqg_s5)
    asr(r5, r6, 8)  # D'hi
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3: r5:r4 = a*A' + D'
    asr(r5, r6)  # y = high word >> s' (the low byte of r6)
    label(rqg_c5)
    data(2, 0xF385, 0x0508)  # usat r5, #8, r5: y = clip(y, 0, 255)
    data(2, 0xF80A, 0x5B01)  # strb.w r5, [r10], #1
    data(2, 0xF108, 0x0848)  # add.w r8, r8, #72: the next block's Q
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE880, 0x0F00)  # stm.w r0, {r8-r11}: the cursors, for the next pass
    cmp(r0, r0)  # b.w
    beq_w(dblk_next)
    label(rqg_s0)
    lsl(r1, r6, 25)  # bit 6 -> N: the SMLAL form, then the channel's exceptions (r9 is at its first; none
    bpl(rqg_g0)  # has a = 0 or Wn, so the unclamped a matches where the clamped one would)
    asr(r5, r6, 8)
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3
    data(2, 0xF006, 0x011F)  # and.w r1, r6, #31: s'
    asr(r5, r1)
    lsl(r2, r6, 26)  # bit 5 -> N: exactly one exception
    bpl(rqg_m0)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    b(rqg_c0)
    label(rqg_m0)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF8D9, 0x2000)  # ldr.w r2, [r9]: the channel
    label(rqg_x0)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0x45A1)  # cmp r9, r4
    bcs_w(rqg_c0)
    data(2, 0xF8D9, 0x1000)  # ldr.w r1, [r9]
    cmp(r1, r2)
    beq(rqg_x0)
    b(rqg_c0)
    label(rqg_g0)
    bl(rqg_sp)
    b(rqg_c0)
    label(rqg_s1)
    lsl(r1, r6, 25)  # bit 6 -> N: the SMLAL form, then the channel's exceptions (r9 is at its first; none
    bpl(rqg_g1)  # has a = 0 or Wn, so the unclamped a matches where the clamped one would)
    asr(r5, r6, 8)
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3
    data(2, 0xF006, 0x011F)  # and.w r1, r6, #31: s'
    asr(r5, r1)
    lsl(r2, r6, 26)  # bit 5 -> N: exactly one exception
    bpl(rqg_m1)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    b(rqg_c1)
    label(rqg_m1)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF8D9, 0x2000)  # ldr.w r2, [r9]: the channel
    label(rqg_x1)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0x45A1)  # cmp r9, r4
    bcs_w(rqg_c1)
    data(2, 0xF8D9, 0x1000)  # ldr.w r1, [r9]
    cmp(r1, r2)
    beq(rqg_x1)
    b(rqg_c1)
    label(rqg_g1)
    bl(rqg_sp)
    b(rqg_c1)
    label(rqg_s2)
    lsl(r1, r6, 25)  # bit 6 -> N: the SMLAL form, then the channel's exceptions (r9 is at its first; none
    bpl(rqg_g2)  # has a = 0 or Wn, so the unclamped a matches where the clamped one would)
    asr(r5, r6, 8)
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3
    data(2, 0xF006, 0x011F)  # and.w r1, r6, #31: s'
    asr(r5, r1)
    lsl(r2, r6, 26)  # bit 5 -> N: exactly one exception
    bpl(rqg_m2)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    b(rqg_c2)
    label(rqg_m2)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF8D9, 0x2000)  # ldr.w r2, [r9]: the channel
    label(rqg_x2)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0x45A1)  # cmp r9, r4
    bcs_w(rqg_c2)
    data(2, 0xF8D9, 0x1000)  # ldr.w r1, [r9]
    cmp(r1, r2)
    beq(rqg_x2)
    b(rqg_c2)
    label(rqg_g2)
    bl(rqg_sp)
    b(rqg_c2)
    label(rqg_s3)
    lsl(r1, r6, 25)  # bit 6 -> N: the SMLAL form, then the channel's exceptions (r9 is at its first; none
    bpl(rqg_g3)  # has a = 0 or Wn, so the unclamped a matches where the clamped one would)
    asr(r5, r6, 8)
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3
    data(2, 0xF006, 0x011F)  # and.w r1, r6, #31: s'
    asr(r5, r1)
    lsl(r2, r6, 26)  # bit 5 -> N: exactly one exception
    bpl(rqg_m3)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    b(rqg_c3)
    label(rqg_m3)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF8D9, 0x2000)  # ldr.w r2, [r9]: the channel
    label(rqg_x3)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0x45A1)  # cmp r9, r4
    bcs_w(rqg_c3)
    data(2, 0xF8D9, 0x1000)  # ldr.w r1, [r9]
    cmp(r1, r2)
    beq(rqg_x3)
    b(rqg_c3)
    label(rqg_g3)
    bl(rqg_sp)
    b(rqg_c3)
    label(rqg_s4)
    lsl(r1, r6, 25)  # bit 6 -> N: the SMLAL form, then the channel's exceptions (r9 is at its first; none
    bpl(rqg_g4)  # has a = 0 or Wn, so the unclamped a matches where the clamped one would)
    asr(r5, r6, 8)
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3
    data(2, 0xF006, 0x011F)  # and.w r1, r6, #31: s'
    asr(r5, r1)
    lsl(r2, r6, 26)  # bit 5 -> N: exactly one exception
    bpl(rqg_m4)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    b(rqg_c4)
    label(rqg_m4)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF8D9, 0x2000)  # ldr.w r2, [r9]: the channel
    label(rqg_x4)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0x45A1)  # cmp r9, r4
    bcs_w(rqg_c4)
    data(2, 0xF8D9, 0x1000)  # ldr.w r1, [r9]
    cmp(r1, r2)
    beq(rqg_x4)
    b(rqg_c4)
    label(rqg_g4)
    bl(rqg_sp)
    b(rqg_c4)
    label(rqg_s5)
    lsl(r1, r6, 25)  # bit 6 -> N: the SMLAL form, then the channel's exceptions (r9 is at its first; none
    bpl(rqg_g5)  # has a = 0 or Wn, so the unclamped a matches where the clamped one would)
    asr(r5, r6, 8)
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3
    data(2, 0xF006, 0x011F)  # and.w r1, r6, #31: s'
    asr(r5, r1)
    lsl(r2, r6, 26)  # bit 5 -> N: exactly one exception
    bpl(rqg_m5)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    b(rqg_c5)
    label(rqg_m5)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF8D9, 0x2000)  # ldr.w r2, [r9]: the channel
    label(rqg_x5)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0x45A1)  # cmp r9, r4
    bcs_w(rqg_c5)
    data(2, 0xF8D9, 0x1000)  # ldr.w r1, [r9]
    cmp(r1, r2)
    beq(rqg_x5)
    b(rqg_c5)
    label(rqg_g5)
    bl(rqg_sp)
    b(rqg_c5)
    label(rqg_four)  # a block of four: its sums in the frame words of channels 2..5
    data(2, 0xF1A8, 0x0818)  # sub.w r8, r8, #24
    b(rqg_ch2)
    label(rqg_one)
    data(2, 0x9800)  # ldr r0, [sp, #0]: a
    data(2, 0xF8D8, 0x3000)  # ldr.w r3, [r8, #0]: A'
    data(2, 0xF8D8, 0x4004)  # ldr.w r4, [r8, #4]: D'lo
    data(2, 0xF8D8, 0x6008)  # ldr.w r6, [r8, #8]: (D'hi << 8) | s'
    lsl(r1, r6, 24)  # bit 7 -> N
    bmi_w(rqg_s6)
    asr(r5, r6, 8)  # D'hi
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3: r5:r4 = a*A' + D'
    asr(r5, r6)  # y = high word >> s' (the low byte of r6)
    label(rqg_c6)
    data(2, 0xF385, 0x0508)  # usat r5, #8, r5: y = clip(y, 0, 255)
    data(2, 0xF80A, 0x5B01)  # strb.w r5, [r10], #1
    data(2, 0xF108, 0x080C)  # add.w r8, r8, #12
    data(2, 0xF107, 0x004C)  # add.w r0, r7, #4*PCUR
    data(2, 0xE880, 0x0F00)  # stm.w r0, {r8-r11}: the cursors, for the next pass
    cmp(r0, r0)  # b.w
    beq_w(dsn_next)
    label(rqg_s6)
    lsl(r1, r6, 25)  # bit 6 -> N: the SMLAL form, then the channel's exceptions (r9 is at its first; none
    bpl(rqg_g6)  # has a = 0 or Wn, so the unclamped a matches where the clamped one would)
    asr(r5, r6, 8)
    data(2, 0xFBC0, 0x4503)  # smlal r4, r5, r0, r3
    data(2, 0xF006, 0x011F)  # and.w r1, r6, #31: s'
    asr(r5, r1)
    lsl(r2, r6, 26)  # bit 5 -> N: exactly one exception
    bpl(rqg_m6)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    b(rqg_c6)
    label(rqg_m6)
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    data(2, 0xF8D9, 0x2000)  # ldr.w r2, [r9]: the channel
    label(rqg_x6)
    data(2, 0xF8D9, 0x1004)  # ldr.w r1, [r9, #4]: its a
    cmp(r1, r0)
    it(eq)
    data(2, 0xF8D9, 0x5008)  # ldr.w r5, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0x45A1)  # cmp r9, r4
    bcs_w(rqg_c6)
    data(2, 0xF8D9, 0x1000)  # ldr.w r1, [r9]
    cmp(r1, r2)
    beq(rqg_x6)
    b(rqg_c6)
    label(rqg_g6)
    bl(rqg_sp)
    b(rqg_c6)
    label(rqg_sp)  # a channel Q does not cover: r0 = a (c0 form, unclamped), r7 = header, r9 = E cursor, r10 = out,
    # r12 = sx. As uquant_rt.requant_channel from P's words; returns y (unclipped) in r5. Clobbers r0-r6, r11, lr.
    data(2, 0xB500)  # push {lr}
    ldr(r2, [r7, 4 * _OB])
    mov(r1, r10)
    sub(r1, r1, r2)  # n
    mov(r11, r1)
    mov(r3, 28)
    mul(r3, r1)
    ldr(r2, [r7, 4 * _PR])
    add(r2, r2, r3)  # its words in P
    ldr(r3, [r2, 0])  # c
    data(2, 0xF8D7, 0x4080)  # ldr.w r4, [r7, #4*C0]
    sub(r3, r3, r4)
    data(2, 0xFB03, 0x001C)  # mls r0, r3, r12, r0: a -= (c - c0) * sx
    ldr(r4, [r2, 8])  # a clamped to [0, Wn]
    cmp(r0, 0)
    it(lt)
    mov(r0, 0)
    cmp(r0, r4)
    it(gt)
    mov(r0, r4)
    ldr(r3, [r2, 12])  # A, Dh, Dl, S
    ldr(r4, [r2, 16])
    ldr(r5, [r2, 20])
    ldr(r6, [r2, 24])
    cmp(r6, 30)
    blt(rqg_dir)
    data(2, 0xFB80, 0x1203)  # smull r1, r2, r0, r3: r2:r1 = a*A
    data(2, 0xEB11, 0x7184)  # adds.w r1, r1, r4, lsl #30: + Dh*2**30 (low word)
    data(2, 0xEB42, 0x02A4)  # adc.w r2, r2, r4, asr #2: (high word)
    data(2, 0xEB11, 0x0105)  # adds.w r1, r1, r5: + Dl
    data(2, 0xEB42, 0x72E5)  # adc.w r2, r2, r5, asr #31: its sign
    data(2, 0xEA4F, 0x0282)  # lsl.w r2, r2, #2
    data(2, 0xEA42, 0x7291)  # orr.w r2, r2, r1, lsr #30: r2 = high word of v << 2
    sub(r6, 30)
    data(2, 0xFA42, 0xF106)  # asr.w r1, r2, r6: y
    b(rqg_exc)
    label(rqg_dir)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    label(rqg_exc)  # the channel's exception triples, if r9 is at any: the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rqg_ewl)
    data(2, 0x45A1)  # cmp r9, r4
    bcs(rqg_ret)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    bne(rqg_ret)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    b(rqg_ewl)
    label(rqg_ret)
    mov(r5, r1)
    data(2, 0xBD00)  # pop {pc}

    # the dense requantization's less common paths, out of line
    label(rq_dird0)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excd0)
    label(rq_ewd0)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewld0)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewld0)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipd0)
    label(rq_dird1)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excd1)
    label(rq_ewd1)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewld1)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewld1)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipd1)
    label(rq_dird2)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excd2)
    label(rq_ewd2)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewld2)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewld2)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipd2)
    label(rq_dird3)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excd3)
    label(rq_ewd3)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewld3)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewld3)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipd3)
    label(rq_dird4)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excd4)
    label(rq_ewd4)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewld4)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewld4)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipd4)
    label(rq_dird5)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excd5)
    label(rq_ewd5)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewld5)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewld5)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipd5)
    label(rq_dirds)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excds)
    label(rq_ewds)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewlds)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewlds)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipds)
    label(rq_dirf0)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excf0)
    label(rq_ewf0)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewlf0)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewlf0)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipf0)
    label(rq_dirf1)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excf1)
    label(rq_ewf1)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewlf1)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewlf1)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipf1)
    label(rq_dirf2)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excf2)
    label(rq_ewf2)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewlf2)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewlf2)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipf2)
    label(rq_dirf3)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excf3)
    label(rq_ewf3)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewlf3)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewlf3)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipf3)
    label(rq_dirf4)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excf4)
    label(rq_ewf4)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewlf4)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewlf4)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipf4)
    label(rq_dirf5)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excf5)
    label(rq_ewf5)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewlf5)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewlf5)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipf5)
    label(rq_dirfs)
    data(2, 0xFB00, 0x5103)  # mla r1, r0, r3, r5: a*A + Dl
    asr(r1, r6)  # y = (a*A + Dl) >> S
    cmp(r0, r0)  # b.w
    beq_w(rq_excfs)
    label(rq_ewfs)  # the channel's exception triples (r9 is at its first): the one whose a matches gives y
    data(2, 0xF8D7, 0x4028)  # ldr.w r4, [r7, #4*EEND]
    label(rq_ewlfs)
    data(2, 0xF8D9, 0x5004)  # ldr.w r5, [r9, #4]: its a
    cmp(r5, r0)
    it(eq)
    data(2, 0xF8D9, 0x1008)  # ldr.w r1, [r9, #8]: y = its code
    data(2, 0xF109, 0x090C)  # add.w r9, r9, #12
    data(2, 0xF06F, 0x0E00)  # mvn lr, #0
    data(2, 0x45A1)  # cmp r9, r4
    it(cc)
    data(2, 0xF8D9, 0xE000)  # ldr.w lr, [r9]: the next triple's channel
    data(2, 0x45DE)  # cmp lr, r11
    beq(rq_ewlfs)
    cmp(r0, r0)  # b.w
    beq_w(rq_clipfs)


    # ---- conv ------------------------------------------------------------------------------------------------
    label(conv)
    ldr(r6, [r2, 4 * _CG])  # r6 = geometry words
    str(r0, [r6, 4 * _XB])
    str(r1, [r6, 4 * _OUTB])
    ldr(r3, [r6, 4 * _XP])
    cmp(r3, 0)
    beq(c_nopad)
    # pad: fill XP with the zero point, then copy each input row inside the border
    str(r3, [r6, 4 * _XB])
    ldr(r4, [r6, 4 * _FILL])  # the zero point in each byte
    lsl(r5, r4, 8)
    orr(r4, r5)
    lsl(r5, r4, 16)
    orr(r4, r5)
    ldr(r5, [r6, 4 * _XPW])
    label(c_fill)
    str(r4, [r3, 0])
    add(r3, 4)
    sub(r5, 1)
    bne(c_fill)
    # r0 = x cursor, r1 = destination row, r2 = its cursor, r3 = bytes left in the row, r4 = rows left in the
    # channel, r5 = channels left, r7 = a byte
    ldr(r1, [r6, 4 * _XP])
    ldr(r3, [r6, 4 * _PH])
    ldr(r4, [r6, 4 * _WP])
    mul(r3, r4)
    add(r1, r1, r3)
    ldr(r3, [r6, 4 * _PW])
    add(r1, r1, r3)
    ldr(r5, [r6, 4 * _C])
    label(c_chan)
    ldr(r4, [r6, 4 * _H])
    label(c_row)
    mov(r2, r1)
    ldr(r3, [r6, 4 * _WD])
    label(c_byte)
    ldrb(r7, [r0, 0])
    strb(r7, [r2, 0])
    add(r0, 1)
    add(r2, 1)
    sub(r3, 1)
    bne(c_byte)
    ldr(r3, [r6, 4 * _WP])
    add(r1, r1, r3)
    sub(r4, 1)
    bne(c_row)
    ldr(r3, [r6, 4 * _PH])  # skip the bottom border and the next channel's top one
    add(r3, r3, r3)
    ldr(r4, [r6, 4 * _WP])
    mul(r3, r4)
    add(r1, r1, r3)
    sub(r5, 1)
    bne(c_chan)
    label(c_nopad)
    # groups: cursors at the first one
    data(2, 0x9F00)  # ldr r7, [sp, #0]: header
    mov(r3, 0)
    str(r3, [r6, 4 * _GI])
    str(r3, [r6, 4 * _GB])
    str(r3, [r7, 4 * _NG0])
    ldr(r3, [r7, 4 * _E])
    str(r3, [r6, 4 * _EG])
    ldr(r3, [r6, 4 * _OUTB])
    str(r3, [r7, 4 * _OG])
    ldr(r3, [r7, 4 * _W])
    str(r3, [r7, 4 * _WG])
    ldr(r3, [r7, 4 * _P])
    str(r3, [r7, 4 * _PG])
    label(c_group)
    mov(r3, 0)
    str(r3, [r6, 4 * _OYI])
    str(r3, [r6, 4 * _RB])
    str(r3, [r6, 4 * _POS])
    label(c_oy)
    mov(r3, 0)
    str(r3, [r6, 4 * _OXI])
    label(c_ox)
    # the window's first byte: XB + GB + RB + OXI*SW
    ldr(r0, [r6, 4 * _XB])
    ldr(r3, [r6, 4 * _GB])
    add(r0, r0, r3)
    ldr(r3, [r6, 4 * _RB])
    add(r0, r0, r3)
    ldr(r3, [r6, 4 * _OXI])
    ldr(r4, [r6, 4 * _SW])
    mul(r3, r4)
    add(r0, r0, r3)
    # gather: r0 = window, r3 = offsets, r4 = end of the whole groups, r5 = X, r6 = sx
    ldr(r3, [r6, 4 * _TAB])
    ldr(r4, [r6, 4 * _F])
    add(r4, r4, r4)
    add(r4, r4, r3)
    ldr(r5, [r7, 4 * _X])
    mov(r6, 0)
    b(g_test)
    label(g2)
    ldrh(r1, [r3, 0])
    ldrh(r2, [r3, 2])
    data(2, 0x5C41)  # ldrb r1, [r0, r1]
    data(2, 0x5C82)  # ldrb r2, [r0, r2]
    add(r6, r6, r1)
    add(r6, r6, r2)
    data(2, 0xEA41, 0x4102)  # orr.w r1, r1, r2, lsl #16: two halfwords
    str(r1, [r5, 0])
    add(r3, 4)
    add(r5, 4)
    label(g_test)
    cmp(r3, r4)
    bcc(g2)
    ldr(r4, [r7, 4 * _CG])  # the last K % 4 taps (tap order): taps 0, 1, 2 of the group go to halfwords 0, 2, 1
    ldr(r4, [r4, 4 * _R])
    cmp(r4, 0)
    beq(g_done)
    ldrh(r1, [r3, 0])
    data(2, 0x5C41)  # ldrb r1, [r0, r1]
    strh(r1, [r5, 0])
    add(r6, r6, r1)
    cmp(r4, 1)
    beq(g_done)
    ldrh(r1, [r3, 2])
    data(2, 0x5C41)  # ldrb r1, [r0, r1]
    strh(r1, [r5, 4])
    add(r6, r6, r1)
    cmp(r4, 2)
    beq(g_done)
    ldrh(r1, [r3, 4])
    data(2, 0x5C41)  # ldrb r1, [r0, r1]
    strh(r1, [r5, 2])
    add(r6, r6, r1)
    label(g_done)
    str(r6, [r7, 4 * _SX])
    ldr(r6, [r7, 4 * _CG])
    # the group's channels at this position
    ldr(r3, [r7, 4 * _WG])
    str(r3, [r7, 4 * _WCUR])
    ldr(r3, [r7, 4 * _PG])
    str(r3, [r7, 4 * _PCUR])
    ldr(r3, [r6, 4 * _EG])
    str(r3, [r7, 4 * _ECUR])
    ldr(r3, [r7, 4 * _NG0])
    str(r3, [r7, 4 * _NCH])
    ldr(r3, [r7, 4 * _OG])
    ldr(r4, [r6, 4 * _POS])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _OCUR])
    bl(dot)
    data(2, 0x9F00)  # ldr r7, [sp, #0]: header
    ldr(r6, [r7, 4 * _CG])
    ldr(r3, [r6, 4 * _POS])
    add(r3, 1)
    str(r3, [r6, 4 * _POS])
    ldr(r3, [r6, 4 * _OXI])
    add(r3, 1)
    str(r3, [r6, 4 * _OXI])
    ldr(r4, [r6, 4 * _OW])
    cmp(r3, r4)
    bge(c_ox_done)
    b(c_ox)
    label(c_ox_done)
    ldr(r3, [r6, 4 * _RB])
    ldr(r4, [r6, 4 * _RSTEP])
    add(r3, r3, r4)
    str(r3, [r6, 4 * _RB])
    ldr(r3, [r6, 4 * _OYI])
    add(r3, 1)
    str(r3, [r6, 4 * _OYI])
    ldr(r4, [r6, 4 * _OH])
    cmp(r3, r4)
    bge(c_oy_done)
    b(c_oy)
    label(c_oy_done)
    # the next group: its exceptions start where the last position's walk stopped
    ldr(r3, [r7, 4 * _ECUR])
    str(r3, [r6, 4 * _EG])
    ldr(r3, [r6, 4 * _GB])
    ldr(r4, [r6, 4 * _GSTR])
    add(r3, r3, r4)
    str(r3, [r6, 4 * _GB])
    ldr(r3, [r7, 4 * _WG])
    ldr(r4, [r6, 4 * _WGS])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _WG])
    ldr(r3, [r7, 4 * _PG])
    ldr(r4, [r6, 4 * _PGS])
    add(r3, r3, r4)
    str(r3, [r7, 4 * _PG])
    ldr(r3, [r6, 4 * _NG])
    ldr(r4, [r7, 4 * _NG0])
    add(r4, r4, r3)
    str(r4, [r7, 4 * _NG0])
    ldr(r4, [r6, 4 * _OHW])
    mul(r3, r4)
    ldr(r4, [r7, 4 * _OG])
    add(r4, r4, r3)
    str(r4, [r7, 4 * _OG])
    ldr(r3, [r6, 4 * _GI])
    add(r3, 1)
    str(r3, [r6, 4 * _GI])
    ldr(r4, [r6, 4 * _G])
    cmp(r3, r4)
    bge(finish)
    b(c_group)

    # ---- done: give back r8-r12 and lr, return 0 (a small int: no allocation) --------------------------------
    label(finish)
    data(2, 0xB001)  # add sp, #4
    data(2, 0xE8BD, 0x5F00)  # pop.w {r8-r12, lr}
    mov(r0, 0)


def _words(v):
    # int32 words for the kernel (as uquant_thumb._words): an array('i'), or little-endian bytes
    # (uquant_rt.as_words) read in place when word-aligned; anything else copied into an array.
    if v is None:
        return array("i")
    if isinstance(v, (bytes, bytearray)) and (len(v) % 4 or _addr(v) & 3) or not isinstance(
            v, (array, bytes, bytearray)):
        return array("i", v)  # MicroPython copies bytes raw
    return v


def _word(v, i):
    # word i of _words(v), from Python
    if not isinstance(v, (bytes, bytearray)):
        return v[i]
    i <<= 2
    return (v[i + 3] ^ 128) - 128 << 24 | v[i + 2] << 16 | v[i + 1] << 8 | v[i]


def _header(K, NL, lo, hi, W, P, E, T, N):
    # The header words every mode shares; N = the channels of one pass (dense N, conv N/G), NL = all channels.
    P = _words(P)
    E = _words(E)
    nP = len(P) if isinstance(P, array) else len(P) >> 2
    nE = len(E) if isinstance(E, array) else len(E) >> 2
    if K < 1 or NL < 1 or len(W) < K * NL or nP < 7 * NL or nE % 3 or not 0 <= lo <= hi <= 255:
        raise ValueError("uquant_dsp: bad layer")
    if T is not None and len(T) != 256:
        raise ValueError("uquant_dsp: the table must have 256 entries")
    last = 0
    for i in range(0, nE, 3):  # the kernel walks E once, channel after channel
        n = _word(E, i)
        if not last <= n < NL:
            raise ValueError("uquant_dsp: exceptions must be sorted by channel")
        last = n
    K4 = (K + 3) & ~3
    X = bytearray(2 * K4)  # the pads past K stay 0
    H = array("i", [0] * _HWORDS)
    H[_K] = K
    H[_NB] = N // 4
    H[_NR] = N % 4
    H[_LO] = lo
    H[_HI] = hi
    H[_W] = _addr(W)
    H[_P] = _addr(P)
    H[_E] = _addr(E)
    H[_EEND] = H[_E] + 4 * nE
    H[_T] = 0 if T is None else _addr(T)
    H[_X] = _addr(X)
    H[_X32] = 2 * (K4 & ~31)
    H[_X4] = 2 * K4
    H[_OSTR] = 1
    H[_K4F] = K & ~3
    H[_KT] = K % 4
    return H, (W, P, E, T, X)


DENSE_LAYOUT = "dsp"  # the order of dense weights prepare_dense takes (uquant_rt.dsp_index, dsp_flip)


def prepare_dense(K, N, lo, hi, W, P, E, T):
    # Once per layer, when the model is built: check the sizes and fill the header. W is in DENSE_LAYOUT order.
    # The handle keeps the buffers alive, since the header only holds their addresses. P is read in place (satfix
    # may move its c_lo words). Cn[n] = 128 * (sum of row n's u at even taps) + 255 * (at odd taps) - 32640 * (K // 2)
    # turns the kernel's offset-form sum back into sum x*u (see the header of this file).
    H, keep = _header(K, N, lo, hi, W, P, E, T, N)
    H[_NB] = N // 6
    H[_D4C] = 1 if N % 6 >= 4 else 0
    H[_NR] = N % 6 - 4 * H[_D4C]
    H[_FAST] = 1 if lo == 0 and hi == 255 and T is None else 0
    H[_DX32] = 64 * (K >> 5)
    H[_DXF] = 8 * (K >> 2)
    C = array("i", [0] * N)
    Q = K >> 2
    r = K & 3
    o = n0 = 0
    while n0 < N:  # blocks of six, then maybe four, then single rows (m = 1), as uquant_rt.dsp_index lays them out
        m = 6 if N - n0 >= 6 else 4 if n0 == 6 * (N // 6) and N - n0 >= 4 else 1
        for j in range(m):
            se = so = 0
            i = o + 4 * j
            for _ in range(Q):
                se += W[i] + W[i + 2]
                so += (W[i + 1] ^ 128) + (W[i + 3] ^ 128)
                i += 4 * m
            i = o + 4 * m * Q + r * j
            for t in range(r):
                if t & 1:
                    so += W[i + t] ^ 128
                else:
                    se += W[i + t]
            C[n0 + j] = 128 * se + 255 * so - 32640 * (K >> 1)  # odd taps' bytes hold u ^ 128
        o += m * K
        n0 += m
    H[_CN] = _addr(C)
    Q = None
    if H[_FAST] and not isinstance(P, bytearray):  # (a bytearray P may have its c_lo words moved: satfix)
        try:
            Q = _recast(N, keep[1], keep[2], C)
        except OverflowError:  # a firmware without big ints
            Q = None
    if Q is not None:
        H[_FAST] = 2
        H[_PR] = H[_P]
        H[_P] = _addr(Q)
        H[_C0] = _word(keep[1], 0)
    return (H, keep, K, N, C, Q)


_GENERAL = 70  # what a channel of the general path costs FAST 2, about (the tests set 0: FAST 2 whenever it can)


def _recast(N, P, E, C):
    # FAST 2 (a layer that clips to [0, 255] without a table, its P read-only): each channel's requantization
    #     a = clamp(acc - c_lo, 0, Wn);  y = floor((a*A + D) / 2**S)  (D = Dh*2**30 + Dl, or Dl when S < 30)
    # becomes y = floor((a*A' + D') / 2**32) >> s' on the unclamped a, exactly: A' = A << t, D' = D << t with
    # t = 32 - S when S <= 32, s' = S - 32 otherwise; one SMLAL. Dropping the clamp changes no output code when A >= 0
    # (y grows with a), y(0) <= 0 and y(Wn) >= 255: a below 0 or past Wn then saturates as the clamped one does.
    # C[n] becomes Cn - c_lo and the kernel's _SXO 128*sxo - c0*sx, so the frame word is a. A channel with
    # exceptions takes the SMLAL form then looks them up by the unclamped a (bits 7, 6; 5 too when it has just one),
    # which matches where the clamped a would unless one sits at a = 0 or Wn; that channel, one with another c than
    # channel 0's, or one outside the bounds above is marked (bit 7 alone) for the general path (P's words).
    # Q: 3 words per channel (A', D'lo, (D'hi << 8) | s'). None when the FAST 1 way would be faster (too many
    # channels for the general path).
    nE = len(E) if isinstance(E, array) else len(E) >> 2
    odd = {}  # channel -> the a of its exceptions
    for i in range(0, nE, 3):
        odd.setdefault(_word(E, i), []).append(_word(E, i + 1))
    c0 = _word(P, 0)
    Q = array("i", [0] * (3 * N))
    Cp = [0] * N
    good = 0
    for n in range(N):
        p = 7 * n
        c = _word(P, p)
        c_lo = _word(P, p + 1)
        Wn = _word(P, p + 2)
        A = _word(P, p + 3)
        S = _word(P, p + 6)
        D = _word(P, p + 5) if S < 30 else _word(P, p + 4) * 2 ** 30 + _word(P, p + 5)
        Cp[n] = (C[n] - c_lo + 2 ** 31) % 2 ** 32 - 2 ** 31  # int32 arithmetic, as the kernel's
        Q[3 * n + 2] = 128
        if c != c0 or A < 0 or S < 0 or S > 63 or D >> S > 0 or (Wn * A + D) >> S < 255:
            continue
        t = 32 - S if S <= 32 else 0
        Ap = A << t
        Dp = D << t
        hi = Dp >> 32
        if Ap >= 2 ** 31 or not -2 ** 23 <= hi < 2 ** 23:
            continue
        lo = Dp & 0xFFFFFFFF
        Q[3 * n] = Ap
        Q[3 * n + 1] = lo - 2 ** 32 if lo >= 2 ** 31 else lo
        Q[3 * n + 2] = (hi << 8) | (S - 32 if S > 32 else 0)
        if n in odd:  # the SMLAL form then its exceptions (0xC0, 0xE0: just one), unless one is at a clamp (0x80)
            Q[3 * n + 2] |= 0x80 if 0 in odd[n] or Wn in odd[n] else 0xE0 if len(odd[n]) == 1 else 0xC0
        good += 12 if n not in odd else 30
    if good + _GENERAL * sum(1 for n in range(N) if Q[3 * n + 2] & 0xC0 == 0x80) >= 34 * N:
        return None  # (cycles per channel, roughly: 34 the FAST 1 way, 12 the SMLAL form, 70 the general path)
    for n in range(N):
        C[n] = Cp[n]
    return Q


def dense(x, out, handle):
    # out[0:N] = the layer's output codes for input codes x[0:K]. Allocates nothing.
    if len(x) < handle[2] or len(out) < handle[3]:
        raise ValueError("uquant_dsp.dense: buffer too small")
    _kernel(x, out, handle[0])


def prepare_conv(g, xzp, lo, hi, W, P, E, T):
    # Handle for conv(), or None for a layer this tier leaves to the next module (SAT 1 and 2, huge windows).
    if len(g) != 16:
        raise ValueError("uquant_dsp: conv geometry has 16 entries")
    C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT = g
    if SAT or G < 1 or C % G or N % G or OH < 1 or OW < 1:
        return None
    cg = C // G
    ng = N // G
    kk = cg * KH * KW
    if len(W) != N * kk:
        raise ValueError("uquant_dsp: conv weights are not N x (C/G * KH * KW) bytes")
    Hp = H + 2 * PH
    Wp = Wd + 2 * PW
    offs = []
    for c in range(cg):
        for ky in range(KH):
            for kx in range(KW):
                offs.append((c * Hp + ky * DH) * Wp + kx * DW)
    if offs[-1] > 0xFFFF or not 0 <= xzp <= 255:
        return None
    F = kk & ~3
    tab = array("H", [0] * kk)  # pair order for the whole groups of four, tap order for the rest
    for q in range(0, F, 4):
        tab[q] = offs[q]
        tab[q + 1] = offs[q + 2]
        tab[q + 2] = offs[q + 1]
        tab[q + 3] = offs[q + 3]
    for t in range(F, kk):
        tab[t] = offs[t]
    hdr, keep = _header(kk, N, lo, hi, W, P, E, T, ng)
    hdr[_OSTR] = OH * OW
    hdr[_MODE] = 1
    xp = bytearray(4 * ((C * Hp * Wp + 3) // 4)) if PH or PW else None
    cw = array("i", [0] * _CWORDS)
    cw[_XP] = 0 if xp is None else _addr(xp)
    cw[_C] = C
    cw[_H] = H
    cw[_WD] = Wd
    cw[_HP] = Hp
    cw[_WP] = Wp
    cw[_PH] = PH
    cw[_PW] = PW
    cw[_FILL] = xzp
    cw[_XPW] = 0 if xp is None else len(xp) // 4
    cw[_G] = G
    cw[_OH] = OH
    cw[_OW] = OW
    cw[_RSTEP] = SH * Wp
    cw[_SW] = SW
    cw[_GSTR] = cg * Hp * Wp
    cw[_TAB] = _addr(tab)
    cw[_F] = F
    cw[_R] = kk - F
    cw[_NG] = ng
    cw[_OHW] = OH * OW
    cw[_WGS] = ng * kk
    cw[_PGS] = ng * 28
    hdr[_CG] = _addr(cw)
    return (hdr, keep, cw, tab, xp, C * H * Wd, N * OH * OW)


def conv(x, out, handle):
    # out = the convolution of the handle's layer over the CHW codes x (as uquant_rt.conv). Allocates nothing.
    if len(x) < handle[5] or len(out) < handle[6]:
        raise ValueError("uquant_dsp.conv: buffer too small")
    _kernel(x, out, handle[0])
