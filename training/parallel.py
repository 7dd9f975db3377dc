"""Data parallel training under `accelerate launch`: one process per device, gradients averaged, one process writes.

A trainer asks `DataParallel(device)` for its device, hands its model to `prepare` (the first process's
weights are copied to the others), takes its share of each epoch's batches with `shard`, steps with
`backward` (which averages the gradients over the processes), and reports and saves only when `is_main`. The policy
update takes its share of each step's prompts with `my_share`, sums what a statistic over the whole batch needs with
`total` (the reward standardisation, REINFORCE's baseline, PPO's whitening) and averages its metrics with `mean_of`.
Alone (no `accelerate launch`, a job of one process) nothing changes: no process group, the device
`pick_device` chooses, every batch.

The averaging is an all-reduce of the gradients in place after a step's last backward pass, in buckets of 25 MB as
DistributedDataParallel's (so it takes one bucket's memory beyond the gradients, not a copy of them all), rather than
DDP's hooks: the trainers call their models' parts directly (the SFT loss runs the LM head on response positions
only), which DDP's wrapper would not see.

With `strategy="shard"` (every trainer; full weights) `prepare` shards the model with
FSDP2 instead of copying it: FSDP averages those gradients itself, the trainer calls the model's own forward, and
`full_state` gathers the whole weights for the first process to save. Every forward pass of a sharded model gathers
each block's weights from all processes, so every process must run the same passes in the same order: the policy
update's and DPO's sampling runs in lockstep (`everyone`: a process whose samples have all ended goes on until every
process's have; the weights are `gathered` once for it, not at every token), micro-batches are as many on every process (`smallest`; DPO's rankings `padded` with passes of weight
0), and the held-out evaluations run on every process.

    CONFIG=training/accelerate/data_parallel.yaml  # what the app's jobs launch with (data.jobs.accelerate_launch)
    accelerate launch --config_file $CONFIG --num_processes 4 -m rm.train --epochs 2            # 4 GPUs
    accelerate launch --config_file $CONFIG --num_processes 2 -m policy.sft --epochs 3          # no GPU: 2 CPU processes
    accelerate launch --config_file $CONFIG --num_processes 2 -m policy.train --prompts-per-step 8  # 4 prompts a GPU a step
    accelerate launch --config_file $CONFIG --num_processes 8 -m policy.dpo --lora false --strategy shard  # FSDP2
"""

import dataclasses
import json
from contextlib import contextmanager

import torch

from data.jobs import launched_processes
from training import STRATEGIES, pick_device, release_freed_memory

BUCKET_BYTES = 25 * 2**20  # gradients averaged in one all-reduce, as DistributedDataParallel's buckets


