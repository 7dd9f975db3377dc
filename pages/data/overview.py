"""Data overview: headline counts; per prompt set (a project) its progress against its targets, whether and to whom
it is served, its priority, N (rankings wanted per item), overlap, and the order of its queue."""

import streamlit as st

from data import annotation, items, prompt_sets, uncertainty, versions

UNCERTAIN_MEASURED = ("No saving is shown for 'least certain first': in simulations on real human comparisons "
                      "(HH-RLHF) neither the reward model's uncertainty (5 seeds, 200 rankings) nor a bootstrap "
                      "ensemble's (10 seeds, 600 rankings) reached the random order's accuracy with fewer rankings "
                      "beyond noise (bench/README.md, 'Serving the least certain items first'). Random order costs "
                      "nothing and is as good as far as measured.")
from ui.session import flash, screen
from ui.text import inline

COUNTS = ("prompts", "completions", "rankings", "comparisons", "items", "skips", "annotators", "demonstrations")


def set_row(db, user, prompt_set: dict, project: dict, queue: dict, reward: dict | None, people: list[str]) -> None:
    """One prompt set: its progress; its status, priority, who it is served to, N, overlap and queue order, all saved
    together by one button; for the 'uncertain' order, how many of its open items the active reward model has scored."""
    name = prompt_set["name"]
    with st.container(border=True):
        st.markdown(f"**{inline(name)}** · {project['status']} · priority {project['priority']} · "
                    f"{prompt_set['prompts']:,} prompts · {queue['open']:,} items open · served to "
                    + (inline(", ".join(project["assigned"])) if project["assigned"] else "everyone"))
        progress_bar(project)
        status_column, priority_column, people_column = st.columns([1, 1, 3])
        status = status_column.selectbox("Status", prompt_sets.STATUSES, index=prompt_sets.STATUSES.index(project["status"]),
                                         key=f"status-{name}", help="active: served; paused: not now; archived: done, kept")
        priority = priority_column.number_input("Priority", -100, 100, int(project["priority"]), key=f"priority-{name}",
                                                help="higher is served first; ties keep the usual order")
        assign = people_column.multiselect("Served to (empty: everyone)", people, default=project["assigned"], key=f"assign-{name}")
        n_column, overlap_share_column, overlap_column = st.columns(3)
        n = n_column.number_input("N (rankings per item)", 1, 20, prompt_set["rankings_wanted"], key=f"n-{name}")
        overlap_share = overlap_share_column.number_input(
            "Overlap share", 0.0, 1.0, float(project["overlap_share"]), 0.05, key=f"overlap-{name}",
            help="share of the items (fixed in advance) that get more rankings, for agreement")
        overlap = overlap_column.number_input("Rankings per overlap item", 2, 20, int(project["overlap_rankings"]),
                                              key=f"overlap-n-{name}")
        order_column, share_column, save_column = st.columns([3, 1, 1], vertical_alignment="bottom")
        orders = list(uncertainty.QUEUE_ORDERS)
        order = order_column.selectbox("Queue order", orders, index=orders.index(queue["queue_order"]),
                                       format_func=uncertainty.QUEUE_ORDERS.get, key=f"order-{name}",
                                       help=UNCERTAIN_MEASURED)
        share = share_column.number_input("Random share", 0.0, 1.0, float(queue["random_share"]), 0.05, key=f"share-{name}",
                                          disabled=order != "uncertain",
                                          help="of the set's items, served in random order among the least certain "
                                               "ones: their rankings are a uniform sample of the set")
        if save_column.button("Save", key=f"save-{name}", type="primary"):
            save(db, user, name, dict(status=status, priority=int(priority), assign=assign, overlap_share=float(overlap_share),
                                      overlap_rankings=int(overlap)), int(n), order, float(share), len(assign or people))
        if queue["queue_order"] == "uncertain":
            uncertain_status(queue, reward)


