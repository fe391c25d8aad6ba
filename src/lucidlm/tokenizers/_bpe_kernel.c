/*
 * The BPE encoder's inner loop in C: an optional accelerator for BPETokenizer.encode_ordinary.
 *
 * It does exactly what the Python fast path in bpe.py does (and the tests prove it, against the
 * Python path, the textbook reference and tiktoken):
 *
 *   for chunk in split(text):                  # the pre-tokenizer's regex split
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
 * And with the three preset patterns (GPT-2, cl100k, o200k), whose split the C splitter knows
 * (_split_api.h), encode_text() does the whole loop above in one pass: it cuts the text into
 * chunks, looks each chunk's bytes up in a C cache, merges the ones it has not seen, and builds the
 * list of ids at the end, without making one Python object per chunk and with the GIL released
 * (so that encode_batch can run it on several threads).
 *
 * Reading order: the hash tables, building them (build_table), the chunk cache, merging one chunk,
 * then encoding (encode_text, encode_chunks).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "pythread.h"
#include "_split_api.h" /* the C splitter's rules, for encode_text */

#define NO_MERGE UINT32_MAX /* priority of a pair that cannot merge */
#define CAPSULE_NAME "lucidlm.tokenizers._bpe_kernel.Table"

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
    PyObject **longs;      /* longs[j]: the Python int tok_id[j], made once, shared by every result list */
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
    if (t->longs != NULL) {
        for (Py_ssize_t j = 0; j < t->n_tokens; j++) Py_XDECREF(t->longs[j]);
        PyMem_Free(t->longs);
    }
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

/* The Python int of every token id, made once: a result list then holds new references to these
 * (as tiktoken's lists would hold freshly made ints), so encoding allocates no int objects. */
static int fill_longs(Table *t) {
    t->longs = PyMem_Calloc(t->n_tokens + 1, sizeof(PyObject *));
    if (t->longs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t j = 0; j < t->n_tokens; j++)
        if ((t->longs[j] = PyLong_FromUnsignedLong(t->tok_id[j])) == NULL) return -1;
    return 0;
}

