"""ddpm/progressive.py: progressive distillation (Salimans & Ho 2022, Algorithm 2), checked against the
project's own DDIM step (Song et al. Eq. 12) and guidance (samplers.guided) as independent references."""
import json

import pytest
import torch
from torch import nn

from ddpm import GaussianDiffusion, Trainer, UNet, ddim_step, guided, make_schedule, q_sample
from ddpm.checkpoint import load_checkpoint, load_diffusion, model_config, prefixed, save_checkpoint
from ddpm.data import TensorImageDataset
from ddpm.progressive import ProgressiveDistillation, Teacher, distill, plan_rounds, time_grid, x0_target
from ddpm.samplers import sample_loop
from ddpm.schedules import sampling_timesteps

T_SMALL = 100
SIZE = 8                                                # 8x8 images: the tests stay fast on a busy CPU


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    model = UNet(channels=8, channel_mult=(1, 2), attention_levels=(1,), num_classes=4)
    for name, p in model.named_parameters():           # UNet zero-inits its output and every residual branch,
        if p.dim() > 1 and not p.any():                # which would make t and the class irrelevant
            nn.init.normal_(p, std=0.05)
    return model.eval()


def four_images():
    g = torch.Generator().manual_seed(0)
    imgs = torch.zeros(4, 1, SIZE, SIZE)
    for i in range(4):                                   # four distinct blocks
        r, c = torch.randint(0, 4, (2,), generator=g).tolist()
        imgs[i, 0, r:r + 4, c:c + 4] = 1.0
    return TensorImageDataset(imgs, torch.arange(4), classes=list("abcd"))


def save_teacher(stem, interval=(0, 50)):
    """A tiny eps-teacher checkpoint with a guidance interval, as load_diffusion / model_stem read it."""
    model = tiny_unet()
    diff = GaussianDiffusion(model, image_size=SIZE, timesteps=T_SMALL, beta_start=1e-3, beta_end=0.2)
    save_checkpoint(stem, prefixed("ema", model.state_dict()),
                    {"model": model_config(model), "diffusion": diff.config, "step": 0, "classes": list("abcd"),
                     "sampling": {"guidance_interval": list(interval)}})
    return stem


# ---- (d) the time grid ------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1000, 100, 37])
def test_grid_halves_and_starts_at_T_minus_1(T):
    n = 1
    while 2 * n <= T:
        n *= 2
    while n >= 2:
        g, half = time_grid(n, T), time_grid(n // 2, T)
        assert g[0] == T - 1 and g[-1] == -1 and len(g) == n + 1
        assert all(a > b for a, b in zip(g, g[1:]))                            # strictly descending
        assert half == g[::2]                                                   # every other point: the halving
        assert g[:-1] == sampling_timesteps(n, T, "trailing")
        n //= 2
    assert time_grid(4, 1000) == [999, 749, 499, 249, -1]


def test_plan_rounds():
    assert plan_rounds(64, 4) == [(64, 64), (64, 32), (32, 16), (16, 8), (8, 4)]
    assert plan_rounds(8, 2, convert=False) == [(8, 4), (4, 2)]
    for bad in [(48, 4), (4, 8), (4, 4, False)]:
        with pytest.raises(ValueError):
            plan_rounds(*bad)


# ---- (a) the closed form ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind,T,n", [("linear", 1000, 8), ("cosine", 1000, 4), ("linear", T_SMALL, 16),
                                      ("sigmoid", 1000, 2)])
