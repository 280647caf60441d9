"""Replace people's and machines' names in the outputs with stable pseudonyms (`--anonymize`).

A pseudonym is a keyed hash of the value: the same username, email, workspace, host or IP
address gets the same pseudonym everywhere in one report (database rows, log lines, file paths),
so the evidence still lines up, and nobody without the key can map it back. The key is random
for each run unless the operator passes one (to keep pseudonyms stable across reports), and it
is written nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any

IPV4 = r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"
IPV6 = r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}(?![\w:])"
EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
MIN_LENGTH = 3  # shorter names would replace fragments of ordinary words


@dataclass
class Identifiers:
    """Identifying values found in the inputs, by kind (user, email, workspace, host)."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, value: str | None) -> None:
        if value and len(value) >= MIN_LENGTH:
            self.values.setdefault(kind, set()).add(value)


class Pseudonymizer:
    """Maps identifying text to `<kind>-<8 hex>` pseudonyms with a keyed hash."""

    def __init__(self, identifiers: Identifiers, key: bytes) -> None:
        self._key = key
        self._known: dict[str, str] = {}
        for kind, values in identifiers.values.items():
            for value in values:
                self._known.setdefault(value, self.pseudonym(kind, value))
        names = sorted(self._known, key=len, reverse=True)
        alternatives = [re.escape(n) for n in names] + [EMAIL, IPV6, IPV4]
        self._pattern = re.compile(r"(?<![\w])(?:" + "|".join(alternatives) + r")(?![\w])")

    def pseudonym(self, kind: str, value: str) -> str:
        digest = hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
        return f"{kind}-{digest[:8]}"

    def text(self, value: str) -> str:
        """`value` with every known name, email and IP address replaced."""
        return self._pattern.sub(self._replace, value)

    def _replace(self, m: re.Match[str]) -> str:
        found = m.group(0)
        if found in self._known:
            return self._known[found]
        kind = "email" if "@" in found else "ip"
        return self.pseudonym(kind, found)

    def apply(self, value: Any) -> Any:
        """Apply to every string inside dicts and lists (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.apply(v) for v in value)
        if isinstance(value, dict):
            return {self.apply(k): self.apply(v) for k, v in value.items()}
        return value
