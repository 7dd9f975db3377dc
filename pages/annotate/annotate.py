"""Annotate: rank one prompt's completions best to worst, ties allowed.

The prompt (or conversation) first, the guidelines one click away, the completions side by side,
a rank control on each, and the ranking bar pinned to the bottom of the window, so nothing needs
scrolling past every answer. Everything has a key: the shortcuts are listed on the page.
"""

import hashlib
import time

import streamlit as st

from data import annotation, demonstrations, guidelines, queue, review, undo
from data.conversation import is_conversation
from data.rankings import LETTERS, RankingError, answer_text, example_ranking, ranking_from_input, shown_text
from data.store import StoreBusy, from_json, to_the_minute
from ui.compare import diff_html, grid_rows, most_similar_pair, similarity, split_long, word_count, words_text
from ui.session import error_boundary, flash, guarded, require, session_db, show_flash
from ui.text import inline
from ui.widgets import EMPTY_ANSWER, as_shown, turn, untrusted

KEPT = "kept-entries"  # what an annotator entered, kept across a run that could not reach the store
LEFT = "items-left"  # (count, when counted): the count visits every open item, so it is redone at most every 30 s
RECOUNT_S = 30
SIDE_BY_SIDE = "side-by-side"  # the layout of the completions, this session
SEEN = "guidelines-seen"  # (prompt set, version) shown open once in this session; collapsed after
EARLIER_WORDS = 120  # earlier turns of a conversation longer than this start collapsed
SHORTCUTS = ("**/** ranking field · **Enter** submit · **S** skip · **U** undo the last · **F** flags · **G** guidelines · **D** compare two · "
             "**L** layout · **Tab** / **Shift+Tab** move between controls, **←** **→** within ranks or flags, **Space** "
             "picks · **Esc** closes a window or leaves a field · **Enter** in the comment goes on to the ranking field")
EDIT_PICK = "edit-pick"  # the ranking picked under My rankings, by id
REFUSED = "ranking-refused"  # why the last typed ranking was refused: shown beside the ranking field
# "/" puts the cursor in the ranking field and "f" on the first flag (Streamlit buttons take shortcuts; nothing focuses a field).
# Esc leaves a field (a comment took the shortcuts typed after it: a walk lost a ranking into one), and Enter in the
# comment goes on to the ranking field.
# A new item opens at the top (its prompt, the "Saved" echo and first-time guidelines in view), whatever the scroll
# position the last one was submitted from.
FOCUS_KEYS_JS = """<script>
if (window.__rankingItem !== "ITEM_ID") {
  window.__rankingItem = "ITEM_ID";
  window.scrollTo(0, 0);
  for (const scroller of document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"], section.main')) {
    scroller.scrollTop = 0;
  }
}
if (!window.__rankingKeys) {
  window.__rankingKeys = true;
  const targets = {"/": 'input[aria-label="Ranking, best first"]', "f": '[aria-label="Flags"] button'};
  document.addEventListener("keydown", (event) => {
    const active = document.activeElement;
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName) || active.isContentEditable;
    if (event.key === "Escape" && typing && !document.querySelector('[role="dialog"]')) {
      active.blur();
      return;
    }
    if (event.key === "Enter" && active.matches('input[aria-label="Comment (optional)"]')) {
      const field = document.querySelector(targets["/"]);
      if (field) { event.preventDefault(); field.focus(); }
      return;
    }
    const target = targets[event.key] && document.querySelector(targets[event.key]);
    if (target && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      target.focus();
    }
  });
}
</script>"""


def items_left(db, user) -> int:
    count, counted_at = st.session_state.get(LEFT, (0, 0.0))
    if time.time() - counted_at > RECOUNT_S:
        count, counted_at = queue.items_left(db, user.id), time.time()
        st.session_state[LEFT] = (count, counted_at)
    return count


def recount_left() -> None:
    """The next run counts the items left afresh (not the count of up to RECOUNT_S ago)."""
    st.session_state.pop(LEFT, None)


