"""Command line: `python -m ddpm train|sample|distill|distill-chains|evaluate ...`; `--help` on each explains every option."""
from __future__ import annotations

import argparse
import sys
import time

import torch

from .schedules import SCHEDULES


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model (resumes from results folder if it holds a checkpoint)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="fashion-mnist",
                   help='"fashion-mnist" (Debian idx files; FASHION_MNIST_DIR overrides the path), a folder of '
                        'images or of idx files, or "toy:NAME" for a 2-D toy set (swiss-roll, two-moons, '
                        '8-gaussians, checkerboard, rings)')
    p.add_argument("--results-folder", default="./results", help="where checkpoints and sample grids go")
    p.add_argument("--autoencoder", default=None,
                   help="latent diffusion: the stem of a trained autoencoder (python -m ddpm train-autoencoder); "
                        "the model then learns Fashion-MNIST's scaled latents (4x7x7) instead of its pixels")
    p.add_argument("--image-size", type=int, default=28, help="images are centre-cropped and resized to this")
    p.add_argument("--image-channels", type=int, default=1, help="1 = greyscale, 3 = RGB")
    p.add_argument("--channels", type=int, default=32, help="UNet base width (toy: MLP hidden width)")
    p.add_argument("--channel-mult", default="1,2,2", help="UNet width multiplier per resolution level")
    p.add_argument("--num-res-blocks", type=int, default=1, help="residual blocks per UNet level")
    p.add_argument("--attention-levels", default="2", help="UNet levels (0 = full size) with self-attention")
    p.add_argument("--class-conditional", action="store_true",
                   help="condition on the dataset's labels (with a no-class token for classifier-free guidance)")
    p.add_argument("--label-dropout", type=float, default=0.1, help="probability of training a label as no-class")
    p.add_argument("--timesteps", type=int, default=1000, help="T, the number of noising steps")
    p.add_argument("--sampling-timesteps", type=int, default=None,
                   help="model calls when sampling the progress grids; fewer than T means DDIM")
    p.add_argument("--beta-schedule", default="linear", choices=SCHEDULES,
                   help="how beta_t grows with t (linear: Ho et al.; cosine: Nichol & Dhariwal; sigmoid: GeoDiff; "
                        "sigmoid_abar: Jabri et al.)")
    p.add_argument("--beta-start", type=float, default=1e-4, help="beta_1 (not used by cosine and sigmoid_abar)")
    p.add_argument("--beta-end", type=float, default=0.02, help="beta_T (not used by cosine and sigmoid_abar)")
    p.add_argument("--objective", default="pred_noise", choices=["pred_noise", "pred_x0", "pred_v", "flow"],
                   help="what the network predicts; flow: flow matching / rectified flow on the straight path "
                        "x_t = (1-t) x_0 + t eps, velocity eps - x_0, t in [0, 1] fed to the network as t*1000, "
                        "sampled with Euler steps (ddpm/flow.py; toy data only; --timesteps and the beta options "
                        "are unused, --sampling-timesteps is the Euler steps of the progress samples)")
    p.add_argument("--min-snr-gamma", type=float, default=None, help="min-SNR loss weighting (e.g. 5); off if unset")
    p.add_argument("--teacher", default=None,
                   help="distil: a shipped model name or checkpoint whose predictions are the targets; its "
                        "schedule, objective and min-SNR weighting are used")
    p.add_argument("--train-batch-size", type=int, default=64, help="images per step (per process)")
    p.add_argument("--gradient-accumulate-every", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--train-lr", type=float, default=1e-3, help="AdamW learning rate after warm-up")
    p.add_argument("--warmup-steps", type=int, default=200, help="linear learning-rate warm-up")
    p.add_argument("--lr-decay-steps", type=int, default=0,
                   help="decay the learning rate linearly to 10%% over the last N of --train-num-steps")
    p.add_argument("--train-num-steps", type=int, default=10000, help="total optimiser steps (resume counts on)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay of the weights used for sampling")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0 = off)")
    p.add_argument("--save-and-sample-every", type=int, default=1000, help="checkpoint + sample grid period")
    p.add_argument("--num-samples", type=int, default=50, help="images in each progress grid")
    p.add_argument("--seed", type=int, default=0, help="seeds every random draw; same seed, same run")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast for the network (float32 weights and loss)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def _sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="sample from a checkpoint or a shipped model into a PNG grid",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="fashion-mnist",
                   help="a shipped model name (see assets/models) or a checkpoint path without extension")
    p.add_argument("--out", default="samples.png", help="PNG grid to write (toys: a scatter plot PNG)")
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm", "euler"],
                   help="DDIM (fewer steps) or DDPM (all T steps); a flow model (e.g. two-moons-flow) always uses Euler")
    p.add_argument("--steps", type=int, default=None,
                   help="DDIM steps (DDPM always takes T); default: the model's own (50; 4 for a 4-step distilled one)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM noise: 0 deterministic, 1 = DDPM-like")
    p.add_argument("--variance", default="fixed_small", choices=["fixed_small", "fixed_large"], help="DDPM variance")
    p.add_argument("--label", default=None, help="class name or index (default: unconditional)")
    p.add_argument("--guidance-scale", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="seeds the starting noise; same seed, same images")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available)")


