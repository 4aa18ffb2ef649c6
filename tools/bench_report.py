"""The benchmark's report: medians and ranges, the profile's top functions, the printed table."""

from __future__ import annotations

import io
import pstats
import statistics
from pathlib import Path
from typing import Any


def stats(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def top_functions(path: Path, n: int = 15) -> list[dict[str, Any]]:
    st = pstats.Stats(str(path), stream=io.StringIO())
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {"function": f"{Path(file).name}:{line}({func})", "calls": nc, "tottime": tt, "cumtime": ct}
        )
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:n]


def print_table(result: dict[str, Any]) -> None:
    m, w = result["measured"], result["workload"]
    print(
        f"\nworkload: {w['changes']:,} changes ({w['ops']}) in {w['transactions']} txns, "
        f"{w['wal_bytes'] / 1e6:.1f} MB WAL; {result['params']['repeat']} repetitions, median [min..max]"
    )

    def fmt(s: dict[str, Any]) -> str:
        return f"{s['median']:>10,.0f} [{s['min']:,.0f}..{s['max']:,.0f}]"

    print(f"{'stage':<34}{'changes/s':>34}  {'peak RSS':>10}")
    print(f"{'decode ceiling (psycopg2 stream)':<34}{fmt(m['decode']['changes_per_s']):>34}")
    rss = m["recvlogical"]["max_rss_kb"]["median"] / 1024
    print(f"{'pg_recvlogical -> /dev/null':<34}{fmt(m['recvlogical']['changes_per_s']):>34}  {rss:>8.0f}MB")
    rss = m["pipeline"]["max_rss_kb"]["median"] / 1024
    print(f"{'pipeline extract+stage':<34}{fmt(m['pipeline']['changes_per_s']):>34}  {rss:>8.0f}MB")
    if "apply" in m:
        print(f"{'apply COPY+MERGE (fakesnow)':<34}{fmt(m['apply']['changes_per_s']):>34}")
    if "snapshot" in m:
        print(
            f"\n{'snapshot table':<20}{'rows':>10}{'raw COPY rows/s':>30}"
            f"{'copy_table rows/s':>30}{'ratio':>8}"
        )
        for t, v in m["snapshot"].items():
            print(
                f"{t:<20}{v['rows']:>10,}{fmt(v['raw_copy_rows_per_s']):>30}"
                f"{fmt(v['copy_table_rows_per_s']):>30}{v['ratio_copy_table_to_raw']['median']:>8.2f}"
            )
    mem = m["memory"]
    print(
        f"\npeak RSS: {mem['max_rss_kb'] / 1024:.0f} MB with {mem['window_changes']:,}-change windows, "
        f"{mem['half_window_max_rss_kb'] / 1024:.0f} MB with {mem['half_window_changes']:,}-change windows"
    )
    print("CPU per change (median):")
    for name, s in m["cpu_us_per_change"].items():
        print(f"  {name:<32}{s['median']:>8.1f} us [{s['min']:.1f}..{s['max']:.1f}]")
    r = result["ratios"]
    print(
        f"\npipeline / decode ceiling: {r['pipeline_to_decode_ceiling']:.2f}; "
        f"pipeline / pg_recvlogical: {r['pipeline_to_recvlogical']:.2f}; "
        f"decode ceiling / pg_recvlogical: {r['decode_ceiling_to_recvlogical']:.2f}"
    )
    paired = r["pipeline_to_decode_ceiling_per_repetition"]
    print(
        f"pipeline / decode ceiling of the same repetition: {paired['median']:.2f} "
        f"[{paired['min']:.2f}..{paired['max']:.2f}] ({', '.join(f'{x:.2f}' for x in paired['runs'])})"
    )
    if "latency" in result:
        lat = result["latency"]
        print(f"\ncommit-to-visible latency at {lat['changes_per_s']:,} changes/s:")
        for mode, v in lat.items():
            if isinstance(v, dict) and "p50_s" in v:
                print(
                    f"  {mode:<28} p50 {v['p50_s']:6.2f} s  p95 {v['p95_s']:6.2f} s  ({v['windows']} windows)"
                )
    if "profile" in result:
        print(
            f"\npipeline under cProfile ({result['profile']['seconds_under_cprofile']:.1f} s), "
            "top by own time:"
        )
        for row in result["profile"]["top_by_tottime"]:
            print(
                f"  {row['tottime']:8.2f} s {row['cumtime']:8.2f} s cum "
                f"{row['calls']:>10,}  {row['function']}"
            )
