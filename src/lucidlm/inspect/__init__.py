"""Looking inside a forward pass: the trace, and tools that read it.

``Trace`` is imported on first use, so that the command line starts without loading torch.
"""


def __getattr__(name: str):
    if name == "Trace":
        from lucidlm.inspect.trace import Trace

        return Trace
    raise AttributeError(f"module 'lucidlm.inspect' has no attribute {name!r}")


__all__ = ["Trace"]