/* build_table(encoder, pair_priority) -> an opaque table for encode_text and encode_chunks */
static PyObject *build_table(PyObject *self, PyObject *args) {
    PyObject *encoder, *pair_priority;
    if (!PyArg_ParseTuple(args, "O!O", &PyDict_Type, &encoder, &pair_priority)) return NULL;
    if (pair_priority != Py_None && !PyDict_Check(pair_priority)) {
        PyErr_SetString(PyExc_TypeError, "pair_priority must be a dict or None");
        return NULL;
    }
    Table *t = PyMem_Calloc(1, sizeof(Table));
    if (t == NULL) return PyErr_NoMemory();
    if (fill_tokens(t, encoder) < 0 || fill_longs(t) < 0 ||
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
                    (size_t)t->n_tokens * (3 * sizeof(uint32_t) + sizeof(PyObject *) + sizeof(PyLongObject)) +
                    t->blob_size;
    return Py_BuildValue("(nnn)", t->n_tokens, t->n_pairs, (Py_ssize_t)memory);
}

/* ---- the chunk cache ------------------------------------------------------------------------- */

/* Text repeats its words: most chunks of a long text were seen before (2.2M chunks of the 11 MB
 * benchmark corpus, 126k distinct), so each chunk's token indices are kept, keyed by the chunk's
 * UTF-8 bytes. This is a C hash table rather than a Python dict so that looking a chunk up needs
 * no Python string per chunk, and so that encoding can run with the GIL released.
 *
 * Encoding is bound by memory latency (a lookup that misses the CPU caches costs ~100 ns, as
 * much as merging a short chunk), so the layout keeps the misses per lookup few:
 *   - a slot (8 bytes) holds 32 bits of the chunk's hash and where its record starts, so a
 *     probe past another chunk's slot reads nothing else;
 *   - a record holds the chunk's bytes and then its token indices, side by side in one arena:
 *     a hit reads one slot and one record.
 * The slot table doubles as the cache fills (a small one stays in the CPU caches). When the cache
 * holds max_entries chunks, or its arena reaches CACHE_MAX_BYTES, it is emptied and starts over
 * (as the Python path's dict is): memory stays bounded on any text. Chunks longer than
 * CACHE_MAX_CHUNK bytes are merged every time: long chunks rarely repeat.
 *
 * The cache also keeps the most recently used merge pairs (``hot``): a small direct-mapped copy
 * of pair_find's answers. Pairs are looked up over and over (the same letters and syllables in
 * every word), and the full pair table (8 MB for o200k) misses the CPU caches, this one does not.
 * A lock makes each encode call own the cache while it runs. */
#define CACHE_CAPSULE_NAME "lucidlm.tokenizers._bpe_kernel.Cache"
#define CACHE_MAX_CHUNK 256
#define CACHE_MAX_BYTES ((size_t)64 << 20)
#define CACHE_MIN_SLOTS 4096
#define HOT_PAIRS (1 << 16) /* 512 KB: fits the L2 cache */

typedef struct {
    uint16_t key_len, n_ids; /* then key_len bytes, padding to 4, n_ids uint32 token indices */
} Record;

typedef struct {
    uint64_t *slots; /* hash >> 32 << 32 | (record offset / 4 + 1); 0 when free; at most half full */
    size_t mask, max_mask;
    size_t n_entries, max_entries;
    unsigned char *arena; /* the records, 4-byte aligned */
    size_t used, cap;
    uint64_t *hot; /* HOT_PAIRS pair slots as in Table.pairs, value MAX_VALUE meaning NO_MERGE */
    PyThread_type_lock lock;
} Cache;

/* A hash of a chunk's bytes, eight at a time (FNV-1a per byte, as the token table uses, costs more
 * on the 2M lookups of a long text). */
static uint64_t hash_chunk(const unsigned char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n, w;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    return h ^ (h >> 29);
}

#define SLOT_TAG(h) ((h) & 0xFFFFFFFF00000000ULL)
#define RECORD_AT(slot) ((((slot) & 0xFFFFFFFFULL) - 1) * 4)
#define KEY(r) ((const unsigned char *)((r) + 1))
#define IDS(r) ((uint32_t *)((unsigned char *)((r) + 1) + (((r)->key_len + 3u) & ~3u)))

static void cache_clear(Cache *c) {
    memset(c->slots, 0, sizeof(uint64_t) * (c->mask + 1));
    c->n_entries = c->used = 0;
}

/* The record of bytes p[0:n] (hash h), or NULL. */
static const Record *cache_find(const Cache *c, const unsigned char *p, size_t n, uint64_t h) {
    for (size_t s = h & c->mask;; s = (s + 1) & c->mask) {
        uint64_t slot = c->slots[s];
        if (slot == 0) return NULL;
        if (SLOT_TAG(slot) != SLOT_TAG(h)) continue;
        const Record *r = (const Record *)(c->arena + RECORD_AT(slot));
        if (r->key_len == n && memcmp(KEY(r), p, n) == 0) return r;
    }
}

/* Put a slot into a table with room for it. */
static void slot_put(uint64_t *slots, size_t mask, uint64_t slot, uint64_t h) {
    size_t s = h & mask;
    while (slots[s] != 0) s = (s + 1) & mask;
    slots[s] = slot;
}

/* Double the slot table (the records stay where they are). 0, or -1 if out of memory. */
static int cache_grow(Cache *c) {
    size_t mask = 2 * c->mask + 1;
    uint64_t *slots = PyMem_RawCalloc(mask + 1, sizeof(uint64_t));
    if (slots == NULL) return -1;
    for (size_t s = 0; s <= c->mask; s++) {
        uint64_t slot = c->slots[s];
        if (slot == 0) continue;
        const Record *r = (const Record *)(c->arena + RECORD_AT(slot));
        slot_put(slots, mask, slot, hash_chunk(KEY(r), r->key_len));
    }
    PyMem_RawFree(c->slots);
    c->slots = slots;
    c->mask = mask;
    return 0;
}

/* Remember that bytes p[0:n] (hash h) encode to parts[0:m]. 0, or -1 if out of memory. */
static int cache_add(Cache *c, const unsigned char *p, size_t n, uint64_t h, const uint32_t *parts, size_t m) {
    size_t size = sizeof(Record) + ((n + 3) & ~(size_t)3) + m * sizeof(uint32_t);
    if (c->n_entries >= c->max_entries || c->used + size > CACHE_MAX_BYTES) cache_clear(c);
    if (2 * (c->n_entries + 1) > c->mask + 1 && c->mask < c->max_mask && cache_grow(c) < 0) return -1;
    if (c->used + size > c->cap) {
        size_t cap = c->cap ? 2 * c->cap : (size_t)1 << 16;
        while (cap < c->used + size) cap *= 2;
        unsigned char *arena = PyMem_RawRealloc(c->arena, cap);
        if (arena == NULL) return -1;
        c->arena = arena;
        c->cap = cap;
    }
    Record *r = (Record *)(c->arena + c->used);
    *r = (Record){(uint16_t)n, (uint16_t)m};
    memcpy((unsigned char *)(r + 1), p, n);
    memcpy(IDS(r), parts, m * sizeof(uint32_t));
    slot_put(c->slots, c->mask, SLOT_TAG(h) | (c->used / 4 + 1), h);
    c->used += size;
    c->n_entries++;
    return 0;
}

/* pair_find through the cache's hot pairs. */
static inline uint32_t pair_find_hot(const Table *t, Cache *c, uint32_t left, uint32_t right) {
    uint64_t key = (uint64_t)left << INDEX_BITS | right;
    uint64_t *slot = &c->hot[pair_index(key, HOT_PAIRS - 1)];
    if (*slot >> VALUE_BITS == key) {
        uint32_t v = (uint32_t)(*slot & MAX_VALUE);
        return v == MAX_VALUE ? NO_MERGE : v;
    }
    uint32_t v = pair_find(t, left, right);
    *slot = key << VALUE_BITS | (v == NO_MERGE ? MAX_VALUE : v);
    return v;
}

static void cache_free(Cache *c) {
    if (c == NULL) return;
    PyMem_RawFree(c->slots);
    PyMem_RawFree(c->arena);
    PyMem_RawFree(c->hot);
    if (c->lock) PyThread_free_lock(c->lock);
    PyMem_RawFree(c);
}

static void cache_capsule_free(PyObject *capsule) { cache_free(PyCapsule_GetPointer(capsule, CACHE_CAPSULE_NAME)); }

static Cache *get_cache(PyObject *capsule) { return PyCapsule_GetPointer(capsule, CACHE_CAPSULE_NAME); }

/* new_cache(max_entries) -> an empty chunk cache for encode_text and encode_chunks */
static PyObject *new_cache(PyObject *self, PyObject *args) {
    Py_ssize_t max_entries;
    if (!PyArg_ParseTuple(args, "n", &max_entries)) return NULL;
    if (max_entries < 1 || max_entries > (1 << 28)) return PyErr_Format(PyExc_ValueError, "max_entries must be 1 .. 2**28");
    Cache *c = PyMem_RawCalloc(1, sizeof(Cache));
    if (c == NULL) return PyErr_NoMemory();
    c->max_entries = (size_t)max_entries;
    c->max_mask = table_size(max_entries) - 1;
    c->mask = (c->max_mask < CACHE_MIN_SLOTS ? c->max_mask + 1 : CACHE_MIN_SLOTS) - 1;
    c->slots = PyMem_RawCalloc(c->mask + 1, sizeof(uint64_t));
    c->hot = PyMem_RawMalloc(sizeof(uint64_t) * HOT_PAIRS);
    c->lock = PyThread_allocate_lock();
    PyObject *capsule = NULL;
    if (c->slots && c->hot && c->lock) {
        memset(c->hot, 0xff, sizeof(uint64_t) * HOT_PAIRS); /* every slot EMPTY_SLOT */
        capsule = PyCapsule_New(c, CACHE_CAPSULE_NAME, cache_capsule_free);
    } else {
        PyErr_NoMemory();
    }
    if (capsule == NULL) cache_free(c);
    return capsule;
}

/* cache_clear(cache): forget every chunk. */
static PyObject *cache_clear_py(PyObject *self, PyObject *capsule) {
    Cache *c = get_cache(capsule);
    if (c == NULL) return NULL;
    Py_BEGIN_ALLOW_THREADS /* wait for an encode running on another thread */
    PyThread_acquire_lock(c->lock, WAIT_LOCK);
    Py_END_ALLOW_THREADS
    cache_clear(c);
    memset(c->hot, 0xff, sizeof(uint64_t) * HOT_PAIRS);
    PyThread_release_lock(c->lock);
    Py_RETURN_NONE;
}

/* cache_after_fork(cache): in a forked child, a fresh lock. Another thread of the parent may have
 * held the lock at the fork; that thread does not exist in the child, and would never release it.
 * (The old lock is left, not freed: freeing a held lock is undefined.) */
static PyObject *cache_after_fork(PyObject *self, PyObject *capsule) {
    Cache *c = get_cache(capsule);
    if (c == NULL) return NULL;
    PyThread_type_lock lock = PyThread_allocate_lock();
    if (lock == NULL) return PyErr_NoMemory();
    c->lock = lock;
    Py_RETURN_NONE;
}

/* cache_len(cache) -> the number of chunks it holds (for tests). */
static PyObject *cache_len(PyObject *self, PyObject *capsule) {
    Cache *c = get_cache(capsule);
    return c == NULL ? NULL : PyLong_FromSize_t(c->n_entries);
}

/* ---- merging one chunk ----------------------------------------------------------------------- */

/* Chunks of up to this many parts merge by scanning for the best pair (fast for short chunks, but
 * each merge rescans the chunk: time grows with the square of its length); longer ones keep
 * their pairs in a heap (time n log n), so that a megabyte without a space cannot take minutes. */
#define SCAN_PARTS 64

/* BPE on parts[0:m] by scanning: prio[k] is the priority of (parts[k], parts[k+1]). Returns the
 * new count. The readable form of the algorithm; merge_long does the same with a heap. */
static Py_ssize_t merge_scan(const Table *t, Cache *c, uint32_t *parts, Py_ssize_t m, uint32_t *prio) {
    for (Py_ssize_t k = 0; k + 1 < m; k++) prio[k] = pair_find_hot(t, c, parts[k], parts[k + 1]);
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
        if (i > 0) prio[i - 1] = pair_find_hot(t, c, parts[i - 1], parts[i]);
        if (i + 1 < m) prio[i] = pair_find_hot(t, c, parts[i], parts[i + 1]);
    }
    return m;
}

