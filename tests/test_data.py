"""Token datasets: ``prepare_dataset`` (every input format, splits, dtypes, streaming, errors) and
``TokenDataset`` (memmap batches). References are independent of the code under test: ids worked
out by hand, UTF-8 bytes for a byte-level vocabulary with no merges, nanoGPT's published counts
for Tiny Shakespeare, and the tokenizer's own encoding of the whole text."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import numpy as np
import pytest
import torch

from lucidlm.cli import main
from lucidlm.data import TokenDataset, prepare_dataset, read_meta, tiny_shakespeare_path
from lucidlm.data.sources import cuts_are_safe, split_text
from lucidlm.tokenizers import BPETokenizer, CharTokenizer

EOT = "<|endoftext|>"


def byte_tokenizer(eot_id: int = 256) -> BPETokenizer:
    """Byte-level BPE with no merges: a text's ids are its UTF-8 bytes, then <|endoftext|>."""
    return BPETokenizer({i: bytes([i]) for i in range(256)}, [], special_tokens={EOT: eot_id}, pattern="gpt2")


def expected_bytes(docs: list[str], eot_id: int = 256) -> list[int]:
    return [i for d in docs for i in [*d.encode("utf-8"), eot_id]]


def all_ids(folder) -> list[int]:
    """train then val, read straight from the files (not through TokenDataset)."""
    meta = json.loads((folder / "meta.json").read_text())
    return [int(i) for s in ("train", "val") for i in np.fromfile(folder / f"{s}.bin", dtype=meta["dtype"])]


def prep(inputs, out, tokenizer, **kw):
    kw.setdefault("progress", False)
    return prepare_dataset(inputs, out, tokenizer, **kw)


# ----------------------------------------------------------------------------------------------
# Ids and counts


def test_char_tokenizer_hand_checked(tmp_path):
    (tmp_path / "a.txt").write_text("abc\n\nabd", encoding="utf-8")
    meta = prep([tmp_path / "a.txt"], tmp_path / "ds", "char", val_fraction=0.25)
    # vocab sorted: "\n"=0 a=1 b=2 c=3 d=4; no end-of-text id in a character vocab
    assert meta["vocab_size"] == 5 and meta["eos_id"] is None and meta["dtype"] == "uint16"
    assert np.fromfile(tmp_path / "ds" / "train.bin", dtype="<u2").tolist() == [1, 2, 3, 0, 0, 1]
    assert np.fromfile(tmp_path / "ds" / "val.bin", dtype="<u2").tolist() == [2, 4]
    assert meta["splits"] == {"train": {"file": "train.bin", "tokens": 6}, "val": {"file": "val.bin", "tokens": 2}}
    assert TokenDataset(tmp_path / "ds").tokenizer().decode([1, 2, 4, 0]) == "abd\n"


def test_tiny_shakespeare_char_matches_nanogpt(tmp_path):
    # nanoGPT data/shakespeare_char/prepare.py prints: vocab size 65, train 1,003,854, val 111,540
    meta = prep([tiny_shakespeare_path()], tmp_path / "ds", "char")
    assert meta["vocab_size"] == 65
    assert meta["splits"]["train"]["tokens"] == 1_003_854 and meta["splits"]["val"]["tokens"] == 111_540
    text = tiny_shakespeare_path().read_text(encoding="utf-8")
    chars = sorted(set(text))
    assert all_ids(tmp_path / "ds")[:14] == [chars.index(c) for c in "First Citizen:"]
    assert all_ids(tmp_path / "ds")[:14] == [18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52, 10]


