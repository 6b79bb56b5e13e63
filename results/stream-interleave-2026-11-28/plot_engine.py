"""Plot bench_engine_interleave.out.txt: serving CPU per event against distinct users per micro-batch."""
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

here = Path(__file__).resolve().parent
rows = {}  # batch size -> [(users per batch, total, stages, replay order)]
order = ""
for line in (here / "bench_engine_interleave.out.txt").read_text().splitlines():
    head = re.match(r"\d+ events \((\d+) users at a time|\d+ events \((time order)", line)
    if head:
        order = f"N={head.group(1)}" if head.group(1) else "time"
    m = re.match(r"batch\s+(\d+) \(([\d.]+) users per batch\):\s+([\d.]+) us CPU.*?per event; (.*)", line)
    if m:
        stages = {k: float(v) for k, v in (s.rsplit(" ", 1) for s in m.group(4).split(", "))}
        rows.setdefault(int(m.group(1)), []).append((float(m.group(2)), float(m.group(3)), stages, order))
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for batch, points in sorted(rows.items(), reverse=True):
    points.sort()
    axes[0].plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"micro-batch {batch}")
axes[0].set(xscale="log", xlabel="distinct users per micro-batch", ylabel="serving CPU per event (us)", title="Serving steps without Kafka (bench_engine.py)")
axes[0].legend()
axes[0].grid(alpha=0.3)
points = sorted(rows[256])
stages = ["long_step", "fuse", "search", "state_read", "state_write", "parse", "messages", "publish", "reencode"]
bottom = [0.0] * len(points)
for stage in stages:
    values = [p[2].get(stage, 0.0) for p in points]
    axes[1].bar(range(len(points)), values, bottom=bottom, label=stage)
    bottom = [b + v for b, v in zip(bottom, values)]
axes[1].set_xticks(range(len(points)), [f"{p[0]:.0f}\n{p[3]}" for p in points])
axes[1].set(xlabel="users per batch of 256 (N: --interleave N)", ylabel="CPU per event (us)", title="Where it goes, batch 256")
axes[1].legend(fontsize=7, ncol=2)
fig.tight_layout()
fig.savefig(here / "engine_vs_users.png", dpi=120)
print("wrote", here / "engine_vs_users.png")