/* A candidate merge in merge_long's heap: the pair starting at part ``pos``, valid while that
 * part's version is still ``version`` (any change to the pair bumps it: stale entries are skipped). */
typedef struct {
    uint32_t prio, pos, version;
} Candidate;

/* Does a come before b: lower priority first, then the leftmost (as merge_scan's strict <). */
static inline int comes_first(Candidate a, Candidate b) { return a.prio < b.prio || (a.prio == b.prio && a.pos < b.pos); }

static void heap_push(Candidate *heap, size_t *n, Candidate x) {
    size_t k = (*n)++;
    while (k > 0 && comes_first(x, heap[(k - 1) / 2])) {
        heap[k] = heap[(k - 1) / 2];
        k = (k - 1) / 2;
    }
    heap[k] = x;
}

static Candidate heap_pop(Candidate *heap, size_t *n) {
    Candidate top = heap[0], last = heap[--*n];
    size_t k = 0;
    for (;;) {
        size_t child = 2 * k + 1;
        if (child >= *n) break;
        if (child + 1 < *n && comes_first(heap[child + 1], heap[child])) child++;
        if (!comes_first(heap[child], last)) break;
        heap[k] = heap[child];
        k = child;
    }
    if (*n > 0) heap[k] = last;
    return top;
}

/* The same merges as merge_scan, for long chunks: the parts form a linked list (a merged part
 * keeps the left one's position, so positions stay in text order and "leftmost" is the smallest
 * position), and the candidate pairs wait in a heap. Returns the new count, or -1 if out of memory. */