def count_one_down() -> None:
    if LEFT in st.session_state:
        count, counted_at = st.session_state[LEFT]
        st.session_state[LEFT] = (max(0, count - 1), counted_at)


def item_key(item) -> str:
    """The prefix of this showing's widget and timer keys: a repeat of an item, or an item sent back to be ranked
    again, gets its own (its time starts afresh, the first answer's entries stay behind). Opaque, as widget keys reach
    the page: nothing in it tells a repeat from a first showing."""
    return showing_key(item.id, item.repeat_of, item.sent_back["ranking_id"] if item.sent_back else None)


def showing_key(item_id: int, repeat_of: int | None = None, redoes: int | None = None) -> str:
    showing = f"{item_id}:{repeat_of}" + ("" if redoes is None else f":{redoes}")
    return "item-" + hashlib.sha256(showing.encode()).hexdigest()[:12]


def entry_keys(item) -> list[str]:
    key = item_key(item)
    return [f"{key}-typed", f"{key}-flags", f"{key}-comment", *(f"{key}-rank-{i}" for i in range(item.k))]


def keep_entries(item) -> None:
    st.session_state[KEPT] = {k: st.session_state[k] for k in entry_keys(item) if st.session_state.get(k) is not None}


def restore_entries() -> None:
    for k, value in st.session_state.pop(KEPT, {}).items():
        st.session_state.setdefault(k, value)


@guarded()
def submit(db, user, item, order: list[int], skipped: bool) -> None:
    key = item_key(item)
    seconds = round(time.time() - st.session_state.get(f"{key}-shown-at", time.time()), 1)
    flags = st.session_state.get(f"{key}-flags") or []
    comment = st.session_state.get(f"{key}-comment") or ""
    context = {"guideline_version": item.guideline.version if item.guideline else None, "repeat_of": item.repeat_of}
    try:
        if skipped:
            annotation.skip_item(db, item.id, user.id, order, seconds, flags, comment, **context)
            count_one_down()  # a repeat too: the counts move as for any item, so nothing gives a repeat away
            flash("info", "Skipped.")
            return
        ranks = [st.session_state.get(f"{key}-rank-{i}") for i in range(item.k)]
        typed = st.session_state.get(f"{key}-typed") or ""
        bad = [flag for flag in flags if flag in review.BAD_FLAGS]
        if bad and not typed.strip() and all(rank is None for rank in ranks):  # a ranking would be left out anyway
            annotation.skip_item(db, item.id, user.id, order, seconds, flags, comment, **context)
            count_one_down()
            flash("info", f"Flagged {' and '.join(repr(f) for f in bad)} without a ranking: reviewers see the flag, and "
                          "the item stays open for the others to rank.")
            return
        groups = ranking_from_input(typed, ranks, order)
        saved = annotation.submit_ranking(db, item.id, user.id, groups, order, seconds, flags, comment, **context)
        if saved.was_new:
            count_one_down()
        flash("success", f"Saved: {shown_text(groups, order)}{with_what(flags, comment)}" if saved.was_new else "Already saved.")
    except (RankingError, ValueError) as error:
        st.session_state[REFUSED] = str(error)  # shown beside the field, where the annotator is looking
    except StoreBusy as busy:
        keep_entries(item)
        flash("warning", f"{busy} Your ranking is NOT saved yet; what you entered is kept: press Submit again.")


def with_what(flags: list[str], comment: str) -> str:
    """What was sent with a ranking, for its "Saved" line: an annotator sees that the flag and comment were kept."""
    return "".join([", flagged " + " and ".join(f"“{flag}”" for flag in flags) if flags else "",
                    ", with your comment" if comment.strip() else ""])


