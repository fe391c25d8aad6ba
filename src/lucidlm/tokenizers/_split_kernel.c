/*
 * The pre-tokenizer split of the three preset patterns (GPT-2, cl100k, o200k), written out by hand.
 *
 * patterns.py holds the regexes, and ``regex.findall(pattern, text)`` is the readable reference;
 * this file computes the same list of chunks about 10x faster. The tests compare the two on random
 * text, on a multilingual corpus and on every code point in several contexts.
 *
 * How it works, in two passes over the text:
 *   1. classify: each character gets a set of class bits (\p{L}, \p{N}, \s, [\r\n], ...) from a
 *      table built once from the Unicode 16.0 ranges in _unicode16_classes.h (the version of
 *      tiktoken's Rust regex, whatever Unicode the installed ``regex`` module knows);
 *   2. cut: at each position, try the pattern's alternatives in order, as a backtracking regex
 *      engine does, and take the first that matches. Each alternative is one small function
 *      returning the end of its match or NO_MATCH; its comment shows the regex piece and, where the
 *      regex backtracks, why the shortcut here finds the same match.
 * Every pattern matches every single character by some alternative, so the chunks cover the text.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_split_api.h"         /* SplitText, and what this module lends to the BPE encoder */
#include "_unicode16_classes.h" /* U16_RANGES and the U16_* bits (letter, number, mark, ...) */

#define NO_MATCH (-1)

/* Class bits of one character. The first five come from the Unicode tables, the rest are set here. */
enum {
    LETTER = U16_LETTER,     /* \p{L} */
    NUMBER = U16_NUMBER,     /* \p{N} */
    MARK = U16_MARK,         /* \p{M} */
    UPPERISH = U16_UPPERISH, /* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]  (o200k) */
    LOWERISH = U16_LOWERISH, /* [\p{Ll}\p{Lm}\p{Lo}\p{M}]        (o200k) */
    SPACE = 32,              /* \s: Unicode White_Space, as in Rust's regex and Python's regex */
    OTHER = 64,              /* [^\s\p{L}\p{N}]: punctuation, symbols, marks, controls, ... */
    NEWLINE = 128,           /* [\r\n] */
    PREFIX = 256,            /* [^\r\n\p{L}\p{N}]: what may stand before a word (cl100k, o200k) */
    BLANK = 512,             /* ' ', the only space that ' ?' accepts */
    SLASH = 1024,            /* '/', o200k lets it follow punctuation with newlines */
};

/* One entry per code point (2.2 MB, built at import): a lookup per character, no search. */
static uint16_t CLASS[0x110000];

