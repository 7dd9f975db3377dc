"""Generate: the K completions per prompt that annotators rank, written by a generator version and remote models."""

import pandas as pd
import streamlit as st

from data import generators, items, prompt_sets, spot_checks, versions
from data.accounts import AuthError
from data.generators import parse_mix
from data.store import to_the_minute
from policy.config import GenerationConfig, next_round_of
from policy.remote import RemoteGenerationError, check_server
from ui.jobs import launch, latest_job, round_settings, version_label, version_picker
from ui.session import flash, guarded, screen
from ui.text import inline


@guarded("admin")
def save_remote(db, user) -> None:
    form = {k.removeprefix("remote-"): v for k, v in st.session_state.items() if str(k).startswith("remote-")}
    try:
        g = generators.RemoteGenerator(name=form["name"].strip(), base_url=form["base_url"].strip(), model=form["model"].strip(),
                                       api_key_env=form["api_key_env"].strip(), temperature=form["temperature"],
                                       top_p=form["top_p"], max_tokens=int(form["max_tokens"]),
                                       concurrency=int(form["concurrency"]), timeout_s=float(form["timeout_s"]),
                                       retries=int(form["retries"]))
        generators.save_remote_generator(db, g, user)
        flash("success", f"Remote generator {g.name} saved. Check it can be reached, then mix it into a generation.")
    except (ValueError, AuthError) as error:
        flash("error", str(error))


@guarded("admin")
def delete_remote(db, user, name: str) -> None:
    try:
        generators.delete_remote_generator(db, name, user)
        flash("success", f"Remote generator {name} removed; its completions keep their provenance.")
    except AuthError as error:
        flash("error", str(error))


@guarded("admin")
def check_remote(db, user, name: str) -> None:
    try:
        g = generators.remote_generator(db, name)
        models = check_server(g)
        served = "serves it" if g.model in models else f"does NOT list model {g.model!r}"
        flash("success" if g.model in models else "warning",
              f"{name}: {g.base_url} answers and {served} (models: {', '.join(models[:10]) or 'none listed'}).")
    except (RemoteGenerationError, LookupError, PermissionError, ValueError) as error:
        flash("error", f"{name}: {error}")


@guarded("admin")
def withdraw_cut(db, user, prompt_set: str) -> None:
    try:
        n = prompt_sets.withdraw_cut_items(db, prompt_set, user)
        flash("success", f"{n:,} unanswered items with cut answers withdrawn from {prompt_set}: generate again (with a higher "
                         "cap, 'skip prompts already done' on) to sample their prompts afresh.")
    except (ValueError, LookupError, AuthError) as error:
        flash("error", str(error))


def cut_answers_section(db, sets: list[str]) -> None:
    """How many of a set's completions were cut at the token cap, and a way to take the unanswered ones out."""
    st.subheader("Answers cut at the token cap")
    prompt_set = st.selectbox("Prompt set to check", sets, key="cut-set")
    counts = prompt_sets.cut_answers(db, prompt_set)
    if not counts["completions"]:
        st.caption("No generated completions in this set yet.")
        return
    st.caption(f"{counts['cut']:,} of {counts['completions']:,} completions ({counts['cut'] / counts['completions']:.0%}) "
               "were cut at their cap; annotators see them marked \"cut\". "
               f"{counts['withdrawable']:,} items with a cut answer have no ranking yet.")
    if counts["withdrawable"]:
        st.button(f"Withdraw those {counts['withdrawable']:,} items", on_click=withdraw_cut, args=(prompt_set,),
                  help="deletes them (nothing of them was answered), so the next generation samples their prompts again")


