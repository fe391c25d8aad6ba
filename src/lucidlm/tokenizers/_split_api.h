/*
 * What the C splitter (_split_kernel.c) lends to other C code: the BPE encoder (_bpe_kernel.c)
 * cuts a text into chunks and merges each one in a single pass, with no Python string per chunk.
 *
 * The splitter module publishes a SplitAPI struct in a capsule, the usual way for one CPython
 * extension to call another (PyCapsule_Import(SPLIT_API_CAPSULE)). Neither function touches a
 * Python object, so both may run with the GIL released.
 */
#ifndef LUCIDLM_SPLIT_API_H
#define LUCIDLM_SPLIT_API_H

#include <Python.h>
#include <stdint.h>

/* The text being cut: its class bits, with cls[n] = 0 so that every test fails at the end;
 * kind and data are the str's PyUnicode storage (1, 2 or 4 bytes per character). */
typedef struct {
    const uint16_t *cls;
    Py_ssize_t n;
    int kind;
    const void *data;
} SplitText;

/* One pattern's rule: the end of the chunk that starts at character i (always > i). */
typedef Py_ssize_t (*SplitChunkFn)(const SplitText *, Py_ssize_t);

typedef struct {
    /* The class bits of characters data[0:n] of a string of this kind, plus a 0 at [n];
     * PyMem_RawMalloc'd (free with PyMem_RawFree), NULL when out of memory. */
    uint16_t *(*classify)(int kind, const void *data, Py_ssize_t n);
    /* The rule of "gpt2", "cl100k" or "o200k"; NULL for any other name. */
    SplitChunkFn (*chunk_function)(const char *name);
} SplitAPI;

#define SPLIT_API_CAPSULE "lucidlm.tokenizers._split_kernel.api"

#endif
