"""What one Explorer may touch: the models, tokenizers, training runs and corpus it was given.

The web API chooses only among these, by name: a model named on the command line (or a model
asset), a registered tokenizer or one named on the command line, a run directory found under the
``--runs`` folders, the ``--corpus`` file. Nothing a request sends is ever opened as a path.

Models load on first use (SmolLM2 takes a second or two), one at a time under a lock, and stay
loaded. Traces of recent prompts are kept in a small cache (a 512-token SmolLM2 trace holds
~140 MB of attention weights), so the panels' many small requests never rerun the model.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

from lucidlm.embeddings.search import embed_corpus
from lucidlm.embeddings.sentence import load_embedder
from lucidlm.explorer.forward import TraceRecord, run_trace, trace_id
from lucidlm.explorer.seq2seq import is_seq2seq_checkpoint
from lucidlm.explorer.tokens import BlockEncoder, chat_prompt, prompt_ids
from lucidlm.inspection.walkthrough import model_kind
from lucidlm.loading.checkpoint import has_lora_adapters
from lucidlm.loading.load import check_pretrained, load_model, pretrained_models
from lucidlm.tokenizers import NAMED_TOKENIZERS, SmilesTokenizer, load_tokenizer
from lucidlm.tokenizers.filenames import LUCIDLM_TOKENIZER_FILE
from lucidlm.tokenizers.simple import SMILES_FORMAT
from lucidlm.train.metrics import METRICS_FILE, read_metrics
from lucidlm.train.seq2seq import load_seq2seq
from lucidlm.train.state import kept_steps

DEFAULT_MODELS = ["smollm2-135m-instruct", "all-minilm-l6-v2"]
DEMO_MODEL = Path("runs/demo/gpt/best")  # what `make demo` trains
DEMO_TOKENIZER = Path("runs/demo/shakespeare-bpe.json")  # the BPE `make demo` trains (lucidlm's format)
EXAMPLE_SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
                  "C1=CC=C(C=C1)[N+](=O)[O-]", "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O", "ClC(Cl)Cl", "c1ccncc1Br"]
TRACE_CACHE = 4
# A LoRA fine-tune's checkpoint is served twice: as given (adapters merged: the fine-tuned model)
# and under this suffix (adapters off: the base model it started from), so Compare shows both.
LORA_OFF = " (LoRA off)"


class Workspace:
    """The Explorer's models, tokenizers, runs and corpus, and its cache of traces.

    Args:
        models: model names or paths (``load_model`` opens them); None: SmolLM2-135M-Instruct,
            all-MiniLM-L6-v2, and the demo's GPT when ``runs/demo`` has one.
        tokenizers: extra tokenizer files or registered names, beside the registered ones.
        runs: folders holding training runs (a run: a folder with ``metrics.jsonl``).
        corpus: a text file, one text per line, for the embeddings panel's nearest neighbours.
        max_tokens: the longest prompt a trace takes (attention is T x T per head and layer).
        max_chars: the longest text the tokens panel takes.
    """

    def __init__(self, models: list[str] | None = None, *, tokenizers: list[str] = (), runs: list[str] = (),
                 corpus: str | None = None, embed_model: str = "all-minilm-l6-v2", max_tokens: int = 1024,
                 max_chars: int = 100_000, random_init: bool = False) -> None:
        if models is None:
            models = list(DEFAULT_MODELS) + ([str(DEMO_MODEL)] if DEMO_MODEL.is_dir() else [])
        for m in models:
            check_pretrained(m, random_init=random_init)  # a preset's random weights explain nothing
            if m not in pretrained_models() and not Path(m).expanduser().exists():
                raise ValueError(f"model {m!r} is neither a model asset ({', '.join(pretrained_models())}) nor an "
                                 "existing checkpoint directory, Hugging Face directory or .gguf file")
        if not models:
            raise ValueError("no models: name at least one with --model")
        self.model_names = list(dict.fromkeys(str(m) for m in models))
        # the models given whose tokenizer is a SMILES one (a GPT trained on molecules: the Molecules panel's)
        self._molecule_models = {m for m in self.model_names if _smiles_checkpoint(Path(m).expanduser())}
        # the encoder-decoders `lucidlm seq2seq train` wrote (the Cross-attention panel's; no other panel reads them)
        self._seq2seq_models = {m for m in self.model_names if is_seq2seq_checkpoint(Path(m).expanduser())}
        # "NAME (LoRA off)" -> NAME, for every model given that is a LoRA fine-tune's checkpoint
        self._lora_off = {f"{m}{LORA_OFF}": m for m in self.model_names if has_lora_adapters(Path(m).expanduser())}
        self.embed_model = embed_model
        self.max_tokens, self.max_chars = max_tokens, max_chars
        self.corpus_path = Path(corpus).expanduser() if corpus else None
        if self.corpus_path is not None and not self.corpus_path.is_file():
            raise FileNotFoundError(f"corpus file {self.corpus_path} does not exist")
        self._tokenizer_sources = self._tokenizer_table(list(tokenizers))
        self.run_dirs = self._find_runs([Path(r).expanduser() for r in runs] or [Path("runs")])
        self._models: dict[str, tuple] = {}
        self._seq2seq: dict[str, tuple] = {}
        self._tokenizers: dict[str, object] = {}
        self._blocks: dict[str, BlockEncoder] = {}  # tokenizer name -> its line-block cache (tokens panel)
        self._traces: OrderedDict[str, TraceRecord] = OrderedDict()
        self._corpus = None
        self._embedder = None
        self.lock = threading.RLock()  # one computation at a time: the CPU is the limit anyway

    # -- models --------------------------------------------------------------------------------

    def check_model(self, name: str) -> str | Path:
        """What loads model ``name``: a model given on the command line, ``NAME (LoRA off)`` (the
        base of a LoRA fine-tune given), or ``RUN@STEP``, a model a run under --runs kept at that
        step (keep_every). Anything else is a LookupError."""
        if name in self.model_names:
            return name
        path = self._lora_off.get(name) or self._kept_path(name)
        if path is None:
            raise LookupError(f"unknown model {name!r}; this explorer serves: {', '.join(self.served_models())} "
                              "(start it with --model NAME_OR_PATH to add one), and the steps its runs kept")
        return path

    def load_source(self, name: str) -> tuple[str, str]:
        """(what ``load_model`` opens, its ``lora`` argument) for model ``name``: an asset name as
        it is, a path made absolute (so code copied from the page runs from any folder)."""
        path = self.check_model(name)
        where = str(path) if str(path) in pretrained_models() else str(Path(path).expanduser().resolve())
        return where, "off" if name in self._lora_off else "merge"

    def served_models(self) -> list[str]:
        """The models given, each LoRA fine-tune followed by its base (``NAME (LoRA off)``)."""
        out = []
        for m in self.model_names:
            out += [m] + [off for off, base in self._lora_off.items() if base == m]
        return out

    def model(self, name: str):
        """(model, tokenizer) by name (``check_model``), loaded on first use."""
        path = self.check_model(name)
        if name in self._seq2seq_models:
            raise ValueError(f"{name} is an encoder-decoder trained on a seq2seq task: open it in the "
                             "Cross-attention panel (the other panels read decoders and encoders)")
        with self.lock:
            if name not in self._models:
                model, tokenizer = load_model(path, lora="off" if name in self._lora_off else "merge")
                if tokenizer is None:
                    raise ValueError(f"{name} has no tokenizer beside its weights: the explorer needs one to turn "
                                     "text into ids")
                model.eval()
                model_kind(model)  # decoders and encoders only
                self._models[name] = (model, tokenizer)
            return self._models[name]

    def is_seq2seq(self, name: str) -> bool:
        """Whether model ``name`` is an encoder-decoder ``lucidlm seq2seq train`` wrote."""
        return name in self._seq2seq_models

    def seq2seq(self, name: str) -> tuple:
        """(model, task, vocab) of seq2seq model ``name`` (``lucidlm seq2seq train``'s checkpoint),
        loaded on first use."""
        if name not in self._seq2seq_models:
            known = ", ".join(sorted(self._seq2seq_models)) or "none (start it with --model runs/seq2seq/TASK)"
            raise LookupError(f"unknown seq2seq model {name!r}; this explorer serves: {known}")
        with self.lock:
            if name not in self._seq2seq:
                model, task, vocab, _ = load_seq2seq(Path(name).expanduser())
                self._seq2seq[name] = (model.eval(), task, vocab)
            return self._seq2seq[name]

    def _kept_path(self, name: str) -> Path | None:
        run, _, step = name.rpartition("@")
        if run not in self.run_dirs or not step.isdigit():
            return None
        return dict(kept_steps(self.run_dirs[run])).get(int(step))

    def run_checkpoints(self, name: str) -> list[int]:
        """The steps at which run ``name`` kept its model (keep_every); trace one as ``RUN@STEP``."""
        if name not in self.run_dirs:
            raise LookupError(f"unknown run {name!r}; runs found: {', '.join(self.run_dirs) or 'none'}")
        return [step for step, _ in kept_steps(self.run_dirs[name])]

    def models_info(self) -> list[dict]:
        return [{"name": n, "loaded": n in self._models,
                 **({"kind": model_kind(self._models[n][0])} if n in self._models else {}),
                 **({"lora": "off", "base_of": self._lora_off[n]} if n in self._lora_off else {}),
                 **({"molecules": True} if n in self._molecule_models else {}),
                 **({"seq2seq": True} if n in self._seq2seq_models else {})}
                for n in self.served_models()]

    # -- tokenizers ----------------------------------------------------------------------------

    def _tokenizer_table(self, extra: list[str]) -> dict[str, str]:
        """Tokenizer name -> what loads it (a registered name, a path, or "smiles")."""
        table = {}
        if DEMO_TOKENIZER.is_file():
            table["trained (runs/demo)"] = str(DEMO_TOKENIZER)
        table.update({n: n for n in NAMED_TOKENIZERS})
        table["smiles"] = "smiles"
        for m in self.model_names:
            if m not in NAMED_TOKENIZERS:
                table[f"model: {m}"] = f"model:{m}"
        for t in extra:
            if t not in NAMED_TOKENIZERS and not Path(t).expanduser().is_file():
                raise FileNotFoundError(f"tokenizer {t!r} is neither a registered name ({', '.join(NAMED_TOKENIZERS)})"
                                        " nor an existing file")
            table[t if t in NAMED_TOKENIZERS else Path(t).name] = t
        return table

    def blocks(self, name: str) -> BlockEncoder:
        """The tokenizer's block encoder: a keystroke in a long text re-encodes one line."""
        tok = self.tokenizer(name)
        with self.lock:
            if name not in self._blocks:
                self._blocks[name] = BlockEncoder(tok)
            return self._blocks[name]

    def tokenizer_names(self) -> list[str]:
        return list(self._tokenizer_sources)

    def tokenizer(self, name: str):
        if name not in self._tokenizer_sources:
            raise LookupError(f"unknown tokenizer {name!r}; choose from: {', '.join(self._tokenizer_sources)}")
        with self.lock:
            if name not in self._tokenizers:
                source = self._tokenizer_sources[name]
                if source == "smiles":  # the atom-level regex; a vocabulary of common drug-like SMILES
                    tok = SmilesTokenizer.from_corpus(EXAMPLE_SMILES)
                elif source.startswith("model:"):
                    tok = self.model(source[len("model:"):])[1]
                else:
                    tok = load_tokenizer(source)
                self._tokenizers[name] = tok
            return self._tokenizers[name]

    # -- traces --------------------------------------------------------------------------------

    def prompt_ids(self, model_name: str, text: str, *, chat: bool = False) -> list[int]:
        """The ids a traced prompt gives: the text as the model reads it, or, in chat mode, the text
        as one user message through the model's chat template (as the server builds it)."""
        model, tokenizer = self.model(model_name)
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the prompt is empty: type some text, e.g. \"The capital of France is\"")
        if len(text) > self.max_chars:
            raise ValueError(f"the prompt has {len(text):,} characters; the explorer takes at most {self.max_chars:,}")
        if chat:  # the template writes its own special tokens
            text = chat_prompt(tokenizer, [{"role": "user", "content": text}], None)
        ids = prompt_ids(tokenizer, text, add_special=not chat)  # as the Tokens panel counts them
        limit = min(self.max_tokens, model.cfg.max_seq_len)
        if len(ids) > limit:
            raise ValueError(f"the prompt is {len(ids):,} tokens; a trace takes at most {limit:,} here (the model's "
                             f"context is {model.cfg.max_seq_len:,}; --max-tokens sets the explorer's limit). "
                             "Shorten the text")
        if not ids:
            raise ValueError("the prompt gives no tokens")
        return ids

    def trace(self, model_name: str, ids: list[int], edits: list = ()) -> TraceRecord:
        """The trace of ``ids`` through the model (with ``edits``, the edited model): from the
        cache, or one forward pass."""
        key = trace_id(model_name, ids, edits)
        with self.lock:
            if key in self._traces:
                self._traces.move_to_end(key)
                return self._traces[key]
            model, tokenizer = self.model(model_name)
            rec = run_trace(model, tokenizer, model_name, ids, edits)
            self._traces[key] = rec
            while len(self._traces) > TRACE_CACHE:
                self._traces.popitem(last=False)
            return rec

    def cached_trace(self, key: str) -> TraceRecord:
        with self.lock:
            if key not in self._traces:
                raise LookupError(f"trace {key!r} is not in the explorer's cache (it keeps the last {TRACE_CACHE}); "
                                  "run the prompt again")
            return self._traces[key]

    # -- embeddings ----------------------------------------------------------------------------

    def embedder(self):
        with self.lock:
            if self._embedder is None:
                self._embedder = load_embedder(self.embed_model)
            return self._embedder

    def corpus(self):
        """The --corpus file's lines and their embeddings (cached on disk by ``embed_corpus``), or None."""
        if self.corpus_path is None:
            return None
        with self.lock:
            if self._corpus is None:
                self._corpus = embed_corpus(self.corpus_path, model=self.embedder())
            return self._corpus

    # -- training runs -------------------------------------------------------------------------

    @staticmethod
    def _find_runs(roots: list[Path]) -> dict[str, Path]:
        """Run name -> folder: each root that is a run, else the runs up to two levels below it
        (``runs/demo/gpt``). A root given that does not exist is an error; the default ``runs``
        may be missing."""
        found: dict[str, Path] = {}
        for root in roots:
            if not root.is_dir():
                if root != Path("runs"):
                    raise FileNotFoundError(f"run folder {root} does not exist")
                continue
            if _is_run(root):
                found[root.name] = root
                continue
            below = sorted({p for p in [*root.glob("*"), *root.glob("*/*")] if p.is_dir() and _is_run(p)})
            for run in below:
                found[run.relative_to(root.parent).as_posix()] = run
            if not below and root != Path("runs"):  # named by the user: listed, so the page can say why it is empty
                found[root.name] = root
        return found

    def runs_info(self) -> list[dict]:
        return [{"name": name, "has_metrics": (path / METRICS_FILE).is_file()} for name, path in self.run_dirs.items()]

    def run_dir(self, name: str) -> Path:
        if name not in self.run_dirs:
            raise LookupError(f"unknown run {name!r}; runs found: {', '.join(self.run_dirs) or 'none'} "
                              "(start the explorer with --runs FOLDER)")
        return self.run_dirs[name]

    def run_metrics(self, name: str, since: int = 0) -> dict:
        """The records of a run's metrics.jsonl from record ``since`` on (the page polls with the
        count it has, so a run being trained is followed)."""
        if name not in self.run_dirs:
            raise LookupError(f"unknown run {name!r}; runs found: {', '.join(self.run_dirs) or 'none'} "
                              "(start the explorer with --runs FOLDER)")
        path = self.run_dirs[name] / METRICS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"run {name!r} has no {METRICS_FILE} yet: nothing was logged (is it a training "
                                    "run folder? a run writes it from its first logged step)")
        records = read_metrics(path)
        return {"run": name, "total": len(records), "records": records[max(0, int(since)):]}


def _smiles_checkpoint(path: Path) -> bool:
    """A checkpoint directory whose tokenizer file is a SmilesTokenizer's (read as JSON, small)."""
    file = path / LUCIDLM_TOKENIZER_FILE
    if not file.is_file():
        file = path / "tokenizer.json"  # a checkpoint saved before the lucidlm file had a name of its own
    if not file.is_file() or file.stat().st_size > 1 << 20:
        return False
    try:
        return json.loads(file.read_text(encoding="utf-8")).get("format") == SMILES_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _is_run(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / "config.json").is_file() and (path / "last").is_dir()