def generation_form(db, local_generators: list[dict], remotes: list, sets: list[str]) -> str:
    # above the form, so that its settings start from the set's last round (a field inside a form changes nothing until sent)
    prompt_set = st.selectbox("Prompt set", sets, key="generate-set")
    defaults, previous = next_round_of(db, prompt_set, None, same_head_to_head=True)
    rival = next((v for v in local_generators if v["id"] == defaults.versus_version), None) if defaults.versus_k else None
    st.caption(round_settings(defaults, previous, rival and rival["name"]))
    mixed = parse_mix(defaults.remote)
    with st.form("generate"):
        version = version_picker(st, "Generator", local_generators)
        k = st.slider("Completions per prompt (K)", 2, 9, defaults.k)
        mix = {}
        if remotes:
            st.caption("Arena-style items: how many of each item's K completions each remote model writes; the generator "
                       "above writes the rest (none when these add up to K). Annotators never see which model wrote what.")
            for column, g in zip(st.columns(min(len(remotes), 4)) * len(remotes), remotes):
                mix[g.name] = column.number_input(g.name, 0, 9, mixed.get(g.name, 0), key=f"mix-{g.name}-{prompt_set}",
                                                  help=f"{g.model} at {g.base_url}")
        left, middle, right = st.columns(3)
        temperature = left.number_input("Temperature", 0.05, 2.0, defaults.temperature, 0.05)
        top_p = middle.number_input("Top-p", 0.05, 1.0, defaults.top_p, 0.05)
        max_new_tokens = right.number_input("Max new tokens", 8, 1024, defaults.max_new_tokens, 8)
        left, right = st.columns([3, 1])
        choices = [None, *local_generators]
        versus = left.selectbox("Head-to-head: another version writes some of each item's answers", choices,
                                index=choices.index(rival) if rival else 0,
                                format_func=lambda v: "none" if v is None else version_label(v),
                                help="answers of two versions shuffled in each item: people's rankings compare them "
                                     "directly, and the Model leaderboard rates them (a new version against where it "
                                     "started)")
        versus_k = right.number_input("Answers it writes", 1, 8, defaults.versus_k or max(1, defaults.k // 2))
        left, middle, right = st.columns(3)
        seed = left.number_input("Seed", 0, 2**31 - 1, defaults.seed)
        limit = middle.number_input("Only the first N prompts (0: all)", 0, 100_000, 0)
        skip_done = right.checkbox("Skip prompts already done by these sources", defaults.skip_done)
        if st.form_submit_button("Start generation", type="primary"):
            try:
                config = GenerationConfig(prompt_set=prompt_set, generator_version=version["id"], k=k, temperature=temperature,
                                          top_p=top_p, max_new_tokens=int(max_new_tokens), seed=int(seed), limit=int(limit) or None,
                                          skip_done=skip_done, remote=",".join(f"{n}={c}" for n, c in mix.items() if c),
                                          versus_version=versus and versus["id"], versus_k=int(versus_k) if versus else 0)
            except ValueError as error:
                st.error(str(error))
                return prompt_set
            launch("generate", config, "Generation")
    return prompt_set


def rounds_table(db, prompt_set: str) -> None:
    """The set's rounds, oldest first: which job and generators wrote its items, and how far their ranking is."""
    rounds = prompt_sets.rounds(db, prompt_set)
    if not rounds:
        return
    st.markdown(f"**Rounds of {inline(prompt_set)}** · which generator wrote which items, and how far their ranking is")
    st.dataframe(pd.DataFrame([{
        "round": f"job {r['job_id']}" if r["job_id"] else "built in or imported", "written by": ", ".join(r["writers"]),
        "started": to_the_minute(r["started"]), "items": r["items"], "rankings": f"{r['done']:,} of {r['wanted']:,}",
        "complete items": r["complete"]} for r in rounds]), hide_index=True, placeholder="—")


def refused_remotes(db) -> None:
    """Remote generators saved under older rules that today's refuse: said, not used, and removable."""
    for row in generators.refused_remote_generators(db):
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.warning(f"Remote generator {row['name']} is not used: {row['problem']}. Remove it, or save it again below "
                     "with settings that pass.")
        right.button("Remove", key=f"remove-refused-{row['name']}", on_click=delete_remote, args=(row["name"],), width="stretch")


def remote_generators_section(db, remotes: list) -> None:
    st.subheader("Remote generators")
    refused_remotes(db)
    st.caption("Models served over an OpenAI-compatible API (vLLM, llama.cpp's server, TGI, Ollama, a hosted API). "
               "The API key stays in an environment variable named …_API_KEY (or under [remote_api_keys] in "
               ".streamlit/secrets.toml) on the machine that runs the app: only its name is stored.")
    if remotes:
        st.dataframe(pd.DataFrame([{k: v for k, v in vars(g).items() if k != "id"} for g in remotes]), hide_index=True, placeholder="—")
        left, middle, right = st.columns([3, 1, 1], vertical_alignment="bottom")
        name = left.selectbox("Remote generator", [g.name for g in remotes], key="remote-picked")
        middle.button("Check", on_click=check_remote, args=(name,), width="stretch", help="Ask the server for its models (5 s)")
        right.button("Remove", on_click=delete_remote, args=(name,), width="stretch")
    with st.expander("Add or update a remote generator", expanded=not remotes):
        defaults = generators.RemoteGenerator("example", "http://localhost:8080/v1", "model")
        left, middle, right = st.columns(3)
        left.text_input("Name", key="remote-name", placeholder="llama-3-8b")
        middle.text_input("Base URL", key="remote-base_url", placeholder="http://localhost:8080/v1")
        right.text_input("Model", key="remote-model", placeholder="as the server names it")
        left, middle, right = st.columns(3)
        left.text_input("API key variable", key="remote-api_key_env", placeholder="VLLM_API_KEY (empty: no key)",
                        help="The NAME of the environment variable holding the key (ending in _API_KEY; or that name under "
                             "[remote_api_keys] in .streamlit/secrets.toml), never the key itself.")
        middle.number_input("Temperature", 0.05, 2.0, defaults.temperature, 0.05, key="remote-temperature")
        right.number_input("Top-p", 0.05, 1.0, defaults.top_p, 0.05, key="remote-top_p")
        left, middle, right, last = st.columns(4)
        left.number_input("Max tokens", 8, 32_768, defaults.max_tokens, 8, key="remote-max_tokens")
        middle.number_input("Requests at once", 1, 64, defaults.concurrency, key="remote-concurrency")
        right.number_input("Timeout (s)", 1.0, 3600.0, defaults.timeout_s, key="remote-timeout_s")
        last.number_input("Retries", 0, 10, defaults.retries, key="remote-retries", help="on 429, 5xx and connection errors")
        st.button("Save remote generator", type="primary", on_click=save_remote)


with screen("Generate") as (db, user):
    local_generators = versions.list_versions(db, "generator")
    sets = spot_checks.spot_check_sets_last([s["name"] for s in items.prompt_sets(db)])
    remotes = generators.remote_generators(db)
    if not local_generators or not sets:
        st.info("Import prompts first (Data → Import).")
        st.stop()
    prompt_set = generation_form(db, local_generators, remotes, sets)
    latest_job(db, "generate", {}, "generate")
    rounds_table(db, prompt_set)
    cut_answers_section(db, sets)
    remote_generators_section(db, remotes)
