"""How many completions a token cap cuts: the embedded generator's answers to the built-in prompts (issue 20).

    python -m bench.cut_share [--k 4] [--cap 768] [--write-builtin CAP]

One real generation job (policy/generate.py, as the app runs it) samples K completions for each of the 40 built-in
prompts with a generous cap, into a temporary store. Sampling is sequential, so a completion under a smaller cap C is
this one's first C tokens: the share cut at C is the share that had not ended within C tokens. Reported for a ladder
of caps, with the token counts' quantiles; the default cap (GenerationConfig.max_new_tokens) is chosen from it.
`--write-builtin CAP` rewrites data/builtin/completions.jsonl (the items a fresh store starts with) from these
completions as they would be under CAP, so the demo set is what a generation at the default cap gives.
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench.common import Timer, save
from data import builtin
from data.jobs import job_main
from data.store import open_db
from policy.config import GenerationConfig
from policy.generate import run_generation
from training import EMBEDDED_GENERATOR, resolve_model_path

CAPS = (128, 192, 256, 320, 384, 448, 512, 640, 768)


def generate(folder: Path, k: int, cap: int, seed: int) -> list[dict]:
    db_path = folder / "cut.db"
    db = open_db(db_path)
    builtin.init_db(db)
    before = db.execute("SELECT MAX(id) FROM completions").fetchone()[0]
    args = ["--db", str(db_path), "--prompt-set", builtin.items.BUILTIN_SET, "--k", str(k), "--max-new-tokens", str(cap),
            "--seed", str(seed), "--skip-done", "false"]
    if job_main("generate", GenerationConfig, run_generation, args) != 0:
        raise SystemExit("the generation job failed: see its log above")
    return list(open_db(db_path).query(
        """SELECT p.text AS prompt, c.text, c.n_tokens, c.finish_reason, c.seed, c.params, c.gen_seconds FROM completions c
           JOIN items i ON i.id = c.item_id JOIN prompts p ON p.id = i.prompt_id WHERE c.id > ?
           ORDER BY i.id, c.position""", [before]))


def cut_at(rows: list[dict], cap: int) -> float:
    """The share of completions that have not ended within `cap` tokens."""
    return sum(r["finish_reason"] == "length" or r["n_tokens"] >= cap for r in rows) / len(rows)


def write_builtin(rows: list[dict], cap: int) -> None:
    """The built-in items as a generation at `cap` would have written them: longer answers cut to their first `cap`
    tokens (re-tokenised: the text may differ from a fresh sample only where a token boundary moves)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_GENERATOR))
    by_prompt: dict[str, list[dict]] = {}
    for r in rows:
        text, n, reason = r["text"], r["n_tokens"], r["finish_reason"]
        if reason == "length" or n >= cap:
            text, n, reason = tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:cap]), cap, "length"
        params = {**json.loads(r["params"] or "{}"), "max_new_tokens": cap}
        by_prompt.setdefault(r["prompt"], []).append({"text": text, "n_tokens": n, "finish_reason": reason, "seed": r["seed"],
                                                      "params": params, "gen_seconds": r["gen_seconds"]})
    lines = [json.dumps({"prompt": prompt, "model": "SmolLM2-135M-Instruct (embedded)", "completions": completions})
             for prompt, completions in by_prompt.items()]
    builtin.COMPLETIONS_FILE.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} items to {builtin.COMPLETIONS_FILE}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--cap", type=int, default=768, help="the generous cap the completions are sampled under")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-builtin", type=int, default=None, metavar="CAP")
    parser.add_argument("--out", default=None, help="bench/out/NAME.json; default cut_share_CAP")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Timer() as timer:
        rows = generate(Path(folder), args.k, args.cap, args.seed)
    lengths = sorted(r["n_tokens"] for r in rows)
    ended = [r["n_tokens"] for r in rows if r["finish_reason"] == "eos"]
    save(args.out or f"cut_share_{args.cap}", {
        "completions": len(rows), "k": args.k, "sampled_under_cap": args.cap, "seconds": round(timer.seconds, 1),
        "ended_within_cap": len(ended), "default_cap": GenerationConfig.max_new_tokens,
        "tokens_quantiles": {q: lengths[min(len(lengths) - 1, int(q / 100 * len(lengths)))] for q in (50, 75, 90, 95)},
        "median_tokens_of_ended": statistics.median(ended) if ended else None,
        "share_cut_at": {cap: round(cut_at(rows, cap), 3) for cap in CAPS if cap <= args.cap},
    })
    if args.write_builtin:
        write_builtin(rows, args.write_builtin)


if __name__ == "__main__":
    main()
