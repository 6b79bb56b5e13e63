# CPU per event when every event is a new user started from the artifact histories (ML-1M, the 1-epoch model
# of runs/ml1m-1ep with ML-1M histories attached), against seeding off; then the GRU over 256 x 200 items alone.
# PYTHONPATH=. .venv/bin/python results/demo-seeding-2026-12-06/seed_cost.py
import dataclasses
import glob
import os
import time

import numpy as np
import torch

torch.set_num_threads(1)
from model.data.dataset import PreparedDataset
from model.histories import UserHistories
from stream.engine import Engine, ModelBundle
from tests.stream.helpers import as_sourced

p = glob.glob(os.path.expanduser("~/.cache/difflsrec/prepared/992cf7b30fd7*.npz"))[0]
d = PreparedDataset.load(p)
bundle = ModelBundle.load("runs/ml1m-1ep")
object.__setattr__(bundle, "artifact", dataclasses.replace(bundle.artifact, histories=UserHistories.from_sequences(d.sequences)))
users = d.sequences.user_ids.tolist()
rng = np.random.default_rng(0)
items = [str(x) for x in d.sequences.item_ids[1:]]
events = [{"user_id": u, "item_id": items[rng.integers(len(items))], "timestamp": 1.7e9} for u in users]
for seed in (False, True, False, True):
    engine = Engine(bundle, seed_states=seed)
    t0 = time.thread_time()
    n = 0
    for start in range(0, 256 * 12, 256):
        r = engine.process(as_sourced(events[start:start + 256], start_offset=start), {})
        n += len(r.recommendations)
    print("seed_states", seed, "us per event (each a new user, 256 per batch):", round(1e6 * (time.thread_time() - t0) / n, 1), "seeded", r.counts.seeded)
from model.batching import collate

rows = []
for u in range(256):
    it, tm = bundle.artifact.histories.get(users[u])
    iv = bundle.artifact.stats.interval_feature(np.abs(np.diff(tm, prepend=tm[:1]))); iv[0] = 0
    rows.append((it.astype(np.int64), iv, bundle.artifact.stats.frequency_bucket(it.astype(np.int64))))
batch = collate(rows, np.zeros(256))
print("L", batch.items.shape)
with torch.inference_mode():
    for k in range(2):
        t = time.thread_time(); a = bundle.model.encode_long(batch)[:, -1]; e = time.thread_time() - t
        t = time.thread_time(); b = bundle.long_steps(torch.zeros(256, 64), batch.items, batch.intervals, batch.freqs)[:, -1]; s = time.thread_time() - t
        print("eager ms", round(1e3 * e, 1), "scripted ms", round(1e3 * s, 1), "max diff", float((a - b).abs().max()))
