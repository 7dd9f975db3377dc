"""Command line for the store: `python -m data --help`."""

import argparse
import getpass
import json
import sys
from pathlib import Path

from data import accounts, builtin, export, importing, items, jobs, leaderboard, quality, store, uncertainty
from data.store import open_db, resolve_db_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    parser.add_argument("--db", help="SQLite file (default: $RLHF_DB or data/app.db)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="create the database; add the built-in prompts, generator and completions")
    commands.add_parser("stats", help="print counts")
    p = commands.add_parser("create-user", help="create an account; the password is read from stdin or prompted for")
    p.add_argument("name")
    p.add_argument("--role", choices=accounts.ROLES, default="annotator")
    p = commands.add_parser("import-prompts", help="import prompts from .txt (one per line), .csv or .jsonl")
    p.add_argument("file", type=Path)
    p.add_argument("--set", default="default", help="prompt set to add them to")
    p = commands.add_parser("import-completions", help="import JSONL lines of {prompt, completions: [...], model}")
    p.add_argument("file", type=Path)
    p.add_argument("--set", default="imported", help="prompt set for their prompts")
    p = commands.add_parser("import-rankings", help="import a rankings export (JSONL)")
    p.add_argument("file", type=Path)
    p = commands.add_parser("import-hh", help="import HH-RLHF pairs (JSONL of {chosen, rejected} dialogues) as rankings")
    p.add_argument("file", type=Path)
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
    p = commands.add_parser("jobs", help="list recent jobs")
    p.add_argument("--limit", type=int, default=20)
    p = commands.add_parser("cancel", help="cancel a running job")
    p.add_argument("job", type=int)
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
    if args.command == "import-prompts":
        rows = importing.parse_prompts(args.file.read_bytes(), importing.format_of(args.file.name))
        return importing.import_prompts(db, rows, args.set)
    if args.command == "import-completions":
        return importing.import_completions(db, importing.parse_completions(args.file.read_bytes()), args.set)
    if args.command == "import-rankings":
        return importing.import_rankings(db, importing.parse_rankings(args.file.read_bytes()))
    if args.command == "import-hh":
        return importing.import_hh_pairs(db, importing.parse_hh_pairs(args.file.read_bytes(), args.annotator), args.set)
    if args.command == "export":
        where = export.ExportFilter(args.since, args.until, args.annotator, args.prompt_set)
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
        return [{k: j[k] for k in ("id", "kind", "status", "progress", "message", "created_at")}
                for j in jobs.list_jobs(db, args.limit)]
    if args.command == "cancel":
        jobs.request_cancel(db, args.job)
        return {"cancel_requested": args.job}


def _print_progress(done: int, total: int) -> None:
    print(f"exported {done:,} of {total:,} rows", file=sys.stderr, flush=True)


def _print_refresh(done: int, total: int) -> None:
    print(f"read {done:,} of {total:,} new rankings", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
