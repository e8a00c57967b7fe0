"""ddpm/evaluate.py: the Fréchet distance against its closed form, and the shipped feature classifier."""
import pytest
import torch

from ddpm.data import FASHION_MNIST_DIR, is_fashion_mnist_dir
from ddpm.evaluate import CLASSIFIER, accuracy, format_table, frechet_distance, load_classifier


def test_frechet_distance_closed_form():
    """For N(m1, diag(a)) vs N(m2, diag(b)): ||m1 - m2||^2 + sum (sqrt(a) - sqrt(b))^2."""
    g = torch.Generator().manual_seed(0)
    n, d = 200_000, 4
    a, b = torch.tensor([1.0, 2.0, 0.5, 3.0]), torch.tensor([2.0, 1.0, 0.5, 0.1])
    m1, m2 = torch.tensor([0.0, 1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0, -2.0])
    f1 = (m1 + a.sqrt() * torch.randn(n, d, generator=g)).double()
    f2 = (m2 + b.sqrt() * torch.randn(n, d, generator=g)).double()
    want = ((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert frechet_distance(f1, f2) == pytest.approx(want.item(), abs=0.03)
    assert frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-6)


def test_table_format():
    rows = [dict(sampler="DDIM-50", conditional=True, n=10, fd=2.0, floor=1.0, ceiling=50.0, seconds=3, agreement=0.9)]
    assert "| DDIM-50 | conditional | 10 | 2.00 | 1.00 | 50.0 | 2.00x | 90.0% | 3 s |" in format_table(rows, 0.9, 3)


@pytest.mark.skipif(not is_fashion_mnist_dir(FASHION_MNIST_DIR), reason="Debian's dataset-fashion-mnist not installed")
def test_shipped_classifier_is_accurate():
    assert CLASSIFIER.exists()
    assert accuracy(load_classifier()) > 0.85


@pytest.mark.skipif(not is_fashion_mnist_dir(FASHION_MNIST_DIR), reason="Debian's dataset-fashion-mnist not installed")
def test_real_floor_is_stable_and_shrinks_with_the_sample_size():
    """Real training images against the test set: the distance a perfect generator gets. Averaged over
    subsets, it is the same whatever was computed before it, and it falls as the sample grows."""
    from ddpm.data import load_fashion_mnist
    from ddpm.evaluate import features, real_floor
    clf = load_classifier()
    test_x, _ = load_fashion_mnist(split="test")
    train_x, _ = load_fashion_mnist(split="train")
    test_f = features(clf, test_x[:5000].float() / 255)
    small, large = real_floor(clf, train_x, test_f, 100, repeats=3), real_floor(clf, train_x, test_f, 1000, repeats=3)
    assert real_floor(clf, train_x, test_f, 100, repeats=3) == small
    assert 0 < large < small / 3                          # the bias of a Fréchet distance falls like 1/m
    noise = frechet_distance(features(clf, torch.rand(100, 1, 28, 28)), test_f)
    assert noise > 10 * small
