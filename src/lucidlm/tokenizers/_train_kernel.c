/*
 * BPE training's merge loop in C: an optional accelerator for training.learn_merges.
 *
 * It learns exactly the merges of the Python learn_merges and of the textbook train_bpe_reference
 * (tests/test_train_kernel.py checks both): repeatedly merge the most frequent adjacent pair of
 * tokens, ties going to the smallest pair (a, b); stop after n_merges merges, when no pair is left,
 * or when the best pair occurs fewer than min_frequency times.
 *
 * The data, as in the Python fast path (and in HF tokenizers' BpeTrainer):
 *
 *   words  every distinct chunk once, as an array of token ids (its UTF-8 bytes at first), with its
 *          frequency f: how often the chunk occurs in the corpus
 *   pairs  (a, b) -> count = sum over the words of f * (occurrences of "a b" in the word), and the
 *          list of the words it occurs in. The list may still hold words that lost the pair since
 *          (merging such a word finds nothing and changes nothing), never the same word twice.
 *   heap   entries (count, pair): the largest count on top, then the smallest (a, b)
 *
 *   while merges < n_merges and the heap is not empty:
 *       pop the top entry (c, (a, b))
 *       if c != count(a, b): push (count(a, b), (a, b)) if it is > 0, and pop again   # lazy deletion
 *       if c < min_frequency: stop
 *       n = 256 + merges so far; record the merge (a, b) -> n
 *       for each word w in the list of (a, b):       x a b y -> x n y, in place, and
 *           count(x, a) -= f(w), count(b, y) -= f(w), count(x, n) += f(w), count(n, y) += f(w)
 *       push (count(p), p) for every pair p whose count grew
 *
 * Why a lazy heap pops the exact answer: a count grows only for a pair that contains the new token n
 * (a pair is born in the merge that makes its newest token, and only shrinks afterwards), and those
 * are pushed. Every other change is a decrease, so each pair's best entry holds at least its true
 * count. An entry that is still true is then above every other pair's true count, or equal to it and
 * with a smaller (a, b): the maximum, with the tie-break, as the textbook trainer's full recount.
 *
 * Why C: on the 11 MB mixed corpus at vocab 32k, the Python loop spends ~7 s on dict lookups, set
 * insertions and list slices; counting the chunks before it takes ~0.5 s and stays in Python.
 *
 * Reading order: the trainer's arrays, the pair table, the heap, loading the words, merging one word,
 * the loop (learn_merges). Memory is malloc'd, not PyMem, so that the loop can run without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_EVERY 1024 /* merges between progress reports and Ctrl-C checks (with the GIL) */

/* The words a pair occurs in: a growable array of word indices. */
typedef struct {
    uint32_t *ids;
    uint32_t n, cap;
} WordList;

/* A heap entry: the pair's count when it was pushed, its key a << 32 | b, and its index. */
typedef struct {
    int64_t count;
    uint64_t key;
    uint32_t pair;
} Entry;

typedef struct {
    /* Words: word w is sym[start[w] : start[w] + len[w]], its length shrinking as it merges. */
    uint32_t *sym;
    size_t *start;
    uint32_t *len;
    int64_t *freq;
    size_t n_sym, sym_cap;
    uint32_t n_words, words_cap;
    /* Pairs: pair p is key[p] = a << 32 | b, occurring count[p] times, in the words where[p].
     * stamp[p] is the last merge step that increased it (to push it once per step). */
    uint64_t *key;
    int64_t *count;
    WordList *where;
    uint32_t *stamp;
    uint32_t n_pairs, pairs_cap;
    /* Key -> pair index + 1 (0: a free slot), open addressing, at most half full. */
    uint32_t *slots;
    size_t slot_mask;
    /* The max-heap, and the pairs whose count grew in the current step. */
    Entry *heap;
    size_t heap_n, heap_cap;
    uint32_t *grown;
    size_t n_grown, grown_cap;
} Trainer;

/* The pair (a, b) as one 64-bit key; keys compare as the (a, b) tuples do. */
static inline uint64_t pack(uint32_t a, uint32_t b) { return (uint64_t)a << 32 | b; }

/* Resize the array *items to cap items of `size` bytes. Returns 0, or -1 if out of memory (then
 * *items is unchanged). */
static int resize(void **items, size_t cap, size_t size) {
    void *resized = realloc(*items, cap * size);
    if (resized == NULL) return -1;
    *items = resized;
    return 0;
}

/* Make room for n more items in the array *items of *cap items of `size` bytes (doubling).
 * Returns 0, or -1 if out of memory. */
