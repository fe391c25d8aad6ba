"""Request bodies of the OpenAI-compatible API, as pydantic models (they also make the /docs page).

Only what OpenAI's API defines (plus a few knobs vLLM also accepts: ``top_k``, ``min_p``,
``repetition_penalty``, ``ignore_eos``), typed strictly: ``"max_tokens": "5"`` is an error, not
5, and an unknown field is an error too (as OpenAI answers "Unrecognized request argument"), so a
typo never passes silently. Responses are plain dicts built in ``app.py``, shaped like OpenAI's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_PROMPTS = 64  # prompts in one /v1/completions request
Stop = str | Annotated[list[str], Field(max_length=4)] | None


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False  # one more chunk at the end with token counts


class _Sampling(_Strict):
    """Fields common to /v1/completions and /v1/chat/completions."""

    model: str
    # Sampling fields left out (None) take the model's recommended value (`lucidlm serve` prints
    # them at start), else OpenAI's default (temperature 1, top_p 1, penalties 0).
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1, description="only 1 is supported; send several requests for more")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: int | None = None
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    # {"token id": bias}: the bias (-100..100) is added to that token's logit before sampling
    logit_bias: dict[str, float] | None = Field(None, max_length=1024)
    user: str | None = None
    # not in OpenAI's API; vLLM accepts the same names
    top_k: int | None = Field(None, ge=0, description="keep the k most likely tokens; 0 = off")
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    ignore_eos: bool = Field(False, description="keep generating past the end-of-sequence token (benchmarks)")


class CompletionRequest(_Sampling):
    """POST /v1/completions: continue a prompt."""

    # a string, a list of strings, token ids, or a list of token-id lists (one choice per prompt)
    prompt: (str | Annotated[list[int], Field(min_length=1)]
             | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
             | Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1, max_length=MAX_PROMPTS)])
    max_tokens: int | None = Field(16, ge=0)  # 0: nothing generated (scoring the prompt: echo + logprobs)
    logprobs: int | None = Field(None, ge=0, le=5)  # the chosen token's + the top-k alternatives'
    echo: bool = False  # the prompt back before the completion; with logprobs, its tokens scored
    n: int = Field(1, ge=1, le=16, description="samples per prompt (seed, seed + 1, ... when a seed is given)")


class ContentPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions: the next assistant message of a conversation."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class TokenizeRequest(_Strict):
    """POST /tokenize (vLLM's): the ids the server's tokenizer gives a text."""

    prompt: str
    add_special_tokens: bool = True  # BOS where the tokenizer adds one
    model: str | None = None


class DetokenizeRequest(_Strict):
    """POST /detokenize (vLLM's): the text of token ids."""

    tokens: Annotated[list[int], Field(max_length=1_000_000)]
    model: str | None = None


class EmbeddingRequest(_Strict):
    """POST /v1/embeddings: one vector per input text."""

    model: str
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