@guarded()
def take_back_last(db, user) -> None:
    try:
        last = undo.undoable(db, user.id)  # what it was, to say so and put it back in the ranking field
        item_id = undo.undo_last(db, user.id)
        recount_left()  # the taken-back item is open again
        if last and not last["skipped"] and last["item_id"] == item_id:
            given = shown_text(from_json(last["groups"]), from_json(last["display_order"]))
            st.session_state[f"{showing_key(item_id)}-typed"] = given  # served again as a first showing
            flash("info", f"Taken back: your ranking {given} is deleted and its item is your current one again, with "
                          "that ranking in the field to change or submit again.")
        else:
            flash("info", "Taken back: your skip is deleted and its item is your current one again.")
    except ValueError as error:
        flash("error", str(error))


@guarded()
def save_demonstration(db, user, prompt_id: int, key: str, source_completion_id: int | None, shown_at: str) -> None:
    seconds = round(time.time() - st.session_state.get(shown_at, time.time()), 1)
    try:
        demonstrations.save_demonstration(db, prompt_id, user.id, st.session_state.get(key) or "", source_completion_id, seconds)
        flash("success", "Demonstration saved" + (", and ranked above the completion it came from." if source_completion_id else "."))
    except (ValueError, LookupError) as error:
        flash("error", str(error))
    except StoreBusy as busy:
        flash("warning", f"{busy} Your demonstration is NOT saved yet and is kept: press Save again.")


@guarded()
def save_edit(db, user, ranking: dict, key: str) -> None:
    try:
        groups = ranking_from_input(st.session_state.get(key) or "", [None] * ranking["k"], ranking["display_order"])
        st.session_state[EDIT_PICK] = undo.edit_ranking(db, user.id, ranking["id"], groups)  # a new row: stay on it
        flash("success", f"Changed your ranking of “{short(ranking['prompt'])}” to {shown_text(groups, ranking['display_order'])}")
    except (RankingError, ValueError, LookupError) as error:
        flash("error", f"Not changed: {error}")


def short(prompt: str, chars: int = 60) -> str:
    return prompt if len(prompt) <= chars else prompt[:chars - 1] + "…"


def status_of(ranking: dict) -> str:
    if ranking["returned"]:
        return "sent back to you: rank it again (next in your queue)"
    if ranking["review"]:
        return "sent back (the item wants another annotator's ranking)" if ranking["review_action"] == "send back" else ranking["review"]
    if ranking["skipped"]:
        return "not ranked by you: the item stays open for the others"
    return "can be changed" if ranking["editable"] else "kept (asked again or used)"


def my_rankings(db, user) -> None:
    """The annotator's newest rankings, with the letters they saw; one that is not reviewed yet can be changed."""
    rows = undo.my_rankings(db, user.id)
    show_flash()
    if not rows:
        st.info("You have not ranked anything yet.")
        st.stop()
    st.caption(f"Your {len(rows)} newest answers. A ranking can be changed until a reviewer has looked at it; "
               f"your last one can also be taken back (U) for {undo.UNDO_WINDOW_S // 60} minutes.")
    reasons = any(r["review_reason"] for r in rows)  # a column only when a reviewer gave one: the prompt keeps its width
    st.dataframe([{"ranked": to_the_minute(r["created_at"]) + (" (changed)" if r["edited_at"] else ""),
                   "your ranking": answer_text(r), "status": status_of(r),  # in sight in a narrow window, before the prompt
                   **({"reviewer's reason": r["review_reason"] or None} if reasons else {}),
                   "prompt": r["prompt"], "flags": ", ".join(r["flags"]) or None, "comment": r["comment"] or None,
                   "set": r["prompt_set"]}
                  for r in rows], hide_index=True,
                 column_config={"prompt": st.column_config.TextColumn(width="large"),
                                "status": st.column_config.TextColumn(width="medium"),
                                "comment": st.column_config.TextColumn(width="medium"),
                                "reviewer's reason": st.column_config.TextColumn(width="medium")}, placeholder="—")
    editable = {r["id"]: r for r in rows if r["editable"]}
    if not editable:
        st.stop()
    # by id, labelled by what a change leaves as it is (a widget whose labels change starts again at the first);
    # `save_edit` moves the pick to the changed ranking's new row
    labels = {i: f"{short(r['prompt'])} · ranked {to_the_minute(r['created_at'])}" for i, r in editable.items()}
    chosen = editable[st.selectbox("Change a ranking", list(editable), key=EDIT_PICK, format_func=lambda i: labels.get(i, ""))]
    item = annotation.get_item(db, chosen["item_id"])
    with st.expander("The prompt and completions, as you saw them", expanded=True):
        as_shown(item, chosen["display_order"])
    key = f"edit-{chosen['id']}"
    with st.form(f"{key}-form", border=False):
        st.text_input("New ranking, best first", key=key, value=shown_text(chosen["groups"], chosen["display_order"]),
                      help="The letters you saw; '=' ties two completions.")
        st.form_submit_button("Save the change", type="primary", on_click=save_edit, args=(chosen, key))
    st.stop()


