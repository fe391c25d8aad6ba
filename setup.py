"""Build the optional C accelerators of the BPE encoder (everything else is in pyproject.toml):
the merge loop (``_bpe_kernel``) and the pre-tokenizer split of the preset patterns (``_split_kernel``);
and of one-token decoding (``_decode_kernel``, see lucidlm/models/decode_fast.py).

``optional=True``: if no C compiler is available, the install still succeeds and lucidlm uses its
pure-Python encoder and the ``regex`` split, which give the same ids, and PyTorch's ops for
decoding, which agree to float rounding (all only slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "lucidlm.tokenizers._bpe_kernel",
            ["src/lucidlm/tokenizers/_bpe_kernel.c"],
            depends=["src/lucidlm/tokenizers/_split_api.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "lucidlm.tokenizers._split_kernel",
            ["src/lucidlm/tokenizers/_split_kernel.c"],
            depends=["src/lucidlm/tokenizers/_unicode16_classes.h", "src/lucidlm/tokenizers/_split_api.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "lucidlm.nn._decode_kernel",
            ["src/lucidlm/nn/_decode_kernel.c"],
            depends=["src/lucidlm/nn/_thread_pool.h"],
            extra_compile_args=["-O2", "-pthread", "-ffp-contract=off"],  # the vector code is chosen at import: see the file's end
            extra_link_args=["-pthread"],
            optional=True,
        ),
        Extension(  # the merge loop of BPE training (see lucidlm/tokenizers/training.py: learn_merges)
            "lucidlm.tokenizers._train_kernel",
            ["src/lucidlm/tokenizers/_train_kernel.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
