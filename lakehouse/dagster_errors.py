"""What a Dagster error comes down to: its innermost cause, readable in one screen."""

from __future__ import annotations


def innermost(info):
    """The last cause (or context) of a SerializableErrorInfo chain: the user's own exception."""
    while (info.cause or info.context) is not None:
        info = info.cause or info.context
    return info


def summary(info, frames: int = 0) -> str:
    """The innermost cause's message, with its last `frames` stack frames."""
    root = innermost(info)
    return "\n".join([root.message.strip(), *(frame.rstrip() for frame in root.stack[-frames:] if frames)])
