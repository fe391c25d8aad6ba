/*
 * The BPE encoder's inner loop in C: an optional accelerator for BPETokenizer.encode_ordinary.
 *
 * It does exactly what the Python fast path in bpe.py does (and the tests prove it, against the
 * Python path, the textbook reference and tiktoken):
 *
 *   for chunk in chunks:                       # the split into chunks is done before
 *       ids += cache[chunk] if chunk in cache else bpe(chunk)
 *
 * where bpe() starts from one part per UTF-8 byte and repeatedly merges the adjacent pair with the
 * lowest priority (leftmost on ties), patching only the two neighbouring priorities after a merge.
 *
 * Why C: on text with many distinct chunks (code, many scripts) the merge loop, not the split,
 * dominates. Looking a pair up in the tokenizer's Python dicts means building a bytes object and
 * hashing it for every candidate pair, so instead build_table() turns the vocabulary, once per
 * tokenizer, into two plain C hash tables, and the loop then works on arrays of int ids:
 *
 *   tokens: token bytes -> token     (for a chunk that is itself a token, and to build the pairs)
 *   pairs:  (left token, right token) -> priority, holding exactly the pairs that may merge:
 *     ranks mode  (tiktoken): (a, b) may merge iff the bytes a + b are a token, with priority = that
 *                 token's rank (= its id). So for every token t and every split t = x + y where x
 *                 and y are both tokens, the table holds (x, y) -> rank of t.
 *     merges mode (HF merges list): the listed merges, priority = position in the list.
 *
 * Reading order: the hash tables, building them (build_table), then encoding (encode_chunks).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NO_MERGE UINT32_MAX /* priority of a pair that cannot merge */
#define CAPSULE_NAME "lucidlm.tokenizers._bpe_kernel.Table"
#define STACK_PARTS 256 /* chunks up to this many bytes merge in stack arrays */

/* A pair slot is one 64-bit word, so that the table is half the size (and misses the CPU cache
 * less) than with separate fields: left token index (21 bits) | right token index (21) | value (22).
 * The value is the pair's priority; merged_of[value] is the token index it merges into (in ranks
 * mode the priority *is* that token's index, see below). */
#define INDEX_BITS 21
#define VALUE_BITS 22
#define MAX_TOKENS ((1 << INDEX_BITS) - 1) /* so that no pair's key bits are all ones... */
#define EMPTY_SLOT UINT64_MAX              /* ...which marks a free slot */
#define MAX_VALUE ((1u << VALUE_BITS) - 1)

typedef struct {
    /* Tokens are numbered 0..n_tokens-1 in ascending id order (the "token index" j), so that
     * in ranks mode, where rank = id, comparing indices compares ranks. Token j has id tok_id[j]
     * and bytes blob[tok_off[j] : tok_off[j] + tok_len[j]]. */
    Py_ssize_t n_tokens;
    uint32_t *tok_id, *tok_off, *tok_len;
    char *blob;
    size_t blob_size;
    uint32_t *tok_slot; /* bytes -> j by open addressing: (j + 1) | tag, or 0 when free (see token_find) */
    size_t tok_mask;
    uint32_t max_len; /* the longest token's length: longer chunks need no lookup */
    uint64_t *pairs; /* (left j, right j) -> value, open addressing */
    size_t pair_mask;
    Py_ssize_t n_pairs;
    uint32_t *merged_of;  /* merges mode: priority -> merged j; NULL in ranks mode (value = merged j) */
    int32_t byte_tok[256]; /* j of each single byte's token, -1 where the vocab lacks it */
} Table;

/* ---- the two hash tables ------------------------------------------------------------------- */

/* FNV-1a over the bytes, then a multiply to spread the bits into the low ones the index uses. */
static uint64_t hash_bytes(const char *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t k = 0; k < n; k++) h = (h ^ (unsigned char)p[k]) * 1099511628211ULL;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 31);
}

/* A token slot holds j + 1 in its low INDEX_BITS and, above them, TAG bits of the hash: most
 * slots of other tokens are then passed over without reading their bytes (a cache miss each). */
