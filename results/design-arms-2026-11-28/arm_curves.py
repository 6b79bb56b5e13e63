import re
import sys

text = open(sys.argv[1], errors="replace").read().replace("\r", "\n")
arms, cur = [], None
for line in text.splitlines():
    m = re.match(r"difflsrec epoch\s+(\d+)\s+loss\s+\S+\s+valid HR@10 (\S+)\s+NDCG@10 (\S+)", line.strip())
    if not m:
        continue
    ep, hr, nd = int(m[1]), float(m[2]), float(m[3])
    if ep == 1:
        cur = {}; arms.append(cur)
    cur[ep] = nd
names = sys.argv[2:]
for name, c in zip(names, arms):
    best = max(c, key=c.get)
    print(f"{name:10s} epochs {max(c):3d}  valid@10 {c.get(10, float('nan')):.4f}  @25 {c.get(25, float('nan')):.4f}  @40 {c.get(40, float('nan')):.4f}  best {c[best]:.4f} (epoch {best})")