def skip_prompt(prompt_id: int) -> None:
    st.session_state.setdefault("skipped-prompts", []).append(prompt_id)


def flip_layout() -> None:
    st.session_state[SIDE_BY_SIDE] = not st.session_state.get(SIDE_BY_SIDE, True)


def write_demonstrations(db) -> None:
    """The "write demonstrations" queue: prompts that have none yet."""
    prompt = demonstrations.next_prompt_without_demonstration(db, st.session_state.get("skipped-prompts", []), user.id)
    show_flash()
    if prompt is None:
        st.success("Every prompt has a demonstration. Thank you!")
        st.stop()
    key = f"demo-{prompt['id']}"
    st.session_state.setdefault(f"{key}-shown-at", time.time())
    st.caption(inline(f"Prompt set {prompt['prompt_set']}"))
    if guideline := guidelines.current_guidelines(db, prompt["prompt_set"]):  # as when ranking: what a good answer is
        with st.expander(f"Guidelines for this set (version {guideline.version})", icon=":material/menu_book:"):
            untrusted(guideline.text)
    st.subheader("Prompt")
    with st.container(border=True):
        untrusted(prompt["text"])
    st.text_area("The answer you wish the model had given", key=key, height=240)
    left, right = st.columns(2)
    left.button("Save demonstration", type="primary", on_click=save_demonstration, args=(prompt["id"], key, None, f"{key}-shown-at"),
                width="stretch")
    right.button("Next prompt", on_click=skip_prompt, args=(prompt["id"],), width="stretch")
    st.stop()


def demonstration_from(item, order: list[int]) -> None:
    """Write a better answer for the shown item, from scratch or by editing a completion."""
    with st.expander("Write a better answer instead (a demonstration)"):
        choices = ["(blank)", *LETTERS[: item.k]]
        start = st.selectbox("Start from", choices, key=f"{item_key(item)}-demo-start",
                             help="Editing a completion also stores your edit as preferred over it.")
        source = None if start == "(blank)" else item.completions[order[LETTERS.index(start)]]
        key = f"{item_key(item)}-demo-{start}"
        st.text_area("Your answer", value=source.text if source else "", key=key, height=200)
        st.button("Save demonstration", key=f"{key}-save", on_click=save_demonstration,
                  args=(item.prompt_id, key, source.id if source else None, f"{item_key(item)}-shown-at"))


def show_prompt(item) -> None:
    """A plain prompt in a box; a conversation as chat turns, the last user turn in full and earlier ones collapsed when long."""
    if not is_conversation(item.messages):
        st.subheader("Prompt")
        with st.container(border=True):
            untrusted(item.prompt)
        return
    st.subheader("Conversation")
    earlier, last = item.messages[:-1], item.messages[-1]
    if earlier:
        words = sum(word_count(m["content"]) for m in earlier)
        if words > EARLIER_WORDS:
            with st.expander(f"Earlier in the conversation: {len(earlier)} turns, {words} words"):
                for message in earlier:
                    turn(message)
        else:
            for message in earlier:
                turn(message)
    turn(last)


