/*
 * One-token decoding in C: the few operations of a pre-norm transformer block, for a batch of
 * rows that each add ONE new token to a KV cache. An optional accelerator: lucidlm/models/decode_fast.py
 * calls these functions in the order the block computes them, and tests/test_decode_fast.py
 * proves the result equal to the reference forward (nn/block.py), which stays what it is.
 *
 * Why C: generating one token multiplies every weight matrix by one vector, so decoding is bound
 * by how fast the weights stream from memory (SmolLM2-135M: 540 MB of fp32 per token). On one
 * core PyTorch's F.linear streams them at 11 GB/s (row-major) or 17 GB/s (column-major), while a
 * plain loop of 8-wide fused multiply-adds reading each row front to back reaches 24 GB/s, close
 * to the 26 GB/s at which the core can merely sum a large array (benchmarks/bench_decode.py).
 * And a block at one token is ~40 small PyTorch ops whose fixed cost (~5 us each) adds up to a
 * quarter of the step; here it is eight calls. With more than one thread (set_threads), each
 * matrix is split between them by weight rows (_thread_pool.h).
 *
 * Every function takes raw addresses (Python ints from tensor.data_ptr()) and sizes. The caller
 * (decode_fast.py) checks dtypes (float32), contiguity and shapes before calling: nothing here
 * checks them again. Notation: B rows, C model width, nh query heads, nkv key/value heads,
 * hs head size, L cached positions before this token, S = L + 1 keys after it.
 *
 * Reading order: the dot product, linear (and its threads), the norms, RoPE, attention, the
 * activations, the module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* ---- the dot product: everything heavy is one of these ------------------------------------ */

/* dots(w, x, rows, n, y): y[r] = w . x[r] for up to ROWS inputs against one weight row w.
 * Several inputs at a time load each piece of w once for all of them, so a batch of rows costs
 * far less than rows x one row; and each row's arithmetic is the same whatever the others, so a
 * request gives bit-identical results whatever its place in a batch. Written once per
 * instruction set, always inlined into linear (below) with a constant number of rows, and its
 * loops over the rows unrolled (``_Pragma("GCC unroll")``) so that the partial sums live in
 * registers. (Calling it through a pointer for every weight row instead cost 20% at 4-8 rows.) */
#define ROWS 4
#define INLINE static inline __attribute__((always_inline))
#define UNROLL_ROWS _Pragma("GCC unroll 4")

/* ---- linear: out (+)= x W^T + b ----------------------------------------------------------- */

/* x (B, n_in), W (n_out, n_in) row-major as nn.Linear stores it, bias (n_out) or NULL,
 * out (B, n_out). With accumulate, the result is added to out: the residual connection
 * x = x + proj(h) in one pass. W is read once, front to back, whatever B is: each weight row
 * meets every batch row (up to four at a time) while it sits in the L1 cache. linear_<isa>
 * computes the outputs o_lo .. o_hi-1; threads take one contiguous range of weight rows each
 * (linear_part). dot_<isa> is one row's dot product, for attention. */
typedef void (*linear_fn)(float *out, const float *x, const float *w, const float *bias, Py_ssize_t B,
                          Py_ssize_t n_out, Py_ssize_t n_in, int accumulate, Py_ssize_t o_lo, Py_ssize_t o_hi);
typedef float (*dot_fn)(const float *a, const float *b, Py_ssize_t n);

/* Output o of k rows: out[j * n_out] (+)= y[j] + b. */
static inline void store_outputs(float *out, Py_ssize_t n_out, const float *y, int k, float b, int accumulate) {
    for (int j = 0; j < k; j++) out[j * n_out] = accumulate ? out[j * n_out] + (y[j] + b) : y[j] + b;
}

#define LINEAR_AND_DOT(isa, attr)                                                                          \
    attr static void linear_##isa(float *out, const float *x, const float *w, const float *bias, Py_ssize_t B,   \
                                  Py_ssize_t n_out, Py_ssize_t n_in, int accumulate, Py_ssize_t o_lo,            \
                                  Py_ssize_t o_hi) {                                                             \
        for (Py_ssize_t o = o_lo; o < o_hi; o++) {                                                               \
            const float *row = w + o * n_in;                                                                     \
            float b = bias ? bias[o] : 0.0f, y[ROWS];                                                            \
            for (Py_ssize_t r = 0; r < B; r += ROWS) {                                                           \
                int k = B - r < ROWS ? (int)(B - r) : ROWS;                                                      \
                const float *xs[ROWS];                                                                           \
                for (int j = 0; j < k; j++) xs[j] = x + (r + j) * n_in;                                          \
                switch (k) { /* a constant number of rows in each call: see dots */                             \
                case 4: dots_##isa(row, xs, 4, n_in, y); break;                                                 \
                case 3: dots_##isa(row, xs, 3, n_in, y); break;                                                 \
                case 2: dots_##isa(row, xs, 2, n_in, y); break;                                                 \
                default: dots_##isa(row, xs, 1, n_in, y);                                                       \
                }                                                                                                \
                store_outputs(out + r * n_out + o, n_out, y, k, b, accumulate);                                  \
            }                                                                                                    \
        }                                                                                                        \
    }                                                                                                            \
    attr static float dot_##isa(const float *a, const float *b, Py_ssize_t n) {                                  \
        float y;                                                                                                 \
        dots_##isa(a, &b, 1, n, &y);                                                                             \
        return y;                                                                                                \
    }

