"""Schema history. Each function is one numbered migration, applied once, in order, at start-up.

"In order" is the order of the functions in this file, not of their numbers: m0009 runs before m0007, and there is
no m0008 or m0011. The names stay as they are because sqlite-utils records each applied migration by its name:
renaming one would run it again on every existing store. A new migration takes the next number after the highest and
goes at the end. Migrations import only pure modules (data.content, data.rankings), so that a change to the app's
code cannot change what an old migration does (tests/test_layers.py checks it).
"""

from sqlite_utils import Migrations

from data.content import content_hash
from data.rankings import FLAGS, repaired_ranking

migrations = Migrations("rlhf-loop")

SCHEMA_0001 = [
    """
    CREATE TABLE prompt_sets (
        name TEXT PRIMARY KEY,
        rankings_wanted INTEGER NOT NULL DEFAULT 1 CHECK (rankings_wanted >= 1),
        created_at TEXT NOT NULL
    )""",
    """
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        prompt_set TEXT NOT NULL REFERENCES prompt_sets(name),
        text TEXT NOT NULL,
        source TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        UNIQUE (prompt_set, text)
    )""",
    """
    CREATE TABLE model_versions (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('generator', 'reward')),
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        parent_id INTEGER REFERENCES model_versions(id),
        config TEXT NOT NULL DEFAULT '{}',
        metrics TEXT NOT NULL DEFAULT '{}',
        is_active INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        UNIQUE (kind, name)
    )""",
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        progress REAL NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT '',
        log TEXT NOT NULL DEFAULT '',
        result TEXT,
        error TEXT,
        pid INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        started_at TEXT,
        heartbeat_at TEXT,
        finished_at TEXT
    )""",
    """
    CREATE TABLE job_metrics (
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        values_json TEXT NOT NULL,
        PRIMARY KEY (job_id, step)
    )""",
    """
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id),
        job_id INTEGER REFERENCES jobs(id),
        n_rankings INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX items_queue ON items (n_rankings, id)",
    "CREATE INDEX items_prompt ON items (prompt_id)",
    """
    CREATE TABLE completions (
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id),
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        generator_version_id INTEGER REFERENCES model_versions(id),
        model_name TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        seed INTEGER,
        n_tokens INTEGER,
        finish_reason TEXT,
        gen_seconds REAL,
        created_at TEXT NOT NULL,
        UNIQUE (item_id, position)
    )""",
    """
    CREATE TABLE annotators (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    )""",
    """
    CREATE TABLE rankings (
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        skipped INTEGER NOT NULL DEFAULT 0,
        groups TEXT,
        display_order TEXT NOT NULL,
        seconds REAL,
        flags TEXT NOT NULL DEFAULT '[]',
        comment TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (item_id, annotator_id)
    )""",
    "CREATE INDEX rankings_annotator ON rankings (annotator_id, created_at)",
    "CREATE INDEX rankings_created ON rankings (created_at)",
    """
    CREATE TABLE comparisons (
        id INTEGER PRIMARY KEY,
        ranking_id INTEGER NOT NULL REFERENCES rankings(id) ON DELETE CASCADE,
        chosen_id INTEGER NOT NULL REFERENCES completions(id),
        rejected_id INTEGER NOT NULL REFERENCES completions(id),
        margin INTEGER NOT NULL
    )""",
    "CREATE INDEX comparisons_ranking ON comparisons (ranking_id)",
]


@migrations()
def m0001_initial_schema(db):
    for statement in SCHEMA_0001:
        db.execute(statement)


