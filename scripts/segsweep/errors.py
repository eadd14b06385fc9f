"""Errors about user input that name the subject, the file and the problem in one line."""

from __future__ import annotations


class InputError(Exception):
    """Bad input data: one message naming subject, file and what is wrong."""

    def __init__(self, subject: str | None, path: str | None, problem: str) -> None:
        self.subject = subject
        self.path = path
        self.problem = problem
        parts = [f"subject {subject}" if subject else None, str(path) if path else None, problem]
        super().__init__(": ".join(p for p in parts if p))


class ConfigError(Exception):
    """Bad configuration: names the key, the bad value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        super().__init__(f"config key '{key}': invalid value {value!r}; allowed: {allowed}")
