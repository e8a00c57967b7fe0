"""ddpm/cli.py: `python -m ddpm train|sample|evaluate` as a user types them."""
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run(*args, timeout=300):
    r = subprocess.run([sys.executable, "-m", "ddpm", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout + r.stderr


def test_help_explains_every_option():
    import argparse

    from ddpm.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train", "sample", "evaluate"):
        actions = [a for a in sub.choices[name]._actions if a.option_strings and a.dest != "help"]
        assert len(actions) >= 5
        for a in actions:
            assert a.help and len(a.help) > 5, f"{name} {a.option_strings} has no help"
        assert "--" in run(name, "--help")


def test_sample_writes_a_png_grid(tmp_path):
    out = tmp_path / "grid.png"
    run("sample", "--model", "fashion-mnist", "--n", "4", "--steps", "5", "--label", "Bag", "--out", str(out))
    with Image.open(out) as im:
        assert im.width > 100 and im.height > 50


def test_train_then_resume_then_sample_a_toy(tmp_path):
    res = tmp_path / "run"
    common = ["train", "--data", "toy:two-moons", "--timesteps", "50", "--beta-schedule", "cosine", "--channels", "32",
              "--train-batch-size", "64", "--save-and-sample-every", "20", "--results-folder", str(res), "--no-progress"]
    run(*common, "--train-num-steps", "20")
    assert (res / "model-0000020.json").exists()
    out = run(*common, "--train-num-steps", "40")
    assert "resumed from step 20" in out and (res / "model-0000040.safetensors").exists()
    png = tmp_path / "pts.png"
    run("sample", "--model", str(res / "model-0000040"), "--sampler", "ddpm", "--n", "200", "--out", str(png))
    assert png.stat().st_size > 1000
