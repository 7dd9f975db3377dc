"""Models: every generator and reward-model version, where it came from, how good it is and what uses it; make any
one active (or roll back to an earlier one), delete one nothing uses; who changed what, when."""

import pandas as pd
import streamlit as st

from data import spot_checks, uncertainty, versions
from data.store import to_the_minute
from training.gate import evaluation_summary, gate_for, has_gate
from ui.jobs import activation_confirmed, gate_override, version_label
from ui.session import flash, guarded, screen
from ui.text import inline

KINDS = {"generator": "Generators", "reward": "Reward models"}


def versions_frame(db, listed: list[dict]) -> pd.DataFrame:
    rows = []
    for v in listed[::-1]:
        origin = versions.lineage(db, v)
        rows.append({"id": v["id"], "name": v["name"], "active": v["is_active"], "from": origin["parent"] or "",
                     **({"against": origin["reward_model"] or ""} if v["kind"] == "generator" else {}),
                     "job": origin["job"], "trained on": origin["data"] or "", "learnt from": origin["examples"],
                     "evaluation": evaluation_summary(v["metrics"]), "used by": "; ".join(versions.uses_of(db, v["id"])),
                     "created": to_the_minute(v["created_at"])})
    return pd.DataFrame(rows)


@guarded("admin")
def activate(db, user, version_id: int) -> None:
    try:
        spot_checks.activate(db, version_id, actor=user, override=gate_override(versions.get_version(db, version_id)))
    except ValueError as error:  # people disagree with the reward model on its favourites (data/spot_checks.py)
        flash("error", str(error))
        return
    version = versions.get_version(db, version_id)
    message = f"{version['name']} is now the active {versions.KIND_NAMES[version['kind']]}."
    if version["kind"] == "reward" and (job_id := uncertainty.score_in_background(db)):
        message += f" Job {job_id} scores the least-certain-first queues with it."
    flash("success", message)


@guarded("admin")
def delete(db, user, version_id: int) -> None:
    name = versions.get_version(db, version_id)["name"]
    try:
        versions.delete_version(db, version_id, actor=user)
        flash("success", f"Deleted {name}.")
    except ValueError as error:
        flash("error", str(error))


def manage(db, kind: str) -> None:
    listed = versions.list_versions(db, kind)
    st.subheader(KINDS[kind])
    if not listed:
        st.caption("None yet: train one under Train.")
        return
    st.dataframe(versions_frame(db, listed), hide_index=True,
                 column_config={"evaluation": st.column_config.TextColumn(width="large"),
                                "used by": st.column_config.TextColumn(width="medium")}, placeholder="—")
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    by_id = {v["id"]: v for v in listed[::-1]}  # ids as options: the choice stays put when a version's state changes
    active = next((v["id"] for v in listed if v["is_active"]), None)
    kept = st.session_state.get(f"picked-{kind}")
    # a new widget when the active version changes: the browser kept showing the old "(active)" label otherwise
    picked = left.selectbox(f"A {kind} version", list(by_id), index=list(by_id).index(kept) if kept in by_id else 0,
                            format_func=lambda i: version_label(by_id[i]), key=f"pick-{kind}-{active}")
    st.session_state[f"picked-{kind}"] = picked
    chosen = by_id[picked]
    passes, why = gate_for(chosen)
    if not has_gate(chosen):  # a starting model has nothing to be judged against: not a failure
        st.info("No evaluation gate: a starting or registered model, not trained here, has no start to be compared with. "
                "Making it active (a rollback to the start, say) is your call, recorded with your name.")
    else:
        (st.success if passes else st.warning)(f"Evaluation gate: {'passes' if passes else 'does not pass'}: {why}")
    check = spot_checks.verdict(db, chosen["id"]) if kind == "generator" else None
    if check:
        (st.error if check["gamed"] else st.info)(f"Spot check by people: {check['sentence']}.")
    confirmed = activation_confirmed(chosen, say_why=False) and not (check and check["gamed"])  # why is said above
    buttons = right.columns(2)
    buttons[0].button("Make active", key=f"activate-{kind}", disabled=chosen["is_active"] or not confirmed, on_click=activate,
                      args=(chosen["id"],), help="also to roll back to an earlier version; below the gate, tick the box "
                                                 "above first: your call, recorded with your name")
    uses = versions.uses_of(db, chosen["id"])
    summary = evaluation_summary(chosen["metrics"])  # whole here: the table's cells cut long ones
    if summary or uses:
        st.caption(inline(" · ".join([*([f"Evaluation: {summary}"] if summary else []),
                                      *([f"Used by: {'; '.join(uses)}"] if uses else [])])))
    buttons[1].button("Delete", key=f"delete-{kind}", disabled=bool(uses), on_click=delete, args=(chosen["id"],),
                      help="in use: " + "; ".join(uses) if uses else "removes the version and its folder under models/")


with screen("Models") as (db, user):
    st.caption("Training makes a version active only when you ask for it and its held-out evaluation passes the gate; "
               "here you can make any version active, roll back, or delete one that nothing uses.")
    for kind in KINDS:
        manage(db, kind)
    events = versions.version_events(db)
    if events:
        st.subheader("History")
        history = pd.DataFrame(events)[["at", "action", "kind", "name", "by", "note"]]
        history["at"] = history["at"].map(to_the_minute)
        st.dataframe(history, hide_index=True, placeholder="—")