/* Portable: GCC/Clang vector extensions, which the compiler turns into the machine's own vector
 * instructions (NEON on ARM, SSE on any x86-64). Four independent 4-wide partial sums per row, so
 * the loop is not one long chain of dependent additions; memcpy is how C spells an unaligned load. */
typedef float vec4 __attribute__((vector_size(16)));

INLINE vec4 load4(const float *p) {
    vec4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

INLINE void dots_portable(const float *w, const float *const *x, int rows, Py_ssize_t n, float *y) {
    vec4 s[ROWS][4] = {{{0}}};
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vec4 w0 = load4(w + i), w1 = load4(w + i + 4), w2 = load4(w + i + 8), w3 = load4(w + i + 12);
        UNROLL_ROWS for (int r = 0; r < rows; r++) {
            s[r][0] += w0 * load4(x[r] + i);
            s[r][1] += w1 * load4(x[r] + i + 4);
            s[r][2] += w2 * load4(x[r] + i + 8);
            s[r][3] += w3 * load4(x[r] + i + 12);
        }
    }
    UNROLL_ROWS for (int r = 0; r < rows; r++) {
        vec4 t = (s[r][0] + s[r][1]) + (s[r][2] + s[r][3]);
        float total = (t[0] + t[2]) + (t[1] + t[3]);
        for (Py_ssize_t j = i; j < n; j++) total += w[j] * x[r][j];
        y[r] = total;
    }
}

LINEAR_AND_DOT(portable, )

#ifdef HAVE_X86
/* AVX2 + FMA: two 8-wide partial sums per row, 16 floats a step; with four rows that is eight
 * independent chains of fused multiply-adds, what the core needs to keep both FMA units busy.
 * (512-bit vectors measured no faster here: at one row the loop waits on memory.) */
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 INLINE void dots_avx2(const float *w, const float *const *x, int rows, Py_ssize_t n, float *y) {
    __m256 s[ROWS][2];
    UNROLL_ROWS for (int r = 0; r < rows; r++) s[r][0] = s[r][1] = _mm256_setzero_ps();
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
        UNROLL_ROWS for (int r = 0; r < rows; r++) {
            s[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[r] + i), s[r][0]);
            s[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[r] + i + 8), s[r][1]);
        }
    }
    UNROLL_ROWS for (int r = 0; r < rows; r++) {
        __m256 t = _mm256_add_ps(s[r][0], s[r][1]);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        float total = _mm_cvtss_f32(h);
        for (Py_ssize_t j = i; j < n; j++) total += w[j] * x[r][j];
        y[r] = total;
    }
}

LINEAR_AND_DOT(avx2, AVX2)
#endif

static linear_fn linear = linear_portable; /* chosen at import (see the module's end) */
static dot_fn dot = dot_portable;

typedef struct {
    float *out;
    const float *x, *w, *bias;
    Py_ssize_t B, n_out, n_in;
    int accumulate;
} linear_task;

static void linear_part(void *ctx, int part, int parts) {
    linear_task *t = ctx;
    Py_ssize_t lo = t->n_out * part / parts, hi = t->n_out * (part + 1) / parts;
    linear(t->out, t->x, t->w, t->bias, t->B, t->n_out, t->n_in, t->accumulate, lo, hi);
}

static int n_threads = 1; /* set_threads(): lucidlm passes torch.get_num_threads() */
#define MIN_PARALLEL_MACS 65536 /* below this a product is not worth handing out (~10 us) */

/* ---- linear from quantised blocks: out (+)= x W^T + b, W in llama.cpp's blocks ------------- */

/* W's rows are runs of blocks of 32 weights (nn/quantized.py has the layouts): Q8_0 = fp16 d +
 * 32 int8 (w = d q); Q4_0 = fp16 d + 16 bytes of nibbles (w = d (q - 8)); Q4_1 = fp16 d, fp16 m +
 * nibbles (w = d q + m); byte j holds weight j in its low nibble and weight j + 16 in its high.
 * A weight row is expanded into a small float buffer (it stays in the L1 cache), with the same
 * float32 operations in the same order as the reference dequantisation, so the expanded weights
 * are bit for bit those of nn/quantized.py; then the dot products of the float path run on it.
 * The matrix itself is never expanded in memory: per token the core reads 20 bytes per 32 weights
 * (Q4_1) instead of 128. The activations stay float32, so the result equals x @ dequantize(W).T
 * up to the order of the additions. */
enum { Q8_0, Q4_0, Q4_1 }; /* nn/quantized.py KIND_CODES */
static const int block_bytes[] = {34, 18, 20};