def test_gpt2_pieces_and_workers_equal_whole_text_encoding(tmp_path):
    """Cutting a document into pieces (small chunk_chars) and encoding them on two forked workers
    gives exactly the ids of encoding the whole text at once."""
    from lucidlm.tokenizers import load_tokenizer

    tok = load_tokenizer("gpt2")
    text = tiny_shakespeare_path().read_text(encoding="utf-8")
    reference = tok.encode_ordinary(text) + [50256]
    assert len(reference) == 338_025 + 1  # nanoGPT's shakespeare: 301,966 + 36,059 tokens, plus <|endoftext|>
    meta = prep([tiny_shakespeare_path()], tmp_path / "ds", tok, workers=2, chunk_chars=20_000)
    assert meta["eos_id"] == 50256 and meta["dtype"] == "uint16" and meta["split_long_documents"]
    assert all_ids(tmp_path / "ds") == reference
    assert TokenDataset(tmp_path / "ds").check_tokenizer(tok) is None


def test_split_text_cuts_only_at_safe_places():
    text = "Speak, speak.\n\nFirst Citizen:\nYou are all resolved " * 40
    pieces = list(split_text(text, 50))
    assert "".join(pieces) == text and len(pieces) > 10
    for a, b in zip(pieces, pieces[1:]):
        assert (a.endswith("\n") and not a[-2].isspace() and b[0].isalnum()) or (b[0] == " " and a[-1].isalnum())
    assert list(split_text("x" * 500, 50)) == ["x" * 500]  # no safe place: kept whole
    enc = byte_tokenizer().encode_ordinary
    assert cuts_are_safe(enc)
    assert not cuts_are_safe(lambda t: enc(" " + t))  # a tokenizer that adds a prefix space to each text


# ----------------------------------------------------------------------------------------------
# Input formats

DOCS = ["Hello world.\n", "Ünïcödé, 数字 42!", "third\n\nwith a blank line"]


def _write(fmt: str, folder, docs, field="text"):
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "txt":
        for k, d in enumerate(docs):
            (folder / f"doc{k}.txt").write_text(d, encoding="utf-8")
    elif fmt in ("jsonl", "jsonl.gz"):
        lines = "".join(json.dumps({field: d, "id": k}) + "\n" for k, d in enumerate(docs)) + "\n"
        path = folder / f"part.{fmt}"
        path.write_bytes(gzip.compress(lines.encode()) if fmt.endswith(".gz") else lines.encode())
    else:
        pa = pytest.importorskip("pyarrow")
        table = pa.table({field: docs, "id": list(range(len(docs)))})
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, folder / "part.parquet", row_group_size=2)
        elif fmt == "arrow-stream":
            # what datasets' save_to_disk writes: an IPC *stream* file beside two JSON files
            with pa.ipc.new_stream(str(folder / "data-00000-of-00001.arrow"), table.schema) as w:
                for batch in table.to_batches(max_chunksize=2):
                    w.write_batch(batch)
            (folder / "dataset_info.json").write_text("{}")
            (folder / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
        elif fmt == "arrow-file":
            with pa.ipc.new_file(str(folder / "part.arrow"), table.schema) as w:
                w.write_table(table, max_chunksize=2)


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "jsonl.gz", "parquet", "arrow-stream", "arrow-file"])
def test_every_input_format(tmp_path, fmt):
    _write(fmt, tmp_path / "in", DOCS)
    meta = prep([tmp_path / "in"], tmp_path / "ds", byte_tokenizer(), val_fraction=0)
    assert all_ids(tmp_path / "ds") == expected_bytes(DOCS)
    assert meta["documents"] == 3 and meta["skipped_files"] == (2 if fmt == "arrow-stream" else 0)


def test_folder_order_is_sorted_and_recursive(tmp_path):
    (tmp_path / "in" / "b").mkdir(parents=True)
    (tmp_path / "in" / "b" / "z.md").write_text("z")
    (tmp_path / "in" / "a.txt").write_text("a")
    (tmp_path / "in" / "c.jsonl").write_text('{"body": "c"}\n')
    (tmp_path / "in" / ".hidden.txt").write_text("hidden")
    (tmp_path / "in" / "notes.csv").write_text("skipped")
    meta = prep([tmp_path / "in"], tmp_path / "ds", byte_tokenizer(), text_field="body", val_fraction=0)
    assert all_ids(tmp_path / "ds") == expected_bytes(["a", "z", "c"])  # a.txt, b/z.md, c.jsonl
    assert meta["skipped_files"] == 1 and [s["format"] for s in meta["sources"]] == ["text", "text", "jsonl"]