def progress_bar(project: dict) -> None:
    """Rankings done against what the set's targets want, with the team's pace and an ETA at that pace."""
    wanted, done = project["wanted"], project["done"]
    pace = (f" · {project['per_day']:g} ranking{'' if project['per_day'] == 1 else 's'} a day lately"
            + (f" · about {project['eta_days']:g} day{'' if project['eta_days'] == 1 else 's'} left at that pace"
               if project["eta_days"] else "")
            if project["per_day"] else " · no rankings in the last week")
    if project["status"] != "active" and project["done"] < project["wanted"]:
        pace += f" · {project['status']}: not served, so no ETA"
    overlap = (f" · {project['overlap_items']:,} overlap items (for agreement)" if project["overlap_share"] and project["items"]
               else "")
    if not project["items"]:
        st.caption("No items to rank yet: generate completions for this set (Data → Generate), or import some.")
        return
    st.progress(done / wanted if wanted else 0.0,
                text=f"{done:,} of {wanted:,} rankings wanted ({project['complete']:,} of {project['items']:,} items complete)"
                     f"{overlap}{pace}")
    if project["stuck_items"]:
        st.warning(f"{project['stuck_items']:,} item{'s' if project['stuck_items'] > 1 else ''} cannot be finished: everyone the set is served to has ranked, "
                   "skipped or been sent back from them. Assign more annotators, lower N, or read why they were "
                   "skipped under Quality → Review.")


def save(db, user, name: str, project: dict, n: int, order: str, share: float, served_to: int) -> None:
    """Everything the set's row shows, in one transaction; then, in the 'uncertain' order, a scoring job if items wait.
    Saved as asked even when fewer annotators are served than an item wants rankings (more may join), with a warning."""
    try:
        items.configure_set(db, name, user, project, n, order, share)
    except (ValueError, LookupError) as error:
        flash("error", str(error))
        st.rerun()
    served = ", ".join(project["assign"]) or "everyone"
    overlap = (f"{project['overlap_share']:.0%} of items (the overlap, for agreement) want {project['overlap_rankings']}"
               if project["overlap_share"] else "no overlap items")
    message = (f"{name}: {project['status']}, priority {project['priority']}, served to {served}; {n} ranking{'s' if n != 1 else ''} per item, "
               f"{overlap}; {uncertainty.QUEUE_ORDERS[order].lower()}.")
    if order == "uncertain" and (job_id := uncertainty.score_in_background(db, [name])):
        message += f" Job {job_id} scores its open items with the active reward model: follow it under Jobs."
    if short := too_few_people(n, project, served_to):
        flash("warning", f"{message} {short}")
    else:
        flash("success", message)
    st.rerun()


def too_few_people(n: int, project: dict, served_to: int) -> str:
    """What cannot be finished when each item wants more rankings than the set has annotators (one ranking each).

    >>> too_few_people(3, {"overlap_share": 0.1, "overlap_rankings": 4}, 2)[:54]
    'Only 2 annotators are served this set, and each ranks '
    >>> too_few_people(2, {"overlap_share": 0.0, "overlap_rankings": 4}, 2)
    ''
    """
    wanted = max(n, project["overlap_rankings"] if project["overlap_share"] else 0)
    if wanted <= served_to:
        return ""
    return (f"Only {served_to} annotator{'s are' if served_to != 1 else ' is'} served this set, and each ranks an item "
            f"once: items that want {wanted} rankings cannot be finished until more annotators are added under "
            "Served to (or more accounts made on Team), or N and the overlap's rankings are lowered.")


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
    st.caption(inline(text))


with screen("Overview") as (db, user):
    counts = items.counts(db)
    for column, name in zip(st.columns(4) * 2, COUNTS):
        column.metric(name.capitalize(), f"{counts[name]:,}")
    st.markdown("**Prompt sets** · each is a project. The queue serves only active sets, only to the annotators a set "
                "is served to, the highest priority first; then items with the fewest rankings first, and among those "
                "oldest first, or those the active reward model is least sure about. N is how many rankings each item "
                "gets before it leaves every queue (more for the overlap share). The built-in demo set is paused when "
                "your first own set gets items.")
    reward = versions.active_version(db, "reward")
    queues = uncertainty.queue_overview(db, reward["id"] if reward else None)
    projects = {p["name"]: p for p in prompt_sets.progress(db)}
    people = annotation.annotator_names(db)
    for prompt_set in items.prompt_sets(db):
        set_row(db, user, prompt_set, projects[prompt_set["name"]], queues[prompt_set["name"]], reward, people)
