"""Which index version a profile's rows and vectors belong to: the one comparability check.

Profiles hold item rows (valid in one version's item table) and vectors (comparable with any
version whose text space was encoded by the same model). A service that swaps versions keeps
serving the profiles of the previous version until they are rebuilt: ``same_rows`` says when
rows can be read directly, ``comparable`` when the vectors can be compared with the new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aisle.index.loaded import LoadedIndex

TEXT_SPACE = "text"


@dataclass(frozen=True)
class SpaceBinding:
    """An index version and the fingerprint of the model its text vectors come from."""

    version: str
    fingerprint: str

    @classmethod
    def of(cls, index: LoadedIndex) -> SpaceBinding:
        return cls(index.version, index.spaces[TEXT_SPACE].fingerprint)

    def same_rows(self, other: SpaceBinding) -> bool:
        """Rows of one version mean the same items in the other."""
        return self.version == other.version

    def comparable(self, other: SpaceBinding) -> bool:
        """Profile vectors built for one can be compared with the other's item vectors."""
        return self.fingerprint == other.fingerprint
