"""The OpenAI-compatible HTTP API: FastAPI routes over the continuous-batching ``Engine``.

    GET  /v1/models              the chat model (and the embedding model, if any)
    POST /v1/completions         continue a prompt          (stream: server-sent events)
    POST /v1/chat/completions    the assistant's next reply (stream: server-sent events)
    POST /v1/embeddings          sentence embeddings (all-MiniLM-L6-v2)
    GET  /health                 liveness plus the engine's queue
    GET  /docs                   the OpenAPI page

Every route is thin: it checks the request, turns it into token ids with the library's own
functions (``render_chat``, ``encode_prompt``), submits it to the engine and shapes the engine's
events into OpenAI's JSON. Errors are OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``, with OpenAI's status codes, so the official client raises its usual exceptions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields, replace

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lucidlm.generate.chat import render_chat
from lucidlm.generate.decode import encode_prompt
from lucidlm.generate.sampling import SamplingParams
from lucidlm.serve.engine import (
    DoneEvent,
    Engine,
    ErrorEvent,
    Event,
    GenerationRequest,
    Handle,
    PromptEvent,
    TokenEvent,
)
from lucidlm.serve.errors import APIError, BodySizeLimit, validation_error
from lucidlm.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)
from lucidlm.tokenizers.hf_dir import token_text

log = logging.getLogger(__name__)


# -- the app ------------------------------------------------------------------------------------


def create_app(
    model,
    tokenizer,
    *,
    model_name: str,
    embedder=None,  # a SentenceEmbedder, a no-argument function that loads one (on first use), or None
    embed_model_name: str | None = None,
    max_tokens_cap: int = 2048,  # the most tokens one request may ask for
    max_body_bytes: int = 1 << 20,
    max_batch: int = 8,  # requests decoded together
    max_context: int | None = 4096,  # prompt + completion per request (<= the model's); bounds cache memory
    max_waiting: int = 256,  # queued requests beyond which the server answers 503
    request_timeout_s: float | None = 600.0,
    chat_template: str | None = None,  # Jinja source; default: the tokenizer's own
    sampling_defaults: SamplingParams | None = None,  # for the sampling fields a request leaves out
) -> FastAPI:
    """A FastAPI app serving ``model`` under the name ``model_name`` (run it with uvicorn).

    A request that omits a sampling field (temperature, top_p, ...) gets ``sampling_defaults``'
    value, as vLLM applies a model's generation_config.json; None: OpenAI's defaults (temperature
    1, no filter)."""
    if max_tokens_cap < 1 or max_body_bytes < 1:
        raise ValueError(f"max_tokens_cap ({max_tokens_cap}) and max_body_bytes ({max_body_bytes}) must be >= 1")
    engine = Engine(model, tokenizer, max_batch=max_batch, max_context=max_context)
    if embedder is not None and embed_model_name is None:
        embed_model_name = getattr(embedder, "name", None) or "embedding"
    state = _State(engine, tokenizer, model_name, embedder, embed_model_name, max_tokens_cap, max_waiting,
                   request_timeout_s, sampling_defaults or SamplingParams())
    chat_template = chat_template or getattr(tokenizer, "chat_template", None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="lucidlm", summary="An OpenAI-compatible API over a lucidlm model", lifespan=lifespan)
    app.state.engine = engine
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return validation_error(exc).response()

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError):  # a library check the routes did not foresee
        return APIError(400, str(exc)).response()

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception):  # a bug: still answer in OpenAI's shape
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return APIError(500, f"internal server error: {type(exc).__name__}: {exc}", type="server_error",
                        code="server_error").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", code=code).response()

    @app.get("/health")
    async def health() -> dict:
        if not engine.running:
            raise APIError(503, "the decode engine is not running", type="server_error", code="engine_down")
        return {"status": "ok", "model": model_name, "active": engine.active, "waiting": engine.waiting,
                "max_batch": engine.max_batch}

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [state.model_card(name) for name in state.model_names()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> dict:
        if name not in state.model_names():
            raise _unknown_model(name)
        return state.model_card(name)

    # vLLM's tokenizer routes: lm-evaluation-harness's local-completions uses them when the model
    # is given without a tokenizer directory (tokenizer_backend "remote", or "auto" which finds them)
    @app.get("/tokenizer_info")
    async def tokenizer_info() -> dict:
        ids = {role: getattr(tokenizer, f"{role}_id", None) for role in ("bos", "eos", "pad")}
        names = {role: None if i is None else token_text(tokenizer, i) for role, i in ids.items()}
        return {"tokenizer_class": type(tokenizer).__name__, "model_max_length": engine.max_context,
                "bos_token": names["bos"], "eos_token": names["eos"], "pad_token": names["pad"],
                "chat_template": chat_template or None}

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> dict:
        if body.model is not None:
            state.check_model(body.model)
        ids = state.encode(body.prompt, add_special=body.add_special_tokens)
        return {"tokens": ids, "count": len(ids), "max_model_len": engine.max_context}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest) -> dict:
        if body.model is not None:
            state.check_model(body.model)
        V = engine.model.cfg.vocab_size
        bad = [i for i in body.tokens if not 0 <= i < V]
        if bad:
            raise APIError(400, f"Token id {bad[0]} is outside the vocabulary (0 to {V - 1}).", param="tokens",
                           code="invalid_value")
        try:
            return {"prompt": tokenizer.decode(body.tokens)}
        except ValueError as exc:  # an id the tokenizer does not know (a vocabulary padded past it)
            raise APIError(400, f"Could not decode the tokens: {exc}", param="tokens", code="invalid_value") from None

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        """One choice per prompt (a string, a list of strings, token ids or a list of token-id
        lists) and per sample (n), in that order. echo with logprobs scores the prompt itself: each
        prompt token's log-probability given the ones before it (the first one null), as
        lm-evaluation-harness's log-likelihood tasks ask (max_tokens 0: nothing generated)."""
        state.check_model(body.model)
        scoring = body.echo and body.logprobs is not None
        if body.max_tokens == 0 and not scoring:
            raise APIError(400, "max_tokens=0 generates nothing: it is for scoring a prompt, with echo=true and "
                           "logprobs set.", param="max_tokens", code="invalid_value")
        prompts = _prompt_list(body.prompt)
        gens, echoes = [], []
        for text, ids in prompts:
            ids = state.encode(text, add_special=True) if ids is None else ids
            for j in range(body.n):  # n samples: seed, seed + 1, ... when a seed is given
                seed = None if body.seed is None else body.seed + j
                gens.append(state.request(body, ids, body.max_tokens, body.logprobs, seed=seed,
                                          prompt_logprobs=body.logprobs if scoring else None))  # checks the ids too
                if body.echo:
                    echoes.append(text if text is not None else tokenizer.decode(list(gens[-1].prompt_ids)))
                else:
                    echoes.append("")
        submitted = []
        try:
            for gen in gens:
                submitted.append(state.submit(gen))
        except APIError:
            for handle, _ in submitted:  # a full queue refuses the whole request, not part of it
                handle.cancel()
            raise
        meta = _Meta(f"cmpl-{uuid.uuid4().hex}", int(time.time()), model_name)
        if body.stream:  # every choice's tokens as they come, each chunk naming its choice's index
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            merged = _merge([_events(request, h, q) for h, q in submitted])
            chunks = _stream_completion(state, merged, meta, body.logprobs, include_usage,
                                        [gen.prompt_ids for gen in gens], echoes, body.n)
            return StreamingResponse(_cancel_on_close(chunks, *[h for h, _ in submitted]),
                                     media_type="text/event-stream")
        results = await asyncio.gather(*(_gather(_events(request, h, q)) for h, q in submitted))
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for i, (gen, echo, (scored, tokens, text, done)) in enumerate(zip(gens, echoes, results)):
            logprobs = None
            if body.logprobs is not None:
                logprobs = _prompt_logprobs(state, gen.prompt_ids, scored) if scored is not None else _empty_logprobs()
                _extend(logprobs, _completion_logprobs(state, tokens, len(echo)))
            choices.append({"text": echo + text, "index": i, "logprobs": logprobs, "finish_reason": done.finish_reason})
            prompt_tokens += done.prompt_tokens if i % body.n == 0 else 0  # each prompt counted once
            completion_tokens += done.completion_tokens
        return {"id": meta.id, "object": "text_completion", "created": meta.created, "model": model_name,
                "choices": choices, "usage": _usage(prompt_tokens, completion_tokens)}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        state.check_model(body.model)
        messages = [{"role": m.role, "content": _content_text(m.content), **({"name": m.name} if m.name else {})}
                    for m in body.messages]
        if not chat_template:
            raise APIError(400, f"The model '{model_name}' has no chat template, so messages cannot be turned into "
                           "its prompt. Use POST /v1/completions with the text to continue, or restart the server "
                           "with --chat-template chatml (or a Jinja template file).", param="messages",
                           code="no_chat_template")
        try:
            prompt = render_chat(messages, template=chat_template, tokenizer=tokenizer, add_generation_prompt=True)
        except ValueError as exc:
            raise APIError(400, f"Could not build the prompt from messages: {exc}", param="messages") from None
        ids = state.encode(prompt, add_special=False)  # the template already wrote its special tokens
        top = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs=true.", param="top_logprobs", code="invalid_value")
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        gen = state.request(body, ids, max_tokens, top)
        handle, events = state.submit(gen)
        meta = _Meta(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model_name)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            chunks = _stream_chat(state, _events(request, handle, events), meta, top is not None, include_usage)
            return StreamingResponse(_cancel_on_close(chunks, handle), media_type="text/event-stream")
        _, tokens, text, done = await _gather(_events(request, handle, events))
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": {"content": [state.chat_logprob(t) for t in tokens]} if top is not None else None,
                  "finish_reason": done.finish_reason}
        return {"id": meta.id, "object": "chat.completion", "created": meta.created, "model": model_name,
                "choices": [choice], "usage": _usage(done.prompt_tokens, done.completion_tokens)}

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        if state.embedder is None:
            raise APIError(404, "This server has no embedding model (start it with --embed-model).",
                           param="model", code="model_not_found")
        if body.model != embed_model_name:
            raise _unknown_model(body.model)
        texts = [body.input] if isinstance(body.input, str) else body.input
        embedder = await asyncio.to_thread(state.load_embedder)
        if body.dimensions is not None and body.dimensions != embedder.dim:
            raise APIError(400, f"dimensions={body.dimensions} is not supported: {embed_model_name} gives "
                           f"{embedder.dim}-dimensional vectors.", param="dimensions", code="invalid_value")
        vectors, n_tokens = await asyncio.to_thread(state.embed, texts)
        data = [{"object": "embedding", "index": i,
                 "embedding": _b64(v) if body.encoding_format == "base64" else v} for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": embed_model_name,
                "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}

    return app


def _unknown_model(name: str) -> APIError:
    return APIError(404, f"The model '{name}' does not exist on this server; GET /v1/models lists the models.",
                    param="model", code="model_not_found")


class _State:
    """What the routes share: the engine, the tokenizer, the names, the limits."""

    def __init__(self, engine: Engine, tokenizer, model_name: str, embedder, embed_model_name: str | None,
                 max_tokens_cap: int, max_waiting: int, timeout_s: float | None,
                 sampling_defaults: SamplingParams) -> None:
        self.engine, self.tokenizer, self.model_name = engine, tokenizer, model_name
        self.sampling_defaults = sampling_defaults
        self.embedder, self.embed_model_name = embedder, embed_model_name
        self.max_tokens_cap, self.max_waiting, self.timeout_s = max_tokens_cap, max_waiting, timeout_s
        self.created = int(time.time())
        self._embed_lock = threading.Lock()
        cfg = engine.model.cfg
        eos = getattr(tokenizer, "eos_id", None)
        eos = cfg.eos_token_id if eos is None else eos
        self.stop_ids = frozenset() if eos is None else frozenset({int(eos)})
        self._token_text: dict[int, str] = {}

    def model_names(self) -> list[str]:
        return [self.model_name] + ([self.embed_model_name] if self.embedder is not None else [])

    def model_card(self, name: str) -> dict:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "lucidlm"}

    def check_model(self, name: str) -> None:
        if name == self.embed_model_name and self.embedder is not None:
            raise APIError(400, f"'{name}' is an embedding model; use POST /v1/embeddings, or model "
                           f"'{self.model_name}' here.", param="model", code="invalid_value")
        if name != self.model_name:
            raise _unknown_model(name)

    def encode(self, text: str, *, add_special: bool) -> list[int]:
        try:
            return encode_prompt(self.tokenizer, text, add_special=add_special)
        except ValueError as exc:
            raise APIError(400, f"Could not tokenize the prompt: {exc}", param="prompt") from None

    def request(self, body, ids: list[int], max_tokens: int | None, logprobs: int | None, *,
                seed: int | None = None, prompt_logprobs: int | None = None) -> GenerationRequest:
        """Check the limits and build the engine's request (OpenAI's messages and codes); ``seed``
        replaces the body's (one per sample when n > 1)."""
        context = self.engine.max_context
        V = self.engine.model.cfg.vocab_size
        if not ids:
            bos = getattr(self.tokenizer, "bos_id", None)
            if bos is None:
                raise APIError(400, "The prompt is empty; give at least one token.", param="prompt",
                               code="invalid_value")
            ids = [bos]
        if any(not 0 <= i < V for i in ids):
            raise APIError(400, f"Prompt token ids must be in 0..{V - 1}.", param="prompt", code="invalid_value")
        if max_tokens is None:  # as much as the context and the cap allow
            max_tokens = max(1, min(self.max_tokens_cap, context - len(ids)))
        if max_tokens > self.max_tokens_cap:
            raise APIError(400, f"max_tokens={max_tokens} is above this server's limit of {self.max_tokens_cap}.",
                           param="max_tokens", code="invalid_value")
        if len(ids) + max_tokens > context:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                           f"{len(ids) + max_tokens} tokens ({len(ids)} in the prompt, {max_tokens} for the "
                           "completion). Please reduce the prompt or max_tokens.", param="max_tokens",
                           code="context_length_exceeded")
        stop = () if body.stop is None else (body.stop,) if isinstance(body.stop, str) else tuple(body.stop)
        if any(not s for s in stop):
            raise APIError(400, "Stop strings must not be empty.", param="stop", code="invalid_value")
        # every SamplingParams field is a request field; one the request leaves out (None) keeps the default
        given = {f.name: getattr(body, f.name) for f in fields(SamplingParams)}
        given["logit_bias"] = self._logit_bias(body.logit_bias)
        if seed is not None:
            given["seed"] = seed
        try:
            params = replace(self.sampling_defaults, **{k: v for k, v in given.items() if v is not None})
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_value") from None
        stop_ids = frozenset() if body.ignore_eos else self.stop_ids
        return GenerationRequest(tuple(ids), max_tokens, params, stop=stop, stop_ids=stop_ids,
                                 logprobs=logprobs, timeout_s=self.timeout_s, prompt_logprobs=prompt_logprobs)

    def _logit_bias(self, bias: dict[str, float] | None) -> dict[int, float] | None:
        """OpenAI's {"token id": bias} as {id: bias}, each id checked against the vocabulary."""
        if bias is None:
            return None
        V = self.engine.model.cfg.vocab_size
        out = {}
        for key, value in bias.items():
            if not key.isdigit() or int(key) >= V:
                raise APIError(400, f"logit_bias key {key!r} is not a token id of this model (0 to {V - 1}).",
                               param="logit_bias", code="invalid_value")
            if not -100 <= value <= 100:
                raise APIError(400, f"logit_bias value {value} for token {key} is outside -100 to 100.",
                               param="logit_bias", code="invalid_value")
            out[int(key)] = value
        return out

    def submit(self, gen: GenerationRequest) -> tuple[Handle, asyncio.Queue]:
        """Queue a request; its events arrive on an asyncio queue of the calling event loop."""
        if self.engine.waiting >= self.max_waiting:
            raise APIError(503, "The server is overloaded with requests; retry shortly.", type="server_error",
                           code="overloaded")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def sink(event: Event) -> None:  # called on the engine thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop has closed (shutdown): nobody is listening
                pass

        return self.engine.submit(gen, sink), events

    def token_text(self, token_id: int) -> str:
        if token_id not in self._token_text:
            self._token_text[token_id] = self.tokenizer.decode([token_id])
        return self._token_text[token_id]

    def token_bytes(self, token_id: int) -> list[int]:
        if hasattr(self.tokenizer, "token_bytes"):
            return list(self.tokenizer.token_bytes(token_id))
        return list(self.token_text(token_id).encode("utf-8"))

    def chat_logprob(self, event: TokenEvent) -> dict:
        top = [{"token": self.token_text(i), "logprob": lp, "bytes": self.token_bytes(i)}
               for i, lp in event.top_logprobs or ()]
        return {"token": self.token_text(event.token_id), "logprob": event.logprob,
                "bytes": self.token_bytes(event.token_id), "top_logprobs": top}

    def load_embedder(self):
        with self._embed_lock:  # load once, even when the first requests come together
            if callable(self.embedder) and not hasattr(self.embedder, "encode"):
                self.embedder = self.embedder()
            return self.embedder

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        embedder = self.load_embedder()
        n_tokens = sum(len(r) for r in embedder.tokenize(texts, embedder.max_length, truncate=True))
        return embedder.encode(texts).tolist(), n_tokens