def _distill_parser(sub) -> None:
    p = sub.add_parser("distill", help="progressive distillation (Salimans & Ho 2022): halve the DDIM steps "
                       "per round; rerun the same command to resume",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", default="fashion-mnist",
                   help="a shipped model name or checkpoint path: the first teacher, sampled as its pipeline does "
                        "(its JSON's guidance interval; a distilled model's built-in guidance)")
    p.add_argument("--data", default="fashion-mnist", help="training images: as for train --data")
    p.add_argument("--steps-from", type=int, default=64, help="the first teacher's DDIM steps (a power of two)")
    p.add_argument("--steps-to", type=int, default=4, help="the final student's DDIM steps (a power of two)")
    p.add_argument("--steps-per-round", default="2000",
                   help="optimiser steps per round: one number, or one per round, comma-separated "
                        "(the conversion round first, then each halving)")
    p.add_argument("--skip-conversion", action="store_true",
                   help="no round 0 (distilling an eps-teacher into a v-student at --steps-from); for a v teacher")
    p.add_argument("--results-folder", default="results/progressive", help="rounds, checkpoints, grids, evals")
    p.add_argument("--export", default=None,
                   help="stem of the final model (EMA weights + JSON); default RESULTS/fashion-mnist-<N>step")
    p.add_argument("--batch-size", type=int, default=64, help="images per optimiser step")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate after warm-up (every round)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up of each round")
    p.add_argument("--lr-decay-fraction", type=float, default=0.5,
                   help="decay the learning rate linearly to 10%% over this last fraction of each round")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay (the next teacher is the EMA)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0 = off)")
    p.add_argument("--label-dropout", type=float, default=0.2,
                   help="fraction of labels replaced by no-class, taught the teacher's unconditional steps")
    p.add_argument("--guidance-scale", type=float, default=3.0,
                   help="the first teacher's classifier-free guidance scale, distilled into the students")
    p.add_argument("--save-every", type=int, default=250, help="checkpoint + sample grid period (steps)")
    p.add_argument("--num-samples", type=int, default=40, help="images in each sample grid (a row per class)")
    p.add_argument("--eval-n", type=int, default=500,
                   help="samples for the Fréchet distance / class agreement after each round (0 = none)")
    p.add_argument("--log-every", type=int, default=25, help="print the mean loss every N steps")
    p.add_argument("--seed", type=int, default=0, help="seeds every random draw; same seed, same run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu, cuda ... (resume on the same device for exactness)")


def cmd_distill(a: argparse.Namespace) -> None:
    from .progressive import distill
    if a.threads:
        torch.set_num_threads(a.threads)
    steps = [int(s) for s in a.steps_per_round.split(",")]
    distill(a.teacher, a.results_folder, steps_from=a.steps_from, steps_to=a.steps_to,
            steps_per_round=steps[0] if len(steps) == 1 else steps, data=a.data, convert=not a.skip_conversion,
            batch_size=a.batch_size, lr=a.lr, warmup_steps=a.warmup_steps, lr_decay_fraction=a.lr_decay_fraction,
            ema_decay=a.ema_decay, label_dropout=a.label_dropout, guidance_scale=a.guidance_scale,
            max_grad_norm=a.max_grad_norm, save_every=a.save_every, num_samples=a.num_samples, eval_n=a.eval_n,
            log_every=a.log_every, seed=a.seed, device=a.device, export=a.export,
            log=lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True))


