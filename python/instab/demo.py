"""``instab demo``: the main job on built-in data.

Until the model and environment stages land, the demo measures instability
on a small worked example whose numbers can be checked by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from instab.metrics import instability

ENVIRONMENTS = ["phone-a", "phone-b", "phone-c"]


def worked_example() -> tuple[np.ndarray, list[list[int]]]:
    """Six images seen by three phones (top-3 ranked classes, -1 = not seen)."""
    predictions = np.array(
        [
            [[414, 748, 636], [414, 636, 748], [414, 748, 728]],  # backpack, right everywhere
            [[898, 907, 440], [907, 898, 440], [898, 440, 907]],  # water bottle, flips on phone b
            [[440, 907, 737], [907, 440, 737], [907, 966, 440]],  # beer bottle (or wine bottle): right everywhere
            [[748, 414, 636], [636, 748, 414], [-1, -1, -1]],  # purse, flips; not seen by phone c
            [[728, 414, 748], [728, 748, 414], [728, 636, 414]],  # mailbag label, always "plastic bag": wrong
            [[907, 440, 898], [-1, -1, -1], [-1, -1, -1]],  # seen once: not counted
        ]
    )
    labels = [[414], [898], [440, 907], [748], [636], [907]]
    return predictions, labels


def run_demo(out: str) -> int:
    predictions, labels = worked_example()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    summary = {}
    for k in (1, 3):
        r = instability(predictions, labels, k=k)
        summary[f"top{k}"] = {
            "instability": r.rate,
            "n_unstable": r.n_unstable,
            "n_images": r.n_images,
            "accuracy": dict(zip(ENVIRONMENTS, r.accuracy.tolist())),
        }
        acc = "  ".join(f"{e} {a:.2f}" for e, a in zip(ENVIRONMENTS, r.accuracy))
        lines.append(f"top-{k}: instability {r.rate:.1%} ({r.n_unstable}/{r.n_images})  accuracy: {acc}")
    print("instab demo: a worked example (6 images x 3 phones)")
    print("\n".join(lines))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out_dir / 'summary.json'}")
    return 0
