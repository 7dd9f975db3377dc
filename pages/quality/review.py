"""Review: rankings worth a second look, queue by queue; accept, reject with a reason, or send back; the audit log."""

import pandas as pd
import streamlit as st

from data import annotation, review
from data.store import to_the_minute
from data.rankings import answer_text
from ui.session import guarded, screen
from ui.text import inline
from ui.widgets import as_shown


DECISION = "review-decision"  # (kind, message) of the last decision, shown beside the buttons that made it
NOBODY_ELSE = ("nobody else among the people this item's set is served to can rank it (each person ranks an item once, and all of them "
               "have ranked or skipped it): it stays unfinished until an annotator is added (Team, or the set's Served "
               "to on Overview).")


@guarded("reviewer")
def decide(db, user, ranking_id: int, item_id: int, action: str, reason_key: str, annotator: str) -> None:
    reason = st.session_state.get(reason_key) or ""
    try:
        if action == "accept":
            review.accept(db, ranking_id, actor=user)
        elif action == "reject":
            review.reject(db, ranking_id, reason, actor=user)
        elif review.send_back(db, ranking_id, reason or "sent back for another ranking", actor=user):
            st.session_state[DECISION] = ("success", f"Ranking {ranking_id}: sent back to {annotator}, who ranks the "
                                                     "item again (next in their queue, with your reason).")
            return
        st.session_state[DECISION] = ("success", f"Ranking {ranking_id}: {action} recorded.")
        if action == "send back" and not (others := review.others_who_can_rank(db, item_id)):
            st.session_state[DECISION] = ("warning", f"Ranking {ranking_id}: sent back, but {NOBODY_ELSE}")
        elif action == "send back":
            whom = ("the one other person" if others == 1 else f"one of the {others} other people") + \
                f" its set is served to who {'has' if others == 1 else 'have'} not ranked it"
            st.session_state[DECISION] = ("success", f"Ranking {ranking_id}: sent back. The queue serves the item to {whom} "
                                                     f"(not {annotator}, who ranked it, nor you, the reviewer).")
    except (ValueError, LookupError) as error:
        st.session_state[DECISION] = ("error", str(error))


def queue_table(rows: list[dict], queue: str) -> None:
    st.caption("Letters are those each annotator saw: completions are shuffled per annotator, so A in two rows can be "
               "different answers. \"Stored order\" writes every ranking of an item with the same letters, to compare them. "
               + ("The newest first, decided or not (the review column says which)." if queue == "recent" else
                  "Rankings awaiting a decision come first; decided ones stay listed below them, with the decision."))
    st.dataframe(pd.DataFrame([{
        "ranking": r["ranking_id"], "item": r["item_id"], "set": r["prompt_set"], "annotator": r["annotator"],
        # the letters the annotator saw (their comment uses them), not the stored order of the exports
        "ranking given": answer_text(r),
        "stored order": answer_text(r, list(range(r["k"]))),
        "flags": ", ".join(r["flags"]), "comment": r["comment"],
        "review": "sent back" if r["review_action"] == "send back" else r["review"] or "—", "prompt": r["prompt"],
        **({"why": r["why"]} if "why" in r else {})}
        for r in rows]), hide_index=True, column_config={"prompt": st.column_config.TextColumn(width="large")}, placeholder="—")


