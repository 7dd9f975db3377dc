"""Jobs: every background job (generation, training, export), live, with cancel."""


from ui.jobs import recent_jobs
from ui.session import screen

with screen("Jobs") as (db, user):
    recent_jobs(db)
