"""orderhub's own exceptions; the stage runner maps each to its error policy."""

from __future__ import annotations


class OrderhubError(Exception):
    """Base of every error orderhub raises on purpose."""


class InvalidInput(OrderhubError):
    """An input that can never be processed: it goes to the DLQ with this reason.

    `path` names the offending field (e.g. `line_items[2].quantity`) when there is one.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class TransientError(OrderhubError):
    """Infrastructure that may recover (database, broker): retried with backoff, then fatal."""


class ConfigurationError(OrderhubError):
    """Settings or command-line input a person must fix; the message says how."""


class Throttled(TransientError):
    """A channel or provider asked us to slow down (HTTP 429, a rate-limit error code)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class ChannelError(OrderhubError):
    """A channel or provider refused a request for a reason retrying cannot fix (bad signature,
    bad token, bad parameter). The poller stops that shop loudly, the notification sender fails
    that message; `code` is the channel's own error code."""

    def __init__(self, message: str, code: str | None = None) -> None:
        self.code = code
        super().__init__(f"{message} (code {code})" if code else message)
