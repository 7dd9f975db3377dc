"""The screens and who gets which: the navigation app.py declares on every run.

The screens live in sub-folders of pages/, never directly in it: before the first st.navigation
of a server process, Streamlit would otherwise run pages/NAME.py for the URL /NAME by itself.
"""

from pathlib import Path

import streamlit as st

from ui.login import login_page

APP_FILE = str(Path(__file__).resolve().parent.parent / "app.py")
ADMIN_SCREENS = {  # section: [(file under pages/, title, icon)]; a file's name is its address, e.g. /team
    "Data": [("data/overview", "Overview", "dashboard"), ("data/import", "Import", "upload"),
             ("data/guidelines", "Guidelines", "menu_book"), ("data/generate", "Generate", "auto_awesome")],
    "Quality": [("quality/agreement", "Agreement & health", "handshake"), ("quality/annotators", "Annotators", "groups"),
                ("quality/items", "Item consensus", "leaderboard"), ("quality/gold", "Gold items", "star"),
                ("quality/models", "Model leaderboard", "trophy"), ("quality/review", "Review", "rate_review")],
    "Train": [("train/sft", "Demonstrations & SFT", "edit_note"), ("train/reward", "Reward model", "emoji_events"),
              ("train/policy", "Policy update", "model_training"), ("train/dpo", "Preference optimisation (DPO)", "thumbs_up_down"),
              ("train/versions", "Models", "inventory_2")],
    "Operate": [("operate/team", "Team", "manage_accounts"), ("operate/jobs", "Jobs", "pending_actions"),
                ("operate/export", "Export", "download")],
}
ANNOTATE = "annotate/annotate"
ADMIN_HOME = "data/overview"  # an admin's landing screen, at "/" and at its own address
REVIEWER_SCREENS = [("quality/review", "Review", "rate_review")]  # a reviewer's screens beside Annotate


def logged_out_navigation() -> list:
    """The log-in screen, under every screen's address too: a deep link shows the form, then its screen."""
    addresses = [file.split("/")[-1] for screens in [[(ANNOTATE, "", "")], *ADMIN_SCREENS.values()] for file, _, _ in screens]
    # the default page is served at "/" and reserves its own name, so it takes "home" and /login is an alias
    return [st.Page(login_page, title="Log in", icon=":material/login:", url_path="home", default=True),
            *(st.Page(login_page, title="Log in", url_path=address) for address in ["login", *addresses])]


def navigation(user) -> dict:
    # the default page is served at "/" but reserves its own name too, so it takes "home" and leaves /annotate to an alias:
    # a shared /annotate link (or a log-in that began there) opens the ranking screen, not "Page not found"
    annotate = [st.Page(f"pages/{ANNOTATE}.py", title="Annotate", icon=":material/reorder:", url_path="home", default=True),
                st.Page(f"pages/{ANNOTATE}.py", title="Annotate", url_path=ANNOTATE.split("/")[-1], visibility="hidden")]
    if user.can_review and not user.is_admin:  # reviewers: Annotate and Review, no admin screen even by URL
        return {"Annotate": annotate, "Quality": [st.Page(f"pages/{file}.py", title=title, icon=f":material/{icon}:")
                                                    for file, title, icon in REVIEWER_SCREENS]}
    if not user.is_admin:  # annotators are never served an admin screen, not even by URL
        return {"": annotate}
    # an admin lands on Overview, not Annotate: opening Annotate reserves an item for 10 minutes, and an admin who came
    # to run the project held one from both annotators that way (walk, 2026-12-07); /overview stays its address too
    title, icon = next((title, icon) for file, title, icon in ADMIN_SCREENS["Data"] if file == ADMIN_HOME)
    landing = [st.Page(f"pages/{ADMIN_HOME}.py", title=title, icon=f":material/{icon}:", url_path="home", default=True),
               st.Page(f"pages/{ADMIN_HOME}.py", title=title, url_path=ADMIN_HOME.split("/")[-1], visibility="hidden")]
    return {"Annotate": [st.Page(f"pages/{ANNOTATE}.py", title="Annotate", icon=":material/reorder:")], **{
        section: [*(landing if section == "Data" else []),
                  *(st.Page(f"pages/{file}.py", title=title, icon=f":material/{icon}:")
                    for file, title, icon in screens if file != ADMIN_HOME)]
        for section, screens in ADMIN_SCREENS.items()}}