static Py_ssize_t merge_long(const Table *t, Cache *c, uint32_t *parts, Py_ssize_t m) {
    size_t n_heap = 0;
    uint32_t *next = PyMem_RawMalloc(sizeof(uint32_t) * 3 * m);
    Candidate *heap = PyMem_RawMalloc(sizeof(Candidate) * 3 * m); /* m - 1 pairs, then <= 2 per merge */
    if (next == NULL || heap == NULL) {
        PyMem_RawFree(next);
        PyMem_RawFree(heap);
        return -1;
    }
    uint32_t *prev = next + m, *version = next + 2 * m, end = (uint32_t)m; /* end: no part */
    for (Py_ssize_t k = 0; k < m; k++) {
        next[k] = (uint32_t)k + 1;
        prev[k] = k > 0 ? (uint32_t)k - 1 : end;
        version[k] = 0;
    }
    for (Py_ssize_t k = 0; k + 1 < m; k++) {
        uint32_t prio = pair_find_hot(t, c, parts[k], parts[k + 1]);
        if (prio != NO_MERGE) heap_push(heap, &n_heap, (Candidate){prio, (uint32_t)k, 0});
    }
    while (n_heap > 0) {
        Candidate best = heap_pop(heap, &n_heap);
        uint32_t i = best.pos;
        if (version[i] != best.version) continue; /* the pair changed since: stale */
        /* part i absorbs part r = next[i]; the pairs (left, i), (i, r) and (r, ...) all change */
        uint32_t r = next[i], left = prev[i];
        parts[i] = t->merged_of ? t->merged_of[best.prio] : best.prio;
        next[i] = next[r];
        if (next[r] != end) prev[next[r]] = i;
        version[r]++, version[i]++;
        if (next[i] != end) {
            uint32_t prio = pair_find_hot(t, c, parts[i], parts[next[i]]);
            if (prio != NO_MERGE) heap_push(heap, &n_heap, (Candidate){prio, i, version[i]});
        }
        if (left != end) {
            version[left]++;
            uint32_t prio = pair_find_hot(t, c, parts[left], parts[i]);
            if (prio != NO_MERGE) heap_push(heap, &n_heap, (Candidate){prio, left, version[left]});
        }
    }
    Py_ssize_t count = 0; /* compact the list into parts[0:count]; part 0 is never absorbed */
    for (uint32_t k = 0; k != end; k = next[k]) parts[count++] = parts[k];
    PyMem_RawFree(next);
    PyMem_RawFree(heap);
    return count;
}