/* IEEE fp16 -> float, exactly (normals, subnormals, inf, nan): the portable path's F16C. */
static float half_to_float(const uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000 | (man << 13); /* inf, nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13); /* normal: rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign; /* +-0 */
    } else { /* subnormal: man * 2^-24, exact in float */
        float f = (float)man * 5.9604644775390625e-8f;
        memcpy(&bits, &f, 4);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* One row of n_in weights from its blocks into w (float32). */
static void dequant_row_portable(float *w, const uint8_t *row, int kind, Py_ssize_t n_in) {
    for (Py_ssize_t b = 0; b < n_in / 32; b++, w += 32) {
        const uint8_t *blk = row + b * block_bytes[kind];
        float d = half_to_float(blk);
        if (kind == Q8_0) {
            for (int j = 0; j < 32; j++) w[j] = (float)(int8_t)blk[2 + j] * d;
        } else if (kind == Q4_0) {
            for (int j = 0; j < 16; j++) {
                w[j] = (float)((blk[2 + j] & 0x0f) - 8) * d;
                w[j + 16] = (float)((blk[2 + j] >> 4) - 8) * d;
            }
        } else {
            float m = half_to_float(blk + 2);
            for (int j = 0; j < 16; j++) {
                w[j] = (float)(blk[4 + j] & 0x0f) * d + m;
                w[j + 16] = (float)(blk[4 + j] >> 4) * d + m;
            }
        }
    }
}

/* linear_q_<isa>: out (+)= x W^T + b over the outputs o_lo .. o_hi - 1, W in blocks.
 *
 * The portable path is the plain way: expand one weight row into wbuf (n_in floats, it stays in
 * the L1 cache) with the same float32 operations as the reference, then the float dot products.
 *
 * The vector paths never store a weight. Per block they widen the 32 small integers q to floats
 * in registers and use  sum_j w_j x_j = d (q . x) + m sum_j x_j  (Q4_1; m = 0 for Q8_0, and Q4_0
 * widens q - 8): the per-weight scaling becomes one multiply-add per block, and the sums of x over
 * each block (xsum: B * n_in / 32 floats) are computed once per call. The same numbers as
 * x @ dequantize(W).T, added in another order: equal within float32 rounding
 * (tests/test_quantized.py). Each input row's arithmetic is the same whatever the other rows, as
 * in linear. */
#define LINEAR_Q_PORTABLE                                                                                        \
    static void linear_q_portable(float *out, const float *x, const uint8_t *w, int kind, const float *bias,     \
                                  Py_ssize_t B, Py_ssize_t n_out, Py_ssize_t n_in, int accumulate,               \
                                  Py_ssize_t o_lo, Py_ssize_t o_hi, float *wbuf, const float *xsum) {            \
        (void)xsum;                                                                                              \
        Py_ssize_t row_bytes = n_in / 32 * block_bytes[kind];                                                    \
        for (Py_ssize_t o = o_lo; o < o_hi; o++) {                                                               \
            dequant_row_portable(wbuf, w + o * row_bytes, kind, n_in);                                           \
            linear_portable(out + o, x, wbuf, bias ? bias + o : NULL, B, n_out, n_in, accumulate, 0, 1);         \
        }                                                                                                        \
    }
LINEAR_Q_PORTABLE

/* The loop shared by the vector paths: for each weight row, up to QROWS input rows at a time
 * (each block is expanded once for all of them) through dots_q_<isa>, with the block type and the
 * number of rows constants the compiler sees (QROWS_CASE: one specialised copy per pair). Four
 * rows, as in linear: with eight, AVX-512 went no faster (each row costs two multiply-adds per
 * block, and the core runs one 512-bit multiply-add per cycle). */
#define QROWS 4
#define UNROLL_QROWS _Pragma("GCC unroll 4")
#define QROWS_CASE(isa, KIND, R) \
    case KIND * 16 + R: dots_q_##isa(row, KIND, xs, ss, R, nb, y); break;
#define QROWS_CASES(isa, KIND)                                                                                   \
    QROWS_CASE(isa, KIND, 1) QROWS_CASE(isa, KIND, 2) QROWS_CASE(isa, KIND, 3) QROWS_CASE(isa, KIND, 4)

#define LINEAR_Q(isa, attr)                                                                            \
    attr static void linear_q_##isa(float *out, const float *x, const uint8_t *w, int kind, const float *bias,   \
                                    Py_ssize_t B, Py_ssize_t n_out, Py_ssize_t n_in, int accumulate,             \
                                    Py_ssize_t o_lo, Py_ssize_t o_hi, float *wbuf, const float *xsum) {          \
        (void)wbuf;                                                                                              \
        Py_ssize_t nb = n_in / 32, row_bytes = nb * block_bytes[kind];                                           \
        for (Py_ssize_t o = o_lo; o < o_hi; o++) {                                                               \
            const uint8_t *row = w + o * row_bytes;                                                              \
            float b = bias ? bias[o] : 0.0f, y[QROWS];                                                           \
            for (Py_ssize_t r = 0; r < B; r += QROWS) {                                                          \
                int k = B - r < QROWS ? (int)(B - r) : QROWS;                                                    \
                const float *xs = x + r * n_in, *ss = xsum + r * nb;                                             \
                switch (kind * 16 + k) {                                                                         \
                    QROWS_CASES(isa, Q8_0)                                                                       \
                    QROWS_CASES(isa, Q4_0)                                                                       \
                    QROWS_CASES(isa, Q4_1)                                                                       \
                }                                                                                                \
                store_outputs(out + r * n_out + o, n_out, y, k, b, accumulate);                                  \
            }                                                                                                    \
        }                                                                                                        \
    }

#ifdef HAVE_X86
/* AVX2: a block as four vectors of 8 floats (weights 0-7, 8-15, 16-23, 24-31). Every AVX2 CPU
 * also has F16C, which converts the fp16 d and m. */
