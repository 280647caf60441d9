"""Shared helpers: run the CLI, and load one file through discover + ingest."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from forensics.cli import app
from forensics.discover import classify


@pytest.fixture
def cli():
    """Invoke the `forensics` CLI in-process; returns the click Result."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    yield c
    c.close()


def source(path: Path):
    """Classify one file as discover() would."""
    return classify(path, path.name)
