"""Sharding (FSDP2) against one process: peak memory per process of one SFT step, one reward-model step and one
policy-update step of a ~0.5B model.

    python -m bench.sharded [--steps 2] [--tokens 128] [--kinds sft reward policy] [--arch qwen2-0.5b|smollm2-360m]
                            [--gradient-checkpointing] [--mmap-threshold BYTES]

The model is Qwen2-0.5B's architecture (24 layers, hidden 896, vocabulary 151,936, tied embeddings) or, with
`--arch smollm2-360m`, SmolLM2-360M's (Llama, 32 layers, hidden 960, the embedded generator's vocabulary of 49,152,
tied), with random weights built from its config (nothing is downloaded): a causal LM for SFT, the same body with a
one-score head for the reward model. Each arm runs in processes of its own, full weights in fp32 with AdamW: alone (one process, the
whole batch), and sharded over two gloo processes under `accelerate launch` (each half of the batch, FSDP2 through
training/parallel.py as the trainers use it: every decoder block sharded, then the rest). A step is the trainers'
own: SFT's `sft_loss` over the response tokens, the reward model's Bradley-Terry loss on chosen/rejected pairs, the
gradients clipped, AdamW; the policy update's is PolicyTrainer.step (RLOO, full weights, K=2, `--batch` prompts a
step, `--tokens / 4` new tokens): sampling (in lockstep when sharded), the reference's and the policy's log-probs, the
update, with the reference model sharded too; its scores come from a stand-in (the completion's length), since what
is measured is the policy's memory, not a reward model's. Reports each process's peak RSS and the median step time,
and for SFT and the reward model the resident memory through the last step's backward pass (sampled every 5 ms: at
its start, when the input embedding's backward ends, its peak, its end). `--gradient-checkpointing` and
`--mmap-threshold` apply to both arms alike. Results: bench/out/sharded.json (a subset of kinds or another setting:
sharded-<kinds>-<setting>.json).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import median, peak_rss_mb, save
from data.jobs import accelerate_launch

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("sft", "reward", "policy")


ARCHITECTURES = ("qwen2-0.5b", "smollm2-360m")


def model_config(arch: str = "qwen2-0.5b", tied: bool = True, layers: int | None = None):
    """The published shape of Qwen2-0.5B (24 layers, vocabulary 151,936: its tied embedding is 27% of the model) or of
    SmolLM2-360M (Llama, 32 layers, the embedded generator's vocabulary of 49,152: 13%), with random weights."""
    if arch == "smollm2-360m":
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=49_152, hidden_size=960, intermediate_size=2_560, num_hidden_layers=layers or 32,
                           num_attention_heads=15, num_key_value_heads=5, max_position_embeddings=8_192,
                           rope_theta=100_000.0, rms_norm_eps=1e-5, tie_word_embeddings=tied, torch_dtype="float32")
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=151_936, hidden_size=896, intermediate_size=4_864, num_hidden_layers=layers or 24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4_096,
                       tie_word_embeddings=tied, torch_dtype="float32")


