"""One rank of a 2-process LocoProp run over gloo; ``exit`` as the 3rd argument leaves with os._exit(0).

Used by ``stress.sh`` to count how often a finished process aborts at interpreter exit.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from layerwise.locoprop import LocoProp

rank, init, how = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 5)).double()
opt = LocoProp(model, lr=1e-3)
x = torch.randn(3, 6, 5, dtype=torch.float64)
for batch in x:
    opt.step(lambda b=batch: F.mse_loss(model(b), b))
dist.destroy_process_group()
if how == "exit":
    sys.stdout.flush()
    os._exit(0)
