"""Run under torchrun by test_trainer.py: a short DDP training; each rank saves its final weights."""
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])
from ddpm import GaussianDiffusion, ToyMLP, Trainer  # noqa: E402
from ddpm.toy import toy_dataset  # noqa: E402

out = sys.argv[1]
torch.manual_seed(0)                      # the same initial weights on every rank (DDP also broadcasts them)
diff = GaussianDiffusion(ToyMLP(hidden=32), timesteps=50, beta_schedule="cosine", data_shape=(2,), auto_normalize=False)
trainer = Trainer(diff, toy_dataset("two-moons", 512), train_batch_size=32, train_num_steps=5, warmup_steps=1,
                  save_and_sample_every=10**9, results_folder=out, progress=False, device="cpu")
assert trainer.world == 2
if trainer.rank == 0:
    save_file({k: v.clone() for k, v in diff.model.state_dict().items()}, f"{out}/init.safetensors")
trainer.train()
save_file({k: v.clone() for k, v in diff.model.state_dict().items()}, f"{out}/rank{trainer.rank}.safetensors")