/* BPE on the n bytes of one chunk, in place: parts[] ends up holding the token indices, and the
 * count is returned (-1 if out of memory). prio[] is scratch for SCAN_PARTS entries. Bytes the
 * vocab lacks are dropped first (merges mode with allow_missing_bytes, as HF does). */
static Py_ssize_t merge(const Table *t, Cache *c, const unsigned char *buf, Py_ssize_t n, uint32_t *parts,
                        uint32_t *prio) {
    Py_ssize_t m = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (t->byte_tok[buf[k]] >= 0) parts[m++] = (uint32_t)t->byte_tok[buf[k]];
    }
    return m <= SCAN_PARTS ? merge_scan(t, c, parts, m, prio) : merge_long(t, c, parts, m);
}

/* ---- encoding --------------------------------------------------------------------------------- */

/* Grow an array to hold ``need`` items of ``size`` bytes (doubling). 0, or -1 if out of memory. */
static int reserve(void **array, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t grown = *cap ? *cap : 4096;
    while (grown < need) grown *= 2;
    void *p = PyMem_RawRealloc(*array, grown * size);
    if (p == NULL) return -1;
    *array = p;
    *cap = grown;
    return 0;
}

/* The token indices of a whole text, gathered before they become a Python list. */
typedef struct {
    uint32_t *a;
    size_t n, cap;
} Out;