static int reserve(void **items, size_t *cap, size_t used, size_t n, size_t size) {
    if (used + n <= *cap) return 0;
    size_t want = *cap ? *cap : 16;
    while (want < used + n) want *= 2;
    if (resize(items, want, size) < 0) return -1;
    *cap = want;
    return 0;
}

/* Room for one more word: start, len and freq grow together. Returns 0, or -1 if out of memory. */
static int words_reserve(Trainer *t) {
    if (t->n_words < t->words_cap) return 0;
    if (t->words_cap > UINT32_MAX / 4) return -1; /* word indices are 32-bit */
    uint32_t cap = t->words_cap ? 2 * t->words_cap : 1024;
    if (resize((void **)&t->start, cap, sizeof *t->start) < 0 || resize((void **)&t->len, cap, sizeof *t->len) < 0 ||
        resize((void **)&t->freq, cap, sizeof *t->freq) < 0)
        return -1;
    t->words_cap = cap;
    return 0;
}

/* Room for one more pair: key, count, where and stamp grow together. Returns 0, or -1 if out of memory. */
static int pairs_reserve(Trainer *t) {
    if (t->n_pairs < t->pairs_cap) return 0;
    if (t->pairs_cap > UINT32_MAX / 4) return -1; /* pair indices are 32-bit */
    uint32_t cap = t->pairs_cap ? 2 * t->pairs_cap : 1024;
    if (resize((void **)&t->key, cap, sizeof *t->key) < 0 || resize((void **)&t->count, cap, sizeof *t->count) < 0 ||
        resize((void **)&t->where, cap, sizeof *t->where) < 0 || resize((void **)&t->stamp, cap, sizeof *t->stamp) < 0)
        return -1;
    t->pairs_cap = cap;
    return 0;
}

/* Free everything the trainer holds. */
static void trainer_free(Trainer *t) {
    for (uint32_t p = 0; p < t->n_pairs; p++) free(t->where[p].ids);
    free(t->sym);
    free(t->start);
    free(t->len);
    free(t->freq);
    free(t->key);
    free(t->count);
    free(t->where);
    free(t->stamp);
    free(t->slots);
    free(t->heap);
    free(t->grown);
}

/* ---- the pair table ------------------------------------------------------------------------ */

/* A slot for the key: a multiply spreads the bits of (a, b) into the low ones the mask keeps. */
static inline size_t slot_of(uint64_t key, size_t mask) {
    key *= 0x9E3779B97F4A7C15ULL;
    return (size_t)(key ^ (key >> 29)) & mask;
}

/* The index of pair `key`, or -1 if it was never counted. */
static inline int64_t pair_find(const Trainer *t, uint64_t key) {
    for (size_t s = slot_of(key, t->slot_mask);; s = (s + 1) & t->slot_mask) {
        uint32_t slot = t->slots[s];
        if (slot == 0) return -1;
        if (t->key[slot - 1] == key) return slot - 1;
    }
}

