"""Jobs on the admin screens: queue one from a config form, follow it live (its place in line, its phase, elapsed
time and ETA), move it up or cancel it; pick a model version."""

import json
import re
from dataclasses import asdict
from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from data import jobs, versions
from data import scheduler
from data.scheduler import KIND_NAMES
from training import STRATEGIES, STRATEGY_HELP
from training import quantization
from training.checkpointing import HELP as CHECKPOINTING_HELP
from training.gate import evaluation_summary, gate_for, has_gate, win_rate_figure
from ui.session import db_path, flash, require, session_db
from ui.text import inline

STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/stop_circle:"}


QUANTIZE_NAMES = {"none": "as stored", "8bit": "8-bit (QLoRA)", "4bit": "4-bit NF4 (QLoRA)"}


def round_settings(config, previous: dict | None, versus: str | None = None) -> str:
    """What a generation round (`config`) takes from the prompt set's last one (`previous`, a job; None: never
    generated), in a sentence for beside its button or form; `versus`: the name of a head-to-head's other version."""
    settings = (f"K={config.k}{f' ({config.versus_k} by {versus})' if versus and config.versus_k else ''}, temperature "
                f"{config.temperature:g}, top-p {config.top_p:g}, up to {config.max_new_tokens} "
                f"tokens{', remote ' + config.remote if config.remote else ''}")
    if previous is None:
        return f"This set was never generated: the defaults, {settings}."
    used = previous["args"].get("seed") or 0
    seeds = f"seed {used}" if config.seed == used + 1 else f"seeds {used}-{config.seed - 1}"
    return (f"Sampled as this set's last round (job {previous['id']}): {settings}; seed {config.seed}, after the {seeds} "
            "it used (the same seeds would write many of the same answers again).")


def launch(kind: str, config, what: str, follow: str = "below or under Jobs", links: tuple[tuple[str, str], ...] = (),
           place: str | None = None, note: str | None = None) -> None:
    """Start a background job from a trainer's config dataclass, say so on the next run, and rerun. `follow`: where
    its progress shows, when not on this screen, and `links` to those screens; `place`: see ui.session.flash; `note`:
    a clause to say with it (what the run will not do as things stand)."""
    try:
        job_id = jobs.start_job(db_path(), kind, asdict(config), actor=require(session_db(), "admin"))
        line = jobs.queue_places(session_db()).get(job_id)
        flash("success", f"{what} queued as job {job_id}: " + (
            f"{jobs.ordinal(line['place'])} in line, waiting for {line['waits_for']}." if line and not line["starting"]
            else "starting now.")
            + f" Follow it {follow}." + (f" Note: {note}." if note else ""), links, place)
    except (ValueError, LookupError) as error:
        flash("error", str(error), place=place)
    st.rerun()


def refused(problem: str | None) -> bool:
    """A form's check: shows the problem (a clause, from the config's own check) as a sentence; True when there is one."""
    if problem:
        st.error(capitalised(problem) + ".")
    return bool(problem)


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def rankings_counted(counts: dict, tied: int, ties_field: str) -> tuple[str, str]:
    """A training screen's count of the rankings it learns from ("1 ranking", "12 rankings") and what to say beside
    it in brackets: those left out by a reviewer or a flag, and those that tie every answer (no pair unless the form's
    `ties_field` is on).

    >>> rankings_counted({"rankings": 1, "left_out": 0}, 0, "Learn from ties")
    ('1 ranking', '')
    >>> rankings_counted({"rankings": 12, "left_out": 2}, 3, "Learn from ties")[1]
    " (2 more left out: rejected or sent back by a reviewer, or flagged all bad or unsafe; 3 of the 12 tie every answer: no pair unless 'Learn from ties' is on)"
    """
    n = counts["rankings"]
    said = ([f"{counts['left_out']:,} more left out: rejected or sent back by a reviewer, or flagged all bad or unsafe"]
            if counts["left_out"] else []) + \
           ([f"{tied:,} of the {n:,} tie every answer: no pair unless '{ties_field}' is on"] if tied else [])
    return f"{n:,} ranking{'' if n == 1 else 's'}", f" ({'; '.join(said)})" if said else ""