def test_no_eos_and_empty_documents(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "ab"}\n{"text": ""}\n{"text": null}\n{"text": "c"}\n')
    meta = prep([tmp_path / "d.jsonl"], tmp_path / "ds", byte_tokenizer(), val_fraction=0, append_eos=False)
    assert all_ids(tmp_path / "ds") == [97, 98, 99] and meta["eos_id"] is None and meta["documents"] == 2


def test_progress_bar_counts_bytes(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x" * 5000)
    prep([tmp_path / "a.txt"], tmp_path / "ds", byte_tokenizer(), progress=True)
    err = capsys.readouterr().err
    assert "tokenizing" in err and "100%" in err and "4.88k" in err  # 5000 B in KiB


@pytest.mark.slow
def test_cl100k_real_vocab_is_uint32(tmp_path):
    from lucidlm.tokenizers import load_tokenizer

    tok = load_tokenizer("cl100k_base")
    docs = ["Hello, world! <|endoftext|> is text here.", "数字 12345 and émojis 🤖", "def f(x):\n    return x\n"]
    _write("jsonl", tmp_path / "in", docs)
    meta = prep([tmp_path / "in"], tmp_path / "ds", "cl100k_base", val_fraction=0)
    assert meta["dtype"] == "uint32" and meta["vocab_size"] == 100_277 and meta["eos_id"] == 100_257
    assert all_ids(tmp_path / "ds") == [i for d in docs for i in [*tok.encode_ordinary(d), 100_257]]
    TokenDataset(tmp_path / "ds").check_tokenizer(tok)


@pytest.mark.parametrize("eot_id, dtype", [(256, "uint16"), (65535, "uint16"), (65536, "uint32"), (70000, "uint32")])
def test_dtype_follows_vocab_size(tmp_path, eot_id, dtype):
    (tmp_path / "a.txt").write_text("hi")
    meta = prep([tmp_path / "a.txt"], tmp_path / "ds", byte_tokenizer(eot_id), val_fraction=0)
    assert meta["dtype"] == dtype and meta["vocab_size"] == eot_id + 1
    assert (tmp_path / "ds" / "train.bin").stat().st_size == 3 * np.dtype(dtype).itemsize
    assert TokenDataset(tmp_path / "ds").data.tolist() == [104, 105, eot_id]


@pytest.mark.parametrize("n, kw, n_val", [(100, {"val_fraction": 0.1}, 10), (101, {"val_fraction": 0.1}, 11),
                                          (100, {"val_fraction": 0.0}, 0), (100, {"val_tokens": 7}, 7)])
def test_val_split_sizes(tmp_path, n, kw, n_val):
    (tmp_path / "a.txt").write_text("x" * (n - 1))  # n - 1 bytes + <|endoftext|> = n tokens
    meta = prep([tmp_path / "a.txt"], tmp_path / "ds", byte_tokenizer(), **kw)
    assert meta["splits"]["val"]["tokens"] == n_val and meta["splits"]["train"]["tokens"] == n - n_val
    assert len(TokenDataset(tmp_path / "ds", "val")) == n_val
    assert all_ids(tmp_path / "ds") == [120] * (n - 1) + [256]  # the val split is the end of the stream


def test_memory_stays_flat(tmp_path):
    """A 6 MB corpus through 32 KB tasks: the traced peak stays near the task size, far below the
    corpus (its ids alone would be 48 MB as int64)."""
    line = "Now is the winter of our discontent made glorious summer\n"
    corpus = tmp_path / "big.txt"
    with open(corpus, "w", encoding="utf-8") as f:
        for _ in range(6_000_000 // len(line)):
            f.write(line)
    tok = CharTokenizer.from_text(line)
    prep([corpus], tmp_path / "warm", tok, workers=1, chunk_chars=32_768)  # imports and caches, untraced
    tracemalloc.start()
    meta = prep([corpus], tmp_path / "ds", tok, workers=1, chunk_chars=32_768)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sum(s["tokens"] for s in meta["splits"].values()) == corpus.stat().st_size
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MB"


# ----------------------------------------------------------------------------------------------
# Batches


@pytest.fixture(scope="module")
def shakespeare_char(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "shakespeare_char"
    prep([tiny_shakespeare_path()], out, "char")
    return out


def test_get_batch_windows_are_slices(shakespeare_char):
    ds = TokenDataset(shakespeare_char)
    data = np.fromfile(shakespeare_char / "train.bin", dtype="<u2").astype(np.int64)
    x, y = ds.get_batch(8, 32, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    windows = np.lib.stride_tricks.sliding_window_view(data, 33)
    for b in range(8):
        row = np.concatenate([x[b].numpy(), y[b, -1:].numpy()])
        starts = np.flatnonzero((windows == row).all(axis=1))
        assert len(starts) >= 1  # x is data[s:s+T] and y is data[s+1:s+T+1] for some s
        assert torch.equal(y[b], torch.from_numpy(data[starts[0] + 1 : starts[0] + 33]))


def test_get_batch_is_deterministic_and_resumable(shakespeare_char):
    ds = TokenDataset(shakespeare_char)
    g = torch.Generator().manual_seed(1234)
    first = ds.get_batch(4, 16, g)
    state = g.get_state()
    second = ds.get_batch(4, 16, g)
    g2 = torch.Generator().manual_seed(1234)
    assert all(torch.equal(a, b) for a, b in zip(first, ds.get_batch(4, 16, g2)))
    g3 = torch.Generator()
    g3.set_state(state)  # what a trainer restores from its checkpoint
    assert all(torch.equal(a, b) for a, b in zip(second, ds.get_batch(4, 16, g3)))
    assert not torch.equal(first[0], second[0])


def test_iter_batches_cover_the_split_in_order(shakespeare_char):
    ds = TokenDataset(shakespeare_char, "val")
    data = np.fromfile(shakespeare_char / "val.bin", dtype="<u2").astype(np.int64)
    batches = list(ds.iter_batches(16, 256))
    xs = torch.cat([x for x, _ in batches]).flatten()
    ys = torch.cat([y for _, y in batches]).flatten()
    n = (len(data) - 1) // 256 * 256
    assert xs.tolist() == data[:n].tolist() and ys.tolist() == data[1 : n + 1].tolist()
    assert len(list(ds.iter_batches(16, 256, max_batches=2))) == 2


# ----------------------------------------------------------------------------------------------
# Clear errors


def test_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prep([tmp_path / "nope.txt"], tmp_path / "ds", "char")
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(ValueError, match=r"\.txt.*\.jsonl.*\.parquet.*\.arrow"):
        prep([tmp_path / "data.csv"], tmp_path / "ds", "char")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2 has no field 'text'.*--text-field"):
        prep([tmp_path / "bad.jsonl"], tmp_path / "ds", byte_tokenizer())
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match="not UTF-8 text: byte 3"):
        prep([tmp_path / "latin1.txt"], tmp_path / "ds", byte_tokenizer())
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="no text"):
        prep([tmp_path / "empty.txt"], tmp_path / "ds", byte_tokenizer())
    (tmp_path / "dd" / "train").mkdir(parents=True)
    (tmp_path / "dd" / "dataset_dict.json").write_text('{"splits": ["train"]}')
    with pytest.raises(ValueError, match="DatasetDict"):
        prep([tmp_path / "dd"], tmp_path / "ds", byte_tokenizer())
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.tmp-*"))  # nothing half-written


def test_missing_column_in_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"no column 'text' \(it has \['content'\]\)"):
        prep([tmp_path / "a.parquet"], tmp_path / "ds", byte_tokenizer())


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    (tmp_path / "a.txt").write_text("first")
    prep([tmp_path / "a.txt"], tmp_path / "ds", byte_tokenizer(), val_fraction=0)
    (tmp_path / "a.txt").write_text("second")
    with pytest.raises(ValueError, match="already exists.*overwrite"):
        prep([tmp_path / "a.txt"], tmp_path / "ds", byte_tokenizer(), val_fraction=0)
    assert all_ids(tmp_path / "ds") == expected_bytes(["first"])
    prep([tmp_path / "a.txt"], tmp_path / "ds", byte_tokenizer(), val_fraction=0, overwrite=True)
    assert all_ids(tmp_path / "ds") == expected_bytes(["second"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not a token dataset"):
        prep([tmp_path / "a.txt"], tmp_path / "mine", byte_tokenizer(), overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_corrupt_dataset_errors(tmp_path):
    (tmp_path / "a.txt").write_text("hello world " * 10)
    prep([tmp_path / "a.txt"], tmp_path / "ds", byte_tokenizer())
    ds_dir = tmp_path / "ds"
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        TokenDataset(tmp_path)
    with pytest.raises(ValueError, match="no split 'test'"):
        TokenDataset(ds_dir, "test")
    with open(ds_dir / "train.bin", "r+b") as f:  # cut off the last token
        f.truncate((ds_dir / "train.bin").stat().st_size - 2)
    with pytest.raises(ValueError, match="truncated"):
        TokenDataset(ds_dir)
    meta = read_meta(ds_dir)
    (ds_dir / "meta.json").write_text(json.dumps(dict(meta, dtype="int8")))
    with pytest.raises(ValueError, match="dtype 'int8'"):
        TokenDataset(ds_dir, "val")
    (ds_dir / "meta.json").write_text(json.dumps(dict(meta, dtype="uint32")))  # val.bin holds uint16
    with pytest.raises(ValueError, match="bytes but meta.json says"):
        TokenDataset(ds_dir, "val")
    (ds_dir / "meta.json").write_text(json.dumps(meta))
    (ds_dir / "val.bin").unlink()
    with pytest.raises(FileNotFoundError, match="val.bin is missing"):
        TokenDataset(ds_dir, "val")
    (ds_dir / "meta.json").write_text(json.dumps(meta)[:40])
    with pytest.raises(ValueError, match="not valid JSON"):
        read_meta(ds_dir)


def test_vocab_and_tokenizer_mismatch(tmp_path, shakespeare_char):
    ds = TokenDataset(shakespeare_char)
    ds.check_vocab(65)
    ds.check_vocab(128)  # a padded embedding table is fine
    with pytest.raises(ValueError, match=r"tokenizer/vocab mismatch.*vocab_size 65.*model has vocab_size 50"):
        ds.check_vocab(50)
    with pytest.raises(ValueError, match="tokenizer/vocab mismatch"):
        ds.check_tokenizer(byte_tokenizer())
    text = tiny_shakespeare_path().read_text(encoding="utf-8")
    ds.check_tokenizer(CharTokenizer.from_text(text))
    shuffled = CharTokenizer(sorted(set(text), reverse=True))  # same characters, other ids
    with pytest.raises(ValueError, match="tokenizer/vocab mismatch"):
        ds.check_tokenizer(shuffled)
    with pytest.raises(ValueError, match="block_size 2000000 needs"):
        ds.get_batch(1, 2_000_000)


# ----------------------------------------------------------------------------------------------
# Command line


def test_cli_prepare_and_info(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("abc\n\nabd")
    out = tmp_path / "ds"
    assert main(["data", "prepare", str(tmp_path / "a.txt"), "--out", str(out), "--val-fraction", "0.25",
                 "--no-progress"]) == 0
    assert "6 train + 2 val tokens (uint16, vocab_size 5, tokenizer char)" in capsys.readouterr().out
    assert main(["data", "info", str(out), "--sample", "5"]) == 0
    printed = capsys.readouterr().out
    assert "[1, 2, 3, 0, 0]" in printed and "abc\n\n" in printed
    assert main(["data", "prepare", str(tmp_path / "a.txt"), "--out", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "missing")]) == 2
    assert "no dataset at" in capsys.readouterr().err