#define AVX2_F16C __attribute__((target("avx2,fma,f16c")))

AVX2_F16C INLINE float half_f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AVX2_F16C INLINE void block_avx2(const uint8_t *blk, int kind, __m256 q[4], float *d, float *m) {
    *d = half_f16c(blk);
    *m = kind == Q4_1 ? half_f16c(blk + 2) : 0.0f;
    if (kind == Q8_0) {
        for (int j = 0; j < 4; j++)
            q[j] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * j))));
        return;
    }
    __m128i v = _mm_loadu_si128((const __m128i *)(blk + (kind == Q4_0 ? 2 : 4))); /* 16 bytes of nibbles */
    __m256i lo4 = _mm256_set1_epi32(0x0f), b0 = _mm256_cvtepu8_epi32(v), b1 = _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8));
    __m256i n[4] = {_mm256_and_si256(b0, lo4), _mm256_and_si256(b1, lo4), _mm256_srli_epi32(b0, 4), _mm256_srli_epi32(b1, 4)};
    for (int j = 0; j < 4; j++) {
        if (kind == Q4_0) n[j] = _mm256_sub_epi32(n[j], _mm256_set1_epi32(8));
        q[j] = _mm256_cvtepi32_ps(n[j]);
    }
}

AVX2_F16C INLINE float hsum256(__m256 t) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

AVX2_F16C INLINE void dots_q_avx2(const uint8_t *row, int kind, const float *x, const float *xsum, int rows,
                                  Py_ssize_t nb, float *y) {
    __m256 acc[QROWS];
    float msum[QROWS];
    UNROLL_QROWS for (int r = 0; r < rows; r++) acc[r] = _mm256_setzero_ps(), msum[r] = 0.0f;
    Py_ssize_t n_in = nb * 32;
    for (Py_ssize_t b = 0; b < nb; b++) {
        __m256 q[4];
        float d, m;
        block_avx2(row + b * block_bytes[kind], kind, q, &d, &m);
        __m256 dv = _mm256_set1_ps(d);
        UNROLL_QROWS for (int r = 0; r < rows; r++) {
            const float *xb = x + r * n_in + b * 32;
            __m256 t = _mm256_mul_ps(q[0], _mm256_loadu_ps(xb));
            t = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xb + 8), t);
            t = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xb + 16), t);
            t = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xb + 24), t);
            acc[r] = _mm256_fmadd_ps(t, dv, acc[r]); /* d (q . x) */
            if (kind == Q4_1) msum[r] += m * xsum[r * nb + b]; /* m sum(x) */
        }
    }
    UNROLL_QROWS for (int r = 0; r < rows; r++) y[r] = hsum256(acc[r]) + msum[r];
}

LINEAR_Q(avx2, AVX2_F16C)

/* AVX-512: a block as two vectors of 16 floats; half the instructions of AVX2 for the same work,
 * which is what counts here: a core widens 4-bit weights to floats only a little faster than
 * memory delivers them, so the quantised product is bound by instructions, not bytes
 * (benchmarks/bench_decode.py prints both floors). */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/* A block's scales d and m (fp16) as float32, each broadcast to a whole register. */
AVX512 INLINE void scales_in_registers(const uint8_t *blk, __m512 *d, __m512 *m) {
    int32_t bits;
    memcpy(&bits, blk, 4);
    __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(bits)); /* d, m (Q8_0, Q4_0: d, then two weights' bytes) */
    *d = _mm512_broadcastss_ps(dm);
    *m = _mm512_broadcastss_ps(_mm_movehdup_ps(dm));
}

/* The scales of nb blocks as float32 pairs in memory (dm[2b], dm[2b + 1]), converted ahead of the
 * blocks' weights. Broadcasting a scale from memory takes a load port instead of one of the
 * vector units that expanding the nibbles keeps busy: one-row products 10-15% faster. (With
 * several input rows the conversion is shared by them and costs little; converting ahead would be
 * repeated for each group of rows.) */
#define SCALE_BLOCKS 256 /* blocks converted ahead at a time (2 KB on the stack) */
AVX512 INLINE void scales_in_memory(const uint8_t *row, int kind, Py_ssize_t nb, float *dm) {
    for (Py_ssize_t b = 0; b < nb; b++) {
        int32_t bits;
        memcpy(&bits, row + b * block_bytes[kind], 4);
        _mm_storel_pi((__m64 *)(dm + 2 * b), _mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
    }
}

/* One block's 32 weights, expanded in two registers (weights 0-15, 16-31) with the reference's
 * float32 operations: Q8_0 q * d; Q4_0 and Q4_1 by table: the 16 values a nibble stands for,
 * (q - 8) * d or q * d + m, then each weight looked up by its nibble (vpermps reads only the low
 * 4 bits of each index). d, m: the block's scales, broadcast. */
AVX512 INLINE void block_avx512(const uint8_t *blk, int kind, __m512 d, __m512 m, __m512 *w0, __m512 *w1) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    if (kind == Q8_0) {
        *w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2)))), d);
        *w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 18)))), d);
        return;
    }
    __m512 table = kind == Q4_0 ? _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(8.0f)), d)
                                : _mm512_add_ps(_mm512_mul_ps(iota, d), m);
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + (kind == Q4_0 ? 2 : 4))));
    *w0 = _mm512_permutexvar_ps(v, table);
    *w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
}