def _autoencoder_parser(sub) -> None:
    p = sub.add_parser("train-autoencoder", help="train the KL autoencoder of latent diffusion on Fashion-MNIST "
                       "(28x28x1 -> 7x7x4; resumes from the results folder)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--results-folder", default="results/autoencoder", help="checkpoints; the final autoencoder.*")
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate after warm-up (cosine to 10%%)")
    p.add_argument("--channels", type=int, default=32, help="width at 28x28 (doubled at 14x14 and 7x7)")
    p.add_argument("--latent-channels", type=int, default=4, help="channels of the 7x7 latent")
    p.add_argument("--kl-weight", type=float, default=1e-4, help="weight of KL(q(z|x) || N(0, I)) per image")
    p.add_argument("--seed", type=int, default=0, help="seeds every random draw; same seed, same run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def cmd_train_autoencoder(a: argparse.Namespace) -> None:
    from .autoencoder import train_autoencoder
    from .data import load_fashion_mnist
    if a.threads:
        torch.set_num_threads(a.threads)
    images, _ = load_fashion_mnist(split="train")
    train_autoencoder(a.results_folder, images, steps=a.steps, batch_size=a.batch_size, lr=a.lr, channels=a.channels,
                      latent_channels=a.latent_channels, kl_weight=a.kl_weight, seed=a.seed,
                      log=lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True))


def cmd_train(a: argparse.Namespace) -> None:
    from .diffusion import GaussianDiffusion
    from .toy import ToyMLP, toy_dataset
    from .trainer import Trainer
    from .unet import UNet
    if a.threads:
        torch.set_num_threads(a.threads)
    decode = None                           # latents -> images for the progress grids (latent diffusion only)
    if a.objective == "flow" and not a.data.startswith("toy:"):
        sys.exit("--objective flow is implemented for the 2-D toys (--data toy:NAME)")
    if a.data.startswith("toy:") and a.objective == "flow":                # flow matching (ddpm/flow.py)
        from .flow import FlowMatching
        data, model = toy_dataset(a.data[4:]), ToyMLP(hidden=a.channels)
        diff = FlowMatching(model, data_shape=(2,), sampling_steps=a.sampling_timesteps or 50)
    elif a.data.startswith("toy:"):
        data, model = toy_dataset(a.data[4:]), ToyMLP(hidden=a.channels)
        diff = GaussianDiffusion(model, timesteps=a.timesteps, sampling_timesteps=a.sampling_timesteps,
                                 beta_schedule=a.beta_schedule, beta_start=a.beta_start, beta_end=a.beta_end,
                                 objective=a.objective, data_shape=(2,), auto_normalize=False,
                                 min_snr_gamma=a.min_snr_gamma)
    elif a.autoencoder:                                                     # latent diffusion (ddpm/latent.py)
        from .autoencoder import load_autoencoder
        from .latent import latent_dataset
        data, (ae, ae_config) = latent_dataset(a.autoencoder), load_autoencoder(a.autoencoder)
        c, h, w = data.images.shape[1:]
        n_cls = len(data.classes) if a.class_conditional else None
        model = UNet(in_channels=c, channels=a.channels, channel_mult=tuple(int(m) for m in a.channel_mult.split(",")),
                     num_res_blocks=a.num_res_blocks,
                     attention_levels=tuple(int(m) for m in a.attention_levels.split(",") if m), num_classes=n_cls)
        diff = GaussianDiffusion(model, image_size=h, channels=c, timesteps=a.timesteps,
                                 sampling_timesteps=a.sampling_timesteps, beta_schedule=a.beta_schedule,
                                 beta_start=a.beta_start, beta_end=a.beta_end, objective=a.objective,
                                 label_dropout=a.label_dropout, min_snr_gamma=a.min_snr_gamma, auto_normalize=False)
        decode = lambda z: ae.decode(z / ae_config["scale_factor"])          # noqa: E731 (grids only)
    else:
        from .data import resolve_dataset
        data = resolve_dataset(a.data, a.image_size, a.image_channels)
        n_cls = len(data.classes) if a.class_conditional and getattr(data, "classes", None) else None
        if a.class_conditional and not n_cls:
            sys.exit("--class-conditional needs a labelled data set (fashion-mnist)")
        model = UNet(in_channels=a.image_channels, channels=a.channels,
                     channel_mult=tuple(int(c) for c in a.channel_mult.split(",")), num_res_blocks=a.num_res_blocks,
                     attention_levels=tuple(int(c) for c in a.attention_levels.split(",") if c), num_classes=n_cls)
        teacher = None
        if a.teacher:
            # the student must learn the teacher's function: same schedule, objective and loss weighting
            from .checkpoint import load_diffusion
            from .pretrained import model_stem
            t_diff = load_diffusion(model_stem(a.teacher), use_ema=True, device=a.device or "cpu")
            teacher = t_diff.model
            for k in ("timesteps", "beta_schedule", "beta_start", "beta_end", "objective", "min_snr_gamma"):
                setattr(a, k, t_diff.config[k])
        diff = GaussianDiffusion(model, image_size=a.image_size, channels=a.image_channels, timesteps=a.timesteps,
                                 sampling_timesteps=a.sampling_timesteps, beta_schedule=a.beta_schedule,
                                 beta_start=a.beta_start, beta_end=a.beta_end, objective=a.objective,
                                 label_dropout=a.label_dropout, min_snr_gamma=a.min_snr_gamma, teacher=teacher)
    trainer = Trainer(diff, data, train_batch_size=a.train_batch_size, gradient_accumulate_every=a.gradient_accumulate_every,
                      train_lr=a.train_lr, warmup_steps=a.warmup_steps, train_num_steps=a.train_num_steps,
                      ema_decay=a.ema_decay, max_grad_norm=a.max_grad_norm, save_and_sample_every=a.save_and_sample_every,
                      num_samples=a.num_samples, results_folder=a.results_folder, seed=a.seed, device=a.device,
                      progress=not a.no_progress, amp=a.amp,
                      lr_decay_steps=a.lr_decay_steps, decode=decode)
    if trainer.load():
        print(f"resumed from step {trainer.step} in {a.results_folder}", file=sys.stderr)
    n_params = sum(p.numel() for p in diff.model.parameters())
    print(f"{type(diff.model).__name__} with {n_params:,} parameters; {len(trainer.dataset):,} training items",
          file=sys.stderr)
    trainer.train()


