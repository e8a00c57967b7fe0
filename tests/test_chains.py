"""ddpm/chains.py: the last round on the first teacher's recorded chains, checked against the project's own DDIM
loop with guidance (samplers.sample_loop + samplers.guided) and against progressive distillation's online target."""
import json

import pytest
import torch

from ddpm import Trainer, ddim_step, guided
from ddpm.chains import ChainDistillation, distill_on_chains, record_chains, teacher_chains
from ddpm.checkpoint import load_checkpoint
from ddpm.progressive import ProgressiveDistillation, Teacher, distill, time_grid
from ddpm.samplers import sample_loop
from ddpm.schedules import make_schedule
from tests.test_progressive import SIZE, T_SMALL, four_images, save_teacher, tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


def test_recorded_states_are_the_teachers_own_ddim_chain():
    """teacher_chains keeps every k-th state of the teacher's guided DDIM run: the same states as the
    pipeline's loop (sample_loop with samplers.guided, item by item) from the same x_T."""
    s = make_schedule("linear", T_SMALL, 1e-3, 0.2)
    teacher = Teacher(tiny_unet(), "epsilon", 3.0, (0, 50))
    labels = torch.tensor([0, 3, -1, 2])
    chains = teacher_chains(teacher, s, 8, 2, labels, torch.Generator().manual_seed(5), (1, SIZE, SIZE))
    assert chains.shape == (4, 3, 1, SIZE, SIZE)
    x_T = torch.randn((4, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(5))
    assert torch.equal(chains[:, 0], x_T)
    for b in range(4):
        fn = guided(teacher.model, labels[b:b + 1], 3.0, (0, 50))
        with torch.no_grad():
            frames = list(sample_loop(fn, s, x_T[b:b + 1], time_grid(8, T_SMALL)[:-1], "ddim", clip=True))
        assert len(frames) == 8
        for j, frame in ((1, frames[3]), (2, frames[7])):                     # after 4 and after 8 teacher steps
            assert torch.allclose(chains[b, j], frame.x_t[0], atol=1e-4), (b, j)
    with pytest.raises(ValueError, match="every k-th point"):
        teacher_chains(teacher, s, 8, 3, labels, torch.Generator().manual_seed(5), (1, SIZE, SIZE))


def test_chain_target_is_the_online_rounds_target():
    """On a chain recorded with 2 teacher steps per student step, x~ of each student step is what progressive
    distillation's round (teacher 2N -> student N) computes online from the same z: one Algorithm 2."""
    s = make_schedule("linear", T_SMALL, 1e-3, 0.2)
    teacher = Teacher(tiny_unet(), "epsilon", 3.0, (0, 50))
    labels = torch.tensor([0, 1, -1, 3, 2, -1])
    chains = teacher_chains(teacher, s, 8, 4, labels, torch.Generator().manual_seed(1), (1, SIZE, SIZE))
    online = ProgressiveDistillation(tiny_unet(1), teacher, 8, 4, timesteps=T_SMALL, beta_start=1e-3, beta_end=0.2,
                                     image_size=SIZE)
    offline = ChainDistillation(tiny_unet(1), 4, timesteps=T_SMALL, beta_start=1e-3, beta_end=0.2, image_size=SIZE)
    for step in range(4):
        i = torch.full((6,), step)
        want = online.target(chains[:, step].double(), i, labels)
        got = offline.chain_target(chains, i)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (step, (got - want).abs().max())
    # the last step's target is the teacher's final, clipped image
    assert torch.allclose(offline.chain_target(chains, torch.full((6,), 3)), chains[:, -1], atol=1e-6)


def test_state_weighting_is_the_landing_points_error():
    """The "state" loss is the squared distance between where ONE student DDIM step from the recorded z_i lands
    (Song et al. Eq. 12, v-prediction, unclipped) and the recorded z_{i+1}; "snr" is Algorithm 2's weighting."""
    s = make_schedule("linear", T_SMALL, 1e-3, 0.2)
    teacher = Teacher(tiny_unet(), "epsilon", 3.0, (0, 50))
    labels = torch.tensor([0, 1, -1, 3, 2, 1, 0, -1])
    chains = teacher_chains(teacher, s, 8, 4, labels, torch.Generator().manual_seed(3), (1, SIZE, SIZE))
    student = tiny_unet(1)
    diff = ChainDistillation(student, 4, timesteps=T_SMALL, beta_start=1e-3, beta_end=0.2, image_size=SIZE)
    with torch.no_grad():
        got = diff(chains, labels, generator=torch.Generator().manual_seed(7)).item()
        i = torch.randint(0, 4, (8,), generator=torch.Generator().manual_seed(7))   # the loss's own draw
        grid = diff.student_grid
        want = 0.0
        for b in range(8):
            t, t2 = grid[i[b]], grid[i[b] + 1]
            z = chains[b:b + 1, i[b]]
            v = student(z, torch.tensor([t]), labels=labels[b:b + 1])
            landed, _ = ddim_step(s, v.double(), t, t2, z.double(), prediction="v", clip=False)
            want += (landed - chains[b:b + 1, i[b] + 1].double()).pow(2).mean().item() / 8
    assert abs(got - want) < 1e-5 * max(1.0, want), (got, want)
    snr = ChainDistillation(student, 4, "snr", timesteps=T_SMALL, beta_start=1e-3, beta_end=0.2, image_size=SIZE)
    with torch.no_grad():
        assert snr(chains, labels, generator=torch.Generator().manual_seed(7)).item() > 2 * got
    with pytest.raises(ValueError, match="weighting"):
        ChainDistillation(student, 4, "x")


def test_training_on_chains_lowers_the_loss(tmp_path):
    s = make_schedule("linear", T_SMALL, 1e-3, 0.2)
    teacher = Teacher(tiny_unet(), "epsilon", 3.0, (0, 50))
    labels = torch.tensor([0, 1, 2, 3] * 4)
    chains = teacher_chains(teacher, s, 8, 2, labels, torch.Generator().manual_seed(2), (1, SIZE, SIZE))
    diff = ChainDistillation(tiny_unet(), 2, timesteps=T_SMALL, beta_start=1e-3, beta_end=0.2, image_size=SIZE)
    from ddpm.data import TensorImageDataset
    data = TensorImageDataset(chains, labels, list("abcd"))

    def loss():
        with torch.no_grad():
            return diff(chains, labels, generator=torch.Generator().manual_seed(123)).item()
    before = loss()
    Trainer(diff, data, train_batch_size=16, train_lr=3e-3, train_num_steps=40, warmup_steps=5,
            save_and_sample_every=10_000, results_folder=str(tmp_path), progress=False).train()
    assert loss() < 0.5 * before


def test_recording_resumes_chunk_by_chunk(tmp_path):
    """Chunk c is a pure function of (seed, c): a recording interrupted after its first chunk and resumed
    equals one made straight through, and the label dropout gives some unconditional chains."""
    teacher = save_teacher(tmp_path / "teacher")
    kw = dict(teacher_steps=4, student_steps=2, chunk=5, label_dropout=0.5, log=lambda m: None)
    straight = record_chains(teacher, tmp_path / "a", 12, **kw)
    record_chains(teacher, tmp_path / "b", 5, **kw)                             # "killed" after chunk 0
    assert sorted(p.name for p in (tmp_path / "b").glob("*.json")) == ["chains-000.json"]
    resumed = record_chains(teacher, tmp_path / "b", 12, **kw)
    assert torch.equal(straight.images, resumed.images) and torch.equal(straight.labels, resumed.labels)
    assert straight.images.shape == (12, 3, 1, SIZE, SIZE)
    assert (straight.labels == -1).any() and (straight.labels >= 0).any()
    assert straight.images[:, -1].abs().max() <= 1.0                          # the teacher's clipped x_0


def test_the_chains_round_exports_a_model_with_its_defaults(tmp_path):
    from ddpm.pretrained import load_pretrained
    teacher = save_teacher(tmp_path / "teacher")
    student = distill(str(teacher), tmp_path / "run", steps_from=4, steps_to=2, steps_per_round=2, data=four_images(),
                      batch_size=4, save_every=2, num_samples=4, eval_n=0, log=lambda m: None)
    out = distill_on_chains(student, teacher, tmp_path / "chains", n_chains=6, teacher_steps=4, chunk=4,
                            train_steps=3, batch_size=4, save_every=2, eval_n=0, log=lambda m: None)
    tensors, config = load_checkpoint(out)
    before, _ = load_checkpoint(student)
    assert all(k.startswith("ema.") for k in tensors) and tensors.keys() == before.keys()
    assert any(not torch.equal(tensors[k], before[k]) for k in tensors)        # it was trained
    assert config["progressive"]["chains"]["n"] == 6 and config["progressive"]["chains"]["teacher_steps"] == 4
    pipe = load_pretrained(str(out), device="cpu")
    assert pipe.default_steps == 2 and pipe.guidance_distilled == 3.0 and pipe.prediction == "v"
    assert pipe.sample(n=2, labels=["b"], seed=0).shape == (2, 1, SIZE, SIZE)
    # rerunning the same call is the resume: nothing is recorded or trained again
    logs = []
    distill_on_chains(student, teacher, tmp_path / "chains", n_chains=6, teacher_steps=4, chunk=4, train_steps=3,
                      batch_size=4, save_every=2, eval_n=0, log=logs.append)
    assert not any(m.startswith("recorded") for m in logs) and "chains round: resumed at step 3" in logs, logs
    assert json.loads((tmp_path / "chains/round-chains/model-0000003.json").read_text())["step"] == 3