def rss_now_mb() -> int:
    """This process's resident memory now (the peak is `peak_rss_mb`)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def sft_step_inputs(batch: int, tokens: int, seed: int, vocab: int):
    """A batch of random token ids whose second half is the response (what `sft_loss` trains on)."""
    import torch

    from policy.sft import SFTBatch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, tokens), generator=generator)
    response = torch.zeros(batch, tokens, dtype=torch.bool)
    response[:, tokens // 2:-1] = True  # position t predicts token t + 1
    targets = torch.roll(ids, -1, dims=1)
    return SFTBatch(ids, torch.ones_like(ids), targets, response)


class BackwardTrace:
    """Resident memory sampled every 5 ms through one backward pass, with the moment the input embedding's backward
    ends (after it, only the root unit's gradient reduction is left): where in the pass the peak is."""

    def __init__(self, model):
        import torch

        self.samples: list[tuple[float, int]] = []
        self.embedding_done = None
        self.running = False
        next(m for m in model.modules() if isinstance(m, torch.nn.Embedding)).register_full_backward_hook(lambda *_: self.mark_embedding())

    def mark_embedding(self):
        self.embedding_done = time.perf_counter()

    def sample(self):
        while self.running:
            self.samples.append((time.perf_counter(), rss_now_mb()))
            time.sleep(0.005)

    def backward(self, loss) -> dict:
        import threading

        self.running, started, start_mb = True, time.perf_counter(), rss_now_mb()
        sampler = threading.Thread(target=self.sample)
        sampler.start()
        loss.backward()
        ended = time.perf_counter()
        self.running = False
        sampler.join()
        at = lambda t: next((r for s, r in reversed(self.samples) if s <= t), start_mb)  # noqa: E731  the last sample by t
        peak_time, peak = max(self.samples, key=lambda sample: sample[1])
        return {"start_mb": start_mb, "embedding_backward_done_mb": at(self.embedding_done or ended),
                "peak_mb": peak, "end_mb": at(ended), "s": round(ended - started, 2),
                "peak_after_embedding_backward": bool(self.embedding_done and peak_time > self.embedding_done)}


class LengthScore:
    """A stand-in scorer for the policy update's arm: the completion's length in characters."""

    def score(self, prompts: list[str], texts: list[str]):
        import torch

        return torch.tensor([float(len(t)) for t in texts])


def policy_worker(parallel, config, steps: int, tokens: int, batch: int) -> dict:
    """The policy-update arm: PolicyTrainer's own steps on a random ~0.5B model (the embedded generator's tokenizer,
    whose ids are within its vocabulary)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data.versions import EMBEDDED_GENERATOR_PATH
    from policy.config import PolicyConfig
    from policy.train import PolicyTrainer
    from training import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_GENERATOR_PATH))
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_config(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    parameters = sum(p.numel() for p in model.parameters())
    trace = {"built": rss_now_mb()}
    settings = PolicyConfig(algorithm="rloo", lora=False, k=2, prompts_per_step=batch, max_new_tokens=max(1, tokens // 4),
                            learning_rate=1e-5, bf16="false", micro_batch_prompts=1, strategy="shard")
    trainer = PolicyTrainer(model, tokenizer, LengthScore(), settings, parallel)
    trace["prepared"] = rss_now_mb()
    prompts = [f"Question {i}: explain, in a few sentences, why the sky looks blue at noon and red at dusk."
               for i in range(batch)]
    times = []
    for step in range(steps):
        started = time.perf_counter()
        metrics = parallel.mean_of(trainer.step(parallel.my_share(prompts), seed=step * 100 + parallel.rank))
        times.append(time.perf_counter() - started)
        trace[f"after step {step + 1}"] = rss_now_mb()
    return {"kind": "policy", "processes": parallel.processes, "sharded": parallel.sharded, "rank": parallel.rank,
            "parameters": parameters, "peak_rss_mb": round(peak_rss_mb()), "step_s": round(median(times), 2),
            "loss": round(metrics["train/loss"], 4), "rss_mb": trace}


def worker(kind: str, steps: int, tokens: int, batch: int, tied: bool, strategy: str = "shard", layers: int | None = None,
           arch: str = "qwen2-0.5b", checkpointing: bool = False) -> dict:
    """One arm in this process (alone, or one of the processes `accelerate launch` started, sharding the model or
    each holding all of it: `strategy`)."""
    import torch
    import torch.nn.functional as F

    from training import release_freed_memory
    from training.parallel import DataParallel

    parallel = DataParallel("cpu", strategy=strategy)
    torch.manual_seed(0)
    config = model_config(arch, tied, layers)
    if kind == "policy":
        return policy_worker(parallel, config, steps, tokens, batch)
    if kind == "sft":
        from transformers import AutoModelForCausalLM

        from policy.sft import sft_loss

        model = AutoModelForCausalLM.from_config(config)
    else:
        from transformers import AutoModelForSequenceClassification

        from rm.model import RewardModel

        config.num_labels, config.pad_token_id = 1, 0
        model = RewardModel(AutoModelForSequenceClassification.from_config(config))
    parameters = sum(p.numel() for p in model.parameters())
    trace = {"built": rss_now_mb()}
    if checkpointing:  # as the trainers' --gradient-checkpointing: before the model is sharded
        from training import checkpointing as layer_checkpointing

        layer_checkpointing.enable(model)
    model = parallel.prepare(model)
    trace["prepared"] = rss_now_mb()
    backward_trace = BackwardTrace(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    share = batch // parallel.processes
    times = []
    for step in range(steps):
        started = time.perf_counter()
        if kind == "sft":
            inputs = sft_step_inputs(batch, tokens, step, config.vocab_size)
            mine = slice(parallel.rank * share, (parallel.rank + 1) * share)
            loss = sft_loss(model, type(inputs)(*(t[mine] for t in (inputs.input_ids, inputs.attention_mask,
                                                                      inputs.target_ids, inputs.response_mask))),
                            whole=parallel.sharded)
        else:
            generator = torch.Generator().manual_seed(step)
            ids = torch.randint(1, config.vocab_size, (batch * 2, tokens), generator=generator)[parallel.rank * share * 2:(parallel.rank + 1) * share * 2]
            rewards = model(ids, torch.ones_like(ids)).view(-1, 2)  # [pairs, chosen/rejected]
            loss = -F.logsigmoid(rewards[:, 0] - rewards[:, 1]).mean()
        if step == steps - 1:
            trace["last backward"] = backward_trace.backward(loss)
        else:
            loss.backward()
        parallel.average_gradients()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        release_freed_memory()  # as the trainers do after each step
        times.append(time.perf_counter() - started)
        trace[f"after step {step + 1}"] = rss_now_mb()
    return {"kind": kind, "processes": parallel.processes, "sharded": parallel.sharded, "rank": parallel.rank,
            "parameters": parameters, "peak_rss_mb": round(peak_rss_mb()), "step_s": round(median(times), 2),
            "loss": round(loss.item(), 4), "rss_mb": trace}


def run_arm(kind: str, processes: int, steps: int, tokens: int, batch: int, tied: bool, strategy: str = "shard",
            layers: int | None = None, arch: str = "qwen2-0.5b", checkpointing: bool = False,
            mmap_threshold: int | None = None) -> list[dict]:
    """The arm in processes of its own; each prints one JSON line."""
    args = ["-m", "bench.sharded", "--worker", kind, "--steps", str(steps), "--tokens", str(tokens), "--batch", str(batch),
            "--strategy", strategy, "--arch", arch, *([] if layers is None else ["--layers", str(layers)]),
            *([] if tied else ["--untied"]), *(["--gradient-checkpointing"] if checkpointing else [])]
    command = [sys.executable, *args] if processes == 1 else [*accelerate_launch(processes), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes)),
           **({"MALLOC_MMAP_THRESHOLD_": str(mmap_threshold)} if mmap_threshold else {})}
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
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--untied", action="store_true", help="separate input and output embeddings (Qwen2-0.5B ties them)")
    parser.add_argument("--strategy", choices=("shard", "replicate"), default="shard",
                        help="replicate: the two processes each hold the whole model and average their gradients (SFT "
                             "and the reward model only), to measure what the averaging itself costs")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="qwen2-0.5b")
    parser.add_argument("--layers", type=int, help="decoder layers (Qwen2-0.5B has 24, SmolLM2-360M 32)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="as the trainers' option, in both arms")
    parser.add_argument("--mmap-threshold", type=int, metavar="BYTES",
                        help="glibc's MALLOC_MMAP_THRESHOLD_ in both arms: allocations from this size get pages of their "
                             "own, handed back when freed (a fixed threshold; glibc's default rises to 32 MB as large "
                             "blocks are freed, and keeps freed ones inside the step)")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.steps, args.tokens, args.batch, not args.untied,
                                            args.strategy, args.layers, args.arch, args.gradient_checkpointing)), flush=True)
        return
    results = {}
    for kind in args.kinds:
        arm = (args.steps, args.tokens, args.batch, not args.untied, args.strategy, args.layers, args.arch,
               args.gradient_checkpointing, args.mmap_threshold)
        alone = run_arm(kind, 1, *arm)[0]
        together = run_arm(kind, 2, *arm)
        worst = max(r["peak_rss_mb"] for r in together)
        label = "sharded" if args.strategy == "shard" else "replicated"
        results[kind] = {"alone": alone, label: together, "peak_rss_ratio": round(worst / alone["peak_rss_mb"], 2)}
        each = ", ".join(f"{r['peak_rss_mb']:,} MB" for r in together)
        print(f"{kind}: {alone['parameters'] / 1e6:.0f}M parameters; alone {alone['peak_rss_mb']:,} MB, {alone['step_s']} s a step; "
              f"{'sharded over' if args.strategy == 'shard' else 'replicated on'} 2 processes {each} "
              f"({results[kind]['peak_rss_ratio']:.2f}x), {together[0]['step_s']} s a step", flush=True)
        for name, arm in (("alone", alone), (f"{label}, first process", together[0])):
            if "last backward" not in arm["rss_mb"]:  # the policy update's step is the trainer's own
                continue
            b = arm["rss_mb"]["last backward"]
            print(f"  {name}, last backward pass: {b['start_mb']:,} MB at its start, {b['embedding_backward_done_mb']:,} MB when "
                  f"the embedding's backward ended, peak {b['peak_mb']:,} MB "
                  f"({'after' if b['peak_after_embedding_backward'] else 'before'} it), {b['end_mb']:,} MB at its end", flush=True)
    name = ("sharded" + ("" if list(args.kinds) == list(KINDS) else "-" + "-".join(args.kinds)) + ("-untied" if args.untied else "")
            + ("" if args.strategy == "shard" else f"-{args.strategy}") + ("" if args.layers is None else f"-{args.layers}layers")
            + ("" if args.arch == "qwen2-0.5b" else f"-{args.arch}") + ("-checkpointing" if args.gradient_checkpointing else "")
            + (f"-mmap{args.mmap_threshold}" if args.mmap_threshold else ""))
    save(name, {"steps": args.steps, "tokens": args.tokens, "batch": args.batch, "tied_embeddings": not args.untied,
                "strategy": args.strategy, "arch": args.arch, "layers": args.layers,
                "gradient_checkpointing": args.gradient_checkpointing, "mmap_threshold": args.mmap_threshold, **results})


if __name__ == "__main__":
    main()
