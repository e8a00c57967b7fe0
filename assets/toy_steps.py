"""Write assets/toy-steps.json, what the Training tab's "quality against steps" plot reads (lessons/paths.py).

    python assets/toy_steps.py                              # from the tables in assets/models/MODEL_CARD.md
    python assets/toy_steps.py --sweep results/flow/steps.json   # from a fresh `python -m ddpm.toy_metrics` run

The sweep itself (`python -m ddpm.toy_metrics --out results/flow`) takes about 20 minutes on one core, so the app
ships its numbers: the energy distance (mean over noise seeds 0-2, 2,000 samples against 2,000 real points) per toy,
method and step count, and the real-vs-real floor (mean, sd). The file sits beside assets/models, not in it, since
every JSON there is read as a model by `ddpm.pretrained.available()`.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CARD = ROOT / "models" / "MODEL_CARD.md"
OUT = ROOT / "toy-steps.json"
SECTION = "### Energy distance (mean over seeds 0–2; lower is better)"
HEAD = re.compile(r"^\*\*(?P<toy>[\w-]+)\*\* \(floor (?P<mean>[\d.]+) ± (?P<sd>[\d.]+)\)")


def from_card(text: str) -> dict:
    """The energy-distance tables of the model card -> {"steps", "floor": {toy: [mean, sd]}, "energy": {toy:
    {method: [value per step count]}}}."""
    body = text.split(SECTION, 1)[1].split("\n### ", 1)[0]
    out: dict = {"steps": None, "floor": {}, "energy": {}}
    toy = None
    for line in body.splitlines():
        m = HEAD.match(line)
        if m:
            toy = m["toy"]
            out["floor"][toy] = [float(m["mean"]), float(m["sd"])]
            out["energy"][toy] = {}
        elif toy and line.startswith("| method |"):
            steps = [int(c) for c in line.strip("| \n").split("|")[1:]]
            assert out["steps"] in (None, steps), "every table must have the same step counts"
            out["steps"] = steps
        elif toy and line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out["energy"][toy][cells[0]] = [float(c) for c in cells[1:]]
    return out


def from_sweep(res: dict) -> dict:
    """ddpm.toy_metrics' steps.json -> the same layout as from_card."""
    toys = list(res["energy"])
    steps = [int(s) for s in next(iter(res["energy"][toys[0]].values()))]
    return {"steps": steps, "floor": {k: list(res["floor"][k]) for k in toys},
            "energy": {k: {m: [row[str(s)] if str(s) in row else row[s] for s in steps]
                           for m, row in res["energy"][k].items()} for k in toys}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", type=Path, help="a steps.json written by python -m ddpm.toy_metrics")
    a = p.parse_args()
    if a.sweep:
        data = from_sweep(json.loads(a.sweep.read_text()))
        data["source"] = f"python -m ddpm.toy_metrics ({a.sweep})"
    else:
        data = from_card(CARD.read_text(encoding="utf-8"))
        data["source"] = "assets/models/MODEL_CARD.md, " + SECTION.lstrip("# ")
    data["metric"] = "squared energy distance, mean over noise seeds 0-2, 2,000 samples vs 2,000 real points"
    text = json.dumps(data, indent=1, ensure_ascii=False)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m[1]) + "]", text)  # a row a line
    OUT.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(data['energy'])} toys, steps {data['steps']}")


if __name__ == "__main__":
    main()
