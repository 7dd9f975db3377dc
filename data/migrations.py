"""Schema history. Each function is one numbered migration, applied once, in order, at start-up."""

from sqlite_utils import Migrations

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
