/*
 * The BPE encoder's inner loop in C: an optional accelerator for BPETokenizer.encode_ordinary.
 *
 * It does exactly what the Python fast path in bpe.py does (and the tests prove it, against the
 * Python path, the textbook reference and tiktoken):
 *
 *   for chunk in chunks:                       # the regex split is done in Python
 *       ids += cache[chunk] if chunk in cache else bpe(chunk)
 *
 * where bpe() starts from one part per UTF-8 byte and repeatedly merges the adjacent pair with the
 * lowest priority (leftmost on ties), patching only the two neighbouring priorities after a merge.
 * Priorities come from the same Python dicts the Python path uses:
 *   ranks mode  (pair_priority is None): priority(a, b) = encoder.get(a + b)      (tiktoken)
 *   merges mode (pair_priority is a dict): priority(a, b) = pair_priority.get((a, b))  (HF)
 * Parts are kept as byte offsets into the chunk's UTF-8 buffer: part k is buf[start[k]:start[k+1]].
 * Why C at all: on text with many distinct chunks (code, many scripts) the Python merge loop,
 * not the regex, dominates; here it costs a few dict lookups per merge.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NO_MERGE PY_SSIZE_T_MAX

/* Look up a key made from buffer slices; returns the int value, NO_MERGE if absent, -1 on error. */
static Py_ssize_t lookup_concat(PyObject *encoder, const char *buf, Py_ssize_t s, Py_ssize_t e) {
    PyObject *key = PyBytes_FromStringAndSize(buf + s, e - s);
    if (key == NULL) return -1;
    PyObject *value = PyDict_GetItemWithError(encoder, key); /* borrowed */
    Py_DECREF(key);
    if (value == NULL) return PyErr_Occurred() ? -1 : NO_MERGE;
    return PyLong_AsSsize_t(value);
}

static Py_ssize_t lookup_pair(PyObject *pairs, const char *buf, Py_ssize_t s, Py_ssize_t m, Py_ssize_t e) {
    PyObject *left = PyBytes_FromStringAndSize(buf + s, m - s);
    PyObject *right = PyBytes_FromStringAndSize(buf + m, e - m);
    if (left == NULL || right == NULL) {
        Py_XDECREF(left);
        Py_XDECREF(right);
        return -1;
    }
    PyObject *key = PyTuple_Pack(2, left, right);
    Py_DECREF(left);
    Py_DECREF(right);
    if (key == NULL) return -1;
    PyObject *value = PyDict_GetItemWithError(pairs, key);
    Py_DECREF(key);
    if (value == NULL) return PyErr_Occurred() ? -1 : NO_MERGE;
    return PyLong_AsSsize_t(value);
}

static Py_ssize_t priority(PyObject *encoder, PyObject *pairs, const char *buf, const Py_ssize_t *start,
                           Py_ssize_t k) {
    /* priority of merging part k with part k+1 */
    if (pairs == NULL) return lookup_concat(encoder, buf, start[k], start[k + 2]);
    return lookup_pair(pairs, buf, start[k], start[k + 1], start[k + 2]);
}

