"""Gold items: an expected order per item, graded silently; each annotator gets one every N items."""

import streamlit as st

from data import annotation, gold, items
from data.rankings import LETTERS, RankingError, parse_ranking_text
from ui.session import flash, guarded, screen
from ui.text import inline
from ui.widgets import untrusted


@guarded("admin")
def save_gold(db, user, item_id: int, k: int) -> None:
    try:
        gold.set_gold(db, item_id, parse_ranking_text(st.session_state.get("gold-expected", ""), list(range(k))))
        flash("success", f"Item {item_id} is gold now.")
    except (RankingError, ValueError) as error:
        flash("error", str(error))


with screen("Gold items") as (db, user):
    graded, passed = gold.summary(db)
    if graded:
        st.caption(f"{graded:,} gold rankings, {passed / graded:.0%} passed (a ranking passes when it orders every pair the "
                   "expected order orders the same way; every ranking of a gold item is graded, those made before it was "
                   "marked too)")
    sets = items.prompt_sets(db)
    left, middle, right = st.columns([2, 1, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Prompt set", sets, format_func=lambda s: s["name"], key="gold-set")
    every = middle.number_input("Gold every N items (0: none)", 0, 1000, int(chosen.get("gold_every", 0)), key="gold-every")
    if right.button("Save rate"):
        gold.set_gold_every(db, chosen["name"], int(every))
        st.toast(f"{inline(chosen['name'])}: " + (f"gold every {int(every)} items" if every else "no gold"))
    if marked := gold.gold_items(db, chosen["name"]):
        st.caption(f"The gold items of {inline(chosen['name'])} (letters in the order the completions are listed below)")
        st.dataframe(marked, hide_index=True, column_config={"prompt": st.column_config.TextColumn(width="large")})
    candidates = items.items_of_set(db, chosen["name"], limit=500)
    if candidates:
        item = st.selectbox("Item", candidates, format_func=lambda r: f"#{r['id']} · {r['prompt'][:70]}", key="gold-item")
        completions = annotation.completions_of(db, item["id"])
        for c in completions:
            st.markdown(f":violet-badge[**{LETTERS[c.position]}**]")
            untrusted(c.text[:300] + ("…" if len(c.text) > 300 else ""))
        with st.form("gold"):
            st.text_input("Expected order (letters as listed above), e.g. B > A = C, or just B > A", key="gold-expected")
            st.form_submit_button("Mark as gold", on_click=save_gold, args=(item["id"], len(completions)))