class _Meta:
    def __init__(self, id: str, created: int, model: str) -> None:
        self.id, self.created, self.model = id, created, model


def _content_text(content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.text for part in content)


def _b64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _prompt_list(prompt) -> list[tuple[str | None, list[int] | None]]:
    """The request's prompts as (text, None) or (None, ids): a string, a list of strings, a list
    of token ids (one prompt) or a list of token-id lists."""
    if isinstance(prompt, str):
        return [(prompt, None)]
    if prompt and all(isinstance(x, int) for x in prompt):
        return [(None, list(prompt))]
    return [(x, None) if isinstance(x, str) else (None, list(x)) for x in prompt]


def _empty_logprobs() -> dict:
    return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}


def _extend(into: dict, more: dict) -> None:
    for key in into:
        into[key].extend(more[key])


def _prompt_logprobs(state: _State, ids, event: PromptEvent) -> dict:
    """The prompt's tokens in the legacy shape: their log-probabilities (the first null: nothing
    predicts it), the top alternatives at each ({token: logprob}, null for the first), offsets."""
    out, offset = _empty_logprobs(), 0
    for token_id, lp, top in zip(ids, event.token_logprobs, event.top_logprobs):
        out["tokens"].append(state.token_text(token_id))
        out["token_logprobs"].append(lp)
        out["top_logprobs"].append(None if top is None else {state.token_text(i): v for i, v in top})
        out["text_offset"].append(offset)
        offset += len(out["tokens"][-1])
    return out


