"""PNG of a sweep: throughput and latency against concurrency, one line per documents/request.

Served cells are solid lines, naive-baseline cells dashed; the in-process ceiling, where measured,
is a dotted horizontal line on the throughput panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rerank_tools.benchmark.loadgen import CellResult


def plot_sweep(
    cells: Sequence[CellResult], path: str | Path, ceiling_pairs_per_s: float | None = None
) -> Path:
    """Draw ``cells`` into ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (thr, lat) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"served": "-", "naive": "--"}
    series: dict[tuple[str, int], list[CellResult]] = {}
    for cell in cells:
        series.setdefault((cell.target, cell.docs_per_request), []).append(cell)
    colors = {docs: f"C{i}" for i, docs in enumerate(sorted({d for _, d in series}))}
    for (target, docs), points in sorted(series.items()):
        points = sorted(points, key=lambda c: c.concurrency)
        x = [c.concurrency for c in points]
        style = {"linestyle": styles.get(target, ":"), "marker": "o", "color": colors[docs]}
        thr.plot(x, [c.pairs_per_s for c in points], label=f"{target}, {docs} docs/req", **style)
        lat.plot(x, [c.p50_ms for c in points], label=f"{target}, {docs} docs/req, p50", **style)
        lat.plot(x, [c.p95_ms for c in points], alpha=0.45, label=f"{target}, {docs} docs/req, p95", **style)
    if ceiling_pairs_per_s:
        thr.axhline(ceiling_pairs_per_s, color="black", linestyle=":", label="in-process ceiling")
    concurrencies = sorted({c.concurrency for c in cells})
    for ax, ylabel in ((thr, "pairs / s"), (lat, "latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    lat.set_yscale("log")
    thr.set_title("Throughput")
    lat.set_title("Latency")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
