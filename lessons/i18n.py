"""English / 中文: one table of UI strings per language; lesson prose stays in lessons/*.{lang}.md.

`Text` collects every translatable component while the tabs are built, so the language switch can
return one update per component without the tabs knowing about it.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import gradio as gr

LANGS = ("en", "zh")
HERE = Path(__file__).resolve().parent

UI: dict[str, dict[str, str]] = {
    "en": {
        "title": "Diffusion, hands on: DDPM from the maths up",
        "language": "Language",
        "tab.forward": "1 · Forward", "tab.posterior": "2 · Posterior", "tab.reverse": "3 · Reverse",
        "tab.training": "4 · Training", "tab.latent": "5 · Latent", "tab.quiz": "6 · Quiz",
        "objective": "Objective", "objective.eps": "DDPM: the noise ε",
        "objective.flow": "flow matching: ε − x₀",
        "latent.x0": "x₀ (784 numbers)", "latent.z0": "z₀ = E(x₀): 4 × 7 × 7 = 196", "latent.rec": "D(z₀)",
        "latent.err": "|x₀ − D(z₀)|", "latent.xt": "x_t: noise in pixels", "latent.zt": "z_t: noise in latents",
        "latent.dzt": "D(z_t): latent noise, decoded",
        "latent.cite": "the same schedule, once on pixels and once on latents (Eq. 4; Rombach et al. 2022)",
        "latent.numbers": "Reconstruction error (mean squared, pixels in [0, 1]): <b>{mse:.4f}</b> · PSNR "
                          "<b>{psnr:.1f} dB</b><br>784 → 196 numbers: the diffusion works on 4× fewer",
        "latent.pick": "Image and noise", "latent.reverse_h": "### Reverse in latent space, beside the pixel model",
        "latent.prompt": "Prompt", "latent.prompt_info": "a class name, English or Chinese: sneaker, 运动鞋, boot …",
        "latent.negative": "Negative prompt", "latent.negative_info": "replaces the unconditional branch; empty: none",
        "latent.pick_class": "…or pick a class",
        "latent.l_xt": "latent model: D(z_t)", "latent.l_x0": "latent model: D(ẑ₀)", "latent.l_z": "its z_t (4 channels per image)",
        "latent.p_xt": "pixel model: x_t", "latent.p_x0": "pixel model: x̂₀",
        "latent.cost": "Step {i}/{steps}, {n} images, measured in this run:\n\n"
                       "| | pixel model | latent model |\n|---|---|---|\n"
                       "| numbers the network denoises | {d_pix} | {d_lat} |\n"
                       "| parameters | {p_pix:.2f} M | {p_lat:.2f} M |\n"
                       "| time per step (network, with guidance) | {ms_pix:.1f} ms | {ms_lat:.1f} ms "
                       "(incl. decoding for display; one decode: {dec:.1f} ms) |\n"
                       "| total so far | {s_pix:.2f} s | {s_lat:.2f} s |\n\n"
                       "The pixel model takes **{ratio:.2f}×** the latent model's time.",
        "copy_link": "Copy link to this view", "link": "Link to this view",
        "image": "Image x₀ (examples)", "upload": "…or upload your own (any size, colour or grey)",
        "t": "Timestep t", "schedule": "Schedule", "timesteps": "T (noising steps)",
        "beta_start": "β start", "beta_end": "β end", "compare_with": "Compare with schedule",
        "x0": "x₀ (data)", "noise": "ε (noise)", "xt": "x_t", "filmstrip": "x_t at evenly spaced t",
        "curves": "Schedule curves", "histogram": "Pixels of x_t against N(0, 1)",
        "compare_strip": "Same image and noise, two schedules", "seed": "Seed",
        "post_mean": "Posterior mean μ̃(x_t, x₀)", "post_draw": "A draw of x_{t−1} ~ q(x_{t−1} | x_t, x₀)",
        "variances": "β_t against β̃_t", "formula": "Formula with the numbers",
        "label": "Class", "any": "any (unconditional)", "guidance": "Guidance scale s",
        "guide_until": "only while t ≤", "guide_until_info": "s = 1 above · 999: every step",
        "model": "Model", "model_info": "the small one is distilled from the large one: 2.4× faster (measured); "
                                          "the 4-step one from the small one, guidance built in",
        "sampler": "Sampler", "steps": "DDIM steps", "eta": "DDIM η", "n": "Images",
        "generate": "Generate", "stop": "Stop", "progress": "Progress", "pred_x0": "Predicted x₀",
        "scrub": "Scrub through the stored steps", "gif": "Export as animated GIF", "gif_file": "GIF",
        "from_image": "Start from a real image", "start_t": "Noise it to step t, then denoise",
        "generate_from_image": "Denoise from this image", "compare": "DDPM vs DDIM from the same noise",
        "run_compare": "Run both", "ddpm_result": "DDPM (all T steps)", "ddim_result": "DDIM",
        "interp.title": "Interpolate two garments through the noise (Ho et al. 2020, Fig. 8)",
        "interp.trio": "x_a · the noisy mix x̄_t · the result at λ · x_b",
        "interp.row": "λ = 0, 1/6, …, 1 from the same t and noise",
        "interp.a": "Image x_a", "interp.b": "Image x_b", "interp.t": "Noise both to t", "interp.lam": "Mix λ",
        "interp.note": "Both images noised to t = {t} with the same ε (seed {seed}), mixed as "
                       "(1 − λ)·x_a,t + λ·x_b,t with λ = {lam:g}, then {steps} DDIM steps of the unconditional "
                       "model back to t = 0.",
        "vlb_button": "Compute the bound on held-out images", "vlb_plot": "Variational bound per timestep",
        "toy": "Toy data set", "train": "Train (about 10 s)", "loss": "Loss", "toy_samples": "Samples",
        "flow": "Watch the points flow", "flow_t": "Reverse step",
        "vlb_title": "The bound, term by term", "toy_title": "Train a tiny denoiser live, on 2-D points",
        "flow_hint": "Drag the slider: step 0 is pure Gaussian noise x_T, the last step the finished samples. Each "
                     "point keeps its colour, so you can follow it. Uses the model you just trained, or the shipped "
                     "one for this data set if you have not trained yet.",
        "quiz_q": "Question", "check": "Check", "next": "Next", "prev": "Previous", "score": "Score",
        "your_answer": "Your answer", "show_answer": "Show model answer", "restart": "Start over",
        "open_hint": "Open question: think, write your answer, then reveal the model answer.",
        "msg.start": "x_T ~ N(0, I): {n} × 28×28 · {total} steps: {ts}",
        "msg.preview": "x_T ~ N(0, I): the TV snow of seed {seed}. Press **Generate** to run the reverse process on it.",
        "msg.step": "**step {i}/{total}** · t = {t} · {rate:.1f} steps/s\n\n<small>t visited: {ts}</small>",
        "quiz_choice": "Your choice", "quiz_correct": "✅ Correct!",
        "quiz_wrong": "❌ Not quite: the answer is **{answer}**.", "quiz_why": "Why",
        "quiz_model": "Model answer", "quiz_see": "See it in the app", "quiz_pick": "Pick an option first.",
        "quiz_score_note": "(correct / answered multiple-choice)", "colon": ": ",
        # ---- text the handlers generate: notes, formulas' captions, figure titles, axes, legends, hover text
        "cite.eq4": "Ho et al. 2020, Eq. 4 · computed in your browser from ddpm's tables",
        "cite.eq7": "Ho et al. 2020, Eq. 6–7 · computed in your browser from ddpm's tables",
        "settings": "Schedule and image", "about": "About this course", "lesson_col": "The lesson",
        "predict.reveal": "Reveal", "predict.larger": "larger", "predict.smaller": "smaller", "predict.equal": "equal",
        "predict.yes": "yes", "predict.no": "no", "predict.guess_t": "Your guess: t =", "predict.guess": "Your guess",
        "predict.guess_steps": "Your guess: DDIM steps",
        "predict.source.trained": "the model you trained here", "predict.source.shipped": "the shipped model",
        "predict.forward.title": "Predict first: when does the picture disappear?",
        "predict.forward.q": "Before you drag t: at which t will you **stop recognising** the image (with this schedule "
                             "and T)? Set your guess, then press Reveal.",
        "predict.forward.reveal": "**Your guess: t = {guess}.** Measured on this image and schedule: from **t = {t_noise}** "
                                  "the noise is as strong as the picture's own contrast, and from **t = {t}** "
                                  "(√ᾱ_t = {signal}) even a computer that compares x_t with every example picture "
                                  "of the same size can no longer pick the right one. People usually give up in "
                                  "between. Drag t to both and look.",
        "predict.posterior.title": "Predict first: which variance is larger?",
        "predict.posterior.q": "Is the posterior's variance β̃_t **larger or smaller** than the forward step's β_t?",
        "predict.posterior.reveal": "{ok} **Your answer: {guess}. At t = {t}: β̃_t = {bt} against β_t = {beta}, so "
                                    "β̃_t is {truth}.** It is smaller at every t ≥ 1, because knowing x₀ removes "
                                    "uncertainty; the ratio β̃_t / β_t passes 0.9 at t = {above} and tends to 1.",
        "predict.reverse.title": "Predict first: how many DDIM steps are enough?",
        "predict.reverse.q": "With this class and seed: from how many DDIM steps on do the images **look clean**, "
                             "almost the same as with 100 steps?",
        "predict.reverse.reveal": "**Your guess: {guess} steps. Measured: {clean} steps**, the first count whose images "
                                  "differ from the {ref}-step ones by less than {limit} on average (mean |difference| "
                                  "per step count: {table}). The strip shows the same noise at each count.",
        "predict.training.title": "Predict first: can the loss reach zero?",
        "predict.training.q": "If you trained the toy network for ever, would L_simple = ‖ε − ε_θ‖² **reach 0**?",
        "predict.training.reveal": "{ok} **Your answer: {guess}. Measured with {source}: L_simple = {loss}** on 20,000 "
                                   "fresh (x₀, t, ε). It cannot reach 0: given x_t, many ε are possible, and even the "
                                   "best network can only predict their average E[ε | x_t]; what is left is their "
                                   "variance.",
        "fig.timestep": "timestep t", "fig.signal": "√ᾱ_t (signal)", "fig.noise": "√(1−ᾱ_t) (noise)",
        "fig.pixel_value": "pixel value", "fig.density": "density", "fig.pixels": "pixels of x_t (t={t})",
        "fig.variance": "variance", "fig.beta_large": "β_t  (fixed_large)", "fig.beta_small": "β̃_t  (fixed_small)",
        "fig.bpd": "bits/dim", "fig.step": "step", "fig.loss": "loss", "fig.smoothed": "smoothed",
        "fig.data": "data", "fig.samples": "samples",
        "forward.numbers": "{beta}, {abar}, {snr} (Ho et al. 2020, Eq. 4)",
        "forward.compare": "**{top}** (top) vs **{bottom}** (bottom), t = {ts}. "
                           "At t = {t}: $\\bar\\alpha$ = {a_top} vs {a_bottom}.",
        "posterior.numbers": "coef1 = `posterior_mean_coef1[{t}]` = **{c1}**, coef2 = `posterior_mean_coef2[{t}]` = "
                             "**{c2}**, β̃ = `posterior_variance[{t}]` = **{bt}**, β = `betas[{t}]` = **{beta}** "
                             "(Ho et al. 2020, Eq. 6–7; at t = 0 the paper's ᾱ₋₁ = 1)",
        "vlb.table": "| term | bits/dim |\n|---|---|\n| $L_T$ (prior) | {prior:.2e} |\n"
                     "| $L_0$ (decoder) | {decoder:.3f} |\n"
                     "| $\\sum_{{t>1}} L_{{t-1}}$ (**estimate**) | {middle:.3f} |\n"
                     "| **total $L$ (estimate)** | **{total:.3f}** |",
        "vlb.note": "{n} test images, {k} of the {T} timesteps evaluated (every t < {stride}, then every {stride}-th); "
                    "each evaluated term stands for the timesteps around it, so the sum is an estimate. "
                    "Computed in {seconds:.1f} s.",
        "toy.start": "step 0", "toy.step": "step {i} / {n}", "flow.title": "reverse step {k} / {T}: {x}",
        "msg.all": " (all {n})", "msg.frame": "frame {k}/{n} · t = {t}",
        "msg.cmp_start": "DDIM-{steps}: {t_ddim:.1f} s · DDPM-{T}: running…",
        "msg.cmp_step": "DDIM-{steps}: {t_ddim:.1f} s · DDPM-{T}: step {i}/{T}, {elapsed:.1f} s",
        # ---- tab 4, "Paths, steps and the score" (lessons/paths.py)
        "paths.title": "Paths, steps and the score", "paths.toy": "Toy data set",
        "paths.t": "Timestep t (drawn in your browser)",
        "paths.score_h": "The score field $s_\\theta(x, t) = -\\epsilon_\\theta(x, t)/\\sqrt{1-\\bar\\alpha_t}$",
        "paths.score_note": "Arrows: the shipped DDPM model's score on a 21 × 21 grid; they point to where $x_t$ is more "
                            "likely. Grey: the data $x_0$; blue: $x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + "
                            "\\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon$ for 200 of its points (`ddpm.q_sample`). **The "
                            "arrows are rescaled at every t**: an arrow 0.8 grid cells long has the length $|s|_{90}$ "
                            "printed in the corner, the 90th percentile of $|s|$ over the grid at that t; orange arrows "
                            "are more than 1.5 times that and drawn cut to 1.5. (Unscaled they would shrink a hundredfold: "
                            "on two-moons $|s|_{90}$ falls from 325 at t = 0 to 3.5 at t = 99.) The fields at all 100 "
                            "t were sent once; dragging t only picks one.",
        "paths.traj_h": "Twelve points, one starting noise, three samplers", "paths.traj": "Paths from x_T to x₀",
        "paths.traj_note": "100 steps each, all from the same $x_T$ (black crosses). **Red**, DDPM ancestral sampling: "
                           "fresh noise at every step, a jittery walk (the reverse SDE). **Blue**, DDIM with η = 0: no "
                           "noise, smooth curves (the probability-flow ODE); it starts where red starts but lands "
                           "elsewhere, since the two share only the marginals $p_t$, not the paths. **Green**, the "
                           "flow-matching model, 100 Euler steps: nearly straight lines. Click a legend entry to hide it.",
        "paths.steps_h": "Quality against the number of steps", "paths.steps": "Energy distance against steps",
        "paths.steps_note": "Squared energy distance between 2,000 samples and 2,000 real points, mean over three noise "
                            "seeds (lower is better); dashed: two sets of real points, what a perfect sampler would "
                            "score. Measured by `python -m ddpm.toy_metrics` (`assets/models/MODEL_CARD.md`). **Why plain "
                            "DDIM fails at few steps**: the toys' cosine schedule ends at $\\sqrt{\\bar\\alpha_T} = "
                            "4.9\\times10^{-4}$ (SNR $2.4\\times10^{-7}$) and every grid starts at t = 99, so "
                            "$\\hat x_0 = (x_t - \\sqrt{1-\\bar\\alpha_T}\\,\\hat\\varepsilon)/\\sqrt{\\bar\\alpha_T}$ "
                            "multiplies the network's error by about 2,000 and throws points far off (two-moons, "
                            "10 steps: as far as x = −150). The fixes: **clip $\\hat x_0$ to the data's box** (dotted "
                            "blue); zero terminal SNR with v-prediction (Lin et al. 2024; it needs retraining, not shipped "
                            "here), of which trailing spacing (orange) is only the grid half and alone barely helps; or "
                            "**flow matching** (green), whose straight path starts at $x_1 = \\varepsilon$ and divides "
                            "by nothing.",
        "paths.fig.data": "data", "paths.fig.start": "x_T (shared noise)", "paths.fig.ddpm": "DDPM ancestral (SDE)",
        "paths.fig.ddim": "DDIM η = 0 (ODE)", "paths.fig.flow": "flow matching (Euler)",
        "paths.fig.clip": "DDIM, x̂₀ clipped to the data's box", "paths.fig.trailing": "DDIM, trailing spacing",
        "paths.fig.floor": "floor: real vs real", "paths.fig.steps": "sampling steps (network calls)",
        "paths.fig.energy": "energy distance", "paths.fig.blowup": "x̂₀ divides by √ᾱ_T = {a}:<br>points thrown far away",
    },
    "zh": {
        "title": "动手学扩散模型：从数学推导到 DDPM",
        "language": "语言",
        "tab.forward": "1 · 前向", "tab.posterior": "2 · 后验", "tab.reverse": "3 · 反向",
        "tab.training": "4 · 训练", "tab.latent": "5 · 潜空间", "tab.quiz": "6 · 面试题",
        "objective": "训练目标", "objective.eps": "DDPM：噪声 ε",
        "objective.flow": "流匹配：速度 ε − x₀",
        "latent.x0": "x₀（784 个数）", "latent.z0": "z₀ = E(x₀)：4 × 7 × 7 = 196", "latent.rec": "D(z₀)",
        "latent.err": "|x₀ − D(z₀)|", "latent.xt": "x_t：像素空间的噪声", "latent.zt": "z_t：潜空间的噪声",
        "latent.dzt": "D(z_t)：潜空间噪声解码后",
        "latent.cite": "同一个噪声表，一次加在像素上，一次加在潜变量上（式 4；Rombach 等，2022）",
        "latent.numbers": "重建误差（均方误差，像素取值 [0, 1]）：<b>{mse:.4f}</b> · PSNR "
                          "<b>{psnr:.1f} dB</b><br>784 → 196 个数：扩散模型要处理的数少了 4 倍",
        "latent.pick": "图像与噪声", "latent.reverse_h": "### 在潜空间里反向去噪，与像素模型并排",
        "latent.prompt": "提示词", "latent.prompt_info": "一个类别名，中英文皆可：运动鞋、sneaker、短靴……",
        "latent.negative": "负面提示词", "latent.negative_info": "取代无条件分支；留空表示不用",
        "latent.pick_class": "……或者选一个类别",
        "latent.l_xt": "潜空间模型：D(z_t)", "latent.l_x0": "潜空间模型：D(ẑ₀)", "latent.l_z": "它的 z_t（每张图 4 个通道）",
        "latent.p_xt": "像素模型：x_t", "latent.p_x0": "像素模型：x̂₀",
        "latent.cost": "第 {i}/{steps} 步，{n} 张图，本次运行实测：\n\n"
                       "| | 像素模型 | 潜空间模型 |\n|---|---|---|\n"
                       "| 网络要去噪的数 | {d_pix} | {d_lat} |\n"
                       "| 参数量 | {p_pix:.2f} M | {p_lat:.2f} M |\n"
                       "| 每步用时（网络，含引导） | {ms_pix:.1f} 毫秒 | {ms_lat:.1f} 毫秒"
                       "（含为显示而做的解码；解码一次：{dec:.1f} 毫秒） |\n"
                       "| 目前总用时 | {s_pix:.2f} 秒 | {s_lat:.2f} 秒 |\n\n"
                       "像素模型用时是潜空间模型的 **{ratio:.2f} 倍**。",
        "copy_link": "复制当前视图链接", "link": "当前视图链接",
        "image": "图像 x₀（示例）", "upload": "……或上传自己的图片（任意尺寸，彩色或灰度）",
        "t": "时间步 t", "schedule": "噪声调度", "timesteps": "T（加噪步数）",
        "beta_start": "β 起始值", "beta_end": "β 终止值", "compare_with": "对比的调度",
        "x0": "x₀（原图）", "noise": "ε（噪声）", "xt": "x_t", "filmstrip": "均匀间隔的 t 上的 x_t",
        "curves": "调度曲线", "histogram": "x_t 的像素分布，对比标准正态 N(0, 1)",
        "compare_strip": "同一张图、同一份噪声，两种调度", "seed": "随机种子",
        "post_mean": "后验均值 μ̃(x_t, x₀)", "post_draw": "x_{t−1} 的一次采样：x_{t−1} ~ q(x_{t−1} | x_t, x₀)",
        "variances": "β_t 与 β̃_t 对比", "formula": "代入数值的公式",
        "label": "类别", "any": "任意（无条件生成）", "guidance": "引导强度 s",
        "guide_until": "仅当 t ≤", "guide_until_info": "更大的 t 上 s = 1 · 999：每步都引导",
        "model": "模型", "model_info": "小模型由大模型蒸馏而来：实测快 2.4×；4 步模型又由小模型蒸馏而来，引导已内置",
        "sampler": "采样器", "steps": "DDIM 步数", "eta": "DDIM η", "n": "生成数量",
        "generate": "生成", "stop": "停止", "progress": "进度", "pred_x0": "预测的 x₀",
        "scrub": "拖动回看每一步", "gif": "导出为 GIF 动图", "gif_file": "GIF",
        "from_image": "从真实图片出发", "start_t": "先加噪到第 t 步，再去噪",
        "generate_from_image": "从这张图去噪", "compare": "同一份初始噪声：DDPM 对比 DDIM",
        "run_compare": "两个都跑", "ddpm_result": "DDPM（走完全部 T 步）", "ddim_result": "DDIM",
        "interp.title": "在噪声里插值两件衣服（Ho 等，2020，图 8）",
        "interp.trio": "x_a · 加噪后的混合 x̄_t · λ 处的结果 · x_b",
        "interp.row": "同一个 t、同一份噪声下，λ = 0、1/6、…、1",
        "interp.a": "图像 x_a", "interp.b": "图像 x_b", "interp.t": "两张图都加噪到 t", "interp.lam": "混合比例 λ",
        "interp.note": "两张图用同一份 ε（种子 {seed}）加噪到 t = {t}，再按 1 − λ 与 λ 的比例混合（λ = {lam:g}），"
                       "再用无条件模型走 {steps} 步 DDIM 回到 t = 0。",
        "vlb_button": "在测试集图片上计算变分界（负 ELBO）", "vlb_plot": "各时间步的变分界（负 ELBO）",
        "toy": "二维玩具数据", "train": "开始训练（约 10 秒）", "loss": "损失", "toy_samples": "采样结果",
        "flow": "看点如何流动", "flow_t": "反向步数",
        "vlb_title": "逐项拆开变分界（负 ELBO）", "toy_title": "现场训练一个二维点的小型去噪网络",
        "flow_hint": "拖动滑块：第 0 步是纯高斯噪声 x_T，最后一步是生成完成的样本。每个点的颜色始终不变，"
                     "可以盯住某一个点看它怎么走。用的是你刚训练好的模型；还没训练的话，就用这个数据集自带的模型。",
        "quiz_q": "题目", "check": "提交", "next": "下一题", "prev": "上一题", "score": "得分",
        "your_answer": "你的回答", "show_answer": "查看参考答案", "restart": "重新开始",
        "open_hint": "开放题：先想一想、写下你的回答，再查看参考答案。",
        "msg.start": "x_T ~ N(0, I)：{n} 张 28×28 · 共 {total} 步：{ts}",
        "msg.preview": "x_T ~ N(0, I)：种子 {seed} 的“电视雪花”。点 **生成**，反向过程就从这里开始。",
        "msg.step": "**第 {i}/{total} 步** · t = {t} · 每秒 {rate:.1f} 步\n\n<small>经过的 t：{ts}</small>",
        "quiz_choice": "你的选择", "quiz_correct": "✅ 回答正确！",
        "quiz_wrong": "❌ 不对，正确答案是 **{answer}**。", "quiz_why": "解析",
        "quiz_model": "参考答案", "quiz_see": "在应用中动手看看", "quiz_pick": "请先选择一个选项。",
        "quiz_score_note": "（答对 / 已作答的选择题）", "colon": "：",
        # ---- 处理函数生成的文字：说明、公式出处、图的标题、坐标轴、图例、悬停提示
        "cite.eq4": "Ho 等人 2020，式 4 · 由浏览器用 ddpm 算好的表格即时合成",
        "cite.eq7": "Ho 等人 2020，式 6–7 · 由浏览器用 ddpm 算好的表格即时合成",
        "settings": "噪声调度与图像", "about": "关于本课程", "lesson_col": "讲解",
        "predict.reveal": "揭晓答案", "predict.larger": "更大", "predict.smaller": "更小", "predict.equal": "相等",
        "predict.yes": "能", "predict.no": "不能", "predict.guess_t": "你的猜测：t =", "predict.guess": "你的猜测",
        "predict.guess_steps": "你的猜测：DDIM 步数",
        "predict.source.trained": "你刚在这里训练的模型", "predict.source.shipped": "自带的模型",
        "predict.forward.title": "先猜一猜：图像什么时候消失？",
        "predict.forward.q": "先别拖动 t：在当前的噪声调度和 T 下，你觉得到第几步就**认不出**这张图了？"
                             "设好你的猜测，再点“揭晓答案”。",
        "predict.forward.reveal": "**你的猜测：t = {guess}。** 在这张图和这个调度上实测：从 **t = {t_noise}** 起，"
                                  "噪声已经和图像本身的明暗反差一样强；从 **t = {t}** 起（√ᾱ_t = {signal}），"
                                  "就连把 x_t 与每张同尺寸示例图逐一比对的计算机也挑不出原图了。人眼通常在两者"
                                  "之间放弃。把 t 分别拖到这两处看一看。",
        "predict.posterior.title": "先猜一猜：哪个方差更大？",
        "predict.posterior.q": "后验的方差 β̃_t 比前向一步的 β_t **更大还是更小**？",
        "predict.posterior.reveal": "{ok} **你的回答：{guess}。在 t = {t}：β̃_t = {bt}，β_t = {beta}，所以 β̃_t "
                                    "{truth}。** 在每个 t ≥ 1 上它都更小，因为知道了 x₀，不确定性就少了；"
                                    "比值 β̃_t / β_t 在 t = {above} 处超过 0.9，并逐渐趋于 1。",
        "predict.reverse.title": "先猜一猜：DDIM 要多少步才够？",
        "predict.reverse.q": "用当前的类别和种子：从多少步 DDIM 开始，图像就**看起来干净**了，和 100 步的结果几乎一样？",
        "predict.reverse.reveal": "**你的猜测：{guess} 步。实测：{clean} 步**，这是第一个与 {ref} 步结果的平均"
                                  "绝对差小于 {limit} 的步数（各步数的平均绝对差：{table}）。下方的图条是同一份"
                                  "噪声在各个步数下的结果。",
        "predict.training.title": "先猜一猜：损失能降到零吗？",
        "predict.training.q": "如果一直训练下去，这个二维小网络的 L_simple = ‖ε − ε_θ‖² **能降到 0 吗**？",
        "predict.training.reveal": "{ok} **你的回答：{guess}。用{source}在 20,000 组新的（x₀, t, ε）上实测："
                                   "L_simple = {loss}。** 它降不到 0：给定 x_t，可能的 ε 有很多，再好的网络也只能"
                                   "预测它们的平均 E[ε | x_t]，剩下的就是它们的方差。",
        "fig.timestep": "时间步 t", "fig.signal": "√ᾱ_t（信号）", "fig.noise": "√(1−ᾱ_t)（噪声）",
        "fig.pixel_value": "像素值", "fig.density": "概率密度", "fig.pixels": "x_t 的像素（t = {t}）",
        "fig.variance": "方差", "fig.beta_large": "β_t（fixed_large）", "fig.beta_small": "β̃_t（fixed_small）",
        "fig.bpd": "比特/维", "fig.step": "训练步数", "fig.loss": "损失", "fig.smoothed": "平滑后",
        "fig.data": "真实数据", "fig.samples": "采样点",
        "forward.numbers": "{beta}，{abar}，{snr}（Ho 等，2020，式 4）",
        "forward.compare": "上：**{top}**，下：**{bottom}**，t = {ts}。"
                           "t = {t} 时，$\\bar\\alpha$ 分别为 {a_top}（上）和 {a_bottom}（下）。",
        "posterior.numbers": "系数 1 = `posterior_mean_coef1[{t}]` = **{c1}**，系数 2 = `posterior_mean_coef2[{t}]` = "
                             "**{c2}**，β̃ = `posterior_variance[{t}]` = **{bt}**，β = `betas[{t}]` = **{beta}**"
                             "（Ho 等，2020，式 6–7；t = 0 时按论文的约定取 ᾱ₋₁ = 1）",
        "vlb.table": "| 项 | 比特/维 |\n|---|---|\n| $L_T$（先验项） | {prior:.2e} |\n| $L_0$（解码项） | {decoder:.3f} |\n"
                     "| $\\sum_{{t>1}} L_{{t-1}}$（**估计值**） | {middle:.3f} |\n"
                     "| **总计 $L$（估计值）** | **{total:.3f}** |",
        "vlb.note": "{n} 张测试图片；在 {T} 个时间步中评估了 {k} 个（t < {stride} 时每步都算，之后每 {stride} 步算一个）。"
                    "每个评估的项代表它附近的时间步，所以总和是估计值。用时 {seconds:.1f} 秒。",
        "toy.start": "第 0 步", "toy.step": "第 {i} / {n} 步", "flow.title": "反向第 {k} / {T} 步：{x}",
        "msg.all": "（共 {n} 个）", "msg.frame": "第 {k}/{n} 帧 · t = {t}",
        "msg.cmp_start": "DDIM-{steps}：{t_ddim:.1f} 秒 · DDPM-{T}：运行中……",
        "msg.cmp_step": "DDIM-{steps}：{t_ddim:.1f} 秒 · DDPM-{T}：第 {i}/{T} 步，{elapsed:.1f} 秒",
        # ---- 第 4 个标签页：“路径、步数与分数函数”（lessons/paths.py）
        "paths.title": "路径、步数与分数函数", "paths.toy": "二维玩具数据",
        "paths.t": "时间步 t（在浏览器里绘制）",
        "paths.score_h": "分数函数场 $s_\\theta(x, t) = -\\epsilon_\\theta(x, t)/\\sqrt{1-\\bar\\alpha_t}$",
        "paths.score_note": "箭头：自带 DDPM 模型在 21 × 21 网格上估计的分数，指向 $x_t$ 更可能出现的地方。灰点：真实"
                            "数据 $x_0$；蓝点：取其中 200 个点算出的 $x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + "
                            "\\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon$（`ddpm.q_sample`）。**每个 t 的箭头都单独缩放过**："
                            "长 0.8 个网格的箭头，长度等于角落里写的 $|s|_{90}$，即该 t 下网格上 $|s|$ 的第 90 百分位数；"
                            "橙色箭头超过它的 1.5 倍，画的时候截到 1.5 倍。（不缩放的话，箭头会缩小上百倍：在 two-moons "
                            "上，$|s|_{90}$ 从 t = 0 时的 325 降到 t = 99 时的 3.5。）全部 100 个时间步的场只发送一次，"
                            "拖动 t 只是从中挑一个来画。",
        "paths.traj_h": "十二个点，同一份初始噪声，三种采样器", "paths.traj": "从 x_T 到 x₀ 的路径",
        "paths.traj_note": "每种都走 100 步，都从同一个 $x_T$（黑色叉号）出发。**红色**，DDPM 祖先采样：每步都加入新的"
                           "噪声，走得磕磕绊绊（反向随机微分方程）。**蓝色**，η = 0 的 DDIM：不加噪声，是光滑的曲线"
                           "（概率流常微分方程）；它和红色从同一处出发，却落在别处，因为两者只共享边缘分布 $p_t$，"
                           "不共享路径。**绿色**，流匹配模型走 100 步欧拉法：几乎是直线。点击图例可以隐藏某一种。",
        "paths.steps_h": "样本质量与采样步数", "paths.steps": "能量距离随步数的变化",
        "paths.steps_note": "2,000 个样本与 2,000 个真实点之间的平方能量距离，取三个噪声种子的平均（越低越好）；虚线："
                            "两组真实点之间的距离，即完美采样器的成绩。数据由 `python -m ddpm.toy_metrics` 测得（见 "
                            "`assets/models/MODEL_CARD.md`）。**为什么步数少时普通 DDIM 会失败**：玩具模型的余弦调度"
                            "最后只剩 $\\sqrt{\\bar\\alpha_T} = 4.9\\times10^{-4}$（信噪比 $2.4\\times10^{-7}$），而每种"
                            "时间网格都从 t = 99 开始，于是 $\\hat x_0 = (x_t - \\sqrt{1-\\bar\\alpha_T}\\,\\hat\\varepsilon)"
                            "/\\sqrt{\\bar\\alpha_T}$ 把网络的误差放大约 2,000 倍，把点甩到很远（two-moons，10 步："
                            "远到 x = −150）。解决办法：**把 $\\hat x_0$ 裁剪到数据的包围盒里**（蓝色点线）；让终端信噪比"
                            "归零并改用 v 预测（Lin 等，2024；需要重新训练，这里没有提供），尾随间隔（橙色）只是其中关于"
                            "时间网格的那一半，单独使用几乎没有帮助；或者改用**流匹配**（绿色），它的直线路径从 "
                            "$x_1 = \\varepsilon$ 出发，不用除以任何数。",
        "paths.fig.data": "真实数据", "paths.fig.start": "x_T（共同的初始噪声）",
        "paths.fig.ddpm": "DDPM 祖先采样（随机微分方程）", "paths.fig.ddim": "DDIM η = 0（常微分方程）",
        "paths.fig.flow": "流匹配（欧拉法）", "paths.fig.clip": "DDIM，x̂₀ 裁剪到数据包围盒",
        "paths.fig.trailing": "DDIM，尾随间隔", "paths.fig.floor": "下限：真实数据对真实数据",
        "paths.fig.steps": "采样步数（网络调用次数）", "paths.fig.energy": "能量距离",
        "paths.fig.blowup": "x̂₀ 要除以 √ᾱ_T = {a}：<br>点被甩到很远",
    },
}


def lang_of(lang) -> str:
    """`lang` if it is one of LANGS, else "en" (a handler's language argument, also a cache key)."""
    return lang if lang in LANGS else "en"


# Fashion-MNIST's class names in Chinese; the models, the API and deep links keep the English ones as values.
ZH_NAMES = {"T-shirt/top": "T恤/上衣", "Trouser": "裤子", "Pullover": "套头衫", "Dress": "连衣裙", "Coat": "外套",
            "Sandal": "凉鞋", "Shirt": "衬衫", "Sneaker": "运动鞋", "Bag": "包", "Ankle boot": "短靴"}


def class_name(c: str, lang: str = "en") -> str:
    """A class's name to show in `lang` (a class without a Chinese name keeps its own)."""
    return ZH_NAMES.get(c, c) if lang == "zh" else c


def tr(key: str, lang: str = "en") -> str:
    """The UI string `key` in `lang` (falls back to English, then to the key itself)."""
    return UI.get(lang, UI["en"]).get(key) or UI["en"].get(key, key)


@lru_cache(maxsize=None)
def lesson(name: str, lang: str = "en") -> str:
    """The Markdown of lessons/<name>.<lang>.md."""
    path = HERE / f"{name}.{lang}.md"
    if not path.exists():
        path = HERE / f"{name}.en.md"
    return path.read_text(encoding="utf-8")


class Text:
    """Hands out strings while a tab is built and remembers which component shows which string."""

    def __init__(self, lang: str = "en", state=None):
        self.lang = lang
        self.state = state          # the app's gr.State holding the current language, for handlers that write text
        self.items: list[tuple[gr.components.Component, Callable[[str], dict]]] = []

    def __call__(self, key: str) -> str:
        return tr(key, self.lang)

    def reg(self, component, **attrs: str):
        """Register `component` so that each attr (label, value, info...) follows the language: attrs map
        an attribute to a UI key, or to "lesson:<name>" for a lesson file."""
        def update(lang: str) -> dict:
            return {a: (lesson(k[7:], lang) if k.startswith("lesson:") else tr(k, lang)) for a, k in attrs.items()}
        self.items.append((component, update))
        return component

    def reg_fn(self, component, fn: Callable[[str], dict]):
        """Register with a function lang -> update kwargs (for choices lists and the like)."""
        self.items.append((component, fn))
        return component

    @property
    def components(self) -> list:
        return [c for c, _ in self.items]

    def updates(self, lang: str) -> list:
        return [gr.update(**fn(lang)) for _, fn in self.items]