def show_guidelines(db, item) -> None:
    """The set's guidelines: open the first time this session meets their version, collapsed after, with what changed
    since the version before; G opens them too."""
    guideline = item.guideline
    if guideline is None:
        return
    seen = st.session_state.setdefault(SEEN, set())
    first_view = (item.prompt_set, guideline.version) not in seen
    seen.add((item.prompt_set, guideline.version))
    with st.expander(f"Guidelines for this set (version {guideline.version})", expanded=first_view, icon=":material/menu_book:"):
        untrusted(guideline.text)
        if (earlier := guidelines.earlier_text(db, item.prompt_set, guideline.version)) is not None:
            st.caption(f"What changed since version {guideline.version - 1} (struck out: removed; highlighted: added)")
            st.html(diff_html(earlier, guideline.text))


@st.dialog("Guidelines", width="large")
def guidelines_dialog(item) -> None:
    require(session_db())  # a dialog reruns on its own, before (or without) the page's check
    st.caption(f"Version {item.guideline.version}")
    untrusted(item.guideline.text)


@st.dialog("Compare two completions", width="large")
def compare_dialog(item, order: list[int]) -> None:
    """A word diff between two completions the annotator picks (at first the two most alike), for answers that differ in a few words."""
    require(session_db())  # a dialog reruns on its own, before (or without) the page's check
    letters = list(LETTERS[: item.k])
    closest = most_similar_pair([item.completions[position].text for position in order])
    left, right = st.columns(2)
    first = left.selectbox("From", letters, index=closest[0], key=f"{item_key(item)}-diff-a")
    second = right.selectbox("To", letters, index=closest[1], key=f"{item_key(item)}-diff-b")
    a, b = (item.completions[order[letters.index(x)]].text for x in (first, second))
    st.caption(f"{first} → {second}: {similarity(a, b):.0%} of words in common. "
               f"Struck through: only in {first}. Highlighted: only in {second}.")
    st.html(diff_html(a, b))


def completion_card(item, shown: int, position: int) -> None:
    """One completion: its letter and length (and whether it was cut at the token cap), the text (a long tail one click away), and its rank control."""
    completion = item.completions[position]
    letter, text = LETTERS[shown], completion.text
    head, tail = split_long(text)
    with st.container(border=True):
        st.markdown(f":violet-badge[Completion **{letter}**]")  # our own Markdown: the text below is HTML
        st.caption(words_text(text) + (f" · :orange[cut at {completion.n_tokens or 'the'} token cap: it may be "
                                                   "unfinished]" if completion.cut else ""))
        if text.strip():  # a statement, not an expression: Streamlit's magic would show its None
            untrusted(head)
        else:
            st.markdown(EMPTY_ANSWER)
        if tail:
            with st.expander(f"Read the rest: {words_text(tail, 'more ')}"):
                untrusted(tail)
        st.segmented_control(f"Rank of {letter}", list(range(1, item.k + 1)), key=f"{item_key(item)}-rank-{shown}",
                             on_change="ignore", help="1 = best; equal ranks are ties")


def show_completions(item, order: list[int]) -> None:
    side_by_side = st.session_state.get(SIDE_BY_SIDE, True)
    for row in grid_rows(item.k, side_by_side):
        for column, shown in zip(st.columns(len(row)) if len(row) > 1 else [st.container()], row):
            with column:
                completion_card(item, shown, order[shown])


def ranking_bar(item, order: list[int]) -> None:
    """Pinned to the bottom of the window: type the ranking and press Enter, or submit the ranks given on the cards."""
    key = item_key(item)
    with st.bottom, st.form(key, border=False):
        typed, submit_column, skip_column = st.columns([6, 1.3, 1], vertical_alignment="bottom")
        example = example_ranking(item.k)
        typed.text_input(
            "Ranking, best first", key=f"{key}-typed",
            placeholder=f"e.g. {example}   (or {example.replace(' > ', '').replace(' = ', '=')}), then Enter",
            help="Letters best to worst; '=' ties two completions. When filled, this wins over the ranks on the cards.",
        )
        submit_column.form_submit_button("Submit ranking", type="primary", on_click=submit, args=(item, order, False),
                                         width="stretch")
        skip_column.form_submit_button("Skip", on_click=submit, args=(item, order, True), shortcut="S", width="stretch")
        if refused := st.session_state.pop(REFUSED, None):
            st.error(inline(f"Not saved: {refused}"))