def _completion_logprobs(state: _State, tokens: list[TokenEvent], offset: int) -> dict:
    """The legacy completions shape: parallel lists, top alternatives as {token: logprob}."""
    out = _empty_logprobs()
    for t in tokens:
        out["tokens"].append(state.token_text(t.token_id))
        out["token_logprobs"].append(t.logprob)
        out["top_logprobs"].append({state.token_text(i): lp for i, lp in t.top_logprobs or ()})
        out["text_offset"].append(offset)
        offset += len(out["tokens"][-1])
    return out


# -- events -> responses ------------------------------------------------------------------------


async def _events(request: Request, handle: Handle, events: asyncio.Queue) -> AsyncIterator[Event]:
    """The request's events until it ends; a client that goes away cancels it (frees its row)."""
    try:
        while True:
            try:
                event = await asyncio.wait_for(events.get(), timeout=1.0)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            yield event
            if not isinstance(event, (TokenEvent, PromptEvent)):
                return
    finally:
        handle.cancel()


def _error_of(event: ErrorEvent) -> APIError:
    if event.kind == "timeout":
        return APIError(504, event.message, type="timeout", code="timeout")
    return APIError(500, event.message, type="server_error", code="server_error")


async def _gather(events: AsyncIterator[Event]) -> tuple[PromptEvent | None, list[TokenEvent], str, DoneEvent]:
    scored, tokens, text = None, [], []
    async for event in events:
        if isinstance(event, PromptEvent):
            scored = event
        elif isinstance(event, TokenEvent):
            tokens.append(event)
            text.append(event.text)
        elif isinstance(event, DoneEvent):
            text.append(event.text)
            return scored, tokens, "".join(text), event
        else:
            raise _error_of(event)
    raise APIError(499, "client closed the request", code="client_closed")  # only reached on disconnect


