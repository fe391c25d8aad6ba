"""lucidlm: understand large language models by running one.

The package follows the path data takes through a language model:
text -> ``lucidlm.tokenizers`` -> ids -> model -> logits -> sampler -> ids -> text.
"""

__version__ = "0.1.0"
