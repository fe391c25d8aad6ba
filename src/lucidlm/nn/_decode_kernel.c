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
                for (int j = 0; j < k; j++) {                                                                    \
                    float *dst = out + (r + j) * n_out + o;                                                      \
                    *dst = accumulate ? *dst + (y[j] + b) : y[j] + b;                                            \
                }                                                                                                \
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
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static PyObject *py_simd(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(linear == linear_portable ? "portable" : "avx2+fma");
}

static PyObject *py_set_threads(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1 || n > MAX_THREADS) return PyErr_Format(PyExc_ValueError, "threads must be 1..%d, got %ld", MAX_THREADS, n);
    n_threads = (int)n;
    Py_RETURN_NONE;
}

static PyObject *py_threads(PyObject *self, PyObject *unused) { return PyLong_FromLong(n_threads); }

/* For the tests: run the portable code on a machine that has AVX2, to check it too. */
static PyObject *py_set_simd(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    if (strcmp(name, "portable") == 0) {
        linear = linear_portable, dot = dot_portable;
#ifdef HAVE_X86
    } else if (strcmp(name, "avx2+fma") == 0 && have_avx2()) {
        linear = linear_avx2, dot = dot_avx2;
#endif
    } else {
        return PyErr_Format(PyExc_ValueError, "simd %R is not available on this CPU", arg);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"linear", (PyCFunction)(void (*)(void))py_linear, METH_FASTCALL,
     "linear(out, x, w, bias_or_0, B, n_out, n_in, accumulate): out (+)= x @ w.T + bias"},
    {"norm", (PyCFunction)(void (*)(void))py_norm, METH_FASTCALL,
     "norm(out, x, weight, bias_or_0, B, C, eps, is_rms): RMSNorm or LayerNorm of each row"},
    {"rope", (PyCFunction)(void (*)(void))py_rope, METH_FASTCALL,
     "rope(x, row_stride, cos, sin, positions, per_row, B, n_heads, hs): rotate heads in place"},
    {"attend", (PyCFunction)(void (*)(void))py_attend, METH_FASTCALL,
     "attend(out, qkv, qkv_stride, k_cache, v_cache, key_ok_or_0, B, nh, nkv, hs, L, max_len)"},
    {"act", (PyCFunction)(void (*)(void))py_act, METH_FASTCALL, "act(h, n, kind): activation in place"},
    {"gated", (PyCFunction)(void (*)(void))py_gated, METH_FASTCALL,
     "gated(out, gate_up, B, hidden, kind): act(gate) * up"},
    {"simd", py_simd, METH_NOARGS, "the vector code the dot product uses: 'avx2+fma' or 'portable'"},
    {"set_threads", py_set_threads, METH_O, "set_threads(n): threads for linear (1 = this thread only)"},
    {"threads", py_threads, METH_NOARGS, "threads linear uses"},
    {"set_simd", py_set_simd, METH_O, "set_simd(name): use 'portable' or 'avx2+fma' (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decode_kernel", "one-token decoding in C", -1, methods};

PyMODINIT_FUNC PyInit__decode_kernel(void) {
#ifdef HAVE_X86
    if (have_avx2()) linear = linear_avx2, dot = dot_avx2;
#endif
    pool_init();
    return PyModule_Create(&module);
}
