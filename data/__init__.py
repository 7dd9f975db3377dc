"""The store: SQLite schema, rankings, queue, import, export and background jobs.

Nothing here imports streamlit; long work reports progress through callbacks.
"""
