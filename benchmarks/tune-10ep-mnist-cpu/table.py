"""Rewrite README.md's table of points from tuned-*.json (everything after the line '<!-- points -->'), and
tuned-10ep.json: the decided methods of all of them in one file, for `layerwise bench ... --tuned`."""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
merged: dict = {"methods": {}}
rows = ["| method | hyper-parameters swept | lr | seed | final loss | decided |", "|---|---|---|---|---|---|"]
for f in sorted(HERE.glob("tuned-[a-z]*.json")):  # the sweeps (not the merged tuned-10ep.json)
    data = json.loads(f.read_text())
    decided = set(data.get("methods", {}))
    merged.update({k: data[k] for k in ("benchmark", "criterion", "protocol") if k in data})
    merged["methods"].update(data.get("methods", {}))
    for key, loss in data["points"].items():
        name, hp, lr, cfg = json.loads(key)
        swept = f"steps={hp['steps']}" if name.startswith("locoprop") and "steps" in hp else ""
        rows.append(
            f"| {name} | {swept} | {lr:.3g} | {cfg['seed']} | {loss:.2f} | {'yes' if name in decided else ''} |"
        )
readme = HERE / "README.md"
head = readme.read_text().split("<!-- points -->")[0]
readme.write_text(head + "<!-- points -->\n\n" + "\n".join(rows) + "\n")
# The steps=5 points of the locoprop-m-bf16 sweep (tuned-c.json) are the lr grid of the registry's
# locoprop-m-bf16-t5 (the same configuration by another name): its entry is their best point.
c = json.loads((HERE / "tuned-c.json").read_text())
t5 = {}
for key, loss in c["points"].items():
    name, hp, lr, cfg = json.loads(key)
    if name == "locoprop-m-bf16" and hp.get("steps") == 5 and cfg["seed"] == 0:
        t5[lr] = (loss, hp, cfg)
if t5:
    best = min(t5, key=lambda lr: t5[lr][0])
    close = [lr for lr in t5 if lr != best and t5[lr][0] <= t5[best][0] * 1.01]
    if close:
        raise SystemExit(f"T=5 close call {close} vs {best}: re-run with seeds (bench tune) before deciding")
    merged["methods"]["locoprop-m-bf16-t5"] = {
        "lr": best,
        "hparams": t5[best][1],
        "config": t5[best][2],
        "sweep": {f"{lr:.3g}": t5[lr][0] for lr in sorted(t5)},
        "source": "tuned-c.json: the steps=5 points of the locoprop-m-bf16 sweep (same protocol)",
    }
(HERE / "tuned-10ep.json").write_text(json.dumps(merged, indent=1) + "\n")
print(f"{len(rows) - 2} points; {len(merged['methods'])} methods decided: {sorted(merged['methods'])}")
