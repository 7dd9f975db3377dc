"""Sharding (FSDP2) against one process: peak memory per process of one SFT step and one reward-model step of a
~0.5B model.

    python -m bench.sharded [--steps 2] [--tokens 128]

The model is Qwen2-0.5B's architecture (24 layers, hidden 896, vocabulary 151,936, tied embeddings) with random
weights built from its config (nothing is downloaded): a causal LM for SFT, the same body with a one-score head for
the reward model. Each arm runs in processes of its own, full weights in fp32 with AdamW: alone (one process, the
whole batch), and sharded over two gloo processes under `accelerate launch` (each half of the batch, FSDP2 through
training/parallel.py as the trainers use it: every decoder block sharded, then the rest). A step is the trainers'
own: SFT's `sft_loss` over the response tokens, the reward model's Bradley-Terry loss on chosen/rejected pairs, the
gradients clipped, AdamW. Reports each process's peak RSS and the median step time. Results: bench/out/sharded.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import median, peak_rss_mb, save

ROOT = Path(__file__).resolve().parent.parent


def qwen2_half_billion(tied: bool = True):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=151_936, hidden_size=896, intermediate_size=4_864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4_096,
                       tie_word_embeddings=tied, torch_dtype="float32")


def rss_now_mb() -> int:
    """This process's resident memory now (the peak is `peak_rss_mb`)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def sft_step_inputs(batch: int, tokens: int, seed: int):
    """A batch of random token ids whose second half is the response (what `sft_loss` trains on)."""
    import torch

    from policy.sft import SFTBatch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 151_936, (batch, tokens), generator=generator)
    response = torch.zeros(batch, tokens, dtype=torch.bool)
    response[:, tokens // 2:-1] = True  # position t predicts token t + 1
    targets = torch.roll(ids, -1, dims=1)
    return SFTBatch(ids, torch.ones_like(ids), targets, response)


def worker(kind: str, steps: int, tokens: int, batch: int, tied: bool) -> dict:
    """One arm in this process (alone, or one of the processes `accelerate launch` started)."""
    import torch
    import torch.nn.functional as F

    from training.parallel import DataParallel

    parallel = DataParallel("cpu", strategy="shard")
    torch.manual_seed(0)
    config = qwen2_half_billion(tied)
    if kind == "sft":
        from transformers import Qwen2ForCausalLM

        from policy.sft import sft_loss

        model = Qwen2ForCausalLM(config)
    else:
        from transformers import Qwen2ForSequenceClassification

        from rm.model import RewardModel

        config.num_labels, config.pad_token_id = 1, 0
        model = RewardModel(Qwen2ForSequenceClassification(config))
    parameters = sum(p.numel() for p in model.parameters())
    trace = {"built": rss_now_mb()}
    model = parallel.prepare(model)
    trace["prepared"] = rss_now_mb()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    share = batch // parallel.processes
    times = []
    for step in range(steps):
        started = time.perf_counter()
        if kind == "sft":
            inputs = sft_step_inputs(batch, tokens, step)
            mine = slice(parallel.rank * share, (parallel.rank + 1) * share)
            loss = sft_loss(model, type(inputs)(*(t[mine] for t in (inputs.input_ids, inputs.attention_mask,
                                                                      inputs.target_ids, inputs.response_mask))),
                            whole=parallel.sharded)
        else:
            generator = torch.Generator().manual_seed(step)
            ids = torch.randint(1, 151_936, (batch * 2, tokens), generator=generator)[parallel.rank * share * 2:(parallel.rank + 1) * share * 2]
            rewards = model(ids, torch.ones_like(ids)).view(-1, 2)  # [pairs, chosen/rejected]
            loss = -F.logsigmoid(rewards[:, 0] - rewards[:, 1]).mean()
        loss.backward()
        parallel.average_gradients()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
        trace[f"after step {step + 1}"] = rss_now_mb()
    return {"kind": kind, "processes": parallel.processes, "sharded": parallel.sharded, "rank": parallel.rank,
            "parameters": parameters, "peak_rss_mb": round(peak_rss_mb()), "step_s": round(median(times), 2),
            "loss": round(loss.item(), 4), "rss_mb": trace}


def run_arm(kind: str, processes: int, steps: int, tokens: int, batch: int, tied: bool) -> list[dict]:
    """The arm in processes of its own; each prints one JSON line."""
    args = ["-m", "bench.sharded", "--worker", kind, "--steps", str(steps), "--tokens", str(tokens), "--batch", str(batch),
            *([] if tied else ["--untied"])]
    command = [sys.executable, *args] if processes == 1 else [
        shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate", "launch", "--multi_gpu",
        "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "0", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes))}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-4000:])
    return sorted((json.loads(line.split("RESULT ", 1)[1]) for line in done.stdout.splitlines() if "RESULT " in line),
                  key=lambda r: r["rank"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4, help="sequences (SFT) or pairs (reward model) per step, over all processes")
    parser.add_argument("--kinds", nargs="+", choices=["sft", "reward"], default=["sft", "reward"])
    parser.add_argument("--untied", action="store_true", help="separate input and output embeddings (Qwen2-0.5B ties them)")
    parser.add_argument("--worker", choices=["sft", "reward"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.steps, args.tokens, args.batch, not args.untied)), flush=True)
        return
    results = {}
    for kind in args.kinds:
        alone = run_arm(kind, 1, args.steps, args.tokens, args.batch, not args.untied)[0]
        sharded = run_arm(kind, 2, args.steps, args.tokens, args.batch, not args.untied)
        worst = max(r["peak_rss_mb"] for r in sharded)
        results[kind] = {"alone": alone, "sharded": sharded, "peak_rss_ratio": round(worst / alone["peak_rss_mb"], 2)}
        each = ", ".join(f"{r['peak_rss_mb']:,} MB" for r in sharded)
        print(f"{kind}: {alone['parameters'] / 1e6:.0f}M parameters; alone {alone['peak_rss_mb']:,} MB, {alone['step_s']} s a step; "
              f"sharded over 2 processes {each} "
              f"({results[kind]['peak_rss_ratio']:.2f}x), {sharded[0]['step_s']} s a step", flush=True)
    save("sharded-untied" if args.untied else "sharded",
         {"steps": args.steps, "tokens": args.tokens, "batch": args.batch, "tied_embeddings": not args.untied, **results})


if __name__ == "__main__":
    main()