AVX512 static void dequant_row_avx512(float *w, const uint8_t *row, int kind, Py_ssize_t n_in) {
    for (Py_ssize_t b = 0; b < n_in / 32; b++, w += 32) {
        __m512 d, m, w0, w1;
        scales_in_registers(row + b * block_bytes[kind], &d, &m);
        block_avx512(row + b * block_bytes[kind], kind, d, m, &w0, &w1);
        _mm512_storeu_ps(w, w0);
        _mm512_storeu_ps(w + 16, w1);
    }
}

/* Unlike AVX2 above, the weights themselves are expanded (in registers): with the table lookup
 * that costs no more than the factored form, so the products are exactly those of the reference.
 * One input row takes its scales from memory, several from registers (see scales_in_memory): the
 * same numbers either way, so a row's result does not depend on the other rows. */
#define DOTS_Q_BLOCK(d, m)                                                                               \
    do {                                                                                                 \
        __m512 w0, w1;                                                                                   \
        block_avx512(row + b * block_bytes[kind], kind, d, m, &w0, &w1);                                 \
        UNROLL_QROWS for (int r = 0; r < rows; r++) {                                                    \
            const float *xb = x + r * n_in + b * 32;                                                     \
            acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xb), acc[r][0]);                             \
            acc[r][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb + 16), acc[r][1]);                        \
        }                                                                                                \
    } while (0)