async def _merge(streams: list[AsyncIterator[Event]]) -> AsyncIterator[tuple[int, Event]]:
    """The events of several requests as they arrive, each as (its index in ``streams``, event)."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                await queue.put((i, event))
        finally:
            await queue.put((i, None))  # this stream has ended

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            i, event = await queue.get()
            if event is None:
                running -= 1
            else:
                yield i, event
    finally:
        for task in tasks:
            task.cancel()


async def _cancel_on_close(chunks: AsyncIterator[str], *handles: Handle) -> AsyncIterator[str]:
    """Pass the chunks on; when the response stops early (the client went away: the server cancels
    or fails the send), cancel the request at once rather than when the generators are collected."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        for handle in handles:
            handle.cancel()


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _stream_completion(state: _State, events: AsyncIterator[tuple[int, Event]], meta: _Meta,
                             logprobs: int | None, include_usage: bool, prompt_ids: list, echoes: list[str],
                             n: int) -> AsyncIterator[str]:
    """Server-sent chunks of one or more choices (prompts x n samples), as their events arrive;
    then the usage (each prompt counted once) and [DONE] once every choice has finished."""
    def chunk(index: int, text: str, lp, finish: str | None) -> str:
        choice = {"text": text, "index": index, "logprobs": lp, "finish_reason": finish}
        return _sse({"id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
                     "choices": [choice]})

    offsets = [len(echo) for echo in echoes]
    for i, echo in enumerate(echoes):
        if echo and logprobs is None:
            yield chunk(i, echo, None, None)
    left, prompt_tokens, completion_tokens = len(echoes), 0, 0
    async for i, event in events:
        if isinstance(event, PromptEvent):  # echo with logprobs: the prompt and its scores come first
            yield chunk(i, echoes[i], _prompt_logprobs(state, prompt_ids[i], event), None)
        elif isinstance(event, TokenEvent):
            if event.text or logprobs is not None:
                lp = _completion_logprobs(state, [event], offsets[i]) if logprobs is not None else None
                offsets[i] += len(state.token_text(event.token_id))
                yield chunk(i, event.text, lp, None)
        elif isinstance(event, DoneEvent):
            yield chunk(i, event.text, None, event.finish_reason)
            prompt_tokens += event.prompt_tokens if i % n == 0 else 0
            completion_tokens += event.completion_tokens
            left -= 1
            if left == 0:
                if include_usage:
                    yield _sse({"id": meta.id, "object": "text_completion", "created": meta.created,
                                "model": meta.model, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)})
                yield "data: [DONE]\n\n"
                return
        else:
            yield _sse(_error_of(event).body())
            return


async def _stream_chat(state: _State, events: AsyncIterator[Event], meta: _Meta, logprobs: bool,
                       include_usage: bool) -> AsyncIterator[str]:
    def chunk(delta: dict, lp, finish: str | None, **extra) -> str:
        choices = [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]
        return _sse({"id": meta.id, "object": "chat.completion.chunk", "created": meta.created,
                     "model": meta.model, "choices": choices, **extra})

    yield chunk({"role": "assistant", "content": ""}, None, None)
    async for event in events:
        if isinstance(event, TokenEvent):
            if event.text or logprobs:
                lp = {"content": [state.chat_logprob(event)]} if logprobs else None
                yield chunk({"content": event.text}, lp, None)
        elif isinstance(event, DoneEvent):
            yield chunk({"content": event.text} if event.text else {}, None, event.finish_reason)
            if include_usage:
                yield _sse({"id": meta.id, "object": "chat.completion.chunk", "created": meta.created,
                            "model": meta.model, "choices": [],
                            "usage": _usage(event.prompt_tokens, event.completion_tokens)})
            yield "data: [DONE]\n\n"
        else:
            yield _sse(_error_of(event).body())
