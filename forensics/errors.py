"""Exception types and the exit codes that are part of the command-line API."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every `forensics` command (documented in the README)."""

    OK = 0  # nothing at or above --fail-on
    FINDINGS = 1  # at least one finding at or above --fail-on
    BAD_INPUT = 2  # usage error or unusable input
    INTERNAL = 3  # a bug in forensics


class ForensicsError(Exception):
    """Base class; `exit_code` tells the CLI how to end."""

    exit_code = ExitCode.INTERNAL


class InputError(ForensicsError):
    """The inputs cannot be analysed: missing required tables, nothing recognisable, bad paths."""

    exit_code = ExitCode.BAD_INPUT


class UsageError(ForensicsError):
    """An option has a value that cannot be used."""

    exit_code = ExitCode.BAD_INPUT
