"""Sparsity reports: how many weights each pruned parameter keeps."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ParameterSparsity", "SparsityReport"]


@dataclass(frozen=True)
class ParameterSparsity:
    """Kept and total weights of one prunable parameter of a grouped layer."""

    group: int
    layer: int
    layer_type: str
    name: str
    kept: int
    total: int
    revived: int = 0
    """Pruned entries whose weight is not exactly 0 (an update that bypassed the masks
    moved them)."""

    @property
    def sparsity(self) -> float:
        """Fraction of the parameter's weights that are pruned."""
        return 1.0 - self.kept / self.total if self.total else 0.0

    @property
    def label(self) -> str:
        """Where the parameter sits: its group, its layer's index and type, its name."""
        return f"groups[{self.group}].layers[{self.layer}] ({self.layer_type}).{self.name}"


@dataclass(frozen=True)
class SparsityReport:
    """Per-parameter and total sparsity of every grouped layer; ``str()`` is a table."""

    rounds: int
    parameters: tuple[ParameterSparsity, ...]

    @property
    def kept(self) -> int:
        """Number of prunable weights that remain, over every group."""
        return sum(p.kept for p in self.parameters)

    @property
    def total(self) -> int:
        """Number of prunable weights, over every group."""
        return sum(p.total for p in self.parameters)

    @property
    def revived(self) -> int:
        """Pruned entries, over every group, whose weight is not exactly 0."""
        return sum(p.revived for p in self.parameters)

    @property
    def sparsity(self) -> float:
        """Fraction of all prunable weights that are pruned."""
        return 1.0 - self.kept / self.total if self.total else 0.0

    @property
    def remaining(self) -> float:
        """Fraction of all prunable weights that remain."""
        return 1.0 - self.sparsity

    def __str__(self) -> str:
        rows = [(p.label, f"{p.kept:,}", f"{p.total:,}", f"{100 * p.sparsity:.2f}%") for p in self.parameters]
        rows.append(("total", f"{self.kept:,}", f"{self.total:,}", f"{100 * self.sparsity:.2f}%"))
        head = ("parameter", "kept", "total", "sparsity")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

        def line(r: tuple[str, ...]) -> str:
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )

        rule = "  ".join("-" * w for w in widths)
        body = [line(r) for r in rows]
        return "\n".join([f"after {self.rounds} round(s) of pruning", line(head), rule, *body[:-1], rule, body[-1]])