/* BPE on one chunk; returns a new list of ids, or NULL with an exception set. */
static PyObject *bpe_chunk(PyObject *chunk, PyObject *encoder, PyObject *pairs, int whole_first) {
    Py_ssize_t n;
    const char *buf = PyUnicode_AsUTF8AndSize(chunk, &n);
    if (buf == NULL) return NULL; /* e.g. lone surrogates: the Python caller handles it */

    if (whole_first) { /* a chunk that is itself a token is returned at once (tiktoken) */
        Py_ssize_t id = lookup_concat(encoder, buf, 0, n);
        if (id == -1 && PyErr_Occurred()) return NULL;
        if (id != NO_MERGE) return Py_BuildValue("[n]", id);
    }
    /* start has n + 1 entries (part boundaries), prio has n - 1 (one per adjacent pair) */
    Py_ssize_t *start = PyMem_Malloc(sizeof(Py_ssize_t) * (n + 1) * 2);
    if (start == NULL) return PyErr_NoMemory();
    Py_ssize_t *prio = start + n + 1;
    Py_ssize_t parts = n;
    for (Py_ssize_t k = 0; k <= n; k++) start[k] = k;
    for (Py_ssize_t k = 0; k + 1 < parts; k++) {
        prio[k] = priority(encoder, pairs, buf, start, k);
        if (prio[k] == -1 && PyErr_Occurred()) goto fail;
    }
    while (parts > 1) {
        Py_ssize_t best = NO_MERGE, i = -1;
        for (Py_ssize_t k = 0; k + 1 < parts; k++) {
            if (prio[k] < best) { best = prio[k]; i = k; }
        }
        if (i < 0) break;
        /* merge parts i and i + 1: drop boundary i + 1 and priority i */
        memmove(start + i + 1, start + i + 2, sizeof(Py_ssize_t) * (parts - i - 1));
        memmove(prio + i, prio + i + 1, sizeof(Py_ssize_t) * (parts - i - 2));
        parts--;
        if (i > 0) {
            prio[i - 1] = priority(encoder, pairs, buf, start, i - 1);
            if (prio[i - 1] == -1 && PyErr_Occurred()) goto fail;
        }
        if (i + 1 < parts) {
            prio[i] = priority(encoder, pairs, buf, start, i);
            if (prio[i] == -1 && PyErr_Occurred()) goto fail;
        }
    }
    PyObject *ids = PyList_New(parts);
    if (ids == NULL) goto fail;
    for (Py_ssize_t k = 0; k < parts; k++) {
        Py_ssize_t id = lookup_concat(encoder, buf, start[k], start[k + 1]);
        if (id == NO_MERGE) {
            PyErr_Format(PyExc_ValueError, "BPE produced a part that is not in the vocab (corrupt merges?)");
            id = -1;
        }
        if (id == -1 && PyErr_Occurred()) {
            Py_DECREF(ids);
            goto fail;
        }
        PyObject *value = PyLong_FromSsize_t(id);
        if (value == NULL) {
            Py_DECREF(ids);
            goto fail;
        }
        PyList_SET_ITEM(ids, k, value);
    }
    PyMem_Free(start);
    return ids;
fail:
    PyMem_Free(start);
    return NULL;
}

/* encode_chunks(chunks, cache, encoder, pair_priority, whole_first, cache_max) -> list[int] */
static PyObject *encode_chunks(PyObject *self, PyObject *args) {
    PyObject *chunks, *cache, *encoder, *pairs;
    int whole_first;
    Py_ssize_t cache_max;
    if (!PyArg_ParseTuple(args, "O!O!O!Opn", &PyList_Type, &chunks, &PyDict_Type, &cache, &PyDict_Type, &encoder,
                          &pairs, &whole_first, &cache_max))
        return NULL;
    if (pairs == Py_None) {
        pairs = NULL;
    } else if (!PyDict_Check(pairs)) {
        PyErr_SetString(PyExc_TypeError, "pair_priority must be a dict or None");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t n_chunks = PyList_GET_SIZE(chunks);
    for (Py_ssize_t c = 0; c < n_chunks; c++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, c); /* borrowed */
        PyObject *ids = PyDict_GetItemWithError(cache, chunk); /* borrowed */
        if (ids == NULL) {
            if (PyErr_Occurred()) goto fail;
            PyObject *fresh = bpe_chunk(chunk, encoder, pairs, whole_first);
            if (fresh == NULL) goto fail;
            if (PyDict_GET_SIZE(cache) >= cache_max) PyDict_Clear(cache);
            if (PyDict_SetItem(cache, chunk, fresh) < 0) {
                Py_DECREF(fresh);
                goto fail;
            }
            Py_DECREF(fresh); /* the cache holds it */
            ids = fresh;
        }
        Py_ssize_t m = PyList_GET_SIZE(ids);
        for (Py_ssize_t k = 0; k < m; k++) {
            if (PyList_Append(out, PyList_GET_ITEM(ids, k)) < 0) goto fail;
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"encode_chunks", encode_chunks, METH_VARARGS,
     "encode_chunks(chunks, cache, encoder, pair_priority, whole_first, cache_max) -> list[int]\n"
     "BPE-encode pre-split chunks, using and filling the chunk -> ids cache."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bpe_kernel", "C inner loop of the BPE encoder", -1,
                                    methods};

PyMODINIT_FUNC PyInit__bpe_kernel(void) { return PyModule_Create(&module); }
