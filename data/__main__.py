"""Command line for the store: `python -m data --help`."""

import argparse
import getpass
import json
import sys
from pathlib import Path

from data import (accounts, builtin, export, formats, importing, items, jobs, leaderboard, prompt_sets, quality, review,
                  spot_checks, store, uncertainty, versions)
from data.store import open_db, resolve_db_path

SKIP_HELP = "import the valid lines and report the refused ones"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    parser.add_argument("--db", help="SQLite file (default: $RLHF_DB or data/app.db)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="create the database; add the built-in prompts, generator and completions")
    commands.add_parser("stats", help="print counts")
    p = commands.add_parser("create-user", help="create an account; the password is read from stdin or prompted for")
    p.add_argument("name")
    p.add_argument("--role", choices=accounts.ROLES, default="annotator")
    p = commands.add_parser("import", help="import a preference file: TRL pairs, scored completions (UltraFeedback), Chatbot "
                                           "Arena battles, OpenAssistant trees, HH-RLHF, or this app's rankings/completions")
    p.add_argument("file", type=Path, help=".jsonl, .json, .csv (flat formats) or .parquet")
    p.add_argument("--format", choices=["auto", *formats.FORMATS], default="auto", help="auto: recognised by its columns")
    p.add_argument("--set", default="imported", help="prompt set for its prompts")
    p.add_argument("--annotator", help="who the rankings are stored under when the file names nobody (default: the format's name)")
    p.add_argument("--score-key", help="scored: the score to rank by (default overall_score; or an aspect, e.g. helpfulness)")
    p.add_argument("--skip-invalid", action="store_true", help=SKIP_HELP)
    p.add_argument("--rejects", type=Path, help="write the refused lines (with why) to this JSONL file")
    p = commands.add_parser("import-prompts", help="import prompts from .txt (one per line), .csv or .jsonl")
    p.add_argument("file", type=Path)
    p.add_argument("--skip-invalid", action="store_true", help=SKIP_HELP)
    p.add_argument("--set", default="default", help="prompt set to add them to")
    p = commands.add_parser("import-completions", help="import JSONL lines of {prompt, completions: [...], model}")
    p.add_argument("file", type=Path)
    p.add_argument("--skip-invalid", action="store_true", help=SKIP_HELP)
    p.add_argument("--set", default="imported", help="prompt set for their prompts")
    p = commands.add_parser("import-rankings", help="import a rankings export (JSONL)")
    p.add_argument("file", type=Path)
    p.add_argument("--skip-invalid", action="store_true", help=SKIP_HELP)
    p = commands.add_parser("import-hh", help="import HH-RLHF pairs (JSONL of {chosen, rejected} dialogues) as rankings")
    p.add_argument("file", type=Path)
    p.add_argument("--skip-invalid", action="store_true", help=SKIP_HELP)
    p.add_argument("--set", default="hh-rlhf", help="prompt set for their prompts")
    p.add_argument("--annotator", default="hh-rlhf", help="the provenance account the rankings are stored under")
    p = commands.add_parser("export", help="export pairs or rankings")
    p.add_argument("--kind", choices=export.KINDS, default="pairs")
    p.add_argument("--format", choices=[*export.FORMATS, export.DATASET], default="jsonl",
                   help="a file, or `dataset`: a folder with data/train.parquet and a dataset card that load_dataset reads")
    p.add_argument("--out", type=Path, required=True, help="the file (or, for a dataset, a new folder) to write")
    p.add_argument("--since", help="first day, YYYY-MM-DD")
    p.add_argument("--until", help="last day, YYYY-MM-DD")
    p.add_argument("--annotator", action="append", help="only this annotator (repeatable)")
    p.add_argument("--prompt-set", action="append", help="only this prompt set (repeatable)")
    p.add_argument("--keep-excluded", action="store_true",
                   help="pairs: also rejected rankings and those flagged 'all are bad' or 'offensive/unsafe'")
    p.add_argument("--conversational", choices=export.CONVERSATIONAL, default="auto",
                   help="pairs as TRL's conversational format (lists of messages); auto: when any prompt is a conversation")
    p = commands.add_parser("export-completions", help="write a prompt set's items in the completions import format")
    p.add_argument("--set", default="builtin")
    p.add_argument("--out", type=Path, required=True)
    p = commands.add_parser("backup", help="copy the live database to a file (SQLite's online backup: safe while the app runs)")
    p.add_argument("out", type=Path)
    p = commands.add_parser("stats-refresh", help="bring the stored quality statistics and the model leaderboard's counts up to date (the Quality screens do it too)")
    p = commands.add_parser("queue-order", help="serve a prompt set oldest first, or least certain to the active reward model "
                                               "first (a background job then scores its open items)")
    p.add_argument("set")
    p.add_argument("order", choices=sorted(uncertainty.QUEUE_ORDERS))
    p.add_argument("--random-share", type=float, default=0.2, help="share of the set's items served in random order (default 0.2)")
    p = commands.add_parser("review", help="review rankings: list a queue (default flagged), or accept ID, reject ID --reason, send-back ID")
    p.add_argument("action", nargs="?", choices=["list", "accept", "reject", "send-back"], default="list")
    p.add_argument("ranking", nargs="?", help="the ranking id to decide on")
    p.add_argument("--queue", choices=list(review.QUEUES), default="flagged")
    p.add_argument("--annotator", help="with --queue recent: only this person's newest answers")
    p.add_argument("--reason", default="", help="why (needed to reject)")
    p.add_argument("--limit", type=int, default=50)
    commands.add_parser("sets", help="the prompt sets: status, priority, items, rankings done and wanted, pace, assigned annotators")
    p = commands.add_parser("set", help="change a prompt set: status, priority, who it is served to, its targets; or delete it")
    p.add_argument("name")
    p.add_argument("--status", choices=prompt_sets.STATUSES, help="active: served; paused: not now; archived: done, kept")
    p.add_argument("--priority", type=int, help="higher is served first (default 0; ties keep the usual order)")
    p.add_argument("--assign", help="comma-separated annotators: the only ones it is served to")
    p.add_argument("--assign-all", action="store_true", help="serve it to everyone again")
    p.add_argument("--rankings-wanted", type=int, help="N: rankings per item")
    p.add_argument("--overlap", type=float, help="share of items (0-1) that want --overlap-rankings rankings, for agreement")
    p.add_argument("--overlap-rankings", type=int, help="rankings each overlap item wants (at least 2)")
    p.add_argument("--delete", action="store_true", help="delete the set: only when nothing of it was ranked or written")
    p.add_argument("--withdraw-cut", action="store_true",
                   help="delete its unanswered items with a completion cut at the token cap (generate again, higher cap)")
    p = commands.add_parser("jobs", help="the job queue: list (default), start KIND --args JSON, cancel ID, up ID")
    p.add_argument("action", nargs="?", choices=["list", "start", "cancel", "up"], default="list")
    p.add_argument("target", nargs="?", help="start: the job kind; cancel, up: the job id")
    p.add_argument("--args", default="{}", help="start: the job's settings as JSON, as its config's fields (e.g. '{\"steps\": 5}')")
    p.add_argument("--limit", type=int, default=20)
    p = commands.add_parser("cancel", help="cancel a queued or running job (same as `jobs cancel ID`)")
    p.add_argument("job", type=int)
    p = commands.add_parser("versions", help="model versions: list (default), activate ID, delete ID")
    p.add_argument("action", nargs="?", choices=["list", "activate", "delete"], default="list")
    p.add_argument("version", nargs="?", type=int)
    p.add_argument("--kind", choices=["generator", "reward"], help="list: only this kind")
    args = parser.parse_args(argv)

    db = open_db(args.db)
    try:
        result = _run(db, args)
    except (importing.BadImportFile, ValueError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


def _run(db, args):
    if args.command == "init":
        return {"db": str(resolve_db_path(args.db)), **builtin.init_db(db), **items.counts(db)}
    if args.command == "create-user":
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("Password: ")
        user = accounts.create_user(db, args.name, password, args.role)
        return {"created": user.name, "role": user.role}
    if args.command == "stats":
        return items.counts(db)
    if args.command == "import":
        return _import(db, args)
    if args.command == "import-prompts":
        rows = importing.parse_prompts(args.file.read_bytes(), importing.format_of(args.file.name), args.skip_invalid)
        return importing.import_prompts(db, rows, args.set)
    if args.command == "import-completions":
        return importing.import_completions(db, importing.parse_completions(args.file.read_bytes(), args.skip_invalid), args.set)
    if args.command == "import-rankings":
        return importing.import_rankings(db, importing.parse_rankings(args.file.read_bytes(), args.skip_invalid))
    if args.command == "import-hh":
        return importing.import_hh_pairs(db, importing.parse_hh_pairs(args.file.read_bytes(), args.annotator, args.skip_invalid), args.set)
    if args.command == "export":
        where = export.ExportFilter(args.since, args.until, args.annotator, args.prompt_set, keep_excluded=args.keep_excluded)
        rows = export.write_export(db, args.kind, args.format, args.out, where, on_progress=_print_progress,
                                   conversational=args.conversational)
        return {"rows": rows, "file": str(args.out)}
    if args.command == "backup":
        return store.backup(db, args.out)
    if args.command == "stats-refresh":
        return {"rankings_read": quality.refresh(db, on_progress=_print_refresh),
                "leaderboard_rankings_read": leaderboard.refresh(db, on_progress=_print_refresh)}
    if args.command == "export-completions":
        args.out.write_bytes(export.completions_jsonl(db, args.set))
        return {"file": str(args.out)}
    if args.command == "queue-order":
        uncertainty.set_queue_order(db, args.set, args.order, args.random_share)
        return {"set": args.set, **uncertainty.queue_settings(db, args.set),
                "scoring_job": uncertainty.score_in_background(db, [args.set])}
    if args.command == "jobs":
        return _jobs(db, args)
    if args.command == "cancel":
        jobs.request_cancel(db, args.job)
        return {"cancel_requested": args.job}
    if args.command == "versions":
        return _versions(db, args)
    if args.command == "review":
        return _review(db, args)
    if args.command == "sets":
        return prompt_sets.progress(db)
    if args.command == "set":
        if args.delete:
            return prompt_sets.delete_set(db, args.name)
        if args.withdraw_cut:
            return {"set": args.name, "withdrawn_items": prompt_sets.withdraw_cut_items(db, args.name)}
        assign = [] if args.assign_all else [a for a in args.assign.split(",") if a.strip()] if args.assign else None
        return prompt_sets.configure(db, args.name, status=args.status, priority=args.priority, assign=assign,
                                     rankings_wanted=args.rankings_wanted, overlap_share=args.overlap,
                                     overlap_rankings=args.overlap_rankings)


def _jobs(db, args):
    if args.action == "start":
        if not args.target:
            raise ValueError(f"name the kind of job to start: one of {sorted(jobs.JOB_MODULES)}")
        settings = json.loads(args.args)
        if not isinstance(settings, dict):
            raise ValueError("--args must be a JSON object of the job's settings")
        job_id = jobs.start_job(store.db_file(db), args.target, settings)
        return {"queued": job_id, **jobs.queue_places(db).get(job_id, {"place": 0, "waits_for": "nothing: started"})}
    if args.action in ("cancel", "up"):
        job_id = _number(args.target, "job id")
        jobs.request_cancel(db, job_id) if args.action == "cancel" else jobs.move_up(db, job_id)
        return {"cancel_requested" if args.action == "cancel" else "moved_up": job_id}
    places = jobs.queue_places(db)
    return [{**{k: j[k] for k in ("id", "kind", "status", "phase", "progress", "message", "created_at")},
             **({"place": places[j["id"]]["place"], "waits_for": places[j["id"]]["waits_for"]} if j["id"] in places else {})}
            for j in jobs.list_jobs(db, args.limit)]


def _versions(db, args):
    if args.action == "list":
        kinds = [args.kind] if args.kind else ["generator", "reward"]
        return [{"id": v["id"], "kind": v["kind"], "name": v["name"], "active": v["is_active"], "created": v["created_at"][:19],
                 **versions.lineage(db, v), "used_by": versions.uses_of(db, v["id"])}
                for kind in kinds for v in versions.list_versions(db, kind)]
    version_id = _number(args.version, "version id")
    if args.action == "activate":
        spot_checks.activate(db, version_id, by="command line")  # refused while people disagree with its reward model
        return {"active": versions.get_version(db, version_id)["name"], "scoring_job": uncertainty.score_in_background(db)
                if versions.get_version(db, version_id)["kind"] == "reward" else None}
    name = versions.get_version(db, version_id)["name"]
    versions.delete_version(db, version_id, by="command line")
    return {"deleted": name}


def _review(db, args):
    if args.action == "list":
        return review.review_queue(db, args.queue, args.limit, args.annotator)
    ranking_id = _number(args.ranking, "ranking id")
    if args.action == "accept":
        review.accept(db, ranking_id)
    elif args.action == "reject":
        review.reject(db, ranking_id, args.reason)
    else:
        returned = review.send_back(db, ranking_id, args.reason or "sent back for another ranking")
        return {"ranking": ranking_id, "action": args.action,
                "to": "its annotator, to rank again (nobody else can)" if returned else "the queue, for another annotator"}
    return {"ranking": ranking_id, "action": args.action}


def _number(text, what: str) -> int:
    if text is None or not str(text).isdigit():
        raise ValueError(f"give the {what} as a number (see `python -m data jobs` or `python -m data versions`)")
    return int(text)


def _import(db, args) -> dict:
    """Read, store, then bring the quality statistics and the leaderboard's counts up to date (with progress), so the
    first screen opened afterwards has nothing to catch up."""
    try:
        read = formats.read(args.file.read_bytes(), args.file.name, args.format, args.annotator, args.score_key,
                            args.skip_invalid)
    except importing.RefusedLines as refused:
        if args.rejects:
            importing.write_rejects(refused.refused, args.rejects)
        raise
    print(f"read {len(read.rows):,} rows in the {read.fmt} format", file=sys.stderr, flush=True)
    if args.rejects and read.rows.refused:
        importing.write_rejects(read.rows.refused, args.rejects)
    result = formats.import_read(db, read, args.set)
    result["statistics_caught_up"] = quality.refresh(db, on_progress=_print_refresh)
    leaderboard.refresh(db, on_progress=_print_refresh)
    return {**result, **({"rejects": str(args.rejects)} if args.rejects and read.rows.refused else {})}


def _print_progress(done: int, total: int) -> None:
    print(f"exported {done:,} of {total:,} rows", file=sys.stderr, flush=True)


def _print_refresh(done: int, total: int) -> None:
    print(f"read {done:,} of {total:,} new rankings", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