AVX512 INLINE void dots_q_avx512(const uint8_t *row, int kind, const float *x, const float *xsum, int rows,
                                 Py_ssize_t nb, float *y) {
    (void)xsum;
    __m512 acc[QROWS][2]; /* two sums per row: weights 0-15 and 16-31 of each block */
    UNROLL_QROWS for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    Py_ssize_t n_in = nb * 32;
    if (rows == 1) {
        float dm[2 * SCALE_BLOCKS];
        for (Py_ssize_t b0 = 0; b0 < nb; b0 += SCALE_BLOCKS) {
            Py_ssize_t b1 = nb - b0 < SCALE_BLOCKS ? nb : b0 + SCALE_BLOCKS;
            scales_in_memory(row + b0 * block_bytes[kind], kind, b1 - b0, dm);
            for (Py_ssize_t b = b0; b < b1; b++)
                DOTS_Q_BLOCK(_mm512_set1_ps(dm[2 * (b - b0)]), _mm512_set1_ps(dm[2 * (b - b0) + 1]));
        }
    } else {
        for (Py_ssize_t b = 0; b < nb; b++) {
            __m512 d, m;
            scales_in_registers(row + b * block_bytes[kind], &d, &m);
            DOTS_Q_BLOCK(d, m);
        }
    }
    UNROLL_QROWS for (int r = 0; r < rows; r++) y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

LINEAR_Q(avx512, AVX512)
#endif

typedef void (*linear_q_fn)(float *out, const float *x, const uint8_t *w, int kind, const float *bias,
                            Py_ssize_t B, Py_ssize_t n_out, Py_ssize_t n_in, int accumulate, Py_ssize_t o_lo,
                            Py_ssize_t o_hi, float *wbuf, const float *xsum);
static linear_q_fn linear_q = linear_q_portable; /* chosen at import, with linear */
typedef void (*dequant_fn)(float *w, const uint8_t *row, int kind, Py_ssize_t n_in);
static dequant_fn dequant_row = dequant_row_portable; /* AVX-512 has its own; AVX2 uses the portable one */

typedef struct {
    float *out;
    const float *x, *bias;
    const uint8_t *w;
    int kind, accumulate;
    Py_ssize_t B, n_out, n_in;
    float *wbuf;       /* n_in floats per part (the portable path's expanded weight row) */
    const float *xsum; /* (B, n_in / 32): each input row's sum over each block */
} linear_q_task;

static void linear_q_part(void *ctx, int part, int parts) {
    linear_q_task *t = ctx;
    Py_ssize_t lo = t->n_out * part / parts, hi = t->n_out * (part + 1) / parts;
    linear_q(t->out, t->x, t->w, t->kind, t->bias, t->B, t->n_out, t->n_in, t->accumulate, lo, hi,
             t->wbuf + part * t->n_in, t->xsum);
}

/* ---- norms (nn/norms.py) ------------------------------------------------------------------ */

/* RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight. LayerNorm (bias may be NULL):
 * y = (x - mean) / sqrt(var + eps) * weight + bias. Sums in double: C is a few hundred wide. */
static void norm(float *out, const float *x, const float *weight, const float *bias, Py_ssize_t B, Py_ssize_t C,
                 double eps, int is_rms) {
    for (Py_ssize_t r = 0; r < B; r++) {
        const float *xr = x + r * C;
        float *yr = out + r * C;
        double mean = 0.0, sq = 0.0;
        if (!is_rms) {
            for (Py_ssize_t i = 0; i < C; i++) mean += xr[i];
            mean /= (double)C;
        }
        for (Py_ssize_t i = 0; i < C; i++) sq += (xr[i] - mean) * (xr[i] - mean);
        float inv = (float)(1.0 / sqrt(sq / (double)C + eps));
        for (Py_ssize_t i = 0; i < C; i++) {
            float v = (float)(xr[i] - mean) * inv * weight[i];
            yr[i] = bias ? v + bias[i] : v;
        }
    }
}

/* ---- RoPE (nn/embeddings.py, Hugging Face's "rotate_half" layout) ------------------------- */

/* Rotates n_heads heads of hs channels in place, for each of B rows whose heads start every
 * row_stride floats: x1 = first half, x2 = second half,
 *     x1' = x1 cos - x2 sin,   x2' = x2 cos + x1 sin,
 * with the cos/sin rows of that row's position (tables (max_pos, hs), both halves equal). */
static void rope(float *x, Py_ssize_t row_stride, const float *cos_t, const float *sin_t, const int64_t *pos,
                 int per_row, Py_ssize_t B, Py_ssize_t n_heads, Py_ssize_t hs) {
    Py_ssize_t half = hs / 2;
    for (Py_ssize_t r = 0; r < B; r++) {
        int64_t p = pos[per_row ? r : 0];
        const float *c = cos_t + p * hs, *s = sin_t + p * hs;
        for (Py_ssize_t h = 0; h < n_heads; h++) {
            float *x1 = x + r * row_stride + h * hs, *x2 = x1 + half;
            for (Py_ssize_t i = 0; i < half; i++) {
                float a = x1[i], b = x2[i];
                x1[i] = a * c[i] - b * s[i];
                x2[i] = b * c[half + i] + a * s[half + i];
            }
        }
    }
}

/* ---- attention of one new query per row over the KV cache (nn/attention.py) --------------- */

/* qkv (B, qkv_stride): [q (nh*hs) | k (nkv*hs) | v (nkv*hs)] of the new token, RoPE applied.
 * k_cache, v_cache (B, nkv, max_len, hs): the new key and value are written at position L, then
 * each query head h attends over keys 0..L of its kv head h / (nh / nkv) (grouped-query):
 *     out = softmax(q k^T / sqrt(hs) + M) v,   M = -inf where key_ok[r, s] == 0.
 * key_ok (B, S) bytes or NULL (all keys real). A row with no real key attends to all of them,
 * as build_mask does, so the softmax stays finite. out (B, nh*hs). */
static int attend(float *out, const float *qkv, Py_ssize_t qkv_stride, float *k_cache, float *v_cache,
                  const uint8_t *key_ok, Py_ssize_t B, Py_ssize_t nh, Py_ssize_t nkv, Py_ssize_t hs, Py_ssize_t L,
                  Py_ssize_t max_len) {
    Py_ssize_t S = L + 1, group = nh / nkv;
    float *p = malloc(sizeof(float) * S);
    if (!p) return -1;
    const float scale = 1.0f / sqrtf((float)hs);
    for (Py_ssize_t r = 0; r < B; r++) {
        const float *q_all = qkv + r * qkv_stride, *k_new = q_all + nh * hs, *v_new = k_new + nkv * hs;
        for (Py_ssize_t j = 0; j < nkv; j++) { /* 1. append this row's new key and value */
            float *kc = k_cache + (r * nkv + j) * max_len * hs, *vc = v_cache + (r * nkv + j) * max_len * hs;
            memcpy(kc + L * hs, k_new + j * hs, sizeof(float) * hs);
            memcpy(vc + L * hs, v_new + j * hs, sizeof(float) * hs);
        }
        const uint8_t *ok = key_ok ? key_ok + r * S : NULL;
        int any = 0;
        for (Py_ssize_t s = 0; s < S && !any; s++) any = !ok || ok[s];
        if (!any) ok = NULL;
        for (Py_ssize_t h = 0; h < nh; h++) {
            const float *q = q_all + h * hs;
            const float *kc = k_cache + (r * nkv + h / group) * max_len * hs;
            const float *vc = v_cache + (r * nkv + h / group) * max_len * hs;
            float best = -INFINITY; /* 2. scores, and their maximum for a stable softmax */
            for (Py_ssize_t s = 0; s < S; s++) {
                if (ok && !ok[s]) continue;
                p[s] = dot(q, kc + s * hs, hs) * scale;
                if (p[s] > best) best = p[s];
            }
            double total = 0.0; /* 3. softmax weights */
            for (Py_ssize_t s = 0; s < S; s++) {
                p[s] = (ok && !ok[s]) ? 0.0f : expf(p[s] - best);
                total += p[s];
            }
            float *o = out + r * nh * hs + h * hs; /* 4. the weighted average of the values */
            for (Py_ssize_t i = 0; i < hs; i++) o[i] = 0.0f;
            for (Py_ssize_t s = 0; s < S; s++) {
                if (p[s] == 0.0f) continue;
                float w = (float)(p[s] / total);
                const float *v = vc + s * hs;
                for (Py_ssize_t i = 0; i < hs; i++) o[i] += w * v[i];
            }
        }
    }
    free(p);
    return 0;
}

/* ---- activations (nn/mlp.py) --------------------------------------------------------------- */

enum { ACT_SILU, ACT_GELU, ACT_GELU_TANH, ACT_RELU, ACT_RELU2 }; /* decode_fast.ACTIVATION_CODES */

static float activate(float x, int kind) {
    switch (kind) {
    case ACT_SILU: return x / (1.0f + expf(-x));
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case ACT_RELU: return x > 0 ? x : 0.0f;
    default: return x > 0 ? x * x : 0.0f; /* ACT_RELU2 */
    }
}

/* Classic MLP: h = act(h) in place, n values. Gated (SwiGLU): gate_up (B, 2*hidden) holds
 * [gate | up] per row; out (B, hidden) = act(gate) * up. */
static void act_inplace(float *h, Py_ssize_t n, int kind) {
    for (Py_ssize_t i = 0; i < n; i++) h[i] = activate(h[i], kind);
}

static void gated(float *out, const float *gate_up, Py_ssize_t B, Py_ssize_t hidden, int kind) {
    for (Py_ssize_t r = 0; r < B; r++) {
        const float *g = gate_up + r * 2 * hidden, *u = g + hidden;
        for (Py_ssize_t i = 0; i < hidden; i++) out[r * hidden + i] = activate(g[i], kind) * u[i];
    }
}

/* ---- the Python module: each function takes addresses (ints) and sizes -------------------- */

/* Reads n positional arguments as integers (addresses, sizes, flags). */
static int read_ints(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t n, const char *name, Py_ssize_t *v) {
    if (nargs != n) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments, got %zd", name, n, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        v[i] = PyLong_AsSsize_t(args[i]);
        if (v[i] == -1 && PyErr_Occurred()) return -1;
    }
    return 0;
}