/* Encode one chunk, bytes p[0:n], appending its token indices to out: from the cache if it was
 * seen, else merged (and cached). Returns 0, or -1 if out of memory. No Python object is touched. */
static int encode_piece(const Table *t, Cache *c, const unsigned char *p, size_t n, int whole_first, Out *out) {
    if (reserve((void **)&out->a, &out->cap, out->n + n, sizeof(uint32_t)) < 0) return -1; /* m <= n */
    uint32_t *dst = out->a + out->n;
    if (n == 1) { /* a lone byte is its own token (a third of all chunks: spaces, punctuation) */
        if (t->byte_tok[p[0]] >= 0) {
            dst[0] = (uint32_t)t->byte_tok[p[0]];
            out->n++;
        }
        return 0;
    }
    uint64_t h = 0;
    if (n <= CACHE_MAX_CHUNK) {
        h = hash_chunk(p, n);
        const Record *r = cache_find(c, p, n, h);
        if (r != NULL) {
            memcpy(dst, IDS(r), r->n_ids * sizeof(uint32_t));
            out->n += r->n_ids;
            return 0;
        }
    }
    size_t m;
    int64_t j = whole_first ? token_find(t, (const char *)p, (Py_ssize_t)n) : -1;
    if (j >= 0) { /* a chunk that is itself a token is that token (tiktoken) */
        dst[0] = (uint32_t)j;
        m = 1;
    } else { /* merge in place: dst has room for n parts */
        uint32_t prio[SCAN_PARTS];
        Py_ssize_t merged = merge(t, c, p, (Py_ssize_t)n, dst, prio);
        if (merged < 0) return -1;
        m = (size_t)merged;
    }
    out->n += m;
    return n <= CACHE_MAX_CHUNK ? cache_add(c, p, n, h, dst, m) : 0;
}

/* A new list of the ids of token indices a[0:n]: new references to the table's ints. */
static PyObject *id_list(const Table *t, const uint32_t *a, size_t n) {
    PyObject *ids = PyList_New((Py_ssize_t)n);
    if (ids == NULL) return NULL;
    for (size_t k = 0; k < n; k++) PyList_SET_ITEM(ids, k, Py_NewRef(t->longs[a[k]]));
    return ids;
}

/* The splitter's functions (see _split_api.h), imported on first use. */
static const SplitAPI *split_api(void) {
    static const SplitAPI *api = NULL;
    if (api == NULL) api = PyCapsule_Import(SPLIT_API_CAPSULE, 0);
    return api;
}

/* Bytes of UTF-8 that a character takes, from its first byte's top four bits (no continuation
 * byte 10xxxxxx starts a character). */
static const unsigned char UTF8_LENGTH[16] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4};

/* The UTF-8 bytes of characters data[0:n] of a string of this kind, in a new PyMem_RawMalloc'd
 * buffer (NULL if out of memory); *surrogate is set, and NULL returned, for a lone surrogate (which
 * has no UTF-8). Done here, without the GIL, rather than by PyUnicode_AsUTF8AndSize, which would
 * also keep the copy inside the str for as long as the str lives. */
