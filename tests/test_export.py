"""ddpm/export.py: shipping EMA weights, and packing/unpacking a training run to resume it elsewhere."""
import torch
from test_trainer import make_trainer

from ddpm import export as ex
from ddpm.pretrained import load_pretrained


def test_pack_unpack_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "ASSETS", tmp_path / "models")
    monkeypatch.setattr(ex, "STATE", tmp_path / "models" / "train-state")
    tr = make_trainer(tmp_path / "run", 4)
    tr.train()
    stem = tr.save()
    ex.pack(stem, "tiny")
    pipe = load_pretrained(str(tmp_path / "models" / "tiny"), device="cpu")
    assert pipe.classes == list("abcd")                                       # the data set's, via the checkpoint
    x, t = torch.randn(1, 1, 28, 28), torch.tensor([3])
    with torch.no_grad():
        assert torch.equal(pipe.model(x, t), tr.ema(x, t))                    # the shipped weights are the EMA
    back = ex.unpack("tiny", tmp_path / "resumed")
    assert back.name == "model-0000004"
    again = make_trainer(tmp_path / "resumed", 6)
    assert again.load() and again.step == 4
    for a, b in zip(again.diffusion.model.parameters(), tr.diffusion.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(again.ema.parameters(), tr.ema.parameters()):
        assert torch.equal(a, b)
    again.train()                                                             # and it trains on
    assert again.step == 6
