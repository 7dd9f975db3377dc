"""Export preference data as TRL and Hugging Face `datasets` load it: a preview, then a streamed file."""

import datetime
import secrets
from pathlib import Path

import streamlit as st

from data import annotation, export, items
from ui.jobs import launch, latest_job
from ui.session import admin_download, db_path, screen

DOWNLOAD_NOW_ROWS = 100_000  # larger exports are written to a file by a background job, in bounded memory


def exports_dir() -> Path:
    return Path(db_path()).resolve().parent / "exports"


def filter_form(db) -> export.ExportFilter:
    dates = st.date_input("Created between", value=(), help="Leave empty for all dates")
    names = annotation.annotator_names(db)
    chosen_annotators = st.multiselect("Annotators (empty: all)", names)
    chosen_sets = st.multiselect("Prompt sets (empty: all)", [s["name"] for s in items.prompt_sets(db)])
    with st.expander("Quality filters"):
        excluded = st.multiselect("Exclude annotators", names)
        left, right = st.columns(2)
        min_agreement = left.slider("Minimum agreement with the other annotators", 0.0, 1.0, 0.0, 0.05)
        min_gold = right.slider("Minimum gold accuracy", 0.0, 1.0, 0.0, 0.05)
        complete_only = st.checkbox("Only items with all N rankings")
        keep_excluded = st.checkbox("Pairs: also rejected rankings and those flagged all bad or offensive",
                                    help="left out by default, as the trainers leave them out (Quality → Review)")
    since, until = (str(dates[0]), str(dates[-1])) if len(dates) else (None, None)
    return export.ExportFilter(since, until, chosen_annotators or None, chosen_sets or None, excluded or None, complete_only,
                               min_agreement or None, min_gold or None, keep_excluded)


def size_mb(path: Path) -> float:
    return (sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size) / 1e6


def files_list(db) -> None:
    written = [f for f in exports_dir().glob("*") if f.suffix.lstrip(".") in export.FORMATS or (f / "README.md").is_file()] \
        if exports_dir().exists() else []
    files = sorted(written, key=lambda f: f.stat().st_mtime, reverse=True)[:10]
    if not files:
        return
    st.markdown(f"**Written exports** · in `{exports_dir()}`")
    for file in files:
        left, right = st.columns([4, 1], vertical_alignment="center")
        if not export.downloadable(file):  # a download is served from the server's memory
            left.caption(f"`{file.name}` · {size_mb(file):,.1f} MB · too large to download through the app (at most "
                         f"{export.DOWNLOAD_LIMIT_BYTES / 1e6:,.0f} MB): copy it from the server, `{file}`")
            continue
        if file.is_dir():  # a dataset folder: downloaded as a zip
            left.caption(f"`{file.name}/` · dataset folder · {size_mb(file):,.1f} MB")
            right.download_button("Download", admin_download(db, lambda _, written=file: export.zip_folder(written), f"{file.name}.zip"), f"{file.name}.zip",
                                  key=f"file-{file.name}", on_click="ignore")
            continue
        left.caption(f"`{file.name}` · {size_mb(file):,.1f} MB")
        right.download_button("Download", admin_download(db, lambda _, written=file: written.read_bytes(), file.name), file.name, key=f"file-{file.name}", on_click="ignore")


def estimated_bytes(preview, rows: int) -> float:
    """The export's size guessed from the preview's rows (text dominates every format)."""
    return preview.map(lambda value: len(str(value))).to_numpy().sum() / max(len(preview), 1) * rows if len(preview) else 0.0


with screen("Export") as (db, user):
    left, right = st.columns(2)
    kind = left.radio("Kind", export.KINDS, captions=["prompt / chosen / rejected (TRL)", "full rankings with ties"])
    fmt = right.radio("Format", [*export.FORMATS, export.DATASET], horizontal=True,
                      help="dataset: a folder (a zip when downloaded) with data/train.parquet and a dataset card (counts, "
                           "provenance, agreement, the filters used) that datasets.load_dataset(folder) reads as it is")
    conversational = "auto"
    if kind == "pairs":
        conversational = right.radio("Prompts as messages", export.CONVERSATIONAL, horizontal=True,
                                     help="TRL's conversational format: prompt, chosen and rejected as lists of "
                                          "{role, content}; auto when any exported prompt is a conversation")
    where = filter_form(db)
    rows = export.count_rows(db, kind, where)
    if not rows:
        st.info("No rows match these filters.")
    st.caption(f"{rows:,} rows" + (" · the first 50" if rows > 50 else ""))
    shown = export.preview(db, kind, where, rows=50, conversational=conversational)
    st.dataframe(shown, hide_index=True, placeholder="—")
    too_large = rows > DOWNLOAD_NOW_ROWS or estimated_bytes(shown, rows) > export.DOWNLOAD_LIMIT_BYTES
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    left, right = st.columns(2)
    name = f"{kind}-{stamp}"
    file_name = f"{name}.{'zip' if fmt == export.DATASET else fmt}"
    make = ((lambda own: export.dataset_zip(own, kind, where, conversational, name)) if fmt == export.DATASET
            else (lambda own: export.export_bytes(own, kind, fmt, where, conversational)))
    left.download_button(f"Download {file_name}", admin_download(db, make, file_name), file_name, type="primary",
                         disabled=not rows or too_large, on_click="ignore",
                         help=f"at most {DOWNLOAD_NOW_ROWS:,} rows and {export.DOWNLOAD_LIMIT_BYTES / 1e6:,.0f} MB (a download is "
                              "held in the server's memory); write larger exports to a file")
    if right.button("Write to a file (background job)", disabled=not rows):
        exports_dir().mkdir(parents=True, exist_ok=True)
        launch("export", export.ExportConfig(
            kind=kind, format=fmt, out=str(exports_dir() / f"{kind}-{stamp}-{secrets.token_hex(3)}{'' if fmt == export.DATASET else '.' + fmt}"), since=where.since or "", until=where.until or "",
            annotators=where.annotators or [], prompt_sets=where.prompt_sets or [],
            exclude_annotators=where.exclude_annotators or [], complete_only=where.complete_only,
            keep_excluded=where.keep_excluded,
            min_agreement=where.min_agreement, min_gold_accuracy=where.min_gold_accuracy, conversational=conversational), "Export")
    latest_job(db, "export", {}, "export")
    files_list(db)
