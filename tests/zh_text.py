"""Checks on Chinese text, shared by the tests: full-width punctuation next to Chinese, and no stray English.

Formulas ($...$, $$...$$), inline code (`...`), fenced code, HTML tags, Markdown links' targets and
URLs are masked first: their ASCII punctuation is maths or syntax, not prose.
"""
from __future__ import annotations

import re

CJK = r"\u3400-\u4dbf\u4e00-\u9fff"
# half-width punctuation that Chinese prose writes full-width: ，：；？！（）and “ ” ‘ ’
HALF = r",:;?!()\"'"
_MASKS = [
    re.compile(r"```.*?```", re.S),                 # fenced code
    re.compile(r"\$\$.+?\$\$", re.S),               # display maths
    re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),      # inline maths
    re.compile(r"`[^`\n]+`"),                       # inline code
    re.compile(r"\]\([^)\s]*\)"),                   # a link's target: ](?tab=forward&t=250)
    re.compile(r"https?://\S+"),                    # bare URLs
    re.compile(r"<[^>\n]+>"),                       # HTML tags such as <small>
    re.compile(r"\{[a-z_0-9]*(:[^}]*)?\}"),         # str.format fields: {n}, {rate:.1f}
]
_BAD = re.compile(rf"(?:[{CJK}][ ]?[{re.escape(HALF)}])|(?:[{re.escape(HALF)}][ ]?[{CJK}])")


def mask(text: str) -> str:
    """Replace formulas, code, link targets, URLs and tags by spaces of the same length (keeps offsets)."""
    for pattern in _MASKS:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def half_width_punctuation(text: str) -> list[str]:
    """Each place where a half-width , : ; ? ! ( ) or ASCII quote touches a Chinese character, with context."""
    masked = mask(text)
    return [text[max(0, m.start() - 12):m.end() + 12].replace("\n", " ") for m in _BAD.finditer(masked)]


# Words that may stay Latin in Chinese text: names of people, models, methods, data sets, units and the
# app's own API. Anything else in Latin letters (two or more) in a Chinese handler's output is untranslated.
PROPER = {
    "ddpm", "ddim", "dit", "mmdit", "sd", "sdedit", "vae", "unet", "u-net", "mlp", "ema", "adam", "adamw",
    "elbo", "kl", "mse", "snr", "fid", "fd", "nll", "gif", "png", "cpu", "gpu", "cuda", "api", "url",
    "ho", "song", "nichol", "dhariwal", "salimans", "kynkäänniemi", "hang", "lin", "et", "al", "meng",
    "fashion", "mnist", "fashion-mnist", "cifar", "imagenet", "stable", "diffusion", "clip", "flux",
    "bf16", "bfloat16", "float32", "softmax", "relu", "silu", "gelu", "lpips", "ms", "px", "bits", "dim",
    "linear", "cosine", "quadratic", "sigmoid", "ddpm_large", "min-snr", "min", "max", "log", "exp",
    "sneaker", "trouser", "bag", "shirt", "coat", "dress", "sandal", "pullover", "ankle", "boot", "t-shirt",
    "top", "photo", "cat", "coffee", "astronaut", "swiss-roll", "two-moons", "8-gaussians", "checkerboard",
    "rings", "any", "eps", "epsilon", "x_t", "x_0", "pred", "noise", "v",
    "rombach", "esser", "peebles", "xie", "liu", "lipman", "radford", "psnr", "db",
}
_LATIN_WORD = re.compile(r"(?<![A-Za-z_\\])[A-Za-z][A-Za-z_\-]+")


def english_words(text: str, allowed: set[str] = frozenset()) -> list[str]:
    """Latin words of two or more letters outside formulas and code that are not proper names."""
    masked = mask(text)
    ok = PROPER | {w.lower() for w in allowed}
    return [w for w in _LATIN_WORD.findall(masked) if w.lower().strip("-_") not in ok]
