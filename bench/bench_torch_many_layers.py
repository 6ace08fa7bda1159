"""Many small layers, a BERT-base-sized rewind, and channels_last weights (issue 11.8).

Each figure against its baseline, measured in the same run:

* training step (forward, backward, Adam) of 1,000 prunable ``Linear(32, 32)`` layers at
  50% sparsity against the same plain layers, the median of 40 steps each, the two
  taking turns going first: target at most 1.05;
* ``prune()`` of those 1,000 layers, per layer;
* ``rewind()`` of a BERT-base-sized model (embeddings 30,522 x 768, 12 blocks of the
  attention and MLP matrices, 110M weights) against one ``torch._foreach_copy_`` of its
  parameters: target within 2x;
* the global prune of ``channels_last`` convolutions against the same contiguous ones.

Run: ``nox -s bench`` or ``python bench/bench_torch_many_layers.py``.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from torch import nn

from lotto_backends.torch import MagnitudePruneGroup, PrunableModule, Pruner, make_prunable


def _prunable(model: nn.Module) -> list[PrunableModule]:
    return [m for m in model.modules() if isinstance(m, PrunableModule)]


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(steps: int = 40) -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(*[nn.Linear(32, 32) for _ in range(1000)])
    prunable = make_prunable(nn.Sequential(*[nn.Linear(32, 32) for _ in range(1000)]))
    pruner = Pruner([MagnitudePruneGroup(_prunable(prunable), 0.5)], model=prunable)
    prune = _median(pruner.prune, 3) / 1000
    plain.load_state_dict(prunable.state_dict(), strict=False)
    x = torch.randn(64, 32)
    models = {"plain": plain, "prunable": prunable}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}

    def step(name: str) -> float:
        start = time.perf_counter()
        loss = models[name](x).pow(2).mean()
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        return time.perf_counter() - start

    for name in models:
        step(name)
    for i in range(steps):  # the two take turns going first: neither always runs on the other's caches
        for name in list(models)[:: 1 if i % 2 else -1]:
            times[name].append(step(name))
    plain_t, ours = statistics.median(times["plain"]), statistics.median(times["prunable"])
    print(f"1,000 Linear(32, 32), batch 64, Adam: plain {plain_t * 1e3:.1f} ms/step, prunable {ours * 1e3:.1f} ms/step")
    print(f"  train step prunable / plain: {ours / plain_t:.3f}   (target <= 1.05)")
    print(f"  prune(): {prune * 1e3:.3f} ms per layer")


def bert_rewind() -> None:
    torch.manual_seed(0)
    blocks: list[nn.Module] = [nn.Embedding(30522, 768)]
    for _ in range(12):
        blocks += [nn.Linear(768, 2304), nn.Linear(768, 768), nn.LayerNorm(768)]
        blocks += [nn.Linear(768, 3072), nn.Linear(3072, 768), nn.LayerNorm(768)]
    model = make_prunable(nn.Sequential(*blocks))
    linears = [m for m in _prunable(model) if not isinstance(m, nn.LayerNorm)]
    pruner = Pruner([MagnitudePruneGroup(linears, 0.5)], model=model)
    pruner.prune()
    params = [p.detach() for p in model.parameters()]
    copies = [p.clone() for p in params]
    copy = _median(lambda: torch._foreach_copy_(params, copies), 5)
    rewind = _median(pruner.rewind, 5)
    weights = sum(p.numel() for p in params)
    print(f"BERT-base-sized model ({weights / 1e6:.0f}M weights): foreach copy {copy * 1e3:.0f} ms, ", end="")
    print(f"rewind {rewind * 1e3:.0f} ms = {rewind / copy:.2f}x   (target <= 2)")


def channels_last() -> None:
    torch.manual_seed(0)

    def convs() -> nn.Sequential:
        return make_prunable(nn.Sequential(*[nn.Conv2d(256, 256, 3) for _ in range(4)]))

    plain, last = convs(), convs().to(memory_format=torch.channels_last)
    last.load_state_dict(plain.state_dict())
    times = {}
    for name, model in (("contiguous", plain), ("channels_last", last)):
        pruner = Pruner([MagnitudePruneGroup(_prunable(model), 0.2)], model=model)
        times[name] = _median(pruner.prune, 5)
    same = all(torch.equal(a.weight_mask, b.weight_mask) for a, b in zip(plain, last, strict=True))
    ratio = times["channels_last"] / times["contiguous"]
    print(
        f"4 Conv2d(256, 256, 3), global prune: contiguous {times['contiguous'] * 1e3:.1f} ms, channels_last "
        f"{times['channels_last'] * 1e3:.1f} ms = {ratio:.2f}x; same masks: {same}"
    )


def main() -> int:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    train_step()
    bert_rewind()
    channels_last()
    return 0


if __name__ == "__main__":
    sys.exit(main())