def activate_checkbox(column) -> bool:
    """The launch forms' opt-in: training never makes its version active unless asked, and then only past the gate."""
    return column.checkbox("Make it active if it passes the gate", False,
                           help="only when its held-out evaluation says it is better (training.gate: a win rate whose 95% "
                                "interval is above 0.5 on 30+ pairs and holds at similar length; a reward model that beats "
                                "the length-only rule). Otherwise make it active yourself under Train → Models.")


def checkpointing_checkbox(column) -> bool:
    """Every training form's memory option (training/checkpointing.py)."""
    return column.checkbox("Gradient checkpointing", False, help=capitalised(CHECKPOINTING_HELP))


def quantize_input(column) -> str:
    """The LoRA forms' base precision (training/quantization.py): as stored, or 8/4 bits under a LoRA adapter."""
    return column.selectbox("Base weights", quantization.QUANTIZE, format_func=QUANTIZE_NAMES.get,
                            help=capitalised(quantization.HELP))


def processes_input(column) -> int:
    """Every training form's processes: one per GPU (data parallel), where the machine has several; else 1, said so."""
    gpus = scheduler.gpu_count()
    if gpus < 2:
        column.number_input("Processes (GPUs)", 1, 1, 1, disabled=True,
                            help=f"this machine has {gpus or 'no'} GPU{'' if gpus == 1 else 's'}: one process. On a machine "
                                 "with several, a job can train data-parallel on several (one process each)")
        return 1
    return int(column.number_input("Processes (GPUs)", 1, gpus, 1, help=f"data parallel, one process per GPU (of {gpus}): "
                                   "the job waits until that many GPUs are free"))


def strategy_input(column) -> str:
    """Every training form's choice, with several GPUs: replicate the model in every process or shard it."""
    if scheduler.gpu_count() < 2:
        return "replicate"
    return column.selectbox("With several processes", STRATEGIES, help=capitalised(STRATEGY_HELP),
                            format_func={"replicate": "replicate (data parallel)", "shard": "shard (FSDP2)"}.get)


def activation_confirmed(version: dict, say_why: bool = True) -> bool:
    """Whether "Make active" may be pressed: at once past the version's gate (or when it is active already); below the
    gate, once the admin ticks that they make it active anyway (a rollback to a starting model included)."""
    passes, why = gate_for(version)
    label = ("Make it active although its gate does not pass" + (f": {why}" if say_why else "")) if has_gate(version) \
        else "Make this starting model active (it has no evaluation to pass)"
    return passes or version["is_active"] or st.checkbox(inline(label), key=f"override-{version['kind']}-{version['id']}")


def gate_override(version: dict) -> str:
    """Why the version's gate does not pass, when making it active overrides it ("" when it passes or is active)."""
    passes, why = gate_for(version)
    return "" if passes or version["is_active"] else why


def version_label(version: dict) -> str:
    return f"{version['name']}{' (active)' if version['is_active'] else ''}"


def version_picker(column, label: str, versions_: list[dict], key: str | None = None) -> dict:
    """A select box of model versions, the active one preselected, each with the figure its gate reads (so a reward
    model at chance is not picked unawares)."""
    return column.selectbox(label, versions_, key=key, index=next((i for i, v in enumerate(versions_) if v["is_active"]), 0),
                            format_func=lambda v: version_label(v) + (f" · {summary}" if (summary := evaluation_summary(v["metrics"])) else ""))


def cancel(db, job_id: int) -> None:
    jobs.request_cancel(db, job_id, actor=require(db, "admin"))


def move_up(db, job_id: int) -> None:
    require(db, "admin")
    try:
        jobs.move_up(db, job_id)
    except ValueError as error:  # it started meanwhile
        flash("info", str(error))