static unsigned char *utf8_of(int kind, const void *data, Py_ssize_t n, int *surrogate) {
    size_t size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        size += ch < 0x80 ? 1 : ch < 0x800 ? 2 : ch < 0x10000 ? 3 : 4;
        if (ch >= 0xD800 && ch <= 0xDFFF) {
            *surrogate = 1;
            return NULL;
        }
    }
    unsigned char *out = PyMem_RawMalloc(size + 1), *q = out;
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch < 0x80) {
            *q++ = (unsigned char)ch;
        } else if (ch < 0x800) {
            *q++ = (unsigned char)(0xC0 | ch >> 6);
            *q++ = (unsigned char)(0x80 | (ch & 0x3F));
        } else if (ch < 0x10000) {
            *q++ = (unsigned char)(0xE0 | ch >> 12);
            *q++ = (unsigned char)(0x80 | (ch >> 6 & 0x3F));
            *q++ = (unsigned char)(0x80 | (ch & 0x3F));
        } else {
            *q++ = (unsigned char)(0xF0 | ch >> 18);
            *q++ = (unsigned char)(0x80 | (ch >> 12 & 0x3F));
            *q++ = (unsigned char)(0x80 | (ch >> 6 & 0x3F));
            *q++ = (unsigned char)(0x80 | (ch & 0x3F));
        }
    }
    return out;
}

/* Cut the text into chunks with the pattern's rule and encode each; the cut works on characters,
 * the merge on the same characters' UTF-8 bytes, walked in step. 0, -1 if out of memory, or -2 if
 * the rule failed to advance (a bug). */
static int encode_text_core(const Table *t, Cache *c, const SplitAPI *api, SplitChunkFn chunk, int kind,
                            const void *data, Py_ssize_t n, const unsigned char *utf8, int ascii, int whole_first,
                            Out *out) {
    uint16_t *cls = api->classify(kind, data, n);
    if (cls == NULL) return -1;
    SplitText text = {cls, n, kind, data};
    const unsigned char *p = utf8;
    int status = 0;
    for (Py_ssize_t i = 0; i < n && status == 0;) {
        Py_ssize_t e = chunk(&text, i);
        if (e <= i) { /* cannot happen: each pattern matches any single character */
            status = -2;
            break;
        }
        size_t bytes = (size_t)(e - i);
        if (!ascii) {
            bytes = 0;
            for (Py_ssize_t k = i; k < e; k++) bytes += UTF8_LENGTH[p[bytes] >> 4];
        }
        status = encode_piece(t, c, p, bytes, whole_first, out);
        p += bytes;
        i = e;
    }
    PyMem_RawFree(cls);
    return status;
}

/* encode_text(text, pattern, table, cache, whole_first) -> list[int]
 * Split with a preset pattern ("gpt2", "cl100k", "o200k") and encode, in one pass over the text
 * with the GIL released (other threads run meanwhile; two threads sharing a cache take turns).
 * UnicodeEncodeError for lone surrogates (which have no UTF-8), as str.encode raises it. */
