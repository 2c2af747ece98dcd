"""The table of results/README.md's entry on the title experiment, from this folder's summary.json:
    python results/science/titles/table.py > results/science/titles/table.md"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
f = lambda v: "-" if v is None else f"{v:.2f}"
print("| row | quality (house too), both prompt types | open | instr. follow | ann. carries | parses (open) | D open | D constrained |")
print("|---|---|---|---|---|---|---|---|")
for r in json.loads((HERE / "summary.json").read_text())["rows"]:
    if r["row"].startswith("anchored"):
        o, c = r["by_kind"]["open"], r["by_kind"]["constrained"]
        print(f"| {r['row']} | {f((o['quality_and_house'] + c['quality_and_house']) / 2)} | {f(o['quality_and_house'])} "
              f"| {f(c['instruction_following'])} | {f(c.get('annotation_carries'))} | {f(o['annotation_valid'])} "
              f"| {f(o['D'])} | {f(c['D'])} |")