def job_card(db, job: dict, charts: dict[str, list[str]] | None = None, place: str = "jobs",
             queue: dict[int, dict] | None = None) -> None:
    """One job: status, its place in line or its phase with elapsed time and ETA, cancel and move up, optional live
    metric charts, what it chose (precision), result, error, log."""
    with st.container(border=True):
        left, right = st.columns([5, 1], vertical_alignment="center")
        made = (job["result"] or {}).get("version")
        named = versions.brief(db, [job["args"].get("generator_version"), job["args"].get("reward_version"), made])
        left.markdown(f"{STATUS_ICONS[job['status']]} **Job {job['id']}** · {KIND_NAMES.get(job['kind'], job['kind'])} · "
                      f"{job['status']} · created {job['created_at'][:19].replace('T', ' ')} UTC")
        if subject := job_subject(job["args"], named, job["kind"]):
            left.caption(inline(subject))
        if job["status"] in jobs.UNFINISHED:
            in_line = (queue if queue is not None else jobs.queue_places(db)).get(job["id"])
            left.progress(job["progress"], text=status_line(job, in_line))
            if right.button("Cancel", key=f"{place}-cancel-{job['id']}"):
                cancel(db, job["id"])
            if in_line and in_line["place"] > 1 and not job["claimed_at"] and right.button("Move up", key=f"{place}-up-{job['id']}"):
                move_up(db, job["id"])
        elif job["started_at"] and job["finished_at"]:
            waited = seconds_between(job["created_at"], job["claimed_at"] or job["created_at"])
            left.caption(f"ran {duration(seconds_between(job['claimed_at'] or job['started_at'], job['finished_at']))}"
                         + (f" after waiting {duration(waited)} in line" if waited >= 5 else ""))
        facts = json.loads(job.get("facts") or "{}")
        for name, value in facts.items():
            st.caption(inline(f"{name.capitalize()}: {value}"))
        if charts:
            metric_charts(jobs.job_metrics(db, job["id"]), charts)
        if job["result"]:
            result_table({k: v for k, v in job["result"].items() if k not in facts})
            if made in named and named[made]["is_active"]:
                later = str(job["result"].get("activation", "")).startswith("not made active")  # by an admin since
                st.caption(inline(f"{named[made]['name']} {'was made active later and ' if later else ''}is the active "
                                  f"{versions.KIND_NAMES[named[made]['kind']]} now."))
        if job["status"] == "cancelled":
            st.info("Cancelled by an admin.")
        elif job["error"]:
            st.error(inline(f"The job stopped: {error_line(job['error'])}"))  # read whole, wrapped: it says what to do
            with st.expander("Traceback"):
                st.code(job["error"][-3000:], language=None)
        if job["log"]:
            with st.expander("Log"):
                st.code(job["log"][-3000:], language=None)


def error_line(error: str) -> str:
    r"""A failed job's error as one sentence: its traceback's last line, the exception named without its module.

    >>> error_line("Traceback (most recent call last):\n  File ...\nrm.train.NotEnoughData: need comparisons on 2 prompts\n")
    'NotEnoughData: need comparisons on 2 prompts'
    >>> error_line("the job's process ended without reporting (crashed or killed)")
    "the job's process ended without reporting (crashed or killed)"
    """
    lines = [line for line in error.strip().splitlines() if line.strip()] or [error]
    kind, said, message = lines[-1].partition(": ")
    return f"{kind.rsplit('.', 1)[-1]}: {message}" if said and re.fullmatch(r"[\w.]+", kind) else lines[-1]


def job_subject(args: dict, named: dict[int, dict], kind: str = "") -> str:
    """What a job works on, from its arguments: the prompt set(s) (all of them when its list is empty), whose rankings,
    the generator, reward model and judge by name.

    >>> job_subject({"prompt_sets": [], "annotators": ["ann"]}, {}, "train_rm"), job_subject({"prompt_sets": []}, {}, "score_queue")
    ('all prompt sets · rankings by ann', "every prompt set in the 'uncertain' order")
    >>> job_subject({"kind": "rankings", "format": "parquet", "prompt_sets": ["a"]}, {}, "export")
    'rankings as parquet · prompt sets a'
    """
    parts = [f"{args.get('kind', 'pairs')} as {args.get('format', 'jsonl')}"] if kind == "export" else []
    if sets := args.get("prompt_sets") or args.get("prompt_set"):
        parts.append(f"prompt set {sets}" if isinstance(sets, str) else "prompt sets " + ", ".join(sets))
    elif "prompt_sets" in args:
        parts.append("every prompt set in the 'uncertain' order" if kind == "score_queue" else "all prompt sets")
    if args.get("annotators"):
        parts.append("rankings by " + ", ".join(args["annotators"]))
    for key, what in (("generator_version", "generator"), ("reward_version", "reward model"), ("judge_version", "judge")):
        if (version := args.get(key)) is not None:
            parts.append(f"{what} {named[version]['name'] if version in named else f'#{version} (deleted)'}")
    if args.get("judge_remote"):
        parts.append(f"judge {args['judge_remote']} (remote)")
    return " · ".join(parts)


