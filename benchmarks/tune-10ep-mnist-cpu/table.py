"""Rewrite README.md's table of points from tuned-*.json (everything after the line '<!-- points -->'), and
tuned-10ep.json: the decided methods of all of them in one file, for `layerwise bench ... --tuned`."""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
merged: dict = {"methods": {}}
rows = ["| method | hyper-parameters swept | lr | seed | final loss | decided |", "|---|---|---|---|---|---|"]
for f in sorted(HERE.glob("tuned-[a-z].json")):  # the sweeps (not the merged tuned-10ep.json)
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
(HERE / "tuned-10ep.json").write_text(json.dumps(merged, indent=1) + "\n")
print(f"{len(rows) - 2} points; {len(merged['methods'])} methods decided: {sorted(merged['methods'])}")