#define F(i) ((float *)v[i])

static PyObject *py_linear(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t v[8];
    if (read_ints(args, nargs, 8, "linear", v) < 0) return NULL;
    linear_task task = {F(0), F(1), F(2), F(3), v[4], v[5], v[6], (int)v[7]};
    int parts = task.B * task.n_out * task.n_in >= MIN_PARALLEL_MACS ? n_threads : 1;
    Py_BEGIN_ALLOW_THREADS /* up to milliseconds of work: let other Python threads (a server) run */
    run_parts(linear_part, &task, parts);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_linear_q(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t v[9];
    if (read_ints(args, nargs, 9, "linear_q", v) < 0) return NULL;
    if (v[3] < Q8_0 || v[3] > Q4_1 || v[7] % 32) return PyErr_Format(PyExc_ValueError, "bad block type or width");
    linear_q_task task = {F(0), F(1), F(4), (const uint8_t *)v[2], (int)v[3], (int)v[8], v[5], v[6], v[7], NULL, NULL};
    int parts = task.B * task.n_out * task.n_in >= MIN_PARALLEL_MACS ? n_threads : 1;
    Py_ssize_t nb = task.n_in / 32;
    float *scratch = malloc(sizeof(float) * (task.n_in * parts + task.B * nb));
    if (!scratch) return PyErr_NoMemory();
    float *xsum = scratch + task.n_in * parts;
    for (Py_ssize_t i = 0; i < task.B * nb; i++) { /* each input row's sum over each block */
        float t = 0.0f;
        for (int j = 0; j < 32; j++) t += task.x[i * 32 + j];
        xsum[i] = t;
    }
    task.wbuf = scratch, task.xsum = xsum;
    Py_BEGIN_ALLOW_THREADS
    run_parts(linear_q_part, &task, parts);
    Py_END_ALLOW_THREADS
    free(scratch);
    Py_RETURN_NONE;
}

/* dequantize_q: rows of blocks -> float32, split between the threads by rows. What
 * QuantizedLinear does before a matrix product over many rows (a prompt): expanding the matrix
 * once and multiplying with PyTorch's blocked GEMM beats reading the blocks once per few rows. */
typedef struct {
    float *out;
    const uint8_t *w;
    int kind;
    Py_ssize_t rows, n_in;
} dequant_task;

static void dequant_part(void *ctx, int part, int parts) {
    dequant_task *t = ctx;
    Py_ssize_t lo = t->rows * part / parts, hi = t->rows * (part + 1) / parts, row_bytes = t->n_in / 32 * block_bytes[t->kind];
    for (Py_ssize_t r = lo; r < hi; r++) dequant_row(t->out + r * t->n_in, t->w + r * row_bytes, t->kind, t->n_in);
}

static PyObject *py_dequantize_q(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t v[5];
    if (read_ints(args, nargs, 5, "dequantize_q", v) < 0) return NULL;
    if (v[2] < Q8_0 || v[2] > Q4_1 || v[4] % 32) return PyErr_Format(PyExc_ValueError, "bad block type or width");
    dequant_task task = {F(0), (const uint8_t *)v[1], (int)v[2], v[3], v[4]};
    int parts = task.rows * task.n_in >= MIN_PARALLEL_MACS ? n_threads : 1;
    Py_BEGIN_ALLOW_THREADS
    run_parts(dequant_part, &task, parts);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_norm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) return PyErr_Format(PyExc_TypeError, "norm takes 8 arguments, got %zd", nargs);
    Py_ssize_t v[8];
    if (read_ints(args, 6, 6, "norm", v) < 0) return NULL;
    double eps = PyFloat_AsDouble(args[6]);
    long is_rms = PyLong_AsLong(args[7]);
    if (PyErr_Occurred()) return NULL;
    norm(F(0), F(1), F(2), F(3), v[4], v[5], eps, (int)is_rms);
    Py_RETURN_NONE;
}

static PyObject *py_rope(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t v[9];
    if (read_ints(args, nargs, 9, "rope", v) < 0) return NULL;
    rope(F(0), v[1], F(2), F(3), (const int64_t *)v[4], (int)v[5], v[6], v[7], v[8]);
    Py_RETURN_NONE;
}