CHARTS_PER_ROW = 3  # a fourth and fifth cut their titles and figures (a DPO card's "training 0.6…")


def metric_charts(history: list[dict], charts: dict[str, list[str]]) -> None:
    """One line chart per title, each with the named metrics against the step; a figure logged at one step only, or
    the same at every step, is shown as a number (a chart of one point, or a flat line, has a meaningless axis)."""
    if not history:
        return
    frame = pd.DataFrame(history).set_index("step")
    per_row = min(len(charts), CHARTS_PER_ROW)
    columns = [column for _ in range(0, len(charts), per_row) for column in st.columns(per_row)]
    for column, (title, names) in zip(columns, charts.items()):
        present = frame[[n for n in names if n in frame.columns]].dropna(how="all")
        if present.empty:
            continue
        if len(present) == 1:
            column.metric(title, figures(present.iloc[0]), help=f"logged once, at step {present.index[0]}")
        elif (present.nunique() <= 1).all():
            column.metric(title, figures(present.ffill().iloc[-1]),
                          help=f"the same at every step logged ({present.index[0]} to {present.index[-1]})")
        else:
            column.caption(title)
            column.line_chart(present, height=200, x_label="step")


SPLITS = {"train": "training", "val": "held-out"}


def figures(row: pd.Series) -> str:
    """One chart's figures at one step as text; several are each named by their split ("training 0.41 · held-out 0.26").

    >>> figures(pd.Series({"train/accuracy": 0.409, "val/accuracy": 0.2612})), figures(pd.Series({"policy/kl": 0.0}))
    ('training 0.409 · held-out 0.261', '0')
    """
    row = row.dropna()
    if len(row) == 1:
        return f"{row.iloc[0]:.3g}"
    return " · ".join(f"{SPLITS.get(name.split('/')[0], name)} {value:.3g}" for name, value in row.items())


RESULT_NAMES = {"val/accuracy": "held-out accuracy", "val/loss": "held-out loss", "val/win_rate": "win rate vs start",
                "val/win_pairs": "win-rate pairs (each new answer vs the start's of the same draw)", "val/lc_win_rate": "win rate at similar length",
                "val/lc_pairs": "similar-length pairs (of every new × start answer pair of a prompt)", "val/kl": "KL to start", "val/accuracy_before": "held-out accuracy before",
                "val/reward_before": "reward before", "val/reward_after": "reward after", "val/logp_margin": "log-prob margin",
                "val/reward_length_corr": "reward-length correlation", "val/loss_before": "held-out loss before",
                "kl_budget/spent": "stopped at the KL budget", "kl_budget/curve": "KL to start at each check",
                "kl_budget/kept_step": "step kept", "val/capped_before": "held-out answers cut at the token cap, before",
                "val/capped_after": "held-out answers cut at the token cap, after"}
SHARES = {"val/capped_before", "val/capped_after", "val/accuracy", "val/accuracy_before", "train/accuracy",
          "val/length_rule_accuracy", "val/tie_share", "val/tie_predicted"}  # shares: said as percentages, as Compare does


def result_name(key: str) -> str:
    """A result's name in words: a known figure's, else its key without the held-out prefix and underscores.

    >>> result_name("val/kl"), result_name("val/length_after"), result_name("items_added")
    ('KL to start', 'held-out length after', 'items added')
    """
    if key in RESULT_NAMES:
        return RESULT_NAMES[key]
    return ("held-out " if key.startswith("val/") else "") + key.split("/")[-1].replace("_", " ")