static int is_white_space(Py_UCS4 c) {
    /* White_Space=yes in Unicode's PropList.txt (unchanged since Unicode 6.0) */
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

static void build_class_table(void) {
    size_t n_ranges = sizeof(U16_RANGES) / sizeof(U16_RANGES[0]);
    for (size_t r = 0; r < n_ranges; r++)
        for (Py_UCS4 c = U16_RANGES[r].first; c <= U16_RANGES[r].last; c++) CLASS[c] = (uint16_t)U16_RANGES[r].bits;
    for (Py_UCS4 c = 0; c < 0x110000; c++) {
        uint16_t bits = CLASS[c];
        if (is_white_space(c)) bits |= SPACE;
        if (!(bits & (SPACE | LETTER | NUMBER))) bits |= OTHER;
        if (c == '\r' || c == '\n') bits |= NEWLINE;
        if (!(bits & (NEWLINE | LETTER | NUMBER))) bits |= PREFIX;
        if (c == ' ') bits |= BLANK;
        if (c == '/') bits |= SLASH;
        CLASS[c] = bits;
    }
}

/* The text being cut (see _split_api.h): class bits per character, and the characters themselves
 * (kind and data) to read the letters of contractions. */
typedef SplitText Text;

static inline int is(const Text *t, Py_ssize_t i, int bits) { return (t->cls[i] & bits) != 0; }

/* The end of the run of characters having ``bits`` that starts at i (i itself if none). */
static inline Py_ssize_t run(const Text *t, Py_ssize_t i, int bits) {
    while (t->cls[i] & bits) i++;
    return i;
}

static inline Py_UCS4 char_at(const Text *t, Py_ssize_t i) {
    return i < t->n ? PyUnicode_READ(t->kind, t->data, i) : 0;
}

/* ---- pieces shared by the patterns ------------------------------------------------------------ */

/* Does c equal the ASCII lowercase letter ``lower``, case-insensitively when asked? Rust's and
 * Python's regex fold cases simply: (?i)s also matches U+017F LATIN SMALL LETTER LONG S; no other
 * letter of the contractions (d, m, t, l, v, r, e) has a fold partner beyond its two ASCII cases. */
static int letter_is(Py_UCS4 c, char lower, int ignore_case) {
    if (c == (Py_UCS4)lower) return 1;
    if (!ignore_case) return 0;
    return c == (Py_UCS4)(lower - 'a' + 'A') || (lower == 's' && c == 0x17F);
}

/* '(?:[sdmt]|ll|ve|re)'  (GPT-2), '(?i:[sdmt]|ll|ve|re)'  (cl100k), (?i:'s|'t|'re|'ve|'m|'ll|'d)  (o200k)
 * The same set of contractions; alternatives of length 2 and 3 never share a prefix. */
static Py_ssize_t contraction(const Text *t, Py_ssize_t i, int ignore_case) {
    if (char_at(t, i) != '\'') return NO_MATCH;
    Py_UCS4 a = char_at(t, i + 1);
    if (letter_is(a, 's', ignore_case) || letter_is(a, 'd', ignore_case) || letter_is(a, 'm', ignore_case) ||
        letter_is(a, 't', ignore_case))
        return i + 2;
    Py_UCS4 b = char_at(t, i + 2);
    if ((letter_is(a, 'l', ignore_case) && letter_is(b, 'l', ignore_case)) ||
        (letter_is(a, 'v', ignore_case) && letter_is(b, 'e', ignore_case)) ||
        (letter_is(a, 'r', ignore_case) && letter_is(b, 'e', ignore_case)))
        return i + 3;
    return NO_MATCH;
}

/* ' ?X++' for a class X: an optional space, then a run of X. If the space is not followed by an
 * X, ' ?' gives the space back and X cannot match the space either: no match. */
static Py_ssize_t space_then_run(const Text *t, Py_ssize_t i, int x) {
    Py_ssize_t s = (is(t, i, BLANK) && is(t, i + 1, x)) ? i + 1 : i;
    return is(t, s, x) ? run(t, s, x) : NO_MATCH;
}

/* '\p{N}{1,3}+' and '\p{N}{1,3}': one to three digits (nothing follows, so both are the same). */
static Py_ssize_t digits_upto_3(const Text *t, Py_ssize_t i) {
    Py_ssize_t e = i;
    while (e < i + 3 && is(t, e, NUMBER)) e++;
    return e > i ? e : NO_MATCH;
}

/* '\s++$': whitespace up to the end of the text. (Python's $ also matches before a final '\n', but
 * the possessive run would have taken that '\n', so only the true end remains, as in Rust.) */
static Py_ssize_t space_to_end(const Text *t, Py_ssize_t i) {
    Py_ssize_t e = run(t, i, SPACE);
    return (e > i && e == t->n) ? e : NO_MATCH;
}

/* '\s*[\r\n]' (cl100k) and '\s*[\r\n]+' (o200k): greedy \s* takes the whole whitespace run, then
 * gives characters back until [\r\n] matches, so the match ends after the run's last newline
 * ([\r\n]+ cannot go further: the next character is not a newline, or it would be the last one). */
static Py_ssize_t space_through_last_newline(const Text *t, Py_ssize_t i) {
    for (Py_ssize_t k = run(t, i, SPACE) - 1; k >= i; k--)
        if (is(t, k, NEWLINE)) return k + 1;
    return NO_MATCH;
}

/* '\s+(?!\S)': whitespace not followed by a non-space. At the end of the text the whole run;
 * before a non-space, \s+ gives back its last character (which then starts the next chunk, e.g.
 * the space of " world"), so it needs a run of at least two. */
static Py_ssize_t space_not_before_nonspace(const Text *t, Py_ssize_t i) {
    Py_ssize_t e = run(t, i, SPACE);
    if (e == i) return NO_MATCH;
    if (e == t->n) return e;
    return e - i >= 2 ? e - 1 : NO_MATCH;
}

/* '\s+': a whitespace run (o200k's last alternative). */
static Py_ssize_t space_run(const Text *t, Py_ssize_t i) {
    Py_ssize_t e = run(t, i, SPACE);
    return e > i ? e : NO_MATCH;
}

/* '\s': one whitespace character. */
static Py_ssize_t one_space(const Text *t, Py_ssize_t i) { return is(t, i, SPACE) ? i + 1 : NO_MATCH; }

/* ---- GPT-2: '(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s ---- */

static Py_ssize_t gpt2_chunk(const Text *t, Py_ssize_t i) {
    Py_ssize_t e;
    if ((e = contraction(t, i, 0)) != NO_MATCH) return e;
    if ((e = space_then_run(t, i, LETTER)) != NO_MATCH) return e;
    if ((e = space_then_run(t, i, NUMBER)) != NO_MATCH) return e;
    if ((e = space_then_run(t, i, OTHER)) != NO_MATCH) return e;
    if ((e = space_to_end(t, i)) != NO_MATCH) return e;
    if ((e = space_not_before_nonspace(t, i)) != NO_MATCH) return e;
    return one_space(t, i);
}

/* ---- cl100k: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
 *              |\s++$|\s*[\r\n]|\s+(?!\S)|\s ---------------------------------------------------------- */

/* '[^\r\n\p{L}\p{N}]?+\p{L}++': a word with at most one leading non-letter (" hello", "_hello").
 * Possessive ?+: a prefix character, once taken, is never given back (it is no letter anyway). */
static Py_ssize_t cl100k_word(const Text *t, Py_ssize_t i) {
    Py_ssize_t s = is(t, i, PREFIX) ? i + 1 : i;
    return is(t, s, LETTER) ? run(t, s, LETTER) : NO_MATCH;
}

/* ' ?[^\s\p{L}\p{N}]++[\r\n]*+': punctuation, with the newlines right after it. */
static Py_ssize_t cl100k_punctuation(const Text *t, Py_ssize_t i) {
    Py_ssize_t e = space_then_run(t, i, OTHER);
    return e == NO_MATCH ? NO_MATCH : run(t, e, NEWLINE);
}

static Py_ssize_t cl100k_chunk(const Text *t, Py_ssize_t i) {
    Py_ssize_t e;
    if ((e = contraction(t, i, 1)) != NO_MATCH) return e;
    if ((e = cl100k_word(t, i)) != NO_MATCH) return e;
    if ((e = digits_upto_3(t, i)) != NO_MATCH) return e;
    if ((e = cl100k_punctuation(t, i)) != NO_MATCH) return e;
    if ((e = space_to_end(t, i)) != NO_MATCH) return e;
    if ((e = space_through_last_newline(t, i)) != NO_MATCH) return e;
    if ((e = space_not_before_nonspace(t, i)) != NO_MATCH) return e;
    return one_space(t, i);
}

/* ---- o200k, alternatives in order (U = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], W = [\p{Ll}\p{Lm}\p{Lo}\p{M}],
 *      P = [^\r\n\p{L}\p{N}], C = (?i:'s|'t|'re|'ve|'m|'ll|'d)):
 *        P?U*W+C? | P?U+W*C? | \p{N}{1,3} | ?[^\s\p{L}\p{N}]+[\r\n/]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 *      Nothing is possessive here, so the word alternatives backtrack; see each function. ------ */

/* A contraction after a word, if there is one: 'C?' is greedy and nothing follows it. */
static Py_ssize_t with_contraction(const Text *t, Py_ssize_t e) {
    Py_ssize_t c = contraction(t, e, 1);
    return c == NO_MATCH ? e : c;
}

/* 'U*W+' from q: greedy U* runs to u, then W+ needs a W. If t[u] is none, U* gives back one
 * character at a time; the first k (from u down) with t[k] in W starts W+, which then runs on.
 * (Lm, Lo and marks are in both U and W, so "ÀB\u0301" = U U W matches with k at the mark.) */
static Py_ssize_t o200k_lower_word_from(const Text *t, Py_ssize_t q) {
    Py_ssize_t u = run(t, q, UPPERISH);
    for (Py_ssize_t k = u; k >= q; k--)
        if (is(t, k, LOWERISH)) return run(t, k, LOWERISH);
    return NO_MATCH;
}

/* 'P?U*W+C?': a word ending in lowercase ("Hello", " world's", "camel" of camelCase). P? first
 * tries to take a prefix character; if no word follows it, P? gives it back and the word may start
 * at i itself (only possible when t[i] is a mark: marks are in P, U and W alike). */
static Py_ssize_t o200k_lower_word(const Text *t, Py_ssize_t i) {
    Py_ssize_t e = NO_MATCH;
    if (is(t, i, PREFIX)) e = o200k_lower_word_from(t, i + 1);
    if (e == NO_MATCH) e = o200k_lower_word_from(t, i);
    return e == NO_MATCH ? NO_MATCH : with_contraction(t, e);
}

/* 'U+W*' from q: greedy, and what follows (C?) always matches, so no backtracking. */
static Py_ssize_t o200k_upper_word_from(const Text *t, Py_ssize_t q) {
    Py_ssize_t u = run(t, q, UPPERISH);
    return u > q ? run(t, u, LOWERISH) : NO_MATCH;
}

/* 'P?U+W*C?': a word in capitals ("HTTP", " NASA's"), same P? backtracking as above. */
static Py_ssize_t o200k_upper_word(const Text *t, Py_ssize_t i) {
    Py_ssize_t e = NO_MATCH;
    if (is(t, i, PREFIX)) e = o200k_upper_word_from(t, i + 1);
    if (e == NO_MATCH) e = o200k_upper_word_from(t, i);
    return e == NO_MATCH ? NO_MATCH : with_contraction(t, e);
}

/* ' ?[^\s\p{L}\p{N}]+[\r\n/]*': punctuation, then newlines and slashes. Greedy, nothing follows. */
static Py_ssize_t o200k_punctuation(const Text *t, Py_ssize_t i) {
    Py_ssize_t e = space_then_run(t, i, OTHER);
    return e == NO_MATCH ? NO_MATCH : run(t, e, NEWLINE | SLASH);
}

static Py_ssize_t o200k_chunk(const Text *t, Py_ssize_t i) {
    Py_ssize_t e;
    if ((e = o200k_lower_word(t, i)) != NO_MATCH) return e;
    if ((e = o200k_upper_word(t, i)) != NO_MATCH) return e;
    if ((e = digits_upto_3(t, i)) != NO_MATCH) return e;
    if ((e = o200k_punctuation(t, i)) != NO_MATCH) return e;
    if ((e = space_through_last_newline(t, i)) != NO_MATCH) return e;
    if ((e = space_not_before_nonspace(t, i)) != NO_MATCH) return e;
    return space_run(t, i);
}

/* ---- the Python entry point -------------------------------------------------------------------- */

typedef SplitChunkFn ChunkFn;

static ChunkFn chunk_function(const char *name) {
    if (strcmp(name, "gpt2") == 0) return gpt2_chunk;
    if (strcmp(name, "cl100k") == 0) return cl100k_chunk;
    if (strcmp(name, "o200k") == 0) return o200k_chunk;
    return NULL;
}

/* Step 1: the class bits of every character, plus cls[n] = 0. The loop is written once per string
 * kind (1, 2 or 4 bytes per character) so that the kind test is not paid per character. Raw
 * memory, no Python object: the BPE encoder calls this with the GIL released. */
static uint16_t *classify(int kind, const void *data, Py_ssize_t n) {
    uint16_t *cls = PyMem_RawMalloc(sizeof(uint16_t) * (n + 1));
    if (cls == NULL) return NULL;
    switch (kind) {
    case PyUnicode_1BYTE_KIND:
        for (Py_ssize_t i = 0; i < n; i++) cls[i] = CLASS[((const Py_UCS1 *)data)[i]];
        break;
    case PyUnicode_2BYTE_KIND:
        for (Py_ssize_t i = 0; i < n; i++) cls[i] = CLASS[((const Py_UCS2 *)data)[i]];
        break;
    default:
        for (Py_ssize_t i = 0; i < n; i++) cls[i] = CLASS[((const Py_UCS4 *)data)[i]];
    }
    cls[n] = 0;
    return cls;
}

/* The arguments (text, pattern) of split and count: the pattern's rule, or NULL with an error set. */
static ChunkFn parse_text_and_pattern(PyObject *args, PyObject **text) {
    const char *name;
    if (!PyArg_ParseTuple(args, "Us", text, &name)) return NULL;
    ChunkFn chunk = chunk_function(name);
    if (chunk == NULL)
        PyErr_Format(PyExc_ValueError, "split kernel knows the patterns 'gpt2', 'cl100k' and 'o200k', not '%s'", name);
    return chunk;
}

/* split(text, pattern) -> list[str]; pattern is "gpt2", "cl100k" or "o200k". */
static PyObject *split(PyObject *self, PyObject *args) {
    PyObject *text;
    ChunkFn chunk = parse_text_and_pattern(args, &text);
    if (chunk == NULL) return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    uint16_t *cls = classify(PyUnicode_KIND(text), PyUnicode_DATA(text), n);
    if (cls == NULL) return PyErr_NoMemory();
    Text t = {cls, n, PyUnicode_KIND(text), PyUnicode_DATA(text)};
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    /* Step 2: cut, chunk after chunk. */
    for (Py_ssize_t i = 0; i < n;) {
        Py_ssize_t e = chunk(&t, i);
        if (e <= i) { /* cannot happen: each pattern matches any single character */
            PyErr_Format(PyExc_RuntimeError, "split kernel: no match at index %zd (a bug, please report)", i);
            goto fail;
        }
        PyObject *piece = PyUnicode_Substring(text, i, e);
        if (piece == NULL || PyList_Append(out, piece) < 0) {
            Py_XDECREF(piece);
            goto fail;
        }
        Py_DECREF(piece);
        i = e;
    }
    PyMem_RawFree(cls);
    return out;
fail:
    PyMem_RawFree(cls);
    Py_XDECREF(out);
    return NULL;
}

/* count(text, pattern) -> int: how many chunks split() would return, without making them. The
 * floor of any encoder that splits with this rule: classifying and cutting, nothing else. */
static PyObject *count(PyObject *self, PyObject *args) {
    PyObject *text;
    ChunkFn chunk = parse_text_and_pattern(args, &text);
    if (chunk == NULL) return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), chunks = 0;
    uint16_t *cls = classify(PyUnicode_KIND(text), PyUnicode_DATA(text), n);
    if (cls == NULL) return PyErr_NoMemory();
    Text t = {cls, n, PyUnicode_KIND(text), PyUnicode_DATA(text)};
    for (Py_ssize_t i = 0, e; i < n; chunks++, i = e) {
        if ((e = chunk(&t, i)) <= i) { /* cannot happen: each pattern matches any single character */
            PyMem_RawFree(cls);
            return PyErr_Format(PyExc_RuntimeError, "split kernel: no match at index %zd (a bug, please report)", i);
        }
    }
    PyMem_RawFree(cls);
    return PyLong_FromSsize_t(chunks);
}