#define TAG(h) ((uint32_t)((h) >> 40) << INDEX_BITS)
#define SLOT_INDEX(slot) ((slot) & ((1u << INDEX_BITS) - 1))

/* Index j of the token with bytes p[0:n], or -1 if no token has them. */
static int64_t token_find(const Table *t, const char *p, Py_ssize_t n) {
    if ((size_t)n > t->max_len) return -1;
    uint64_t h = hash_bytes(p, n);
    uint32_t tag = TAG(h);
    for (size_t s = h & t->tok_mask;; s = (s + 1) & t->tok_mask) {
        uint32_t slot = t->tok_slot[s];
        if (slot == 0) return -1;
        uint32_t j = SLOT_INDEX(slot) - 1;
        if ((slot & ~SLOT_INDEX(slot)) == tag && t->tok_len[j] == (uint32_t)n &&
            memcmp(t->blob + t->tok_off[j], p, n) == 0)
            return j;
    }
}

static size_t pair_index(uint64_t key, size_t mask) {
    key *= 0x9E3779B97F4A7C15ULL;
    return (size_t)(key ^ (key >> 29)) & mask;
}

/* The value (priority) of the pair (left, right), or NO_MERGE if it may not merge. The hot lookup. */
static inline uint32_t pair_find(const Table *t, uint32_t left, uint32_t right) {
    uint64_t key = (uint64_t)left << INDEX_BITS | right;
    for (size_t s = pair_index(key, t->pair_mask);; s = (s + 1) & t->pair_mask) {
        uint64_t slot = t->pairs[s];
        if (slot >> VALUE_BITS == key) return (uint32_t)(slot & MAX_VALUE);
        if (slot == EMPTY_SLOT) return NO_MERGE;
    }
}

/* Insert or overwrite (a later entry wins, as in a Python dict built in the same order). */
static void pair_insert(Table *t, uint32_t left, uint32_t right, uint32_t value) {
    uint64_t key = (uint64_t)left << INDEX_BITS | right;
    size_t s = pair_index(key, t->pair_mask);
    while (t->pairs[s] >> VALUE_BITS != key && t->pairs[s] != EMPTY_SLOT) s = (s + 1) & t->pair_mask;
    if (t->pairs[s] == EMPTY_SLOT) t->n_pairs++;
    t->pairs[s] = key << VALUE_BITS | value;
}

/* Smallest power of two >= 2 * n (tables at most half full keep probe runs short). */
static size_t table_size(Py_ssize_t n) {
    size_t size = 16;
    while (size < 2 * (size_t)n) size <<= 1;
    return size;
}

