"""ddpm/autoencoder.py and ddpm/latent.py: the KL autoencoder and the shipped latent diffusion model."""
import pytest
import torch

from ddpm.autoencoder import Autoencoder, train_autoencoder
from ddpm.checkpoint import load_checkpoint
from ddpm.data import load_fashion_mnist
from ddpm.latent import LatentFrame, LatentPipeline
from ddpm.pretrained import load_pretrained


@pytest.fixture(scope="module")
def pipe():
    return load_pretrained("fashion-mnist-latent", device="cpu")


@pytest.fixture(scope="module")
def test_images():
    x, y = load_fashion_mnist(split="test")
    return x[:200].float() / 255, y[:200]


def test_kl_term_is_the_closed_form_gaussian_kl():
    """The KL part of the loss equals torch.distributions' KL(N(mean, var) || N(0, 1)), summed per image."""
    torch.manual_seed(0)
    ae = Autoencoder(channels=8)
    x = torch.rand(3, 1, 28, 28)
    out = ae(x, generator=torch.Generator().manual_seed(1))
    mean, logvar = ae.encode(x)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    want = torch.distributions.kl_divergence(q, p).flatten(1).sum(1).mean()
    assert out["kl"].item() == pytest.approx(want.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["rec"].item() + ae.kl_weight * out["kl"].item(), rel=1e-6)
    assert mean.shape == (3, 4, 7, 7) and ae.decode(mean).shape == (3, 1, 28, 28)


def test_autoencoder_training_resumes_exactly(tmp_path):
    """Killed after 4 steps and resumed, the run ends with the same weights as one that never stopped."""
    torch.manual_seed(0)
    images = (torch.rand(64, 1, 28, 28) * 255).byte()
    kw = dict(batch_size=8, channels=8, save_every=4, log=lambda m: None)
    straight = train_autoencoder(tmp_path / "a", images, steps=8, **kw)
    (tmp_path / "b").mkdir()
    for suffix in (".json", ".safetensors"):                           # as if killed right after step 4
        (tmp_path / "b" / f"ae-0000004{suffix}").write_bytes((tmp_path / "a" / f"ae-0000004{suffix}").read_bytes())
    resumed = train_autoencoder(tmp_path / "b", images, steps=8, **kw)
    (ta, ca), (tb, cb) = load_checkpoint(straight), load_checkpoint(resumed)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert ca["scale_factor"] == pytest.approx(cb["scale_factor"]) and ca["scale_factor"] > 0


def test_loads_with_the_same_api_as_the_pixel_model(pipe):
    assert isinstance(pipe, LatentPipeline)
    assert pipe.data_shape == (4, 7, 7) and pipe.output_shape == (1, 28, 28)
    assert pipe.classes == load_pretrained("fashion-mnist").classes
    assert pipe.timesteps == 1000 and pipe.prediction == "epsilon"


def test_sample_shapes_ranges_and_determinism(pipe):
    state = torch.get_rng_state()
    a = pipe.sample(n=3, steps=5, labels="Sneaker", seed=7)
    b = pipe.sample(n=3, steps=5, labels=7, seed=7)
    c = pipe.sample(n=3, steps=5, labels="Sneaker", seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (3, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_frames_carry_decoded_pixels_and_raw_latents(pipe):
    frames = list(pipe.progressive(n=2, steps=4, labels="Bag", seed=1))
    assert len(frames) == 4 and all(isinstance(f, LatentFrame) for f in frames)
    assert frames[0]._pixels == {}                                     # nothing decoded until it is looked at
    for f in frames:
        assert f.x_t.shape == f.x0_pred.shape == (2, 1, 28, 28)
        assert f.z_t.shape == f.z0_pred.shape == (2, 4, 7, 7)
        assert torch.allclose(f.x_t, pipe.decode(f.z_t)) and torch.allclose(f.x0_pred, pipe.decode(f.z0_pred))
    assert frames[0].z_t.std() > 0.5                                   # still mostly noise after one step of four


def test_encode_decode_round_trip(pipe, test_images):
    """Real test images come back close: the error the model card reports, with room for CPU differences."""
    x, _ = test_images
    z = pipe.encode(x)
    assert z.shape == (200, 4, 7, 7)
    assert 0.7 < z.std().item() < 1.3                                  # scaled by 1 / std of the training latents
    rec = pipe.decode(z)
    mse = (rec - x).pow(2).mean().item()
    assert mse < 0.01, mse
    # the decoder is not the identity on noise: an image far from the data does not come back
    noise = torch.rand(20, 1, 28, 28)
    assert (pipe.decode(pipe.encode(noise)) - noise).pow(2).mean().item() > 5 * mse


def test_samples_are_their_class(pipe):
    from ddpm.evaluate import load_classifier
    clf = load_classifier()
    labels = list(range(10)) * 2
    imgs = pipe.sample(n=20, steps=20, labels=labels, seed=0)
    with torch.no_grad():
        pred = clf(imgs).argmax(1)
    assert (pred == torch.tensor(labels)).float().mean().item() >= 0.8


def test_negative_prompt_changes_the_output(pipe):
    base = dict(n=4, steps=10, labels="Sneaker", guidance_scale=3.0, seed=3)
    plain = pipe.sample(**base)
    neg = pipe.sample(**base, negative_labels="Ankle boot")
    assert (plain - neg).abs().mean() > 0.01
    # the negative prompt replaces the unconditional branch: with s = 0 the result is the negative class itself
    assert torch.equal(pipe.sample(**{**base, "guidance_scale": 0.0}, negative_labels="Bag"),
                       pipe.sample(**{**base, "labels": "Bag", "guidance_scale": 1.0}))
    with pytest.raises(ValueError, match="unknown class"):
        pipe.sample(**base, negative_labels="dragon")


def test_init_image_starts_from_its_latent(pipe, test_images):
    """SDEdit in latent space: from a small start_t the image comes back nearly unchanged."""
    x, y = test_images
    out = pipe.sample(n=1, init_image=x[:1], start_t=50, steps=50, labels=int(y[0]), seed=0)
    assert (out - x[:1]).abs().mean() < 0.08


def test_bad_input(pipe):
    with pytest.raises(ValueError, match=r"shape \(n, 1, 28, 28\)"):
        pipe.encode(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="steps"):
        pipe.sample(n=1, steps=0)
