"""Chat templates: how a list of messages becomes the one string a chat model was trained on.

A chat model never sees "messages"; it sees text with role markers. SmolLM2 uses ChatML:

    <|im_start|>system
    You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
    <|im_start|>user
    Hi!<|im_end|>
    <|im_start|>assistant          <- the generation prompt: the model writes the reply from here

Each model ships its own template as Jinja source (GGUF ``tokenizer.chat_template``, HF
``tokenizer_config.json``). ``render_chat`` renders it the way Hugging Face's
``apply_chat_template`` does (same sandboxed Jinja environment and helpers), so the prompt is
byte-for-byte what the model was trained with (tested against transformers).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path

ROLES_HINT = "each message is a dict with 'role' (system, user, assistant, ...) and 'content'"


@lru_cache(maxsize=16)
def _compile(template: str):
    """The template compiled in HF's environment: sandboxed (a template from the Hub is
    untrusted code), trim_blocks + lstrip_blocks (so `{% ... %}` lines leave no stray
    whitespace), loop controls, and the helpers templates call."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        # `{% generation %}...{% endgeneration %}` marks the assistant's tokens for training masks;
        # rendering just outputs the body.
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes HTML characters (< > &), which would change the prompt.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise ValueError(f"the chat template is not valid Jinja (line {exc.lineno}): {exc.message}") from None


def _check_messages(messages) -> list[dict]:
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"messages must be a list of dicts ({ROLES_HINT}), got {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"message {i} is {m!r}; {ROLES_HINT}")
        # As HF does: keys set to None (OpenAI's content=None) are dropped, so templates that test
        # `is defined` behave as for a missing key.
        out.append({k: v for k, v in m.items() if v is not None})
    return out


def _special_tokens(tokenizer) -> dict[str, str]:
    """bos_token, eos_token, ... as strings: what HF passes to every template."""
    if tokenizer is None:
        return {}
    by_id = {i: text for text, i in getattr(tokenizer, "special_tokens", {}).items()}
    out = {}
    for role in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{role}_id", None)
        if token_id is None:
            continue
        text = by_id.get(token_id)
        if text is None and hasattr(tokenizer, "token_bytes"):
            text = tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")
        if text is not None:
            out[f"{role}_token"] = text
    return out


def render_chat(messages: list[dict], *, template: str | None = None, tokenizer=None,
                add_generation_prompt: bool = True, **extra) -> str:
    """The prompt string for ``messages``, as ``tokenizer.apply_chat_template(messages,
    tokenize=False, add_generation_prompt=...)`` renders it.

    ``template`` defaults to ``tokenizer.chat_template``. The template sees ``messages``,
    ``add_generation_prompt``, the tokenizer's ``bos_token``/``eos_token``/..., and ``extra``
    (``tools=...``, ``documents=...``, or any variable a template reads). Note the default here
    is add_generation_prompt=True (we render to generate); HF's default is False.
    """
    import jinja2

    if template is None:
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise ValueError("no chat template: the tokenizer has none (its model is not a chat model?); "
                             "pass template=... (a Jinja string), e.g. CHATML_TEMPLATE")
    if not isinstance(template, str):
        raise ValueError(f"template must be a Jinja string, got {type(template).__name__}")
    # tools and documents are always defined (None when not given), as HF renders them.
    variables = {**_special_tokens(tokenizer), "tools": None, "documents": None, **extra}
    try:
        return _compile(template).render(messages=_check_messages(messages),
                                         add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.exceptions.TemplateError as exc:
        raise ValueError(f"the chat template failed: {exc}") from None


# ChatML (OpenAI, Qwen, SmolLM2), for models without a template of their own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def chat_template_from_option(value: str) -> str:
    """A ``--template``/``--chat-template`` option as a Jinja string: 'chatml' or a template file."""
    if value == "chatml":
        return CHATML_TEMPLATE
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no chat template file at {path}; give a Jinja file or 'chatml'")
    try:
        template = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a UTF-8 text file; a chat template is Jinja text") from None
    _compile(template)  # a syntax error is reported now, not at the first message
    return template
