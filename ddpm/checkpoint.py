"""Checkpoints as `<stem>.safetensors` (tensors) + `<stem>.json` (everything else). No pickle.

A checkpoint holds the config needed to rebuild the model and the diffusion, so
`load_diffusion(stem)` alone gives back a working sampler.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .diffusion import GaussianDiffusion
from .toy import ToyMLP
from .unet import UNet

MODEL_TYPES = {"UNet": UNet, "ToyMLP": ToyMLP}


def save_checkpoint(stem: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write tensors to stem.safetensors and config to stem.json (tensors first, so a json
    file present means the pair is complete)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(stem) + ".safetensors")
    Path(str(stem) + ".json").write_text(json.dumps(config, indent=2) + "\n")


def load_checkpoint(stem: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    stem = str(stem).removesuffix(".safetensors").removesuffix(".json")
    config = json.loads(Path(stem + ".json").read_text())
    return load_file(stem + ".safetensors", device=str(device)), config


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state_dict into tensors (per-parameter state) and JSON (param_groups)."""
    sd = opt.state_dict()
    tensors = {f"optim.{pid}.{key}": (v if isinstance(v, torch.Tensor) else torch.tensor(v))
               for pid, st in sd["state"].items() for key, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in unprefixed("optim", tensors).items():
        pid, key = k.split(".", 1)
        state.setdefault(int(pid), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def model_config(model: nn.Module) -> dict:
    return {"type": type(model).__name__, **model.config}


def build_model(config: dict) -> nn.Module:
    """Rebuild an (untrained) network from the dict `model_config` wrote."""
    config = dict(config)
    cls = MODEL_TYPES[config.pop("type")]
    if "channel_mult" in config:
        config["channel_mult"] = tuple(config["channel_mult"])
        config["attention_levels"] = tuple(config["attention_levels"])
    return cls(**config)


def build_diffusion(config: dict) -> GaussianDiffusion:
    """A GaussianDiffusion with an untrained network, from a checkpoint's config."""
    d = dict(config["diffusion"])
    d["data_shape"] = tuple(d["data_shape"])
    return GaussianDiffusion(build_model(config["model"]), **d)


def load_diffusion(stem: str | Path, use_ema: bool = True, device: str | torch.device = "cpu") -> GaussianDiffusion:
    """A GaussianDiffusion with trained weights: EMA weights by default (what samples best)."""
    tensors, config = load_checkpoint(stem, device)
    diffusion = build_diffusion(config).to(device)
    prefix = "ema" if use_ema and any(k.startswith("ema.") for k in tensors) else "model"
    diffusion.model.load_state_dict(unprefixed(prefix, tensors))
    return diffusion.eval()
