"""Run under torchrun with 2 ranks: equal weights pass the sync check, then rank 1's drift is caught on every rank."""

import torch

from vaelab.errors import VaelabError
from vaelab.training.distributed import session

with session("cpu") as (dist, device):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    dist.check_in_sync(model)  # the same seed on every rank: no complaint
    if dist.rank == 1:
        with torch.no_grad():
            model.bias[2] += 1e-6
    try:
        dist.check_in_sync(model)
    except VaelabError as e:
        print(f"rank {dist.rank} caught: {e}", flush=True)