static PyObject *py_attend(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t v[12];
    if (read_ints(args, nargs, 12, "attend", v) < 0) return NULL;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = attend(F(0), F(1), v[2], F(3), F(4), (const uint8_t *)v[5], v[6], v[7], v[8], v[9], v[10], v[11]);
    Py_END_ALLOW_THREADS
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_act(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t v[3];
    if (read_ints(args, nargs, 3, "act", v) < 0) return NULL;
    act_inplace(F(0), v[1], (int)v[2]);
    Py_RETURN_NONE;
}

static PyObject *py_gated(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t v[5];
    if (read_ints(args, nargs, 5, "gated", v) < 0) return NULL;
    gated(F(0), F(1), v[2], v[3], (int)v[4]);
    Py_RETURN_NONE;
}

static int have_avx2(void) {
#ifdef HAVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

static int have_avx512(void) {
#ifdef HAVE_X86
    return have_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

/* The vector code in use: "portable", "avx2+fma", or "avx512" (the quantised product in 512-bit
 * vectors; the float32 one stays AVX2, as fast there since it waits on memory). */
static const char *simd_name = "portable";

static int use_simd(const char *name) {
    if (strcmp(name, "portable") == 0) {
        linear = linear_portable, dot = dot_portable, linear_q = linear_q_portable, dequant_row = dequant_row_portable;
#ifdef HAVE_X86
    } else if (strcmp(name, "avx2+fma") == 0 && have_avx2()) {
        linear = linear_avx2, dot = dot_avx2, linear_q = linear_q_avx2, dequant_row = dequant_row_portable;
    } else if (strcmp(name, "avx512") == 0 && have_avx512()) {
        linear = linear_avx2, dot = dot_avx2, linear_q = linear_q_avx512, dequant_row = dequant_row_avx512;
#endif
    } else {
        return -1;
    }
    simd_name = strcmp(name, "portable") == 0 ? "portable" : strcmp(name, "avx2+fma") == 0 ? "avx2+fma" : "avx512";
    return 0;
}

static PyObject *py_simd(PyObject *self, PyObject *unused) { return PyUnicode_FromString(simd_name); }

static PyObject *py_set_threads(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1 || n > MAX_THREADS) return PyErr_Format(PyExc_ValueError, "threads must be 1..%d, got %ld", MAX_THREADS, n);
    n_threads = (int)n;
    Py_RETURN_NONE;
}

static PyObject *py_threads(PyObject *self, PyObject *unused) { return PyLong_FromLong(n_threads); }

/* For the tests: run the portable (or AVX2) code on a machine that has more, to check it too. */
static PyObject *py_set_simd(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    if (use_simd(name) < 0) return PyErr_Format(PyExc_ValueError, "simd %R is not available on this CPU", arg);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"linear", (PyCFunction)(void (*)(void))py_linear, METH_FASTCALL,
     "linear(out, x, w, bias_or_0, B, n_out, n_in, accumulate): out (+)= x @ w.T + bias"},
    {"linear_q", (PyCFunction)(void (*)(void))py_linear_q, METH_FASTCALL,
     "linear_q(out, x, blocks, kind, bias_or_0, B, n_out, n_in, accumulate): out (+)= x @ dequantize(blocks).T + bias"},
    {"dequantize_q", (PyCFunction)(void (*)(void))py_dequantize_q, METH_FASTCALL,
     "dequantize_q(out, blocks, kind, rows, n_in): rows of blocks -> float32, bit for bit as nn/quantized.py"},
    {"norm", (PyCFunction)(void (*)(void))py_norm, METH_FASTCALL,
     "norm(out, x, weight, bias_or_0, B, C, eps, is_rms): RMSNorm or LayerNorm of each row"},
    {"rope", (PyCFunction)(void (*)(void))py_rope, METH_FASTCALL,
     "rope(x, row_stride, cos, sin, positions, per_row, B, n_heads, hs): rotate heads in place"},
    {"attend", (PyCFunction)(void (*)(void))py_attend, METH_FASTCALL,
     "attend(out, qkv, qkv_stride, k_cache, v_cache, key_ok_or_0, B, nh, nkv, hs, L, max_len)"},
    {"act", (PyCFunction)(void (*)(void))py_act, METH_FASTCALL, "act(h, n, kind): activation in place"},
    {"gated", (PyCFunction)(void (*)(void))py_gated, METH_FASTCALL,
     "gated(out, gate_up, B, hidden, kind): act(gate) * up"},
    {"simd", py_simd, METH_NOARGS, "the vector code in use: 'avx512', 'avx2+fma' or 'portable'"},
    {"set_threads", py_set_threads, METH_O, "set_threads(n): threads for linear (1 = this thread only)"},
    {"threads", py_threads, METH_NOARGS, "threads linear uses"},
    {"set_simd", py_set_simd, METH_O, "set_simd(name): use 'portable', 'avx2+fma' or 'avx512' (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decode_kernel", "one-token decoding in C", -1, methods};

PyMODINIT_FUNC PyInit__decode_kernel(void) {
#ifdef HAVE_X86
    if (use_simd("avx512") < 0) use_simd("avx2+fma"); /* the widest this CPU has; else portable */
#endif
    pool_init();
    return PyModule_Create(&module);
}
