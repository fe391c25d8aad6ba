"""lucidlm: understand large language models by running one.

The package follows the path data takes through a language model:
text -> ``lucidlm.tokenizers`` -> ids -> model -> logits -> sampler -> ids -> text.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `lucidlm.embed(texts)`: the lucidlm.embed package is callable (it forwards to
    # lucidlm.embed.embed); imported on first use so that `import lucidlm` stays light.
    import importlib

    if name == "embed":
        return importlib.import_module("lucidlm.embed")
    if name == "load_model":  # `lucidlm.load_model(name_or_path) -> (model, tokenizer)`
        return importlib.import_module("lucidlm.models.load").load_model
    raise AttributeError(f"module 'lucidlm' has no attribute {name!r}")