/* class_bits(code_point) -> int: the table entry, for the tests (e.g. \s against the regex module). */
static PyObject *class_bits(PyObject *self, PyObject *arg) {
    long c = PyLong_AsLong(arg);
    if (c == -1 && PyErr_Occurred()) return NULL;
    if (c < 0 || c >= 0x110000) {
        PyErr_Format(PyExc_ValueError, "code point %ld is outside 0..0x10FFFF", c);
        return NULL;
    }
    return PyLong_FromLong(CLASS[c]);
}

static PyMethodDef methods[] = {
    {"split", split, METH_VARARGS,
     "split(text, pattern) -> list[str]\n"
     "regex.findall(PATTERN, text) for pattern 'gpt2', 'cl100k' or 'o200k', under Unicode 16.0."},
    {"count", count, METH_VARARGS, "count(text, pattern) -> int: len(split(text, pattern)), without making the chunks."},
    {"class_bits", class_bits, METH_O, "class_bits(code_point) -> int: the character's class bits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_split_kernel",
                                    "The pre-tokenizer split of the preset patterns, in C", -1, methods};

PyMODINIT_FUNC PyInit__split_kernel(void) {
    build_class_table();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    static SplitAPI api = {classify, chunk_function}; /* lent to _bpe_kernel.c, see _split_api.h */
    PyObject *capsule = PyCapsule_New(&api, SPLIT_API_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(m, "api", capsule) < 0) { /* AddObject steals it on success */
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    const char *names[] = {"LETTER", "NUMBER", "MARK", "UPPERISH", "LOWERISH", "SPACE",
                           "OTHER", "NEWLINE", "PREFIX", "BLANK", "SLASH"};
    const int values[] = {LETTER, NUMBER, MARK, UPPERISH, LOWERISH, SPACE, OTHER, NEWLINE, PREFIX, BLANK, SLASH};
    for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++) {
        if (PyModule_AddIntConstant(m, names[k], values[k]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
