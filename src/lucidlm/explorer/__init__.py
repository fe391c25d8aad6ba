"""The Explorer: a local web app that shows how an LLM works on the user's own model and prompt.

``lucidlm explore`` serves it (``app.py``). Everything it shows is computed here, in Python, by
the library's own functions: the token spans (``tokens.py``), one traced forward pass with its
attention, walkthrough, logit lens and next-token logits (``forward.py``, ``equations.py``,
``sources.py``), sentence maps (``embedding_map.py``) and training curves (``workspace.py``).
The pages in ``static/`` only draw what the JSON API under ``/api/`` sends. The same views render
inline in a Jupyter notebook, offline, from the same static files (``notebook.py``:
``show_attention``, ``show_logit_lens``, ``show_tokens``).
"""

from lucidlm.explorer.notebook import Widget, show_attention, show_logit_lens, show_tokens
from lucidlm.explorer.workspace import Workspace

__all__ = ["Widget", "Workspace", "show_attention", "show_logit_lens", "show_tokens"]