def tools(item, order: list[int], can_undo: bool) -> None:
    """The row above the completions: guidelines, compare two, layout, and undo while the last answer may be taken back."""
    side_by_side = st.session_state.get(SIDE_BY_SIDE, True)
    with st.container(horizontal=True):
        if item.guideline and st.button("Guidelines", icon=":material/menu_book:", shortcut="G"):
            guidelines_dialog(item)
        if st.button("Compare two", icon=":material/difference:", shortcut="D"):
            compare_dialog(item, order)
        st.button("Stacked view" if side_by_side else "Side by side", icon=":material/view_agenda:" if side_by_side else
                  ":material/view_column:", shortcut="L", on_click=flip_layout)
        if can_undo:
            st.button("Undo last", icon=":material/undo:", shortcut="U", on_click=take_back_last,
                      help=f"take back your last ranking or skip (within {undo.UNDO_WINDOW_S // 60} minutes)")


db = session_db()
user = require(db)
with error_boundary(details=False):  # an annotator never sees a traceback
    mode = st.radio("Task", ["Rank completions", "Write demonstrations", "My rankings"], horizontal=True, key="task",
                    label_visibility="collapsed", on_change=recount_left)  # back to ranking: the others ranked meanwhile
    if mode == "Write demonstrations":
        write_demonstrations(db)
    if mode == "My rankings":
        my_rankings(db, user)
    item = queue.next_item(db, user.id)  # a busy store: the boundary keeps what was entered and offers a retry
    if item is None:  # the count of up to RECOUNT_S ago said "2 left" beside "Nothing left" (walk, 2026-12-07)
        recount_left()
    rejected = queue.rejected_count(db, user.id)
    st.caption(f"Ranking as **{user.name}** · {queue.ranked_count(db, user.id)} ranked"
               + (f" ({rejected} of them sent back or rejected by a reviewer)" if rejected else "") + f", {items_left(db, user)} left")
    show_flash()
    if item is None:
        st.success("Nothing left to rank for you. Thank you! New items appear when the admin generates or imports more.")
        st.button("Check for new items", icon=":material/refresh:")  # a click reruns the screen, which asks the queue again
        if undo.undoable(db, user.id):
            st.button("Undo last", icon=":material/undo:", shortcut="U", on_click=take_back_last)
        st.stop()
    restore_entries()

    order = annotation.display_order(item.id, user.id, item.k, repeat=item.repeat_of is not None)
    st.session_state.setdefault(f"{item_key(item)}-shown-at", time.time())

    if item.sent_back:
        reason = item.sent_back["reason"]  # its own full stop, if it has one, ends the sentence
        st.warning(inline(f"{item.sent_back['by']} sent your ranking of this item back: “{reason}”"
                          + ("" if reason.rstrip().endswith((".", "!", "?")) else ".") + " "
                          "Rank it again: your new answer replaces the earlier one."), icon=":material/undo:")
    show_guidelines(db, item)
    show_prompt(item)
    st.subheader(f"{item.k} candidate replies" if is_conversation(item.messages) else f"{item.k} completions")
    tools(item, order, undo.undoable(db, user.id) is not None)
    show_completions(item, order)
    st.pills("Flags", annotation.FLAGS, selection_mode="multi", key=f"{item_key(item)}-flags", on_change="ignore")
    st.text_input("Comment (optional)", key=f"{item_key(item)}-comment", on_change="ignore", max_chars=annotation.MAX_COMMENT)
    demonstration_from(item, order)
    st.caption("Keyboard: " + SHORTCUTS)
    st.html(FOCUS_KEYS_JS.replace("ITEM_ID", item_key(item)), unsafe_allow_javascript=True)
    ranking_bar(item, order)