/* An empty pair table for n pairs. */
static int alloc_pairs(Table *t, Py_ssize_t n) {
    t->pair_mask = table_size(n) - 1;
    t->pairs = PyMem_Malloc(sizeof(uint64_t) * (t->pair_mask + 1));
    if (t->pairs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(t->pairs, 0xff, sizeof(uint64_t) * (t->pair_mask + 1)); /* every slot EMPTY_SLOT */
    return 0;
}

/* ---- building a Table from the tokenizer's dicts ------------------------------------------- */

static void table_free(Table *t) {
    if (t == NULL) return;
    PyMem_Free(t->tok_id);
    PyMem_Free(t->tok_off);
    PyMem_Free(t->tok_len);
    PyMem_Free(t->blob);
    PyMem_Free(t->tok_slot);
    PyMem_Free(t->pairs);
    PyMem_Free(t->merged_of);
    PyMem_Free(t);
}

static void capsule_free(PyObject *capsule) { table_free(PyCapsule_GetPointer(capsule, CAPSULE_NAME)); }

typedef struct {
    uint32_t id;
    PyObject *bytes; /* borrowed from the encoder dict */
} IdBytes;

static int by_id(const void *a, const void *b) {
    uint32_t x = ((const IdBytes *)a)->id, y = ((const IdBytes *)b)->id;
    return (x > y) - (x < y);
}

/* Copy encoder (bytes -> int id) into the token arrays, in id order, and the bytes -> j table. */
static int fill_tokens(Table *t, PyObject *encoder) {
    Py_ssize_t n = PyDict_GET_SIZE(encoder), pos = 0, total = 0, j = 0;
    if (n > MAX_TOKENS) {
        PyErr_Format(PyExc_ValueError, "%zd tokens are too many for the C kernel (at most %d)", n, MAX_TOKENS);
        return -1;
    }
    IdBytes *order = PyMem_Malloc(sizeof(IdBytes) * (n + 1));
    if (order == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *key, *value;
    while (PyDict_Next(encoder, &pos, &key, &value)) {
        unsigned long long id = PyLong_AsUnsignedLongLong(value);
        if ((id == (unsigned long long)-1 && PyErr_Occurred()) || !PyBytes_Check(key) || id >= UINT32_MAX) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "the C kernel needs an encoder of bytes -> ids in 0 .. 2**32 - 2");
            PyMem_Free(order);
            return -1;
        }
        order[j++] = (IdBytes){(uint32_t)id, key};
        total += PyBytes_GET_SIZE(key);
    }
    qsort(order, n, sizeof(IdBytes), by_id);
    t->n_tokens = n;
    t->blob_size = (size_t)total;
    t->tok_mask = table_size(n) - 1;
    t->tok_id = PyMem_Malloc(sizeof(uint32_t) * (n + 1));
    t->tok_off = PyMem_Malloc(sizeof(uint32_t) * (n + 1));
    t->tok_len = PyMem_Malloc(sizeof(uint32_t) * (n + 1));
    t->blob = PyMem_Malloc(total + 1);
    t->tok_slot = PyMem_Calloc(t->tok_mask + 1, sizeof(uint32_t));
    if (!t->tok_id || !t->tok_off || !t->tok_len || !t->blob || !t->tok_slot || total >= (Py_ssize_t)UINT32_MAX) {
        PyMem_Free(order);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t off = 0;
    for (j = 0; j < n; j++) {
        Py_ssize_t len = PyBytes_GET_SIZE(order[j].bytes);
        memcpy(t->blob + off, PyBytes_AS_STRING(order[j].bytes), len);
        t->tok_id[j] = order[j].id;
        t->tok_off[j] = (uint32_t)off;
        t->tok_len[j] = (uint32_t)len;
        uint64_t h = hash_bytes(t->blob + off, len);
        size_t s = h & t->tok_mask;
        while (t->tok_slot[s] != 0) s = (s + 1) & t->tok_mask;
        t->tok_slot[s] = TAG(h) | (uint32_t)(j + 1);
        if ((uint32_t)len > t->max_len) t->max_len = (uint32_t)len;
        off += len;
    }
    PyMem_Free(order);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_tok[b] = (int32_t)token_find(t, &c, 1);
    }
    return 0;
}

/* ranks mode: every split of every token into two tokens is a pair that merges into it, with the
 * token's index as the priority (indices are in rank order). The pairs are collected first, to
 * size the table. */
static int fill_pairs_from_ranks(Table *t) {
    Py_ssize_t bound = 0, count = 0;
    for (Py_ssize_t j = 0; j < t->n_tokens; j++) bound += t->tok_len[j] > 1 ? t->tok_len[j] - 1 : 0;
    uint32_t *found = PyMem_Malloc(sizeof(uint32_t) * 3 * (bound + 1)); /* (left, right, merged) */
    if (found == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t j = 0; j < t->n_tokens; j++) {
        const char *p = t->blob + t->tok_off[j];
        for (uint32_t k = 1; k < t->tok_len[j]; k++) {
            int64_t left = token_find(t, p, k), right;
            if (left < 0 || (right = token_find(t, p + k, t->tok_len[j] - k)) < 0) continue;
            found[3 * count] = (uint32_t)left;
            found[3 * count + 1] = (uint32_t)right;
            found[3 * count + 2] = (uint32_t)j;
            count++;
        }
    }
    if (alloc_pairs(t, count) == 0) {
        for (Py_ssize_t k = 0; k < count; k++) pair_insert(t, found[3 * k], found[3 * k + 1], found[3 * k + 2]);
    }
    PyMem_Free(found);
    return t->pairs == NULL ? -1 : 0;
}

