"""One sentence for one failure: what the CLI prints instead of a traceback.

Dagster wraps whatever an asset raised in ``DagsterExecutionStepExecutionError`` ("Error
occurred while executing op ...") and records the original as its cause; Python chains
the same way (``raise ... from``). An operator needs the innermost error's own message
("stored schwab credentials cannot be decrypted with the current DASHTAM_SECRET_KEY ...",
"schwab: unavailable on /trader/v1/accounts (HTTP 503): ..."), on one line, with no
password of a ``postgresql://`` URL in it. The stack trace stays where it belongs: the
run's event log in the Dagster UI.

Both the runner (for each failed step) and the CLI (for an error that escaped a command)
use this module, so the two say the same thing about the same failure. It reads Dagster's
serialized error info by duck typing (``message``, ``cls_name``, ``cause``, ``context``),
so nothing here imports Dagster's internals.
"""

from __future__ import annotations

import re
from typing import Any

#: ``scheme://user:password@host`` → the password replaced (state URLs, proxies).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):[^@\s/]*@")
#: Wrapper errors whose own message says nothing about the cause.
_WRAPPERS = frozenset({
    "DagsterExecutionStepExecutionError",
    "DagsterUserCodeExecutionError",
    "DagsterExecutionInterruptedError",
    "RetryError",
})
#: Errors raised on purpose whose message is already a sentence for the operator.
_SENTENCES = frozenset({"Failure"})
MAX_SENTENCE = 500


def redact_url_passwords(text: str) -> str:
    """Hide the password of every URL in ``text`` (``postgresql://u:***@host/db``)."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", text)


def one_line(text: str, limit: int = MAX_SENTENCE) -> str:
    """Collapse whitespace and newlines, redact URL passwords, cut at ``limit``."""
    line = " ".join(redact_url_passwords(text).split())
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."


def root_exception(error: BaseException) -> BaseException:
    """The innermost error of a ``raise ... from`` / implicit chain (cycles are cut)."""
    seen: set[int] = set()
    current = error
    while id(current) not in seen:
        seen.add(id(current))
        nxt = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
        if nxt is None:
            break
        current = nxt
    return current


def exception_sentence(error: BaseException) -> str:
    """One line for an exception: a pipeline error's own sentence, anything else as
    ``Type: message`` (the type says what kind of surprise it was)."""
    from dashtam_pipeline.errors import PipelineError

    root = root_exception(error)
    if isinstance(error, PipelineError) and not isinstance(root, PipelineError):
        root = error  # our sentence already says what to do; keep it
    message = str(root).strip()
    if isinstance(root, PipelineError):
        return one_line(message or type(root).__name__)
    name = type(root).__name__
    return one_line(f"{name}: {message}" if message else name)


def error_info_sentence(info: Any) -> str:
    """One line for Dagster's serialized error info (a step failure's ``error``): the
    innermost cause's message, without the ``module.ClassName:`` prefix when it is one of
    ours (``PipelineError`` messages are written as sentences)."""
    if info is None:
        return "the step failed without an error message"
    chain = []
    current, seen = info, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = getattr(current, "cause", None) or getattr(current, "context", None)
    # the innermost error that is not a bare wrapper
    for candidate in reversed(chain):
        if getattr(candidate, "cls_name", None) not in _WRAPPERS:
            return _info_message(candidate)
    return _info_message(chain[-1])


def _info_message(info: Any) -> str:
    cls_name = str(getattr(info, "cls_name", "") or "")
    message = str(getattr(info, "message", "") or "").strip()
    # Dagster stores "module.ClassName: message"; keep the message alone for our errors
    # and for ``dagster.Failure`` (raised on purpose by asset code, with a sentence)
    head, sep, rest = message.partition(": ")
    if sep and head.split(".")[-1] == cls_name:
        ours = head.startswith("dashtam_pipeline.") or cls_name in _SENTENCES
        message = rest if ours else f"{cls_name}: {rest}"
    return one_line(message or cls_name or "the step failed")
