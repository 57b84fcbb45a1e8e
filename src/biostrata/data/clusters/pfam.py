"""Pfam families: the clans table, and lookups by accession (versioned or not) and by family name.

File read (problems are reported with ``path:line``):

- Pfam clans table (``Pfam-A.clans.tsv``), tab-separated, no header:
  ``accession  clan  clan_name  family_name  description`` (clan fields may be empty).

An accession is ``PF`` and five digits, optionally with a version (``PF00005.27``); lookups and
tables use it without the version.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from biostrata.errors import DataNotFoundError, InputError

__all__ = ["PfamFamily", "PfamTable", "parse_accession"]

_ACCESSION = re.compile(r"^(PF\d{5})(?:\.\d+)?$")


def parse_accession(token: str) -> str | None:
    """The accession ``token`` writes, without version (``PF00005`` for ``PF00005`` or ``PF00005.27``);
    None when ``token`` is not an accession (e.g. a family name)."""
    m = _ACCESSION.match(token)
    return m.group(1) if m else None


@dataclass(frozen=True)
class PfamFamily:
    """One row of ``Pfam-A.clans.tsv``."""

    accession: str
    clan: str
    clan_name: str
    name: str
    description: str


class PfamTable:
    """Pfam families with lookups by accession (versioned or not) and by family name."""

    def __init__(self, families: Sequence[PfamFamily], source: str = "") -> None:
        self.families = list(families)
        self.source = source
        self._by_acc = {f.accession: f for f in self.families}
        self._by_name = {f.name: f for f in self.families}
        lower = Counter(f.name.lower() for f in self.families)
        self._by_lower = {f.name.lower(): f for f in self.families if lower[f.name.lower()] == 1}

    @classmethod
    def read(cls, path: str | Path) -> PfamTable:
        """Read ``Pfam-A.clans.tsv`` (5 tab-separated columns, no header)."""
        path = Path(path)
        if not path.is_file():
            raise DataNotFoundError(
                f"Pfam clans table not found: {path}. Check the path (real data lives in ../shared/data)."
            )
        families = []
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                line = line.rstrip("\n\r")
                if not line.strip():
                    continue
                fields = line.split("\t")
                acc = parse_accession(fields[0])
                if len(fields) < 4 or acc is None:
                    raise InputError(
                        f"{path}:{lineno}: expected 'PFxxxxx<TAB>clan<TAB>clan name<TAB>family name"
                        f"<TAB>description', got {line[:80]!r}"
                    )
                fields += [""] * (5 - len(fields))
                families.append(PfamFamily(acc, fields[1], fields[2], fields[3], fields[4]))
        if not families:
            raise InputError(f"{path}: no Pfam families found; is this Pfam-A.clans.tsv?")
        return cls(families, source=str(path))

    def __len__(self) -> int:
        return len(self.families)

    def __contains__(self, accession: object) -> bool:
        return accession in self._by_acc

    def accession(self, token: str) -> str | None:
        """Accession of a Pfam name (exact, else unique case-insensitive) or accession; None if unknown."""
        acc = parse_accession(token)
        if acc is not None:
            return acc if acc in self._by_acc else None
        fam = self._by_name.get(token) or self._by_lower.get(token.lower())
        return fam.accession if fam else None

    @property
    def accessions(self) -> list[str]:
        return [f.accession for f in self.families]

    def name(self, accession: str) -> str | None:
        fam = self._by_acc.get(accession)
        return fam.name if fam else None

    def clan(self, accession: str) -> str | None:
        """Clan accession (``CL0023``), or None when the family has no clan or is unknown."""
        fam = self._by_acc.get(accession)
        return (fam.clan or None) if fam else None