/* Double the slot array and re-insert every pair. Returns 0, or -1 if out of memory. */
static int slots_grow(Trainer *t) {
    size_t size = t->slot_mask ? 2 * (t->slot_mask + 1) : 1024;
    uint32_t *slots = calloc(size, sizeof(uint32_t));
    if (slots == NULL) return -1;
    for (uint32_t p = 0; p < t->n_pairs; p++) {
        size_t s = slot_of(t->key[p], size - 1);
        while (slots[s] != 0) s = (s + 1) & (size - 1);
        slots[s] = p + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->slot_mask = size - 1;
    return 0;
}

/* The index of pair `key`, added with count 0 if new. Returns -1 if out of memory. */
static int64_t pair_add(Trainer *t, uint64_t key) {
    if (2 * ((size_t)t->n_pairs + 1) > t->slot_mask + 1 && slots_grow(t) < 0) return -1;
    size_t s = slot_of(key, t->slot_mask);
    for (; t->slots[s] != 0; s = (s + 1) & t->slot_mask)
        if (t->key[t->slots[s] - 1] == key) return t->slots[s] - 1;
    if (pairs_reserve(t) < 0) return -1;
    uint32_t p = t->n_pairs;
    t->key[p] = key;
    t->count[p] = 0;
    t->where[p] = (WordList){NULL, 0, 0};
    t->stamp[p] = UINT32_MAX;
    t->slots[s] = p + 1;
    t->n_pairs++;
    return p;
}

/* Note that pair p occurs in word w. A word's pairs are added while that word is processed, so a
 * repeat can only be the last entry. Returns 0, or -1 if out of memory. */
static int where_add(WordList *list, uint32_t w) {
    if (list->n > 0 && list->ids[list->n - 1] == w) return 0;
    if (list->n == list->cap) {
        if (list->cap > UINT32_MAX / 4) return -1;
        uint32_t cap = list->cap ? 2 * list->cap : 2; /* most pairs occur in few words */
        if (resize((void **)&list->ids, cap, sizeof *list->ids) < 0) return -1;
        list->cap = cap;
    }
    list->ids[list->n++] = w;
    return 0;
}

/* count(key) += f for an occurrence in word w; note p as grown in this step. -1 if out of memory. */
static int increase(Trainer *t, uint64_t key, int64_t f, uint32_t w, uint32_t step) {
    int64_t p = pair_add(t, key);
    if (p < 0) return -1;
    t->count[p] += f;
    if (where_add(&t->where[p], w) < 0) return -1;
    if (t->stamp[p] != step) {
        t->stamp[p] = step;
        if (reserve((void **)&t->grown, &t->grown_cap, t->n_grown, 1, sizeof(uint32_t)) < 0) return -1;
        t->grown[t->n_grown++] = (uint32_t)p;
    }
    return 0;
}

/* count(key) -= f: an occurrence disappeared (the pair was counted when the word was loaded or made). */
static inline void decrease(Trainer *t, uint64_t key, int64_t f) {
    int64_t p = pair_find(t, key);
    if (p >= 0) t->count[p] -= f; /* always found; the check only guards memory */
}

/* ---- the heap: top = largest count, then smallest key ------------------------------------- */

/* Whether entry x belongs above entry y. */
static inline int above(const Entry *x, const Entry *y) {
    return x->count > y->count || (x->count == y->count && x->key < y->key);
}

/* Move heap[i] down to its place. */
static void sift_down(Entry *heap, size_t n, size_t i) {
    Entry e = heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && above(&heap[c + 1], &heap[c])) c++;
        if (!above(&heap[c], &e)) break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = e;
}

