"""The Explorer's web app: the page (``static/``) and the JSON API it draws from.

    GET  /                          the page (plain ES modules, nothing fetched from elsewhere)
    GET  /api/info                  models, tokenizers, runs, corpus and limits this explorer was given
    POST /api/tokens                {tokenizer | tokenizers, text, chat?} -> the tokens: ids, spans, bytes
    GET  /api/merges                ?tokenizer=&id=                  -> the BPE merges that build one token
    POST /api/trace                 {model, text, chat?, edits?}     -> a trace's tokens and shape (+ next token)
    POST /api/compare               {a, b}                           -> two traces: attention per head, KL, answer depth
    GET  /api/attention/grid        ?trace=                          -> every layer x head as a thumbnail
    GET  /api/attention/head        ?trace=&layer=&head=             -> one head's full weights
    GET  /api/lens                  ?trace=&last=                    -> the logit lens, after attn and MLP
    GET  /api/walkthrough           ?trace=&layer=&head=             -> every stage of one layer
    POST /api/step                  {model, ids}                     -> next-token logits after ids
    POST /api/intervene             {trace, edits, source?, target?} -> next token with heads/MLPs zeroed, scaled, patched
    POST /api/ablation-scan         {trace, target?}                 -> each head zeroed in turn: the target's probability
    GET  /api/python                ?panel=&(the page's URL keys)    -> the lucidlm code that computes the view
    GET  /api/export                ?trace=&format=npz|json          -> a trace's tensors, to download
    GET  /api/source                ?file=                           -> one of lucidlm's own source files
    POST /api/embeddings            {sentences}                      -> cosine matrix, PCA map, neighbours
    POST /api/molecules             {model, n, temperature, ...}     -> SMILES sampled, token probabilities, drawings
    GET  /api/seq2seq/examples      ?model=                          -> a seq2seq model's task and held-out examples
    POST /api/seq2seq               {model, text, beam}              -> its answer and every block's cross-attention
    GET  /api/runs                                                   -> the training runs found
    GET  /api/runs/metrics          ?run=&since=                     -> a run's metrics records
    GET  /api/runs/checkpoints      ?run=                            -> the steps a run kept (trace one as RUN@STEP)
    POST /api/runs/sample           {run, step, text}                -> the prompt continued by that step's model

Tensors travel as ``{"dtype", "shape", "b64"}`` (``forward.tensor_json``). Errors are
``{"error": {"message"}}``: 400 for a bad request (an empty or over-long prompt), 404 for a name
this explorer was not given, 413 for a body over the limit. The routes are plain ``def``s:
FastAPI runs them on its thread pool, and the workspace's lock lets one compute at a time.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lucidlm.explorer import forward, tokens
from lucidlm.explorer.embedding_map import sentence_map
from lucidlm.explorer.molecules import MAX_MOLECULES, check_molecule_model, generate_molecules
from lucidlm.explorer.python_code import python_for
from lucidlm.explorer.seq2seq import MAX_SOURCE_CHARS, alignment_json, examples
from lucidlm.explorer.sources import read_source
from lucidlm.explorer.workspace import Workspace
from lucidlm.generate.decode import generate
from lucidlm.generate.sampling import SamplingParams
from lucidlm.inspection.interventions import Edit
from lucidlm.inspection.walkthrough import model_kind, token_labels
from lucidlm.serve.errors import BodySizeLimit

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1 << 20


class TokensRequest(BaseModel):
    tokenizer: str | None = None  # one tokenizer: its answer
    tokenizers: list[str] | None = Field(None, max_length=32)  # several: {"results": [answer or error, ...]}
    text: str
    chat: bool = False  # the text as one user message, through the chat template (as the server does)


class EditRequest(BaseModel):
    kind: str  # zero | scale | patch
    site: str  # head | attn | mlp | resid
    layer: int
    head: int | None = None
    position: int | None = None
    factor: float = 0.0


class TraceRequest(BaseModel):
    model: str
    text: str
    chat: bool = False
    edits: list[EditRequest] = Field(default_factory=list, max_length=16)  # trace the edited model (no patch)


class StepRequest(BaseModel):
    model: str
    ids: list[int] = Field(max_length=8192)


class InterveneRequest(BaseModel):
    trace: str  # the prompt's trace (its model and ids)
    edits: list[EditRequest] = Field(min_length=1, max_length=16)
    source: str | None = Field(None, max_length=20_000)  # a patch's source prompt, as text
    chat: bool = False  # the source through the chat template, as the traced prompt was
    target: int | None = None  # a token whose probability to follow (default: the model's top one)


class CompareRequest(BaseModel):
    a: str  # two traces (POST /api/trace answers' "trace")
    b: str


class ScanRequest(BaseModel):
    trace: str
    target: int | None = None


class SampleRequest(BaseModel):
    run: str
    step: int
    text: str = Field(max_length=2000)
    max_tokens: int = Field(60, ge=1, le=400)
    temperature: float = Field(0.8, ge=0, le=2)
    seed: int = 0


class Seq2SeqRequest(BaseModel):
    model: str
    text: str = Field(max_length=MAX_SOURCE_CHARS)
    beam: int = Field(1, ge=1, le=8)


class MoleculesRequest(BaseModel):
    model: str
    n: int = Field(12, ge=1, le=MAX_MOLECULES)
    temperature: float = Field(1.0, ge=0, le=2)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = 0


class EmbeddingsRequest(BaseModel):
    sentences: list[str] = Field(max_length=256)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


def create_app(workspace: Workspace) -> FastAPI:
    """The Explorer over ``workspace`` (run it with uvicorn; ``lucidlm explore`` does)."""
    ws = workspace
    app = FastAPI(title="lucidlm explorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.state.workspace = ws

    @app.exception_handler(ValueError)
    async def _bad_request(request: Request, exc: ValueError):
        return _error(400, str(exc))

    @app.exception_handler(LookupError)
    async def _unknown(request: Request, exc: LookupError):
        return _error(404, str(exc.args[0]) if exc.args else "not found")

    @app.exception_handler(FileNotFoundError)
    async def _missing(request: Request, exc: FileNotFoundError):
        return _error(404, str(exc))

    @app.exception_handler(ImportError)
    async def _missing_extra(request: Request, exc: ImportError):
        return _error(501, str(exc))  # an optional dependency (RDKit) not installed: the message names the extra

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"invalid request: {where}: {first.get('msg', 'bad value')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info() -> dict:
        return {"models": ws.models_info(), "tokenizers": ws.tokenizer_names(), "runs": ws.runs_info(),
                "corpus": ws.corpus_path.name if ws.corpus_path else None, "embed_model": ws.embed_model,
                "limits": {"max_chars": ws.max_chars, "max_tokens": ws.max_tokens}}

    def tokenize(name: str, body: TokensRequest) -> dict:
        tok = ws.tokenizer(name)
        text = body.text
        if body.chat:
            text = tokens.chat_prompt(tok, [{"role": "user", "content": body.text}], None)
        spans = tokens.token_spans(tok, text, add_special=not body.chat, blocks=ws.blocks(name))
        return {"tokenizer": name, "text": text, "count": len(spans["ids"]), "chars": len(text),
                "bytes": len(text.encode("utf-8", "surrogatepass")), "bpe": hasattr(tok, "merge_priority"), **spans}

    @app.post("/api/tokens")
    def token_spans(body: TokensRequest):
        if len(body.text) > ws.max_chars:
            raise ValueError(f"the text has {len(body.text):,} characters; the tokens panel takes at most "
                             f"{ws.max_chars:,}")
        if (body.tokenizer is None) == (body.tokenizers is None):
            raise ValueError("name one tokenizer (tokenizer) or several (tokenizers)")
        if body.tokenizer is not None:
            return JSONResponse(tokenize(body.tokenizer, body))  # JSONResponse: no re-encoding of the columns
        results = []
        for name in body.tokenizers:  # one tokenizer's mistake (no chat template) leaves the others' answers
            try:
                results.append(tokenize(name, body))
            except (ValueError, LookupError) as exc:
                results.append({"tokenizer": name, "error": {"message": str(exc.args[0]) if exc.args else str(exc)}})
        return JSONResponse({"results": results})

    @app.get("/api/merges")
    def merges(tokenizer: str, id: int) -> dict:
        return tokens.merge_steps(ws.tokenizer(tokenizer), id)

    @app.post("/api/trace")
    def trace(body: TraceRequest) -> dict:
        ids = ws.prompt_ids(body.model, body.text, chat=body.chat)
        edits = [Edit(**e.model_dump()) for e in body.edits]
        if any(e.kind == "patch" for e in edits):
            raise ValueError("a traced edit may zero or scale; a patch needs a second prompt: use /api/intervene")
        rec = ws.trace(body.model, ids, edits)
        model, tokenizer = ws.model(body.model)
        out = rec.meta(model)
        if rec.last_logits is not None:
            out["next"] = forward.next_token(rec.last_logits, tokenizer)
        return out

    @app.get("/api/attention/grid")
    def attention_grid(trace: str) -> dict:
        return forward.attention_grid(ws.cached_trace(trace))

    @app.get("/api/attention/head")
    def attention_head(trace: str, layer: int, head: int) -> dict:
        return forward.attention_head(ws.cached_trace(trace), layer, head)

    @app.get("/api/lens")
    def lens(trace: str, last: int = 16) -> dict:
        rec = ws.cached_trace(trace)
        model, tokenizer = ws.model(rec.model)
        with ws.lock:
            return forward.logit_lens(model, tokenizer, rec, last)

    @app.get("/api/walkthrough")
    def walkthrough(trace: str, layer: int = 0, head: int = 0) -> dict:
        rec = ws.cached_trace(trace)
        model, tokenizer = ws.model(rec.model)
        with ws.lock:
            return forward.walkthrough(model, tokenizer, rec.ids, layer, head)

    @app.post("/api/step")
    def step(body: StepRequest) -> dict:
        model, tokenizer = ws.model(body.model)
        if not body.ids:
            raise ValueError("no ids: give the prompt's token ids")
        limit = min(ws.max_tokens, model.cfg.max_seq_len)
        if len(body.ids) > limit:
            raise ValueError(f"{len(body.ids)} tokens; the model's context here is {limit}: start a shorter branch")
        if any(not 0 <= i < model.cfg.vocab_size for i in body.ids):
            raise ValueError(f"token ids must be in 0..{model.cfg.vocab_size - 1}")
        if model_kind(model) != "decoder":
            raise ValueError(f"{body.model} is an encoder: it predicts no next token, so it cannot generate")
        with ws.lock:
            logits = forward.step_logits(model, body.ids)
        out = forward.next_token(logits, tokenizer)
        # the ids sent are labelled too, so a token sampled from outside the top 100 gets its text
        unique = list(dict.fromkeys(body.ids))
        out["labels"].update({str(i): s for i, s in zip(unique, token_labels(tokenizer, unique))})
        return out

    @app.post("/api/intervene")
    def intervene(body: InterveneRequest) -> dict:
        rec = ws.cached_trace(body.trace)
        model, tokenizer = ws.model(rec.model)
        edits = [Edit(**e.model_dump()) for e in body.edits]
        source = ws.prompt_ids(rec.model, body.source, chat=body.chat) if body.source is not None else None
        with ws.lock:
            return forward.intervene(model, tokenizer, rec, edits, source, body.target)

    @app.post("/api/compare")
    def compare(body: CompareRequest) -> dict:
        rec_a, rec_b = ws.cached_trace(body.a), ws.cached_trace(body.b)
        (model_a, tok_a), (model_b, tok_b) = ws.model(rec_a.model), ws.model(rec_b.model)
        with ws.lock:
            return forward.compare(model_a, tok_a, rec_a, model_b, tok_b, rec_b)

    @app.post("/api/ablation-scan")
    def scan(body: ScanRequest) -> dict:
        rec = ws.cached_trace(body.trace)
        model, tokenizer = ws.model(rec.model)
        with ws.lock:
            return forward.head_scan(model, tokenizer, rec, body.target)

    @app.get("/api/export")
    def export(trace: str, format: str = "npz"):
        """A trace's tensors to download: .npz (numpy.load reads it without pickle) or .json."""
        rec = ws.cached_trace(trace)
        arrays = forward.export_arrays(rec)
        name = f"lucidlm-trace-{rec.id}"
        if format == "npz":
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            return Response(buf.getvalue(), media_type="application/octet-stream",
                            headers={"Content-Disposition": f'attachment; filename="{name}.npz"'})
        if format == "json":
            body = {"model": rec.model, "labels": rec.labels, **{k: v.tolist() for k, v in arrays.items()}}
            return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})
        raise ValueError(f"format {format!r}: choose npz or json")

    @app.get("/api/python")
    def python(request: Request) -> dict:
        """The lines of lucidlm code that compute what a panel shows ("copy as Python"): the query
        is the page's own URL state (panel=attention&model=...&text=...&layer=...&head=...)."""
        params = dict(request.query_params)
        panel = params.pop("panel", "tokens")
        for key in ("model", "amodel", "bmodel"):
            if key in params:
                ws.check_model(params[key])  # only what this explorer was given (nothing is loaded)
        params.pop("run_dir", None)  # set here, from the run's name, never from the page
        if panel == "runs" and params.get("run"):
            params["run_dir"] = str(ws.run_dir(params["run"]).resolve())
            if "lstep" in params:
                params["model"] = f"{params['run']}@{params['lstep']}"  # the kept model Watch it learn shows
                ws.check_model(params["model"])
        return {"panel": panel, "code": python_for(panel, params, ws.load_source)}

    @app.get("/api/source")
    def source(file: str) -> dict:
        return read_source(file)

    @app.post("/api/embeddings")
    def embeddings(body: EmbeddingsRequest) -> dict:
        with ws.lock:
            return sentence_map(ws.embedder(), body.sentences, ws.corpus())

    @app.post("/api/molecules")
    def molecules(body: MoleculesRequest) -> dict:
        """Molecules from a SMILES GPT: each from <bos> to <eos>, with the model's probability of
        every token it wrote, whether RDKit reads it, and its drawing (SVG text)."""
        model, tokenizer = ws.model(body.model)
        check_molecule_model(model, tokenizer, body.model)
        params = SamplingParams(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p, seed=body.seed)
        with ws.lock:
            return {"model": body.model, **generate_molecules(model, tokenizer, body.n, params)}

    @app.get("/api/seq2seq/examples")
    def seq2seq_examples(model: str) -> dict:
        """The task a seq2seq model was trained on, and the first examples of its held-out test set."""
        _, task, vocab = ws.seq2seq(model)
        return {"model": model, "task": task.name, "note": task.note, "chars": "".join(vocab.chars),
                "examples": examples(task)}

    @app.post("/api/seq2seq")
    def seq2seq(body: Seq2SeqRequest) -> dict:
        """A seq2seq model's answer to a source text (greedy or beam search) and the cross-attention
        of every decoder block while it wrote it: (L, nh, T, S), each row summing to 1."""
        model, task, vocab = ws.seq2seq(body.model)
        with ws.lock:
            return {"model": body.model, **alignment_json(model, task, vocab, body.text, beam=body.beam)}

    @app.get("/api/runs")
    def runs() -> dict:
        return {"runs": ws.runs_info()}

    @app.get("/api/runs/checkpoints")
    def run_checkpoints(run: str) -> dict:
        return {"run": run, "steps": ws.run_checkpoints(run)}

    @app.post("/api/runs/sample")
    def run_sample(body: SampleRequest) -> dict:
        """The same prompt continued by the model a run kept at ``step`` (fixed seed: the
        differences between steps are the model's, not the dice's)."""
        name = f"{body.run}@{body.step}"
        ids = ws.prompt_ids(name, body.text)
        model, tokenizer = ws.model(name)
        room = model.cfg.max_seq_len - len(ids)  # a small model's context: the sample stops where it ends
        if room < 1:
            raise ValueError(f"the prompt fills the model's context ({model.cfg.max_seq_len} tokens): shorten it")
        with ws.lock:
            out = generate(model, tokenizer, ids, max_tokens=min(body.max_tokens, room),
                           params=SamplingParams(temperature=body.temperature, seed=body.seed), truncate=True)
        return {"model": name, "step": body.step, "text": out.text, "finish_reason": out.finish_reason}

    @app.get("/api/runs/metrics")
    def run_metrics(run: str, since: int = 0) -> dict:
        return ws.run_metrics(run, since)

    return app
