"""Run under `accelerate launch --num_processes 2` by tests/test_training_parallel.py, once per strategy: one step of
every trainer on two processes against the same step of one process (tests/parallel_sft_rm_step.py,
tests/parallel_policy_step.py, tests/parallel_dpo_step.py), and sharded, the lockstep of sampling. One launch for all
four trainers: each launch costs ~8 s of start-up on 2 cores before any step. The first process prints each result
as one JSON line after its marker (SFT_RM, POLICY, DPO); sharded, each process prints its LOCKSTEP line.

    accelerate launch --config_file training/accelerate/data_parallel.yaml --num_processes 2 -m tests.parallel_steps \
        TINY_GENERATOR TINY_SMALL_VOCAB_GENERATOR TINY_ENCODER replicate|shard
"""

import json
import sys

from tests import parallel_dpo_step, parallel_policy_step, parallel_sft_rm_step
from training.parallel import DataParallel


def say(marker: str, result) -> None:
    """One write of the whole line: the two processes share the pipe (a print's text and its newline were two writes,
    and the other process's line once landed between them)."""
    sys.stdout.write(f"{marker} {json.dumps(result)}\n")
    sys.stdout.flush()


def main(generator: str, small_vocab_generator: str, encoder: str, strategy: str) -> None:
    parallel = DataParallel("cpu", strategy=strategy)
    assert parallel.processes == 2, "run under accelerate launch --num_processes 2"
    results = {"SFT_RM": parallel_sft_rm_step.differences(parallel, generator, encoder),
               "POLICY": parallel_policy_step.differences(parallel, small_vocab_generator),
               "DPO": parallel_dpo_step.differences(parallel, generator)}
    if parallel.sharded:
        say(f"LOCKSTEP {parallel.rank}", parallel_policy_step.decoding_steps_in_lockstep(small_vocab_generator, parallel))
    if parallel.is_main:
        for marker, result in results.items():
            say(marker, result)


if __name__ == "__main__":
    main(*sys.argv[1:])