def test_one_student_step_with_the_target_is_two_teacher_steps(kind, T, n):
    """x~ of Algorithm 2: ONE DDIM step from z_t with x_0 := x~ (as a v-prediction) reaches the teacher's
    z_{t''} after its TWO steps t -> t' -> t'', for every student step, the last (t'' = -1) included."""
    b0, b1 = (1e-3, 0.2) if T == T_SMALL else (1e-4, 0.02)
    s = make_schedule(kind, T, b0, b1)
    teacher = Teacher(tiny_unet(), "epsilon", guidance_scale=3.0, guidance_interval=(0, T // 2))
    diff = ProgressiveDistillation(tiny_unet(1), teacher, 2 * n, n, timesteps=T, beta_schedule=kind,
                                   beta_start=b0, beta_end=b1)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(n, 1, SIZE, SIZE, generator=g, dtype=torch.float64) * 2 - 1
    i = torch.arange(n)                                                         # every student step once
    t = torch.tensor(diff.student_grid[:-1])
    labels = torch.tensor([0, 1, -1, 3] * n)[:n]
    z_t = q_sample(s, x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    x_tilde = diff.target(z_t, i, labels).double()                             # (n, 1, H, W), the loss's target
    for b in range(n):                                                          # the reference: scalar steps
        tb, t1, t2 = diff.teacher_grid[2 * b: 2 * b + 3]
        z = z_t[b:b + 1]
        for ta, tn in ((tb, t1), (t1, t2)):                                     # the teacher, as the pipeline
            fn = guided(teacher.model, labels[b:b + 1], 3.0, (0, T // 2))
            with torch.no_grad():
                out = fn(z.float(), torch.tensor([ta])).double()
            z, _ = ddim_step(s, out, ta, tn, z, prediction="epsilon", clip=True)
        ref = x0_target(s, z_t[b:b + 1], torch.tensor([tb]), z, torch.tensor([t2]))   # float64
        a = s.sqrt_alphas_cumprod[tb].item()
        sg = s.sqrt_one_minus_alphas_cumprod[tb].item()
        v = (a * z_t[b:b + 1] - ref) / sg                                       # the v whose x_0 is x~
        one, _ = ddim_step(s, v, tb, t2, z_t[b:b + 1], prediction="v", clip=False)
        assert torch.allclose(one, z, atol=1e-6, rtol=0), (kind, b, (one - z).abs().max())
        # the training target (the teacher run batched, stored in float32) is that x~
        assert torch.allclose(x_tilde[b:b + 1], ref, atol=1e-4, rtol=1e-4), (kind, b, (x_tilde[b] - ref).abs().max())


def test_conversion_round_target_is_the_teachers_clipped_x0():
    """With one teacher step per student step (round 0), x~ is the teacher's own clipped x_0 estimate."""
    s = make_schedule("linear", T_SMALL, 1e-3, 0.2)
    teacher = Teacher(tiny_unet(), "epsilon")
    diff = ProgressiveDistillation(tiny_unet(1), teacher, 8, 8, timesteps=T_SMALL, beta_start=1e-3, beta_end=0.2,
                                   image_size=SIZE)
    g = torch.Generator().manual_seed(1)
    z_t = torch.randn(8, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    i, t = torch.arange(8), torch.tensor(diff.student_grid[:-1])
    labels = torch.tensor([0, 1, 2, 3, -1, 0, 1, 2])
    x_tilde = diff.target(z_t, i, labels)
    _, x0 = ddim_step(s, teacher(z_t.float(), t, labels).double(), t, torch.tensor(diff.student_grid[1:]), z_t,
                      prediction="epsilon", clip=True)
    assert torch.allclose(x_tilde, x0.float(), atol=1e-5)


def test_teacher_guidance_is_guided_per_item():
    """The teacher's guidance (unconditional pass only where needed) = samplers.guided item by item."""
    model = tiny_unet()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 1, SIZE, SIZE, generator=g)
    t = torch.tensor([99, 70, 50, 49, 10, 0, 60, 20])
    labels = torch.tensor([0, 1, 2, -1, 3, 0, -1, 2])
    got = Teacher(model, "epsilon", 3.0, (0, 50))(x, t, labels)
    with torch.no_grad():
        for b in range(8):
            want = guided(model, labels[b:b + 1], 3.0, (0, 50))(x[b:b + 1], t[b:b + 1])
            assert torch.allclose(got[b:b + 1], want, atol=1e-5)
    assert not torch.allclose(got, Teacher(model, "epsilon")(x, t, labels), atol=1e-3)


# ---- (b) a round lowers the distillation loss -------------------------------------------------------
def test_one_round_lowers_the_distillation_loss(tmp_path):
    teacher = Teacher(tiny_unet(), "epsilon", 3.0, (0, 50))
    diff = ProgressiveDistillation(tiny_unet(), teacher, 8, 4, timesteps=T_SMALL, beta_start=1e-3, beta_end=0.2,
                                   image_size=SIZE)
    data = four_images()
    x, labels = data.images.repeat(4, 1, 1, 1), data.labels.repeat(4)

    def held_out_loss():
        with torch.no_grad():
            return diff(x, labels, generator=torch.Generator().manual_seed(123)).item()
    before = held_out_loss()
    tr = Trainer(diff, data, train_batch_size=16, train_lr=3e-3, train_num_steps=40, warmup_steps=5,
                 save_and_sample_every=10_000, results_folder=str(tmp_path), progress=False)
    tr.train()
    after = held_out_loss()
    assert after < 0.65 * before, (before, after)                              # 0.61 -> 0.32


# ---- (c) save, kill, resume: bit-identical ----------------------------------------------------------
def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    teacher = save_teacher(tmp_path / "teacher")
    kw = dict(steps_from=8, steps_to=2, steps_per_round=5, data=four_images(), batch_size=8, lr=2e-3,
              warmup_steps=2, save_every=2, num_samples=4, eval_n=0, log=lambda m: None)
    straight = distill(str(teacher), tmp_path / "a", **kw)
    # killed at step 3 of round 0 (checkpoint at 2), then at step 2 of round 1, each after unsaved steps
    assert distill(str(teacher), tmp_path / "b", max_steps=3, **kw) is None
    assert distill(str(teacher), tmp_path / "b", max_steps=5, **kw) is None
    assert json.loads((tmp_path / "b/round-1-4-steps/model-0000002.json").read_text())["step"] == 2
    resumed = distill(str(teacher), tmp_path / "b", **kw)
    for r in ("round-0-8-steps", "round-1-4-steps", "round-2-2-steps"):
        a, _ = load_checkpoint(tmp_path / "a" / r / "model-0000005")
        b, _ = load_checkpoint(tmp_path / "b" / r / "model-0000005")
        assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
        for k in a:
            assert torch.equal(a[k], b[k]), (r, k)
    fa, ca = load_checkpoint(straight)
    fb, cb = load_checkpoint(resumed)
    assert all(torch.equal(fa[k], fb[k]) for k in fa) and fa.keys() == fb.keys()
    assert ca["sampling"]["steps"] == 2 and ca["sampling"]["guidance"] == "distilled"


def test_resumes_from_a_packed_state(tmp_path):
    """What gets packed between sessions: only the latest finished round's final checkpoint and the current
    round's newest one. Earlier rounds are not redone, and the result is the uninterrupted run's."""
    import shutil
    teacher = save_teacher(tmp_path / "teacher")
    kw = dict(steps_from=8, steps_to=2, steps_per_round=4, data=four_images(), batch_size=8, lr=2e-3,
              warmup_steps=2, save_every=2, num_samples=4, eval_n=0, log=lambda m: None)
    straight = distill(str(teacher), tmp_path / "a", **kw)
    assert distill(str(teacher), tmp_path / "b", max_steps=10, **kw) is None      # round 2 at step 2 of 4
    packed = tmp_path / "packed"
    for r, step in (("round-1-4-steps", 4), ("round-2-2-steps", 2)):
        (packed / r).mkdir(parents=True)
        for ext in (".json", ".safetensors"):
            shutil.copy(tmp_path / "b" / r / f"model-{step:07d}{ext}", packed / r)
    logs = []
    resumed = distill(str(teacher), packed, **{**kw, "log": logs.append})
    assert not (packed / "round-0-8-steps").exists() and any("round 2: resumed at step 2" in m for m in logs)
    fa, _ = load_checkpoint(straight)
    fb, cb = load_checkpoint(resumed)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert [h["round"] for h in json.loads((packed / "history.json").read_text())] == [0, 1, 2]


# ---- the shipped form samples with its own defaults -------------------------------------------------
def test_distilled_model_loads_with_its_defaults(tmp_path):
    from ddpm.pretrained import load_pretrained
    teacher = save_teacher(tmp_path / "teacher")
    out = distill(str(teacher), tmp_path / "run", steps_from=4, steps_to=2, steps_per_round=2, data=four_images(),
                  batch_size=4, save_every=2, num_samples=4, eval_n=0, log=lambda m: None)
    pipe = load_pretrained(str(out), device="cpu")
    assert pipe.prediction == "v" and pipe.default_steps == 2 and pipe.spacing == "trailing"
    assert pipe.guidance_distilled == 3.0 and pipe.guidance_interval is None
    calls = []
    pipe.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    frames = list(pipe.progressive(n=3, labels=["b"], seed=0))                 # guidance_scale 3 by default
    assert [f.t for f in frames] == [99, 49] and calls == [3, 3]                # one pass of n per step
    # the same images as the student's own sampler (trailing grid, one conditional pass) from the same x_T
    student = load_diffusion(out)
    z, lab = pipe.initial_noise(3, 0), torch.tensor([1, 1, 1])
    for f in sample_loop(lambda x, t: student.model(x, t, labels=lab), student.schedule, z, [99, 49], "ddim",
                         prediction="v"):
        z = f.x_t
    assert torch.allclose(frames[-1].x_t, (z.clamp(-1, 1) + 1) / 2, atol=1e-6)
    # s = 0 or no labels: the unconditional model
    assert torch.equal(pipe.sample(n=2, labels=["b"], guidance_scale=0.0, seed=1), pipe.sample(n=2, seed=1))
    tensors, config = load_checkpoint(out)
    assert config["progressive"]["rounds"] == [[4, 4], [4, 2]] and all(k.startswith("ema.") for k in tensors)


def test_shipped_defaults_unchanged():
    from ddpm.pretrained import load_pretrained
    pipe = load_pretrained("fashion-mnist", device="cpu")
    assert pipe.default_steps == 50 and pipe.spacing == "linspace" and pipe.guidance_distilled is None