static PyObject *encode_text(PyObject *self, PyObject *args) {
    PyObject *text, *table_capsule, *cache_capsule;
    const char *pattern;
    int whole_first;
    if (!PyArg_ParseTuple(args, "UsOOp", &text, &pattern, &table_capsule, &cache_capsule, &whole_first)) return NULL;
    Table *t = get_table(table_capsule);
    Cache *c = get_cache(cache_capsule);
    const SplitAPI *api = split_api();
    if (t == NULL || c == NULL || api == NULL) return NULL;
    SplitChunkFn chunk = api->chunk_function(pattern);
    if (chunk == NULL) return PyErr_Format(PyExc_ValueError, "no C split rule for pattern '%s'", pattern);
    int kind = PyUnicode_KIND(text), ascii = PyUnicode_IS_ASCII(text), status = 0, surrogate = 0;
    const void *data = PyUnicode_DATA(text); /* an ASCII str's characters are its UTF-8 bytes */
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Out out = {NULL, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    unsigned char *utf8 = ascii ? (unsigned char *)data : utf8_of(kind, data, n, &surrogate);
    if (utf8 == NULL) {
        status = surrogate ? -3 : -1;
    } else {
        PyThread_acquire_lock(c->lock, WAIT_LOCK);
        status = encode_text_core(t, c, api, chunk, kind, data, n, utf8, ascii, whole_first, &out);
        PyThread_release_lock(c->lock);
        if (!ascii) PyMem_RawFree(utf8);
    }
    Py_END_ALLOW_THREADS
    PyObject *ids = NULL;
    if (status == -1) PyErr_NoMemory();
    else if (status == -2) PyErr_Format(PyExc_RuntimeError, "split rule '%s' did not advance (a bug, please report)", pattern);
    else if (status == -3) { /* str.encode's own UnicodeEncodeError, naming the character */
        Py_XDECREF(PyUnicode_AsUTF8String(text));
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a lone surrogate has no UTF-8");
    }
    else ids = id_list(t, out.a, out.n);
    PyMem_RawFree(out.a);
    return ids;
}

/* encode_chunks(chunks, table, cache, whole_first) -> list[int]
 * Encode chunks already split (by a pattern the C splitter does not know), with the same cache. */
static PyObject *encode_chunks(PyObject *self, PyObject *args) {
    PyObject *chunks, *table_capsule, *cache_capsule;
    int whole_first;
    if (!PyArg_ParseTuple(args, "O!OOp", &PyList_Type, &chunks, &table_capsule, &cache_capsule, &whole_first))
        return NULL;
    Table *t = get_table(table_capsule);
    Cache *c = get_cache(cache_capsule);
    if (t == NULL || c == NULL) return NULL;
    Out out = {NULL, 0, 0};
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(c->lock, WAIT_LOCK);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(chunks) && status == 0; k++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, k);
        Py_ssize_t n;
        const char *p = PyUnicode_Check(chunk) ? PyUnicode_AsUTF8AndSize(chunk, &n) : NULL;
        if (p == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "encode_chunks takes a list of str");
            status = -2;
        } else if (encode_piece(t, c, (const unsigned char *)p, (size_t)n, whole_first, &out) < 0) {
            status = -1;
        }
    }
    PyThread_release_lock(c->lock);
    PyObject *ids = status == -1 ? PyErr_NoMemory() : status == -2 ? NULL : id_list(t, out.a, out.n);
    PyMem_RawFree(out.a);
    return ids;
}

static PyMethodDef methods[] = {
    {"build_table", build_table, METH_VARARGS,
     "build_table(encoder, pair_priority) -> table\n"
     "The vocabulary as C hash tables: encoder is {token bytes: id}; pair_priority is None (ranks mode)\n"
     "or {(bytes, bytes): priority} (merges mode, priorities unique). ValueError if it does not fit."},
    {"encode_text", encode_text, METH_VARARGS,
     "encode_text(text, pattern, table, cache, whole_first) -> list[int]\n"
     "Split text with a preset pattern ('gpt2', 'cl100k', 'o200k') and BPE-encode it, using and filling the cache."},
    {"encode_chunks", encode_chunks, METH_VARARGS,
     "encode_chunks(chunks, table, cache, whole_first) -> list[int]\n"
     "BPE-encode pre-split chunks (a list of str), using and filling the cache."},
    {"new_cache", new_cache, METH_VARARGS, "new_cache(max_entries) -> an empty chunk -> ids cache."},
    {"cache_clear", cache_clear_py, METH_O, "cache_clear(cache): empty the cache."},
    {"cache_len", cache_len, METH_O, "cache_len(cache) -> the number of chunks it holds."},
    {"cache_after_fork", cache_after_fork, METH_O, "cache_after_fork(cache): give it a fresh lock in a forked child."},
    {"table_pair", table_pair, METH_VARARGS,
     "table_pair(table, left_id, right_id) -> (priority, merged_id) or None if the pair may not merge."},
    {"table_sizes", table_sizes, METH_O, "table_sizes(table) -> (tokens, pairs, bytes of memory)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bpe_kernel", "C inner loop of the BPE encoder", -1,
                                    methods};

PyMODINIT_FUNC PyInit__bpe_kernel(void) { return PyModule_Create(&module); }
