"""Data overview: headline counts, and per prompt set N (rankings wanted per item) and the order of its queue."""

import streamlit as st

from data import items, uncertainty, versions
from ui.session import flash, screen
from ui.text import safe_markdown

COUNTS = ("prompts", "completions", "rankings", "comparisons", "items", "skips", "annotators", "demonstrations")


def set_row(db, prompt_set: dict, queue: dict, reward: dict | None) -> None:
    """One prompt set: N, its queue order and random share, saved together; for the 'uncertain' order, how many of
    its open items the active reward model has scored."""
    name = prompt_set["name"]
    with st.container(border=True):
        st.markdown(f"**{safe_markdown(name)}** · {prompt_set['prompts']:,} prompts · {queue['open']:,} items open")
        n_column, order_column, share_column, save_column = st.columns([1, 3, 1, 1], vertical_alignment="bottom")
        n = n_column.number_input("N", 1, 20, prompt_set["rankings_wanted"], key=f"n-{name}")
        orders = list(uncertainty.QUEUE_ORDERS)
        order = order_column.selectbox("Queue order", orders, index=orders.index(queue["queue_order"]),
                                       format_func=uncertainty.QUEUE_ORDERS.get, key=f"order-{name}")
        share = share_column.number_input("Random share", 0.0, 1.0, float(queue["random_share"]), 0.05, key=f"share-{name}",
                                          disabled=order != "uncertain",
                                          help="of the set's items, served in random order among the least certain "
                                               "ones: their rankings are a uniform sample of the set")
        if save_column.button("Save", key=f"save-{name}"):
            save(db, name, int(n), order, float(share))
        if queue["queue_order"] == "uncertain":
            uncertain_status(queue, reward)


def save(db, name: str, n: int, order: str, share: float) -> None:
    """The set's N and queue order in one transaction; then, in the 'uncertain' order, a scoring job if items wait."""
    items.set_queue(db, name, n, order, share)
    message = f"{name}: {n} rankings per item; {uncertainty.QUEUE_ORDERS[order].lower()}."
    if order == "uncertain" and (job_id := uncertainty.score_in_background(db, [name])):
        message += f" Job {job_id} scores its open items with the active reward model: follow it under Jobs."
    flash("success", message)
    st.rerun()


def uncertain_status(queue: dict, reward: dict | None) -> None:
    if reward is None:
        st.warning("No active reward model: until one is trained or made active, this queue serves its random share "
                   "first, then the other items oldest first.")
        return
    text = (f"{queue['scored']:,} of {queue['open']:,} open items scored by {reward['name']}; "
            f"{queue['random_share']:.0%} of its items are served in random order.")
    if queue["scored"] < queue["open"]:
        text += (" The others keep an earlier model's score, or come after the scored ones until the scoring job "
                 "(started when a reward model is made active) reaches them.")
    st.caption(safe_markdown(text))


with screen("Overview") as (db, user):
    counts = items.counts(db)
    for column, name in zip(st.columns(4) * 2, COUNTS):
        column.metric(name.capitalize(), f"{counts[name]:,}")
    st.markdown("**Prompt sets** · N is how many rankings each item gets before it leaves every queue. The queue "
                "serves items with the fewest rankings first; among those, oldest first, or those the active reward "
                "model is least sure about.")
    reward = versions.active_version(db, "reward")
    queues = uncertainty.queue_overview(db, reward["id"] if reward else None)
    for prompt_set in items.prompt_sets(db):
        set_row(db, prompt_set, queues[prompt_set["name"]], reward)