@migrations()
def m0002_demonstrations(db):
    db.execute("""
        CREATE TABLE demonstrations (
            id INTEGER PRIMARY KEY,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            annotator_id INTEGER REFERENCES annotators(id),
            text TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('written', 'edited', 'imported')),
            source_completion_id INTEGER REFERENCES completions(id),
            implicit_ranking_id INTEGER REFERENCES rankings(id),
            seconds REAL,
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX demonstrations_prompt ON demonstrations (prompt_id)")
    # Items made from an edited demonstration (the edit ranked over its source) never enter ranking queues.
    db.execute("ALTER TABLE items ADD COLUMN origin TEXT NOT NULL DEFAULT 'sampled'")


@migrations()
def m0003_reservations(db):
    # An item shown to an annotator is held for them a while, so concurrent annotators do not overshoot N.
    db.execute("""
        CREATE TABLE reservations (
            item_id INTEGER NOT NULL REFERENCES items(id),
            annotator_id INTEGER NOT NULL REFERENCES annotators(id),
            expires_at TEXT NOT NULL,
            PRIMARY KEY (item_id, annotator_id)
        )""")


@migrations()
def m0004_accounts(db):
    # Annotators become accounts: a role, a salted scrypt hash, and a switch to disable them.
    db.execute("ALTER TABLE annotators ADD COLUMN role TEXT NOT NULL DEFAULT 'annotator' CHECK (role IN ('admin', 'annotator'))")
    db.execute("ALTER TABLE annotators ADD COLUMN password_hash TEXT")
    db.execute("ALTER TABLE annotators ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0")


@migrations()
def m0005_gold(db):
    # Gold items: an expected order (all completions, or just a pair) graded silently; mixed into queues at a rate.
    db.execute("""
        CREATE TABLE gold (
            item_id INTEGER PRIMARY KEY REFERENCES items(id),
            expected TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""")
    db.execute("ALTER TABLE prompt_sets ADD COLUMN gold_every INTEGER NOT NULL DEFAULT 0")


@migrations()
def m0006_team_safety(db):
    # Sessions end when an account is disabled, reset or changes role: each login remembers the epoch it saw.
    db.execute("ALTER TABLE annotators ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0")
    # 'account': made by an admin or the CLI; 'import': a name from an imported file (provenance only);
    # 'legacy': a name that ranked before accounts existed.
    db.execute("ALTER TABLE annotators ADD COLUMN origin TEXT NOT NULL DEFAULT 'account'")
    # Password-less annotators could log in through single sign-on by name alone: an admin enables them.
    db.execute("UPDATE annotators SET disabled = 1, origin = 'legacy' WHERE password_hash IS NULL AND role = 'annotator'")
    # Failed log-ins per name and per client, for exponential back-off.
    db.execute("""
        CREATE TABLE login_failures (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            locked_until TEXT NOT NULL,
            last_at TEXT NOT NULL
        )""")
    # An item's content (set, prompt, completions): importing the same file twice finds the item it made.
    db.execute("ALTER TABLE items ADD COLUMN content_hash TEXT")
    texts: dict[int, list[str]] = {}
    for item_id, text in db.execute("SELECT item_id, text FROM completions ORDER BY item_id, position"):
        texts.setdefault(item_id, []).append(text)
    rows = db.execute("SELECT i.id, p.prompt_set, p.text FROM items i JOIN prompts p ON p.id = i.prompt_id").fetchall()
    db.conn.executemany("UPDATE items SET content_hash = ? WHERE id = ?",
                        [(content_hash(prompt_set, prompt, texts.get(item_id, [])), item_id) for item_id, prompt_set, prompt in rows])
    db.execute("CREATE INDEX items_content ON items (content_hash)")


@migrations()
def m0009_import_repair_rankings(db):
    # Older importers stored rankings unchecked (0.0 for 0, "slow" seconds, rankings missing a completion):
    # make every row readable; a ranking beyond repair becomes a skip and loses its comparisons.

    rows = list(db.query(
        """SELECT r.id, r.item_id, r.skipped, r.groups, r.display_order, r.seconds, r.flags, r.created_at,
                  i.created_at AS item_created_at, (SELECT COUNT(*) FROM completions c WHERE c.item_id = r.item_id) AS k
           FROM rankings r JOIN items i ON i.id = r.item_id"""))
    for row in rows:
        changes = repaired_ranking(row, row["k"], FLAGS, row["item_created_at"])
        if not changes:
            continue
        db.execute(f"UPDATE rankings SET {', '.join(f'{c} = ?' for c in changes)} WHERE id = ?", [*changes.values(), row["id"]])
        if changes.get("skipped") or changes.get("groups", "") is None:  # a skip has no comparisons
            db.execute("DELETE FROM comparisons WHERE ranking_id = ?", [row["id"]])
        if changes.get("skipped"):
            db.execute("UPDATE items SET n_rankings = MAX(n_rankings - 1, 0) WHERE id = ?", [row["item_id"]])


@migrations()
def m0007_quality_stats(db):
    # Quality statistics kept in the store and brought up to date incrementally (data/quality.py `refresh`):
    # everything below is derived from rankings and can be dropped and rebuilt.
    db.execute("""
        CREATE TABLE stats_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_ranking_id INTEGER NOT NULL,
            coincidences TEXT NOT NULL  -- {m: 9x9 integer pair counts of items ranked by m annotators}
        )""")
    db.execute("INSERT INTO stats_state (id, last_ranking_id, coincidences) VALUES (1, 0, '{}')")
    db.execute("CREATE TABLE stats_dirty (item_id INTEGER PRIMARY KEY)")  # items to recompute (gold answer changed)
    db.execute("CREATE TABLE stats_unreadable (ranking_id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL)")  # left out, said on screen
    db.execute("""
        CREATE TABLE ranking_stats (
            ranking_id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL,
            annotator_id INTEGER NOT NULL,
            pairs INTEGER NOT NULL,
            ties INTEGER NOT NULL,
            agree INTEGER NOT NULL,  -- with the mean-rank consensus of the item's other annotators
            disagree INTEGER NOT NULL,
            first_best INTEGER NOT NULL,
            expected_first REAL NOT NULL,
            longer_wins INTEGER NOT NULL,
            length_pairs INTEGER NOT NULL,
            gold_passed INTEGER,  -- NULL: not a gold item
            seconds REAL
        )""")
    db.execute("CREATE INDEX ranking_stats_item ON ranking_stats (item_id)")
    db.execute("CREATE INDEX ranking_stats_seconds ON ranking_stats (annotator_id, seconds)")
    db.execute("""
        CREATE TABLE annotator_stats (
            annotator_id INTEGER PRIMARY KEY,
            rankings INTEGER NOT NULL DEFAULT 0,
            timed INTEGER NOT NULL DEFAULT 0,
            pairs INTEGER NOT NULL DEFAULT 0,
            ties INTEGER NOT NULL DEFAULT 0,
            agree INTEGER NOT NULL DEFAULT 0,
            disagree INTEGER NOT NULL DEFAULT 0,
            first_best INTEGER NOT NULL DEFAULT 0,
            expected_first REAL NOT NULL DEFAULT 0,
            longer_wins INTEGER NOT NULL DEFAULT 0,
            length_pairs INTEGER NOT NULL DEFAULT 0,
            gold_rankings INTEGER NOT NULL DEFAULT 0,
            gold_passed INTEGER NOT NULL DEFAULT 0
        )""")
    db.execute("""
        CREATE TABLE item_stats (  -- items ranked by two or more annotators
            item_id INTEGER PRIMARY KEY,
            annotators INTEGER NOT NULL,
            agree INTEGER NOT NULL,
            disagree INTEGER NOT NULL,
            both_tied INTEGER NOT NULL,
            one_tied INTEGER NOT NULL,
            tau_sum REAL NOT NULL,
            tau_n INTEGER NOT NULL,
            coincidences TEXT NOT NULL
        )""")
    db.execute("CREATE TABLE daily_rankings (day TEXT PRIMARY KEY, rankings INTEGER NOT NULL)")
    db.execute("CREATE INDEX rankings_flagged ON rankings (item_id) WHERE flags != '[]'")


@migrations()
def m0010_conversations_guidelines_repeats(db):
    # A prompt may be a conversation: the messages before the assistant turn to rank, as JSON
    # [{"role": "system"|"user"|"assistant", "content": ...}] ending with a user turn. NULL: one user turn, `text`.
    # `text` then holds the conversation as a transcript (data/conversation.py), so a set still holds each prompt once.
    db.execute("ALTER TABLE prompts ADD COLUMN messages TEXT")
    # Guidelines per prompt set, in Markdown; an edit adds a version, nothing is overwritten.
    db.execute("""
        CREATE TABLE guidelines (
            prompt_set TEXT NOT NULL REFERENCES prompt_sets(name),
            version INTEGER NOT NULL CHECK (version >= 1),
            text TEXT NOT NULL,
            author_id INTEGER REFERENCES annotators(id),
            created_at TEXT NOT NULL,
            PRIMARY KEY (prompt_set, version)
        )""")
    db.execute("ALTER TABLE rankings ADD COLUMN guideline_version INTEGER")  # NULL: the set had none when it was ranked
    # Self-consistency: a share of each annotator's queue re-serves an item they ranked a day or `repeat_gap` rankings ago.
    db.execute("ALTER TABLE prompt_sets ADD COLUMN repeat_share REAL NOT NULL DEFAULT 0.05 CHECK (repeat_share BETWEEN 0 AND 0.5)")
    db.execute("ALTER TABLE prompt_sets ADD COLUMN repeat_gap INTEGER NOT NULL DEFAULT 20 CHECK (repeat_gap >= 1)")
    db.execute("ALTER TABLE reservations ADD COLUMN repeat_of INTEGER REFERENCES rankings(id)")  # the ranking a repeat re-asks
    # A repeat is kept apart from `rankings`, so it is never a second vote in comparisons, training, exports or agreement.
    db.execute("""
        CREATE TABLE repeat_rankings (
            id INTEGER PRIMARY KEY,
            ranking_id INTEGER NOT NULL UNIQUE REFERENCES rankings(id),  -- the first ranking; one repeat each
            item_id INTEGER NOT NULL REFERENCES items(id),
            annotator_id INTEGER NOT NULL REFERENCES annotators(id),
            skipped INTEGER NOT NULL DEFAULT 0,
            groups TEXT,
            display_order TEXT NOT NULL,
            seconds REAL,
            guideline_version INTEGER,
            agree INTEGER NOT NULL DEFAULT 0,  -- pairs ordered the same way as the first time (both strict)
            disagree INTEGER NOT NULL DEFAULT 0,  -- pairs ordered the other way
            tau_b REAL,  -- Kendall tau-b against the first ranking; NULL when either is all ties or it was skipped
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX repeat_rankings_annotator ON repeat_rankings (annotator_id)")


@migrations()
def m0012_guideline_stats(db):
    # Agreement with the others by guideline version, kept as sums like annotator_stats (data/quality.py `refresh`),
    # so the Agreement screen does not join every ranking. version 0: ranked before the set had guidelines.
    db.execute("""
        CREATE TABLE guideline_stats (
            prompt_set TEXT NOT NULL,
            version INTEGER NOT NULL,
            rankings INTEGER NOT NULL,
            agree INTEGER NOT NULL,
            disagree INTEGER NOT NULL,
            PRIMARY KEY (prompt_set, version)
        )""")
    db.execute("""
        INSERT INTO guideline_stats (prompt_set, version, rankings, agree, disagree)
        SELECT p.prompt_set, COALESCE(r.guideline_version, 0), COUNT(*), TOTAL(rs.agree), TOTAL(rs.disagree)
        FROM ranking_stats rs JOIN rankings r ON r.id = rs.ranking_id JOIN items i ON i.id = rs.item_id
        JOIN prompts p ON p.id = i.prompt_id GROUP BY 1, 2""")


@migrations()
def m0013_remote_generators(db):
    # Models served over an OpenAI-compatible API (data/generators.py). `settings` holds the base URL, the model,
    # sampling, concurrency, timeout and retries, and the NAME of the variable holding the API key: never the key.
    db.execute("""
        CREATE TABLE remote_generators (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            settings TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""")


@migrations()
def m0014_model_pair_counts(db):
    # The model leaderboard's counts (data/leaderboard.py `refresh`), kept incrementally like the quality statistics:
    # per item and pair of models (model_a < model_b), a's wins, b's wins and ties over all its rankings. Derived.
    db.execute("""
        CREATE TABLE model_pair_counts (
            item_id INTEGER NOT NULL,
            model_a TEXT NOT NULL,
            model_b TEXT NOT NULL,
            wins_a INTEGER NOT NULL,
            wins_b INTEGER NOT NULL,
            ties INTEGER NOT NULL,
            PRIMARY KEY (item_id, model_a, model_b)
        )""")
    db.execute("CREATE TABLE leaderboard_state (id INTEGER PRIMARY KEY CHECK (id = 1), last_ranking_id INTEGER NOT NULL)")
    db.execute("INSERT INTO leaderboard_state (id, last_ranking_id) VALUES (1, 0)")


@migrations()
def m0015_repeat_flags(db):
    # A repeat keeps the flags and comment its annotator gave (an "offensive/unsafe" flag is never dropped).
    db.execute("ALTER TABLE repeat_rankings ADD COLUMN flags TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE repeat_rankings ADD COLUMN comment TEXT NOT NULL DEFAULT ''")


# One name per metric everywhere (split/name): what the trainers logged before, and what it is called now.
RENAMED_METRICS = {
    "loss/train": "train/loss", "accuracy/train": "train/accuracy", "lr": "train/lr", "epoch": "train/epoch",
    "loss/val": "val/loss", "perplexity/val": "val/perplexity", "loss/policy": "train/loss", "loss/value": "train/value_loss",
    "kl/ref": "policy/kl", "entropy": "policy/entropy", "advantage/std": "policy/advantage_std",
    "length/mean": "policy/length", "length/ended": "policy/ended",
    **{f"eval/{name}": f"val/{name}" for name in ("reward_before", "reward_after", "kl", "win_rate", "length_before",
                                                  "length_after")},
}


@migrations()
def m0016_metric_names(db):
    # Stored versions, job results and job curves keep showing under the new names (an unreadable value is left as it is).
    for table, column in (("model_versions", "metrics"), ("jobs", "result"), ("job_metrics", "values_json")):
        for old, new in RENAMED_METRICS.items():
            db.execute(
                f"""UPDATE {table} SET {column} = json_remove(json_set({column}, '$."{new}"', json_extract({column}, '$."{old}"')), '$."{old}"')
                    WHERE CASE WHEN json_valid({column}) THEN json_type({column}, '$."{old}"') END IS NOT NULL""")


@migrations()
def m0017_uncertain_queue(db):
    # A prompt set's queue order: 'oldest' (fewest rankings, then oldest first) or 'uncertain' (fewest rankings, then
    # the items the reward model is least sure about), with `random_share` of its items served in random order instead.
    db.execute("""ALTER TABLE prompt_sets ADD COLUMN queue_order TEXT NOT NULL DEFAULT 'oldest'
                  CHECK (queue_order IN ('oldest', 'uncertain'))""")
    db.execute("ALTER TABLE prompt_sets ADD COLUMN random_share REAL NOT NULL DEFAULT 0.2 CHECK (random_share BETWEEN 0 AND 1)")
    # How unsure a reward model is about the order of an item's completions (1: a coin flip on every pair, 0: sure),
    # and which version said so; NULL: not scored.
    db.execute("ALTER TABLE items ADD COLUMN uncertainty REAL")
    db.execute("ALTER TABLE items ADD COLUMN uncertainty_version INTEGER REFERENCES model_versions(id)")
    # The queue's key among items with as many rankings, higher first (data/uncertainty.set_priorities).
    db.execute("ALTER TABLE items ADD COLUMN priority REAL NOT NULL DEFAULT 0")
    db.execute("DROP INDEX items_queue")
    db.execute("CREATE INDEX items_queue_priority ON items (n_rankings, priority DESC, id)")
    # A fixed uniform draw per item, whatever inserts it: the items of an 'uncertain' set whose draw is below its
    # random share are served in the order of their draw, a uniform sample of the set (data/uncertainty.py).
    db.execute("ALTER TABLE items ADD COLUMN draw REAL NOT NULL DEFAULT 0")
    db.execute("UPDATE items SET draw = random() / 18446744073709551616.0 + 0.5")  # uniform in [0, 1)
    db.execute("""CREATE TRIGGER items_draw AFTER INSERT ON items WHEN NEW.draw = 0
                  BEGIN UPDATE items SET draw = random() / 18446744073709551616.0 + 0.5 WHERE id = NEW.id; END""")


@migrations()
def m0018_job_queue(db):
    # The job queue (data/scheduler.py): what each job needs, where it stands in line, which GPUs it was given; a job
    # is 'starting' while it is queued and claimed by a scheduler (claimed_at) but its process has not said 'running'.
    # launcher: 'app' jobs are started by whichever scheduler claims them; 'cli' jobs wait in their own process.
    for column in ("num_cpus INTEGER NOT NULL DEFAULT 0", "num_gpus INTEGER NOT NULL DEFAULT 0",
                   "memory INTEGER NOT NULL DEFAULT 0", "gpus TEXT NOT NULL DEFAULT ''", "position REAL",
                   "claimed_at TEXT", "launcher TEXT NOT NULL DEFAULT 'app'",
                   # what the job is doing now (loading the model, training, evaluating...), since when, and when it
                   # last reported anything; facts: what it chose on the way (precision, ...), shown on its card
                   "phase TEXT NOT NULL DEFAULT ''", "phase_started_at TEXT", "reported_at TEXT",
                   "facts TEXT NOT NULL DEFAULT '{}'"):
        db.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
    db.execute("UPDATE jobs SET position = id")
    db.execute("UPDATE jobs SET claimed_at = created_at WHERE status = 'queued' AND pid IS NOT NULL")
    db.execute("CREATE INDEX jobs_queue ON jobs (status, position)")


@migrations()
def m0019_version_events(db):
    # Who made a version active (or deleted it) and when: the Models screen's history, the start of an audit log.
    db.execute("""CREATE TABLE model_version_events (
        id INTEGER PRIMARY KEY,
        version_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('activated', 'deleted')),
        by TEXT NOT NULL,
        at TEXT NOT NULL
    )""")


@migrations()
def m0020_prompt_set_projects(db):
    # A prompt set is a project (data/prompt_sets.py): served or not (status), before other sets or after (priority,
    # higher first, copied onto its items so the queue stays one index walk), to everyone or to the annotators
    # assigned to it, with a share of its items (fixed by each item's draw) wanting more rankings for agreement.
    db.execute("""ALTER TABLE prompt_sets ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'paused', 'archived'))""")
    db.execute("ALTER TABLE prompt_sets ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE prompt_sets ADD COLUMN overlap_share REAL NOT NULL DEFAULT 0 CHECK (overlap_share BETWEEN 0 AND 1)")
    db.execute("ALTER TABLE prompt_sets ADD COLUMN overlap_rankings INTEGER NOT NULL DEFAULT 2 CHECK (overlap_rankings >= 1)")
    db.execute("""CREATE TABLE set_assignments (
        prompt_set TEXT NOT NULL REFERENCES prompt_sets(name) ON DELETE CASCADE,
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        PRIMARY KEY (prompt_set, annotator_id)
    )""")
    db.execute("ALTER TABLE items ADD COLUMN set_priority INTEGER NOT NULL DEFAULT 0")
    db.execute("DROP INDEX items_queue_priority")
    db.execute("CREATE INDEX items_queue_set ON items (set_priority DESC, n_rankings, priority DESC, id)")
    db.execute("""CREATE TRIGGER items_set_priority AFTER INSERT ON items
                  BEGIN UPDATE items SET set_priority = (SELECT s.priority FROM prompts p JOIN prompt_sets s
                                                          ON s.name = p.prompt_set WHERE p.id = NEW.prompt_id)
                        WHERE id = NEW.id; END""")


@migrations()
def m0021_review(db):
    # A review pass over rankings (data/review.py): '' not reviewed, 'accepted', or 'rejected' (kept and marked, left out
    # of training, agreement and exports unless asked for); who decided, when and why; and every action in an audit log.
    db.execute("ALTER TABLE rankings ADD COLUMN review TEXT NOT NULL DEFAULT '' CHECK (review IN ('', 'accepted', 'rejected'))")
    db.execute("ALTER TABLE rankings ADD COLUMN review_reason TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE rankings ADD COLUMN reviewed_by TEXT")
    db.execute("ALTER TABLE rankings ADD COLUMN reviewed_at TEXT")
    db.execute("CREATE INDEX rankings_rejected ON rankings (item_id) WHERE review = 'rejected'")
    db.execute("""CREATE TABLE review_events (
        id INTEGER PRIMARY KEY,
        ranking_id INTEGER NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'send back')),
        reason TEXT NOT NULL DEFAULT '',
        by TEXT NOT NULL,
        at TEXT NOT NULL
    )""")


@migrations()
def m0022_reviewers_and_sessions(db):
    # A third role between annotator and admin: reviewers annotate and use the Review screen. The role's CHECK was
    # added by ALTER TABLE (m0004), so it is widened in the stored schema, as SQLite's ALTER TABLE page describes for
    # loosening a CHECK constraint (no row changes, the on-disk format is the same); then the schema version moves on.
    old, new = "CHECK (role IN ('admin', 'annotator'))", "CHECK (role IN ('admin', 'reviewer', 'annotator'))"
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    db.execute("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'annotators'", [old, new])
    db.execute("PRAGMA writable_schema = OFF")
    db.execute(f"PRAGMA schema_version = {version + 1}")
    # A log-in survives a reload: the browser keeps a random token (a cookie), the store only its SHA-256. A session
    # ends at its expiry, at log-out (its row goes), and, as before, when the account's session epoch moves.
    db.execute("""CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        epoch INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )""")
    db.execute("CREATE INDEX sessions_expiry ON sessions (expires_at)")
    # An annotator may change their own ranking until it is reviewed (data/undo.py): when they last did.
    db.execute("ALTER TABLE rankings ADD COLUMN edited_at TEXT")


@migrations()
def m0023_review_events_by_ranking(db):
    # An annotator's My rankings says "sent back" apart from "rejected": the last review action of each of their rankings.
    db.execute("CREATE INDEX review_events_ranking ON review_events (ranking_id, id)")


@migrations()
def m0024_audit_log(db):
    # Who did what as an admin: accounts, jobs, versions, sets, guidelines, remote generators, imports, downloads.
    # actor_id is NULL for the command line; actor keeps the name, so an entry outlives a renamed or deleted account.
    db.execute("""CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor_id INTEGER,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    )""")
    db.execute("CREATE INDEX audit_log_at ON audit_log (at, id)")
    # Team reads the newest entries of the three trails (reviews and model versions keep their own) without a scan.
    db.execute("CREATE INDEX review_events_at ON review_events (at, id)")
    db.execute("CREATE INDEX model_version_events_at ON model_version_events (at, id)")


@migrations()
def m0025_version_event_notes(db):
    # Why an admin made a version active although its evaluation gate did not pass, beside the event itself.
    db.execute("ALTER TABLE model_version_events ADD COLUMN note TEXT NOT NULL DEFAULT ''")


@migrations()
def m0026_judgements(db):
    # An AI judge's rankings, kept apart from people's: never in training, agreement among people, the queue or exports.
    # One row per vote (an independent critique-and-ranking); groups NULL when its answer held no readable ranking.
    db.execute("""CREATE TABLE judgements (
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id),
        judge TEXT NOT NULL,
        vote INTEGER NOT NULL,
        groups TEXT,
        answer TEXT NOT NULL DEFAULT '',
        job_id INTEGER,
        created_at TEXT NOT NULL,
        UNIQUE (judge, item_id, vote)
    )""")


@migrations()
def m0027_returned_rankings(db):
    # A ranking sent back when nobody else the item's set is served to can rank it goes back to its own annotator, who
    # ranks the item again (data.review.send_back): the rejected ranking waits, marked, until its redo replaces it.
    db.execute("ALTER TABLE rankings ADD COLUMN returned INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX rankings_returned ON rankings (annotator_id, item_id) WHERE returned = 1")


@migrations()
def m0028_skipped_rankings(db):
    # The rankings of some prompt sets are counted through the (item_id, annotator_id) index alone, less their skips:
    # a count over a set of 50,000 rankings reads the index (20 ms), not every row for its `skipped` (120-250 ms).
    db.execute("CREATE INDEX rankings_skipped ON rankings (item_id) WHERE skipped = 1")


@migrations()
def m0029_all_tied_rankings(db):
    # A ranking that ties every answer implies no pair, so DPO leaves it out (unless it learns from ties): the DPO screen
    # counts such rankings of the sets picked through this index, not by reading every ranking's groups.
    # (groups read only where they are valid JSON: an old malformed row must not stop the migration or a later write)
    db.execute("""CREATE INDEX rankings_all_tied ON rankings (item_id)
                  WHERE skipped = 0 AND CASE WHEN json_valid(groups) THEN json_array_length(groups) END = 1""")


@migrations()
def m0030_rejected_by_reviewer(db):
    # A reviewer is not served an item whose ranking they rejected or sent back (they read it and its reason: their own
    # would not be independent): the queue finds those items through this index, a reviewer's few entries read alone.
    db.execute("CREATE INDEX rankings_rejected_by ON rankings (reviewed_by, item_id) WHERE review = 'rejected'")