class DataParallel:
    def __init__(self, device: str = "auto", alone: bool = False, strategy: str = "replicate"):
        """`alone`: this process trains by itself even under `accelerate launch` (a test's single-process reference).
        `strategy`: replicate or shard (training.STRATEGY_HELP); alone, nothing is sharded."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.accelerator, self.params = None, []
        if launched_processes() > 1 and not alone:
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=device == "cpu" or not torch.cuda.is_available())
            self.device = self.accelerator.device  # cuda:<local rank> on GPUs
        else:
            self.device = pick_device(device)
        self.sharded = strategy == "shard" and self.accelerator is not None

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes if self.accelerator else 1

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator else 0

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def prepare(self, model: torch.nn.Module, add: bool = False, frozen: bool = False) -> torch.nn.Module:
        """The model on this process's device; under several processes, with the first process's weights everywhere,
        and sharded: each of its transformer blocks (the classes its `_no_split_modules` names, as accelerate's
        transformer auto-wrap does) and then the rest, each gathered whole only for its own forward and backward.
        `add`: a second model of the same training (a value head), its parameters averaged with the first's.
        `frozen`: a model that is not trained (the policy update's reference), sharded like the trained one."""
        model.to(self.device)
        if self.accelerator:
            from accelerate.utils import broadcast

            with torch.no_grad():
                for tensor in [*model.parameters(), *model.buffers()]:
                    tensor.copy_(broadcast(tensor.detach().clone(), from_process=0))
        if self.sharded:
            from torch.distributed.fsdp import fully_shard

            blocks = set(getattr(model, "_no_split_modules", None) or [])
            for module in model.modules():
                blocks |= set(getattr(module, "_no_split_modules", None) or [])  # a reward model's backbone's
            for module in list(model.modules()):
                if type(module).__name__ in blocks and module is not model:
                    fully_shard(module)
            fully_shard(model)  # the rest: embeddings (tied ones must stay in one unit), norms, heads
            release_freed_memory()  # the whole weights each process held before sharding, back to the system
        if not frozen:
            self.params = (self.params if add else []) + [p for p in model.parameters() if p.requires_grad]
        return model

    def resharded(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model with every sharded part back in its shards, as reading or writing its weights in place needs:
        after a forward pass without a backward one (an evaluation) FSDP leaves the outermost part gathered, its
        parameters then whole tensors whose changes would be lost. Not a collective; alone or replicated: the model."""
        if self.sharded:
            from torch.distributed.fsdp import FSDPModule

            for module in model.modules():
                if isinstance(module, FSDPModule):
                    module.reshard()
        return model

    @contextmanager
    def gathered(self, model: torch.nn.Module):
        """A sharded model whose blocks, once gathered at their first forward pass, stay whole until the end of the
        block instead of being gathered again at every pass: for sampling, a forward pass per token without a backward
        one (TRL gathers a sharded policy for generation as well). It costs the whole weights' memory for that while,
        and the processes still run every pass together (the first gathers). Alone or replicated: nothing changes."""
        from torch.distributed.fsdp import FSDPModule

        units = [m for m in model.modules() if isinstance(m, FSDPModule)] if self.sharded else []
        blocks = [m for m in units if m is not model]  # the root is already kept whole after its forward pass
        for block in blocks:
            block.set_reshard_after_forward(False, recurse=False)
        try:
            yield model
        finally:
            for block in blocks:
                block.set_reshard_after_forward(True, recurse=False)
            for unit in units:
                unit.reshard()

    def full_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """A sharded model's whole weights, gathered on the first process's CPU (every process must call it; the
        others get None); a model that is not sharded: None (its own state_dict is whole)."""
        if not self.sharded:
            return None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.is_main else None

    def shard(self, batches: list) -> list:
        """This process's batches: every processes-th one, the same count on each (a remainder is left out)."""
        if not self.accelerator:
            return batches
        if len(batches) < self.processes:
            raise ValueError(f"{len(batches)} batches cannot feed {self.processes} processes: use fewer processes or a "
                             "smaller batch size")
        usable = len(batches) // self.processes * self.processes
        return batches[self.accelerator.process_index:usable:self.processes]

    def share(self, value: list | None, as_type=None) -> list:
        """The first process's list on every process: what it read from the store, so all train on the same data even
        while annotators keep adding to it (the others pass None). Sent as JSON in a byte tensor, never pickled;
        `as_type`: the dataclass each element is rebuilt as (elements are sent as their fields)."""
        if not self.accelerator:
            return value
        from accelerate.utils import broadcast

        payload = json.dumps([dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]).encode() \
            if self.is_main else b""
        size = broadcast(torch.tensor([len(payload)], dtype=torch.long, device=self.device), from_process=0)  # [1]
        data = torch.zeros(int(size.item()), dtype=torch.uint8, device=self.device)  # [bytes]
        if self.is_main:
            data.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
        rows = json.loads(broadcast(data, from_process=0).cpu().numpy().tobytes().decode())
        return [as_type(**row) for row in rows] if as_type else rows

    def my_share(self, rows: list) -> list:
        """This process's rows of a list every process holds: every processes-th one from its rank (a policy update
        step's prompts, each with all its K samples, so a leave-one-out baseline stays within one process)."""
        return rows[self.rank::self.processes]

    def padded(self, rows: list) -> list:
        """This process's rows, and sharded, Nones after them up to the most rows any process has: passes each process
        runs only to keep the others company (a sharded model's every forward and backward pass needs all of them)."""
        if not self.sharded:
            return rows
        most = -self.smallest(-len(rows))
        return rows + [None] * (most - len(rows))

    def total(self, values: torch.Tensor) -> torch.Tensor:
        """The sum of `values` over the processes (alone: `values`); every process must call it, in the same order."""
        if not self.accelerator:
            return values
        from accelerate.utils import reduce

        return reduce(values.detach().clone(), reduction="sum")

    def mean_of(self, metrics: dict) -> dict:
        """A step's metrics averaged over the processes, in one all-reduce (every process passes the same keys);
        values that are not numbers are this process's."""
        if not self.accelerator:
            return metrics
        names = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        means = self.total(torch.tensor([float(metrics[k]) for k in names], dtype=torch.float64, device=self.device)) / self.processes
        return {**metrics, **dict(zip(names, means.tolist()))}

    def everyone(self, flag: bool) -> bool:
        """Whether `flag` holds on every process (alone: `flag`); every process must call it, in the same order."""
        if not self.accelerator:
            return flag
        return int(self.total(torch.tensor([int(flag)], device=self.device)).item()) == self.processes

    def smallest(self, value: int) -> int:
        """The smallest of the processes' `value`s (alone: `value`); every process must call it."""
        if not self.accelerator:
            return value
        import torch.distributed as dist

        least = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.all_reduce(least, op=dist.ReduceOp.MIN)
        return int(least.item())

    def clip_gradients(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        """Scale the gradients so that their norm over the whole model is at most `max_norm`; returns that norm. A
        sharded model's gradients are shards: their norm is summed over the processes (DTensor's own reduction), and
        combined with a second model's whole ones (a value head's)."""
        from torch.distributed.tensor import DTensor

        params = [p for p in params if p.grad is not None]
        sharded = [p for p in params if isinstance(p.grad, DTensor)]
        whole = [p for p in params if not isinstance(p.grad, DTensor)]
        if not sharded or not whole:  # one kind: torch's own clipping (a DTensor norm is reduced over the processes)
            return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        norms = torch.stack([torch.nn.utils.get_total_norm([p.grad for p in sharded]).full_tensor(),
                             torch.nn.utils.get_total_norm([p.grad for p in whole])])  # [2]
        norm = norms.norm()  # [] sqrt(a^2 + b^2): the norm over both models
        torch.nn.utils.clip_grads_with_norm_(sharded, max_norm, norm)
        torch.nn.utils.clip_grads_with_norm_(whole, max_norm, norm)
        return float(norm)

    def steps(self, n_batches: int) -> int:
        """How many of n batches this process takes (what `shard` leaves it)."""
        return n_batches if not self.accelerator else n_batches // self.processes

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of this process's batch, averaged over the processes (each process's batch weighs the same)."""
        loss.backward()
        self.average_gradients()

    def average_gradients(self) -> None:
        """The prepared parameters' gradients averaged over the processes (after a step's last backward pass), in
        place, a bucket of at most BUCKET_BYTES at a time as DistributedDataParallel does: the memory this takes
        beyond the gradients is one bucket, whatever the model's size. A sharded model's are averaged by FSDP itself,
        each process keeping its shard's."""
        if not self.accelerator:
            return
        import torch.distributed as dist
        from torch.distributed.tensor import DTensor

        params = [p for p in self.params if not isinstance(p, DTensor)]  # FSDP's own are averaged already
        for p in params:
            if p.grad is None:  # a part this process's batch did not reach: a zero gradient, so the sums agree
                p.grad = torch.zeros_like(p)
        for bucket in gradient_buckets(params):
            if len(bucket) == 1:  # a parameter as large as a bucket (an embedding) is reduced where it lies
                flat = bucket[0].grad = bucket[0].grad.contiguous()
            else:
                flat = torch.cat([p.grad.reshape(-1) for p in bucket])  # [the bucket's elements]
            dist.all_reduce(flat)  # summed over the processes
            flat.div_(self.processes)
            if len(bucket) > 1:
                for p, mean in zip(bucket, flat.split([p.numel() for p in bucket])):
                    p.grad.copy_(mean.view_as(p.grad))

    def wait(self) -> None:
        """All processes meet here (before the main one writes, say)."""
        if self.accelerator:
            self.accelerator.wait_for_everyone()


def gradient_buckets(params: list[torch.nn.Parameter]) -> list[list[torch.nn.Parameter]]:
    """The parameters in order, grouped into buckets of one dtype and device of at most BUCKET_BYTES of gradients (a
    larger parameter alone in its own)."""
    buckets, size = [], 0
    for p in params:
        nbytes = p.grad.numel() * p.grad.element_size()
        last = buckets[-1] if buckets else None
        if last and size + nbytes <= BUCKET_BYTES and (last[0].grad.dtype, last[0].grad.device) == (p.grad.dtype, p.grad.device):
            last.append(p)
            size += nbytes
        else:
            buckets.append([p])
            size = nbytes
    return buckets