/* Push pair p with its current count. Returns 0, or -1 if out of memory. */
static int heap_push(Trainer *t, uint32_t p) {
    if (reserve((void **)&t->heap, &t->heap_cap, t->heap_n, 1, sizeof(Entry)) < 0) return -1;
    Entry e = {t->count[p], t->key[p], p};
    size_t i = t->heap_n++;
    while (i > 0 && above(&e, &t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = e;
    return 0;
}

/* Remove and return the top entry (the heap must not be empty). */
static Entry heap_pop(Trainer *t) {
    Entry top = t->heap[0];
    t->heap[0] = t->heap[--t->heap_n];
    if (t->heap_n > 0) sift_down(t->heap, t->heap_n, 0);
    return top;
}

/* ---- loading the words --------------------------------------------------------------------- */

/* Append one word with frequency f: the UTF-8 bytes of `chunk`. Words of one byte have no pairs and
 * never change, so they are left out. Returns 0, or -1 with a Python exception set. */
static int add_word(Trainer *t, PyObject *chunk, int64_t f) {
    PyObject *utf8 = PyUnicode_AsUTF8String(chunk); /* a copy: no UTF-8 cache left on the caller's str */
    if (utf8 == NULL) return -1;
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(utf8);
    size_t n = (size_t)PyBytes_GET_SIZE(utf8);
    if (n > 1) {
        uint32_t w = t->n_words;
        if (n > UINT32_MAX || words_reserve(t) < 0 ||
            reserve((void **)&t->sym, &t->sym_cap, t->n_sym, n, sizeof(uint32_t)) < 0) {
            Py_DECREF(utf8);
            PyErr_NoMemory();
            return -1;
        }
        for (size_t k = 0; k < n; k++) t->sym[t->n_sym + k] = bytes[k];
        t->start[w] = t->n_sym;
        t->len[w] = (uint32_t)n;
        t->freq[w] = f;
        t->n_sym += n;
        t->n_words++;
    }
    Py_DECREF(utf8);
    return 0;
}

/* Read {chunk: count} into words. Counts must be ints >= 0 (chunks counted 0 times are skipped).
 * Returns 0, or -1 with a Python exception set (OverflowError for counts beyond 64 bits). */
static int load_words(Trainer *t, PyObject *chunk_counts) {
    Py_ssize_t pos = 0;
    PyObject *chunk, *count;
    while (PyDict_Next(chunk_counts, &pos, &chunk, &count)) {
        if (!PyUnicode_Check(chunk)) {
            PyErr_Format(PyExc_TypeError, "chunk_counts keys must be str (chunks of text), got %.80s",
                         Py_TYPE(chunk)->tp_name);
            return -1;
        }
        if (!PyLong_Check(count)) {
            PyErr_Format(PyExc_TypeError, "chunk_counts[%R] must be an int count, got %.80s", chunk,
                         Py_TYPE(count)->tp_name);
            return -1;
        }
        int overflow;
        long long f = PyLong_AsLongLongAndOverflow(count, &overflow);
        if (f == -1 && PyErr_Occurred()) return -1;
        if (overflow > 0) { /* (f is -1 then) */
            PyErr_SetString(PyExc_OverflowError, "a chunk count does not fit in 64 bits");
            return -1;
        }
        if (overflow < 0 || f < 0) {
            PyErr_Format(PyExc_ValueError, "chunk_counts[%R] = %S: counts must be >= 0", chunk, count);
            return -1;
        }
        if (f > 0 && add_word(t, chunk, f) < 0) return -1;
    }
    return 0;
}

/* Count every adjacent pair of every word, note the words each pair occurs in, and heap them all.
 * Returns 0, -1 if out of memory, -2 if a count could pass 2^62 (64-bit sums could overflow). */
static int count_pairs(Trainer *t) {
    int64_t total = 0; /* every count, now and later, is at most the sum of f * (len - 1) */
    for (uint32_t w = 0; w < t->n_words; w++) {
        if (t->freq[w] > (((int64_t)1 << 62) - total) / (t->len[w] - 1)) return -2;
        total += t->freq[w] * (t->len[w] - 1);
        const uint32_t *s = t->sym + t->start[w];
        for (uint32_t i = 0; i + 1 < t->len[w]; i++) {
            int64_t p = pair_add(t, pack(s[i], s[i + 1]));
            if (p < 0 || where_add(&t->where[p], w) < 0) return -1;
            t->count[p] += t->freq[w];
        }
    }
    if (reserve((void **)&t->heap, &t->heap_cap, 0, t->n_pairs, sizeof(Entry)) < 0) return -1;
    for (uint32_t p = 0; p < t->n_pairs; p++) t->heap[p] = (Entry){t->count[p], t->key[p], p};
    t->heap_n = t->n_pairs;
    for (size_t i = t->heap_n / 2; i-- > 0;) sift_down(t->heap, t->heap_n, i); /* heapify, O(pairs) */
    return 0;
}

/* ---- merging ------------------------------------------------------------------------------- */

/* Replace every (a, b) in word w by n, left to right and in place, patching the neighbours' counts:
 * x a b y -> x n y takes f from (x, a) and (b, y) and gives it to (x, n) and (n, y). In
 * x a b a b y -> x n n y the middle pair (b, a) becomes (n, n): the first merge leaves its right
 * neighbour to the second, whose left neighbour is then n. The word may not hold (a, b) any more
 * (see WordList): then nothing changes. Returns 0, or -1 if out of memory. */
static int merge_word(Trainer *t, uint32_t w, uint32_t a, uint32_t b, uint32_t n, uint32_t step) {
    uint32_t *s = t->sym + t->start[w];
    uint32_t len = t->len[w], i = 0, o = 0; /* read at i, write at o <= i */
    int64_t f = t->freq[w];
    while (i < len) {
        if (i + 1 < len && s[i] == a && s[i + 1] == b) {
            if (o > 0) { /* the left neighbour x, already written */
                uint32_t x = s[o - 1];
                decrease(t, x == n ? pack(b, a) : pack(x, a), f); /* n is new: x == n only if merged just now */
                if (increase(t, pack(x, n), f, w, step) < 0) return -1;
            }
            if (i + 2 < len && !(i + 3 < len && s[i + 2] == a && s[i + 3] == b)) { /* the right neighbour */
                uint32_t y = s[i + 2];
                decrease(t, pack(b, y), f);
                if (increase(t, pack(n, y), f, w, step) < 0) return -1;
            }
            s[o++] = n;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    t->len[w] = o;
    return 0;
}

/* Learn up to `limit` more merges (appending them to merges[]), stopping early if the heap empties or
 * the best count is below min_frequency (then *stop = 1). Runs without the GIL: no Python calls.
 * Returns 0, or -1 if out of memory. */
static int merge_some(Trainer *t, uint32_t (*merges)[2], Py_ssize_t *n_done, Py_ssize_t limit,
                      long long min_frequency, int *stop) {
    Py_ssize_t end = *n_done + limit;
    while (*n_done < end) {
        if (t->heap_n == 0) {
            *stop = 1;
            return 0;
        }
        Entry top = heap_pop(t);
        int64_t count = t->count[top.pair];
        if (count != top.count) { /* stale: it dropped since it was pushed */
            if (count > 0 && heap_push(t, top.pair) < 0) return -1;
            continue;
        }
        if (count < min_frequency) {
            *stop = 1;
            return 0;
        }
        uint32_t a = (uint32_t)(top.key >> 32), b = (uint32_t)top.key, n = 256 + (uint32_t)*n_done;
        uint32_t step = (uint32_t)*n_done;
        merges[*n_done][0] = a;
        merges[*n_done][1] = b;
        /* Take the list out first: merge_word adds pairs (which may move t->where) but never to this one. */
        WordList list = t->where[top.pair];
        t->where[top.pair] = (WordList){NULL, 0, 0};
        t->n_grown = 0;
        for (uint32_t k = 0; k < list.n; k++) {
            if (merge_word(t, list.ids[k], a, b, n, step) < 0) {
                free(list.ids);
                return -1;
            }
        }
        free(list.ids);
        t->count[top.pair] = 0; /* gone from every word (a == b also took decreases of its own) */
        for (size_t k = 0; k < t->n_grown; k++)
            if (t->count[t->grown[k]] > 0 && heap_push(t, t->grown[k]) < 0) return -1;
        (*n_done)++;
    }
    return 0;
}

/* ---- the Python entry point ---------------------------------------------------------------- */

/* learn_merges(chunk_counts, n_merges, min_frequency, report) -> [(a, b), ...]; see methods[]. */
static PyObject *learn_merges(PyObject *self, PyObject *args) {
    PyObject *chunk_counts, *report;
    Py_ssize_t n_merges;
    long long min_frequency;
    if (!PyArg_ParseTuple(args, "O!nLO", &PyDict_Type, &chunk_counts, &n_merges, &min_frequency, &report))
        return NULL;
    if (n_merges < 0) return PyErr_Format(PyExc_ValueError, "n_merges must be >= 0, got %zd", n_merges);
    if (report != Py_None && !PyCallable_Check(report))
        return PyErr_Format(PyExc_TypeError, "report must be callable or None");
    Trainer t;
    memset(&t, 0, sizeof t);
    uint32_t(*merges)[2] = NULL;
    PyObject *result = NULL;
    if (load_words(&t, chunk_counts) < 0) goto done;
    int status = count_pairs(&t);
    if (status == -2) {
        PyErr_SetString(PyExc_OverflowError, "chunk counts too large for 64-bit pair counts");
        goto done;
    }
    if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    /* Each merge shortens a word by at least one token, so there are at most n_sym - n_words merges,
     * and the new ids 256 + k stay far below 2^32 (n_sym is checked to fit). */
    Py_ssize_t most = (Py_ssize_t)(t.n_sym - t.n_words);
    if (t.n_sym > UINT32_MAX - 256) {
        PyErr_SetString(PyExc_OverflowError, "too much distinct text for 32-bit token ids");
        goto done;
    }
    if (n_merges > most) n_merges = most;
    merges = malloc(sizeof *merges * (n_merges + 1));
    if (merges == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n_done = 0;
    int stop = 0;
    while (n_done < n_merges && !stop) { /* blocks of merges without the GIL, with reports between */
        int failed;
        Py_ssize_t block = n_merges - n_done < REPORT_EVERY ? n_merges - n_done : REPORT_EVERY;
        Py_BEGIN_ALLOW_THREADS
        failed = merge_some(&t, merges, &n_done, block, min_frequency, &stop);
        Py_END_ALLOW_THREADS
        if (failed) {
            PyErr_NoMemory();
            goto done;
        }
        if (PyErr_CheckSignals() < 0) goto done;
        if (report != Py_None) {
            PyObject *r = PyObject_CallFunction(report, "n", n_done);
            if (r == NULL) goto done;
            Py_DECREF(r);
        }
    }
    result = PyList_New(n_done);
    if (result == NULL) goto done;
    for (Py_ssize_t k = 0; k < n_done; k++) {
        PyObject *pair = Py_BuildValue("(II)", merges[k][0], merges[k][1]);
        if (pair == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, k, pair);
    }
done:
    free(merges);
    trainer_free(&t);
    return result;
}

static PyMethodDef methods[] = {
    {"learn_merges", learn_merges, METH_VARARGS,
     "learn_merges(chunk_counts, n_merges, min_frequency, report) -> list[tuple[int, int]]\n"
     "The BPE merges of {chunk: count} (str -> int >= 0), most frequent pair first, ties to the smallest\n"
     "(a, b); new ids from 256. report is None or called with the number of merges done, now and then.\n"
     "OverflowError if counts exceed 64 bits (the Python trainer has no such limit)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_train_kernel", "C merge loop of the BPE trainer", -1,
                                    methods};

PyMODINIT_FUNC PyInit__train_kernel(void) { return PyModule_Create(&module); }
