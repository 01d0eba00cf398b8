"""What the bot forms say: every mistake at once, beside its field, in words a person uses.

The bot pages check what was typed here first, all fields at once, before anything leaves the web app:
each platform's :meth:`~shared.bots.platforms.base.Platform.field_problem` looks only at the shape of a
value (a Telegram token is ``<digits>:<code>``, a Discord Application ID is 15 to 20 digits, ...) and
says exactly what is wrong with it. What only the platform can judge (is this token live? does this key
belong to this application?) is then decided by botrunner; :func:`place_control_error` puts its answer
beside the field the refusal names (``ControlError.field``) and, when that is one of the platform's
registration fields, marks it as the platform's verdict, so "Telegram rejected this token" is said only
when Telegram did. The name and instructions are held to the control plane's own rules
(:func:`shared.bots.control.normalize_name`, ``NAME_MAX``, ``PROMPT_MAX``).

Answer models and answer modes are shown by their label everywhere (:func:`model_label`,
:func:`model_choices`, :func:`mode_label`, :func:`mode_choices`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.bots.answer_modes import DESCRIPTIONS, AnswerMode, parse_mode
from shared.bots.control import NAME_MAX, PROMPT_MAX, ControlError, normalize_name
from shared.bots.platforms import all_platforms, find_platform

_MODELS: dict[str, tuple[str, str]] = {
    "extractive": ("Extractive", "quotes the docs, fast, no AI model"),
    "gemini": ("Gemini", "writes an answer from the docs"),
}

_MODE_LABELS = {
    AnswerMode.MENTIONS: "When addressed",
    AnswerMode.ALWAYS: "Every message",
    AnswerMode.CONFIDENT: "Only when confident",
}


def model_label(name: str) -> str:
    """The answer model's name as people see it: "Extractive", "Gemini" (unknown names as they are)."""
    return _MODELS.get(name, (name, ""))[0]


def model_choices(allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(value, text)`` for a model ``<select>``: the label and what the model does."""
    out = []
    for name in allowed:
        label, what = _MODELS.get(name, (name, ""))
        out.append((name, f"{label} — {what}" if what else label))
    return out


def mode_label(name: str) -> str:
    """An answer mode as people see it ("When addressed"); unknown names as they are."""
    mode = parse_mode(name)
    return _MODE_LABELS[mode] if mode is not None else name


def mode_choices() -> list[tuple[str, str]]:
    """``(value, text)`` for the answer-mode ``<select>``: the label and when the bot answers."""
    return [(str(m), f"{_MODE_LABELS[m]} — {DESCRIPTIONS[m].lower()}") for m in AnswerMode]


@dataclass(frozen=True)
class FieldError:
    """One message. ``platform`` names the platform whose verdict it is ("Telegram"), or is None for
    askbase's own checks."""

    message: str
    platform: str | None = None


@dataclass
class FormErrors:
    """A form's errors: by field name, plus ones about the form as a whole (in the order found)."""

    fields: dict[str, FieldError] = field(default_factory=dict)
    general: list[FieldError] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)

    def add(self, name: str | None, message: str, platform: str | None = None) -> None:
        """Add ``message`` to field ``name`` (the first message of a field wins) or to the form."""
        error = FieldError(message, platform)
        if name is None:
            self.general.append(error)
        else:
            self.fields.setdefault(name, error)


def check_new_bot(form: Mapping[str, Any], allowed_models: tuple[str, ...]) -> FormErrors:
    """Every shape mistake in the add-a-bot form, by field (nothing is sent anywhere)."""
    errors = FormErrors()
    platform = find_platform(str(form.get("platform") or ""))
    if platform is None:
        errors.add("platform", f"Choose {' or '.join(p.label for p in all_platforms())}.")
    _check_settings(form, allowed_models, errors)
    for registration_field in platform.registration_fields if platform else ():
        name = registration_field.name
        _put(errors, name, platform.field_problem(name, str(form.get(name) or "")) if platform else None)
    return errors


def check_settings(form: Mapping[str, Any], allowed_models: tuple[str, ...]) -> FormErrors:
    """Every mistake in a bot's settings form (name, model, instructions, answer mode)."""
    errors = FormErrors()
    _check_settings(form, allowed_models, errors)
    return errors


def check_new_token(platform: str, token: str) -> FormErrors:
    """The replace-token form: the new token's shape for ``platform``."""
    errors = FormErrors()
    checker = find_platform(platform)
    if checker is not None:
        _put(errors, "token", checker.field_problem(checker.token_field, token))
    return errors


def _check_settings(form: Mapping[str, Any], allowed_models: tuple[str, ...], errors: FormErrors) -> None:
    name = normalize_name(str(form.get("name") or ""))
    if not name:
        errors.add("name", "Give the bot a name, so you can tell your bots apart.")
    elif len(name) > NAME_MAX:
        errors.add("name", f"Keep the name to {NAME_MAX} characters or fewer (this one has {len(name)}).")
    if str(form.get("model") or "") not in allowed_models:
        errors.add("model", "Choose one of the answer models in the list.")
    if "answer_mode" in form and parse_mode(form["answer_mode"]) is None:
        errors.add("answer_mode", "Choose when the bot answers from the list.")
    prompt = str(form.get("system_prompt") or "")
    if len(prompt) > PROMPT_MAX:
        errors.add(
            "system_prompt",
            f"Keep the instructions to {PROMPT_MAX:,} characters or fewer (these have {len(prompt):,}).",
        )


def _put(errors: FormErrors, name: str, problem: str | None) -> None:
    if problem:
        errors.add(name, problem)


def place_control_error(
    error: ControlError,
    platform: str,
    token_field: str = "token",  # noqa: S107 - a form field's name, not a secret
) -> FormErrors:
    """Botrunner's refusal of a form that passed the checks above, put where the person will look.

    A 400 goes beside the field it names (``error.field``; none: about the form as a whole). By then the
    values have the right shape, so a refusal about one of the platform's registration fields is the
    platform's verdict (a token it does not know, a key that belongs to another application); the
    platform's token field is the form's ``token_field`` input. 502 means the platform could not be
    reached; anything else (already registered, botrunner down) is about the form as a whole.
    """
    errors = FormErrors()
    known = find_platform(platform)
    platform_name = known.label if known else platform.capitalize()
    if error.status == 502:
        errors.add(None, error.message, platform_name)
        return errors
    if error.status != 400:
        errors.add(None, error.message)
        return errors
    name = error.field
    verdict = known is not None and name in {f.name for f in known.registration_fields}
    if known is not None and name == known.token_field:
        name = token_field
    errors.add(name, error.message, platform_name if verdict else None)
    return errors