def actions(db, user, rows: list[dict], queue: str) -> None:
    open_rows = [r for r in rows if not r["review"] and r["annotator"] != user.name]  # nobody reviews their own
    if not open_rows:
        show_decision()
        own = any(not r["review"] and r["annotator"] == user.name for r in rows)
        st.caption("Everything in this queue has been reviewed" + (": the rest are your own rankings, for another "
                                                                   "reviewer." if own else "."))
        return
    chosen = st.selectbox("Ranking to decide on", open_rows, format_func=lambda r: f"ranking {r['ranking_id']} by "
                          f"{r['annotator']} of item {r['item_id']}",
                          key=f"review-pick-{queue}")  # each queue its own pick: a ranking picked in another is not kept
    with st.expander("The prompt and completions, as the annotator saw them", expanded=True):
        st.markdown(f"**{inline(chosen['annotator'])}** ranked: **{inline(answer_text(chosen))}**"
                    + (f" · flags: {inline(', '.join(chosen['flags']))}" if chosen["flags"] and not chosen["skipped"] else "")
                    + (f" · comment: “{inline(chosen['comment'])}”" if chosen["comment"] else ""))
        as_shown(annotation.get_item(db, chosen["item_id"]), chosen["display_order"])
    reason_key = f"review-reason-{chosen['ranking_id']}"
    st.text_input("Reason (needed to reject; the audit log keeps it)", key=reason_key, max_chars=500)
    if review.goes_back_to_its_annotator(db, chosen["ranking_id"], reviewer=user.id):
        why = ("it is no ranking (a skip, or a flag sent without one), so" if chosen["skipped"] else
               "nobody else this item's set is served to can rank it, so")
        st.caption(inline(f"Send back: {why} it goes back to {chosen['annotator']}, next in their queue (after an item "
                          "they hold now) with your reason; their new ranking replaces this answer."))
    elif not review.others_who_can_rank(db, chosen["item_id"], reviewer=user.id):
        st.caption(inline(f"Send back: {NOBODY_ELSE} Reject leaves the item as it is."))
    accept, reject, send_back = st.columns(3)
    decision = (chosen["ranking_id"], chosen["item_id"])
    accept.button("Accept", on_click=decide, args=(*decision, "accept", reason_key, chosen["annotator"]), width="stretch")
    reject.button("Reject", on_click=decide, args=(*decision, "reject", reason_key, chosen["annotator"]), width="stretch",
                  help="kept and marked; left out of training, agreement, the leaderboard and the pairs export")
    send_back.button("Send back", on_click=decide, args=(*decision, "send back", reason_key, chosen["annotator"]), width="stretch",
                     help="rejected, and the item returns to the queue for another annotator (or, when nobody else "
                          "can rank it or the answer was no ranking, to this annotator to rank)")
    show_decision()


def show_decision() -> None:
    """The last decision's outcome, under the buttons (a message at the top of the page is out of sight here)."""
    kind, message = st.session_state.pop(DECISION, (None, None))
    if kind:
        getattr(st, kind)(inline(message))


with screen("Review", role="reviewer") as (db, user):
    sizes = review.queue_sizes(db)
    st.caption(f"{sizes['flagged']:,} flagged and {sizes['comments']:,} commented answers await review. "
               "Rankings flagged \"all are bad\" or \"offensive/unsafe\" are left out of training and the "
               "pairs export whether reviewed or not.")
    queue = st.segmented_control("Queue", list(review.QUEUES), format_func=review.QUEUES.get, default="flagged", key="review-queue",
                                 bind="query-params")  # a reload or a shared link keeps the queue
    whose = st.selectbox("Whose rankings", ["everyone's", *annotation.annotator_names(db, ranked=True)], key="review-whose",
                         help="one person's newest answers: a sample of their work") if queue == "recent" else None
    rows = review.review_queue(db, queue or "flagged", annotator=None if whose in (None, "everyone's") else whose)
    if not rows:
        st.info(f"Nothing in this queue: {review.EMPTY_BECAUSE[queue or 'flagged']}.")
    else:
        queue_table(rows, queue or "flagged")
        actions(db, user, rows, queue or "flagged")
    events = review.review_events(db)
    if events:
        st.subheader("Audit log")
        log = pd.DataFrame(events)[["at", "action", "ranking_id", "reason", "by", "since"]]
        log["at"] = log["at"].map(to_the_minute)
        st.dataframe(log, hide_index=True,
                     column_config={"since": st.column_config.TextColumn("since", help="where a sent-back item went")},
                     placeholder="—")
