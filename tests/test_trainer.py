"""ddpm/trainer.py, ddpm/checkpoint.py, ddpm/diffusion.py: learning for real, saving, resuming."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import torch

from ddpm import GaussianDiffusion, ToyMLP, Trainer, UNet, load_diffusion
from ddpm.data import TensorImageDataset
from ddpm.toy import toy_dataset

ROOT = Path(__file__).resolve().parent.parent


def tiny_unet(num_classes=None):
    return UNet(channels=8, channel_mult=(1, 2), attention_levels=(1,), num_classes=num_classes)


def four_images():
    g = torch.Generator().manual_seed(0)
    imgs = torch.zeros(4, 1, 28, 28)
    for i in range(4):                                   # four distinct blocky shapes
        r, c = torch.randint(2, 14, (2,), generator=g).tolist()
        imgs[i, 0, r:r + 12, c:c + 12] = 1.0
    return TensorImageDataset(imgs, torch.arange(4), classes=list("abcd"))


def make_trainer(tmp_path, steps, **kw):
    torch.manual_seed(0)
    diff = GaussianDiffusion(tiny_unet(num_classes=4), image_size=28, timesteps=100, beta_start=1e-3, beta_end=0.2)
    return Trainer(diff, four_images(), train_batch_size=8, train_lr=2e-3, train_num_steps=steps, warmup_steps=5,
                   save_and_sample_every=10_000, results_folder=str(tmp_path), num_samples=4, progress=False, **kw)


def test_tiny_unet_overfits_four_images(tmp_path):
    tr = make_trainer(tmp_path, 300)
    tr.train()
    first, last = sum(tr.loss_history[:20]) / 20, sum(tr.loss_history[-20:]) / 20
    assert last < 0.35 * first, (first, last)
    # and what it learnt denoises: at t = 30 its x0 estimate is far closer to the truth than x_t is
    from ddpm import predict_x0, q_sample
    x0 = four_images().images * 2 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    xt = q_sample(tr.diffusion.schedule, x0, 30, noise)
    with torch.no_grad():
        x0_hat = predict_x0(tr.diffusion.schedule, tr.ema(xt, torch.full((4,), 30), torch.arange(4)), xt, 30)
    assert (x0_hat - x0).pow(2).mean() < 0.25 * (xt - x0).pow(2).mean()


def test_checkpoint_round_trip(tmp_path):
    tr = make_trainer(tmp_path, 3)
    tr.train()
    stem = tr.save(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck.json").read_text())
    assert cfg["step"] == 3 and cfg["model"]["type"] == "UNet" and cfg["classes"] == list("abcd")
    d = load_diffusion(stem)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 50])
    with torch.no_grad():
        assert torch.equal(d.model(x, t, torch.tensor([0, 1])), tr.ema(x, t, torch.tensor([0, 1])))
    raw = load_diffusion(stem, use_ema=False)
    for a, b in zip(raw.model.state_dict().values(), tr.diffusion.model.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pt"))


def test_resume_continues_exactly(tmp_path):
    straight = make_trainer(tmp_path / "a", 8)
    straight.train()
    first = make_trainer(tmp_path / "b", 4)
    first.train()
    first.save()
    resumed = make_trainer(tmp_path / "b", 8)
    assert resumed.load() and resumed.step == 4
    resumed.train()
    for a, b in zip(straight.diffusion.model.parameters(), resumed.diffusion.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.parameters(), resumed.ema.parameters()):
        assert torch.equal(a, b)
    assert straight.loss_history == resumed.loss_history


def test_keeps_only_the_newest_checkpoints(tmp_path):
    tr = make_trainer(tmp_path, 6, keep_checkpoints=2)
    tr.save_and_sample_every = 2
    tr.train()
    assert sorted(p.name for p in tmp_path.glob("model-*.json")) == ["model-0000004.json", "model-0000006.json"]
    assert (tmp_path / "sample-0000006.png").exists()


def train_toy(name, steps=2500):
    torch.manual_seed(0)
    diff = GaussianDiffusion(ToyMLP(hidden=128), timesteps=100, beta_schedule="cosine", data_shape=(2,),
                             auto_normalize=False)
    tr = Trainer(diff, toy_dataset(name, 4000), train_batch_size=256, train_lr=3e-3, train_num_steps=steps,
                 warmup_steps=50, ema_decay=0.99, save_and_sample_every=10**9, results_folder="/tmp/unused",
                 progress=False)
    tr.train()
    diff.model = tr.ema
    return diff.sample(2000, generator=torch.Generator().manual_seed(0))


def test_toy_samples_land_on_the_shape():
    pts = train_toy("8-gaussians")                                               # (2000, 2)
    centres = 1.6 * torch.stack([torch.cos(torch.arange(8) * torch.pi / 4), torch.sin(torch.arange(8) * torch.pi / 4)], 1)
    d = torch.cdist(pts, centres).min(1).values
    assert (d < 0.35).float().mean() > 0.9
    # and all eight modes are found, in roughly equal shares
    counts = torch.bincount(torch.cdist(pts, centres).argmin(1), minlength=8).float() / len(pts)
    assert counts.min() > 0.06


def test_ddp_two_processes_end_identical(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    from safetensors.torch import load_file
    w0, w1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    init = load_file(tmp_path / "init.safetensors")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert any(not torch.equal(w0[k], init[k]) for k in w0)                     # and they did train


def test_amp_bfloat16_step_matches_float32(tmp_path):
    """amp=True: the network runs under bfloat16 autocast, but weights and the loss stay float32,
    and one optimiser step moves the weights the way the float32 step does."""
    full, mixed = make_trainer(tmp_path / "a", 1), make_trainer(tmp_path / "b", 1, amp=True)
    with torch.no_grad():                  # leave the zero-initialised start, where the output is exactly 0
        for p in full.diffusion.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    mixed.diffusion.model.load_state_dict(full.diffusion.model.state_dict())
    before = torch.cat([p.detach().flatten().clone() for p in full.diffusion.model.parameters()])
    loss_full, loss_mixed = full.train_step(), mixed.train_step()
    assert loss_mixed != loss_full                                       # autocast really ran in bfloat16
    assert abs(loss_mixed - loss_full) < 0.05 * loss_full
    assert all(p.dtype == torch.float32 for p in mixed.diffusion.model.parameters())
    step_full = torch.cat([p.detach().flatten() for p in full.diffusion.model.parameters()]) - before
    step_mixed = torch.cat([p.detach().flatten() for p in mixed.diffusion.model.parameters()]) - before
    assert torch.nn.functional.cosine_similarity(step_full, step_mixed, dim=0) > 0.9
    assert mixed.args["amp"] is True and full.args["amp"] is False


def test_learning_rate_warms_up_holds_and_decays_to_a_tenth(tmp_path):
    tr = make_trainer(tmp_path, 100, lr_decay_steps=20)                 # lr 2e-3, warm-up 5 steps
    lrs = [tr.lr_at(s) for s in range(100)]
    assert lrs[0] == 2e-3 / 5 and lrs[4] == lrs[50] == lrs[80] == 2e-3   # linear warm-up, then constant
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:]))                # strictly decreasing over the last 20
    assert abs(lrs[99] - 2e-3 * (0.1 + 0.9 * 1 / 20)) < 1e-12            # towards 10 % at train_num_steps
    assert make_trainer(tmp_path, 100).lr_at(99) == 2e-3                 # no decay unless asked


def test_distillation_regresses_onto_the_teacher():
    """With a teacher the target is the teacher's prediction at the same (x_t, t, label), not eps."""
    torch.manual_seed(0)
    teacher, student = tiny_unet(num_classes=4), UNet(channels=8, channel_mult=(1,), attention_levels=(), num_classes=4)
    for p in teacher.parameters():                       # a non-trivial teacher (its last conv starts at zero)
        p.data.normal_(0, 0.1)
    kw = dict(image_size=28, timesteps=100, beta_start=1e-3, beta_end=0.2, min_snr_gamma=5.0)
    x, labels = four_images().images, torch.arange(4)
    # a copy of the teacher as student has nothing to learn: the loss is exactly zero
    same = GaussianDiffusion(copy.deepcopy(teacher), teacher=teacher, **kw)
    assert same(x, labels, generator=torch.Generator().manual_seed(3)).item() == 0.0
    # another student: the loss is the min-SNR-weighted error against the teacher, recomputed by hand
    diff = GaussianDiffusion(student, teacher=teacher, **kw)
    loss = diff(x, labels, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)                 # the same draws, in the same order as forward()
    t = torch.randint(0, 100, (4,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    drop = torch.rand(4, generator=g) < 0.1
    lab = torch.where(drop, -1, labels)
    from ddpm import q_sample
    x_t = q_sample(diff.schedule, x * 2 - 1, t, noise)
    with torch.no_grad():
        err = (student(x_t, t, lab) - teacher(x_t, t, lab)).pow(2).flatten(1).mean(1)
    snr = diff.schedule.snr[t]
    assert torch.allclose(loss, (err * snr.clamp(max=5.0) / snr).mean().to(loss), rtol=1e-5)
    # the teacher is neither trained nor saved with the student
    assert not any(k.startswith("_teacher") for k in diff.state_dict())
    assert all(p.requires_grad for p in diff.parameters())