def cmd_sample(a: argparse.Namespace) -> None:
    from .pretrained import load_pretrained
    from .flow import FlowPipeline
    pipe = load_pretrained(a.model, device=a.device)
    flow = isinstance(pipe, FlowPipeline)                                  # a flow model: Euler steps only
    if a.sampler == "euler" and not flow:
        sys.exit(f"--sampler euler needs a flow-matching model (e.g. two-moons-flow), not {a.model}")
    labels = None
    if a.label is not None:
        labels = [int(a.label) if a.label.isdigit() else a.label] * a.n
    if flow:
        out = pipe.sample(n=a.n, steps=a.steps, seed=a.seed)
    else:
        out = pipe.sample(n=a.n, sampler=a.sampler, steps=a.steps, eta=a.eta, variance=a.variance,
                          guidance_scale=a.guidance_scale, labels=labels, seed=a.seed)
    if out.dim() == 4:
        from .images import save_grid
        save_grid(a.out, out, nrow=min(8, a.n), scale=2)
    else:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(out[:, 0], out[:, 1], s=2)
        ax.set_aspect("equal")
        fig.savefig(a.out, dpi=120)
    print(a.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ddpm", description="Denoising diffusion (Ho et al. 2020): "
                                     "train, sample and evaluate small models.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sample_parser(sub)
    _distill_parser(sub)
    _autoencoder_parser(sub)
    from .evaluate import add_parser as add_evaluate
    add_evaluate(sub)
    from .chains import add_parser as add_distill_chains
    add_distill_chains(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    {"train": cmd_train, "sample": cmd_sample, "distill": cmd_distill,
     "train-autoencoder": cmd_train_autoencoder}.get(a.command, lambda a: a.func(a))(a)
