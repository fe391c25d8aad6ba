"""`lucidlm demo` end to end on a tiny time budget, then the commands it tells the user to run next."""

import json

from lucidlm.cli import main


def test_demo_trains_and_the_next_commands_run(tmp_path, capsys):
    from lucidlm.demo import run_demo

    out = tmp_path / "demo"
    result = run_demo(out, minutes=0.01, tokenizers=False, color=False)  # the 50-step minimum
    assert result["steps"] == 50
    assert result["val_loss"] < 3.0  # from ln(65) = 4.17 at the start
    assert result["plot"].is_file() and result["plot"].stat().st_size > 10_000
    best = out / "gpt" / "best"
    assert json.loads((best / "config.json").read_text())["positions"] == "rope"
    text = capsys.readouterr().out
    assert "before training" in text and "after training" in text and "lucidlm generate --model" in text

    assert main(["generate", "--model", str(best), "--max-tokens", "20", "--seed", "1", "JULIET:"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["generate", "--model", str(best), "--show-probs", "3", "--max-tokens", "5", "ROMEO:"]) == 0
    assert main(["inspect", "walkthrough", "--model", str(best), "To be, or not"]) == 0
    walk = capsys.readouterr().out
    assert "logits" in walk