/* merges mode: pair_priority is {(bytes a, bytes b): priority}; the merged token is a + b. */
static int fill_pairs_from_merges(Table *t, PyObject *pair_priority) {
    Py_ssize_t pos = 0, max_value = 0;
    PyObject *key, *value;
    while (PyDict_Next(pair_priority, &pos, &key, &value)) { /* the largest priority sizes merged_of */
        Py_ssize_t v = PyLong_AsSsize_t(value);
        if (v < 0 || v >= (Py_ssize_t)MAX_VALUE) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "the C kernel takes merge priorities in 0 .. %u", MAX_VALUE - 1);
            return -1;
        }
        if (v > max_value) max_value = v;
    }
    t->merged_of = PyMem_Malloc(sizeof(uint32_t) * (max_value + 1));
    if (t->merged_of == NULL || alloc_pairs(t, PyDict_GET_SIZE(pair_priority)) < 0) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    pos = 0;
    while (PyDict_Next(pair_priority, &pos, &key, &value)) {
        PyObject *a, *b;
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2 || !PyBytes_Check(a = PyTuple_GET_ITEM(key, 0)) ||
            !PyBytes_Check(b = PyTuple_GET_ITEM(key, 1))) {
            PyErr_SetString(PyExc_ValueError, "pair_priority keys must be (bytes, bytes) tuples");
            return -1;
        }
        PyObject *ab = PyNumber_Add(a, b);
        if (ab == NULL) return -1;
        int64_t left = token_find(t, PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a));
        int64_t right = token_find(t, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
        int64_t merged = token_find(t, PyBytes_AS_STRING(ab), PyBytes_GET_SIZE(ab));
        Py_DECREF(ab);
        if (left < 0 || right < 0 || merged < 0) {
            PyErr_SetString(PyExc_ValueError, "a merge names bytes that are not tokens");
            return -1;
        }
        uint32_t v = (uint32_t)PyLong_AsSsize_t(value);
        pair_insert(t, (uint32_t)left, (uint32_t)right, v);
        t->merged_of[v] = (uint32_t)merged;
    }
    return 0;
}

