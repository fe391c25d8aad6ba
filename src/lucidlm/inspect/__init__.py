"""Looking inside a forward pass: the trace, and tools that read it."""

from lucidlm.inspect.trace import Trace

__all__ = ["Trace"]
