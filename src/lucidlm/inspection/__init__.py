"""Looking inside a forward pass: the trace a model records into, and the tools that read it
(``walkthrough``: each stage with its shape and equation; the logit lens; attention heatmaps)."""

from lucidlm.inspection.trace import Trace

__all__ = ["Trace"]