def result_value(value) -> str:
    """
    >>> result_value(0.123456), result_value(12), result_value(True), result_value([1, 2])
    ('0.123', '12', 'yes', '[1, 2]')
    >>> result_value([[1, 0.11714166402816772], [2, 0.126]])  # a curve: (step, value) pairs
    'step 1: 0.117 · step 2: 0.126'
    >>> result_value({"SmolLM2-135M-Instruct (embedded)": 1, "llama": 2})  # answers per model of a round
    'SmolLM2-135M-Instruct (embedded): 1 · llama: 2'
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 2 for p in value):
        return " · ".join(f"step {step}: {result_value(float(figure))}" for step, figure in value)
    if isinstance(value, dict) and all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value.values()):
        return " · ".join(f"{name}: {result_value(figure)}" for name, figure in value.items())
    return value if isinstance(value, str) else json.dumps(value)


def status_line(job: dict, place: dict | None) -> str:
    """What an unfinished job's card says: its place in line and what it waits for, or its phase with the time spent
    in it and its progress message; a job silent for over SILENT_AFTER_S says what it was last doing."""
    if job["status"] == "queued" and not job["claimed_at"]:
        if place and not place["starting"]:
            return f"{jobs.ordinal(place['place'])} in line, waiting for {place['waits_for']}"
        return "starting"
    now = datetime.now(timezone.utc).isoformat()
    line = f"{job['phase'] or 'starting'} · {duration(seconds_between(job['phase_started_at'] or job['created_at'], now))}"
    if job["message"]:
        line += f" · {job['message']}"
    if job["started_at"]:
        line += f" · {duration(seconds_between(job['started_at'], now))} in all"
    silent = seconds_between(job["reported_at"] or job["created_at"], now)
    if silent > jobs.SILENT_AFTER_S:
        alive = job["heartbeat_at"] and seconds_between(job["heartbeat_at"], now) < jobs.SILENT_AFTER_S
        line += (f" · last progress report {duration(silent)} ago; its process is alive, still {job['phase'] or 'starting'}"
                 if alive else f" · no sign of life for {duration(silent)} (last: {job['phase'] or 'starting'})")
    return line


def seconds_between(start: str, end: str) -> float:
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def duration(seconds: float) -> str:
    """
    >>> duration(42.4), duration(192), duration(7325)
    ('42 s', '3 min 12 s', '2 h 2 min')
    """
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def win_rate_text(metrics: dict, key: str = "val/win_rate", pairs_key: str = "val/win_pairs") -> str:
    """A win rate with its n and 95% interval; below 30 pairs, "too few to tell" (older versions: the figure alone)."""
    n, rate = metrics.get(pairs_key), metrics.get(key)
    if rate is None:
        return "—" if n is None else f"too few to tell (n={n})"
    return f"{rate:.0%}" if n is None else win_rate_figure(rate, n)


WIN_RATES = {"val/win_rate": "val/win_pairs", "val/lc_win_rate": "val/lc_pairs"}  # a win rate: the pairs it rests on


def result_table(result: dict) -> None:
    """A job's result as a table of named rows, not a dict."""
    shown = {name: value for name, value in result.items() if value not in (None, "", {}, [])}  # nothing to say: no row
    sentences = {name: value for name, value in shown.items() if isinstance(value, str) and len(value) > 60}
    rows = [{"": result_name(name),  # a win rate as the Compare section gives it: with its n, "too few" below 30 pairs
             "value": win_rate_text(result, name, WIN_RATES[name]) if name in WIN_RATES else
             f"{value:.0%}" if name in SHARES and isinstance(value, float) else result_value(value)}
            for name, value in shown.items() if name not in sentences]
    if rows:  # the names are long (what a count counts): as wide as the values
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", placeholder="—",
                     column_config={"": st.column_config.TextColumn(width="large"),
                                    "value": st.column_config.TextColumn(width="large")})
    for name, value in sentences.items():  # a sentence (why a version was or was not made active) is read whole
        st.caption(f"**{result_name(name)}**: {inline(str(value))}")


@st.fragment(run_every=2)
def latest_job(db, kind: str, charts: dict[str, list[str]], place: str) -> None:
    """The newest job of a kind, refreshed every 2 s: progress, live curves, cancel. Re-checks the admin each time.
    When that job finishes, the whole screen reruns once, so lists and results above it show what it made."""
    require(db, "admin")
    recent = jobs.list_jobs(db, limit=1, kind=kind)
    if not recent:
        return
    job_card(db, recent[0], charts=charts, place=place)
    seen, key = recent[0]["status"], f"job-status-{place}"
    was = st.session_state.get(key)
    st.session_state[key] = (recent[0]["id"], seen)
    if was and was[0] == recent[0]["id"] and was[1] in jobs.UNFINISHED and seen not in jobs.UNFINISHED:
        st.rerun(scope="app")


@st.fragment(run_every=2)
def recent_jobs(db, limit: int = 15) -> None:
    require(db, "admin")
    listed = jobs.list_jobs(db, limit=limit)
    if not listed:
        st.caption("No jobs yet.")
    queue = jobs.queue_places(db)
    for job in listed:
        job_card(db, job, queue=queue)
