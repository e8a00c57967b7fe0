"""ddpm/toy.py: the toy sets are reproducible, of the right shape and size."""
import pytest
import torch

from ddpm import TOYS, ToyMLP, make_toy


@pytest.mark.parametrize("name", TOYS)
def test_toy_sets(name):
    a, b = make_toy(name, 3000, seed=1), make_toy(name, 3000, seed=1)
    assert a.shape == (3000, 2) and torch.equal(a, b) and not torch.equal(a, make_toy(name, 3000, seed=2))
    assert 0.3 < a.std(0).min() and a.abs().max() < 4          # roughly unit spread, nothing far out


def test_checkerboard_fills_alternate_squares():
    x = make_toy("checkerboard", 5000)
    parity = (torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2
    assert (parity == 0).all()


def test_mlp_shapes():
    assert ToyMLP()(torch.randn(7, 2), torch.randint(0, 100, (7,))).shape == (7, 2)
    with pytest.raises(ValueError):
        make_toy("donut")
