"""Build the optional C accelerator of the BPE encoder (everything else is in pyproject.toml).

``optional=True``: if no C compiler is available, the install still succeeds and lucidlm uses its
pure-Python encoder, which gives the same ids (only slower on text with many distinct chunks).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "lucidlm.tokenizers._bpe_kernel",
            ["src/lucidlm/tokenizers/_bpe_kernel.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
