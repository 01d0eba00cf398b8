"""What a bot job asks the worker to do, and the job's id: the parts of a job that deciding needs.

The platform modules decide what an update is (:class:`JobKind`) and name it (:func:`job_id`) without
the :class:`~shared.bots.jobs.Job` model, which is pydantic's: qa imports the platforms for its bot forms
and never builds a job, and with pydantic out of its imports a qa worker holds ~7 MB less and starts
~0.1 s of CPU sooner (one process, after qa's other imports: 8.4 MB and 0.14 s for the platforms
with the model, 2026-12-01).
"""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    """What the worker should do."""

    ASK = "ask"  # ask the Q&A service, send the answer
    HELP = "help"  # /start, /help: send the help text, no Q&A call
    ENABLE = "enable"  # /enable: check the sender is a chat admin, then persist and confirm
    DISABLE = "disable"  # /disable: same, the other way
    MODE = "mode"  # /mode <mode>: same check, then persist the chat's answer mode (``question``)
    VOTE = "vote"  # a 👍/👎 button press: have the Q&A service cast the vote (no message is sent)
    FORGET = "forget"  # /forget: same admin check, then delete the chat's history and its questions


def job_id(platform: str, bot_id: str, update_id: int | str) -> str:
    """The job id of one platform update (Telegram update id, Discord interaction id)."""
    return f"{platform}:{bot_id}:{update_id}"