/* build_table(encoder, pair_priority) -> an opaque table for encode_chunks */
static PyObject *build_table(PyObject *self, PyObject *args) {
    PyObject *encoder, *pair_priority;
    if (!PyArg_ParseTuple(args, "O!O", &PyDict_Type, &encoder, &pair_priority)) return NULL;
    if (pair_priority != Py_None && !PyDict_Check(pair_priority)) {
        PyErr_SetString(PyExc_TypeError, "pair_priority must be a dict or None");
        return NULL;
    }
    Table *t = PyMem_Calloc(1, sizeof(Table));
    if (t == NULL) return PyErr_NoMemory();
    if (fill_tokens(t, encoder) < 0 ||
        (pair_priority == Py_None ? fill_pairs_from_ranks(t) : fill_pairs_from_merges(t, pair_priority)) < 0) {
        table_free(t);
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(t, CAPSULE_NAME, capsule_free);
    if (capsule == NULL) table_free(t);
    return capsule;
}

static Table *get_table(PyObject *capsule) { return PyCapsule_GetPointer(capsule, CAPSULE_NAME); }

/* Token index j of an id (tok_id is sorted), or -1. */
static int64_t index_of_id(const Table *t, unsigned long long id) {
    Py_ssize_t lo = 0, hi = t->n_tokens;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (t->tok_id[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->n_tokens && t->tok_id[lo] == id ? lo : -1;
}

/* table_pair(table, left_id, right_id) -> (priority, merged id) or None, with priority as bpe.py
 * defines it (ranks mode: the merged token's rank = id; merges mode: position in the list). For tests. */
static PyObject *table_pair(PyObject *self, PyObject *args) {
    PyObject *capsule;
    unsigned long long left_id, right_id;
    if (!PyArg_ParseTuple(args, "OKK", &capsule, &left_id, &right_id)) return NULL;
    Table *t = get_table(capsule);
    if (t == NULL) return NULL;
    int64_t left = index_of_id(t, left_id), right = index_of_id(t, right_id);
    if (left < 0 || right < 0) return PyErr_Format(PyExc_ValueError, "an id is not in the vocab");
    uint32_t value = pair_find(t, (uint32_t)left, (uint32_t)right);
    if (value == NO_MERGE) Py_RETURN_NONE;
    if (t->merged_of == NULL) return Py_BuildValue("(II)", t->tok_id[value], t->tok_id[value]);
    return Py_BuildValue("(II)", value, t->tok_id[t->merged_of[value]]);
}

/* table_sizes(table) -> (tokens, pairs, bytes of memory): for tests and for the curious. */
static PyObject *table_sizes(PyObject *self, PyObject *capsule) {
    Table *t = get_table(capsule);
    if (t == NULL) return NULL;
    size_t memory = (t->tok_mask + 1) * sizeof(uint32_t) + (t->pair_mask + 1) * sizeof(uint64_t) +
                    (size_t)t->n_tokens * 3 * sizeof(uint32_t) + t->blob_size;
    return Py_BuildValue("(nnn)", t->n_tokens, t->n_pairs, (Py_ssize_t)memory);
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* BPE on the n bytes of one chunk, in place: parts[] ends up holding the token indices, and the
 * count is returned. prio[] is scratch (n entries): prio[k] is the priority of (parts[k], parts[k+1]).
 * Bytes the vocab lacks are dropped first (merges mode with allow_missing_bytes, as HF does). */
static Py_ssize_t merge(const Table *t, const unsigned char *buf, Py_ssize_t n, uint32_t *parts, uint32_t *prio) {
    Py_ssize_t m = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (t->byte_tok[buf[k]] >= 0) parts[m++] = (uint32_t)t->byte_tok[buf[k]];
    }
    for (Py_ssize_t k = 0; k + 1 < m; k++) prio[k] = pair_find(t, parts[k], parts[k + 1]);
    while (m > 1) {
        uint32_t best = NO_MERGE;
        Py_ssize_t i = -1;
        for (Py_ssize_t k = 0; k + 1 < m; k++) {
            if (prio[k] < best) { best = prio[k]; i = k; } /* strict <: the leftmost among equals */
        }
        if (i < 0) break;
        /* parts i and i + 1 become one: drop part i + 1 and pair i, then redo the two pairs around i */
        parts[i] = t->merged_of ? t->merged_of[best] : best;
        memmove(parts + i + 1, parts + i + 2, sizeof(uint32_t) * (m - i - 2));
        memmove(prio + i, prio + i + 1, sizeof(uint32_t) * (m - i - 2));
        m--;
        if (i > 0) prio[i - 1] = pair_find(t, parts[i - 1], parts[i]);
        if (i + 1 < m) prio[i] = pair_find(t, parts[i], parts[i + 1]);
    }
    return m;
}

/* A list of the ids of token indices parts[0:m]. It holds only ints, so it can never be part of a
 * reference cycle: untracking it keeps the garbage collector from walking the whole (large) cache. */
static PyObject *id_list(const Table *t, const uint32_t *parts, Py_ssize_t m) {
    PyObject *ids = PyList_New(m);
    for (Py_ssize_t k = 0; ids != NULL && k < m; k++) {
        PyObject *value = PyLong_FromUnsignedLong(t->tok_id[parts[k]]);
        if (value == NULL) Py_CLEAR(ids);
        else PyList_SET_ITEM(ids, k, value);
    }
    if (ids != NULL) PyObject_GC_UnTrack(ids);
    return ids;
}

/* One chunk -> a new list of ids, or NULL with an exception set. */
static PyObject *bpe_chunk(PyObject *chunk, const Table *t, int whole_first) {
    Py_ssize_t n;
    const char *buf = PyUnicode_AsUTF8AndSize(chunk, &n);
    if (buf == NULL) return NULL; /* e.g. lone surrogates: the Python caller handles it */
    uint32_t stack[2 * STACK_PARTS], *work = stack;
    if (whole_first) { /* a chunk that is itself a token is returned at once (tiktoken) */
        int64_t j = token_find(t, buf, n);
        if (j >= 0) {
            work[0] = (uint32_t)j;
            return id_list(t, work, 1);
        }
    }
    if (n > STACK_PARTS && (work = PyMem_Malloc(sizeof(uint32_t) * 2 * n)) == NULL) return PyErr_NoMemory();
    Py_ssize_t m = merge(t, (const unsigned char *)buf, n, work, work + n);
    PyObject *ids = id_list(t, work, m);
    if (work != stack) PyMem_Free(work);
    return ids;
}

/* encode_chunks(chunks, cache, table, whole_first, cache_max) -> list[int]
 * The ids are gathered in a C array of new references and moved into the list at the end, which
 * is cheaper than growing the list one append at a time. */
static PyObject *encode_chunks(PyObject *self, PyObject *args) {
    PyObject *chunks, *cache, *capsule;
    int whole_first;
    Py_ssize_t cache_max;
    if (!PyArg_ParseTuple(args, "O!O!Opn", &PyList_Type, &chunks, &PyDict_Type, &cache, &capsule, &whole_first,
                          &cache_max))
        return NULL;
    Table *t = get_table(capsule);
    if (t == NULL) return NULL;
    Py_ssize_t n_chunks = PyList_GET_SIZE(chunks), n_out = 0, cap = n_chunks + 16;
    PyObject **out = PyMem_Malloc(sizeof(PyObject *) * cap), *result = NULL;
    if (out == NULL) return PyErr_NoMemory();
    for (Py_ssize_t c = 0; c < n_chunks; c++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, c);          /* borrowed */
        PyObject *ids = PyDict_GetItemWithError(cache, chunk); /* borrowed */
        if (ids == NULL) {
            if (PyErr_Occurred()) goto done;
            PyObject *fresh = bpe_chunk(chunk, t, whole_first);
            if (fresh == NULL) goto done;
            if (PyDict_GET_SIZE(cache) >= cache_max) PyDict_Clear(cache);
            int failed = PyDict_SetItem(cache, chunk, fresh);
            Py_DECREF(fresh); /* the cache holds it (our references to its ids are taken below) */
            if (failed) goto done;
            ids = fresh;
        }
        Py_ssize_t m = PyList_GET_SIZE(ids);
        if (n_out + m > cap) {
            cap = 2 * (n_out + m);
            PyObject **grown = PyMem_Realloc(out, sizeof(PyObject *) * cap);
            if (grown == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            out = grown;
        }
        for (Py_ssize_t k = 0; k < m; k++) out[n_out++] = Py_NewRef(PyList_GET_ITEM(ids, k));
    }
    result = PyList_New(n_out);
    if (result != NULL && n_out > 0) {
        memcpy(((PyListObject *)result)->ob_item, out, sizeof(PyObject *) * n_out); /* steals the references */
        n_out = 0;
    }
done:
    for (Py_ssize_t k = 0; k < n_out; k++) Py_DECREF(out[k]);
    PyMem_Free(out);
    return result;
}

static PyMethodDef methods[] = {
    {"build_table", build_table, METH_VARARGS,
     "build_table(encoder, pair_priority) -> table\n"
     "The vocabulary as C hash tables: encoder is {token bytes: id}; pair_priority is None (ranks mode)\n"
     "or {(bytes, bytes): priority} (merges mode, priorities unique). ValueError if it does not fit."},
    {"encode_chunks", encode_chunks, METH_VARARGS,
     "encode_chunks(chunks, cache, table, whole_first, cache_max) -> list[int]\n"
     "BPE-encode pre-split chunks, using and filling the chunk -> ids cache."},
    {"table_pair", table_pair, METH_VARARGS,
     "table_pair(table, left_id, right_id) -> (priority, merged_id) or None if the pair may not merge."},
    {"table_sizes", table_sizes, METH_O, "table_sizes(table) -> (tokens, pairs, bytes of memory)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bpe_kernel", "C inner loop of the BPE encoder", -1,
                                    methods};

PyMODINIT_FUNC PyInit__bpe_kernel(void) { return PyModule_Create(&module); }
