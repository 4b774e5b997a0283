"""``python -m bench``: run the benchmarks, print one table, save the figures to bench/results/latest.json.

python -m bench [--scales county,city,province] [--databases sqlite,postgresql]
                [--only import,tick,fanout,inbound,report] [--quick] [--keep] [--fake-in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench import fanout, inbound, report, simulate, tick
from bench.common import (
    BENCHMARKS,
    DATABASES,
    FULL_SCALES,
    FULL_SIZES,
    PROJECT_ROOT,
    QUICK_SCALES,
    QUICK_SIZES,
    RESULTS_DIR,
    DatabaseKind,
    Scale,
    Sizes,
    bench_settings,
    create_database,
    log,
    postgres_available,
)
from bench.data import FIRST_COUNTY, build, seed_answers
from bench.results import Figure, Results, seconds
from core.runtime import open_runtime

#: Targets from the product brief ("Scale") and the benchmark brief.
TICK_TARGET_S = 1.0
FANOUT_TARGET = 0.95  # of the paced rate (29/s, one under Telegram's 30), with 0 × 429
INBOUND_TARGET = 200.0
REPORT_TARGET_S = 15.0
REPORT_TARGET_MB = 1024.0
SIMULATE_TARGET_S = 10.0  # ten counties (city scale), a whole year


def _list(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{what}: choose from {', '.join(allowed)} (got {text!r})")
    return chosen


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="county,city,province", help="county,city,province")
    parser.add_argument("--databases", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=",".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="shrink everything to seconds (a smoke run)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and files (printed at the end)")
    parser.add_argument(
        "--latencies", default="1,50,150", help="fan-out: the fake's answer latencies in ms (a round trip each)"
    )
    parser.add_argument(
        "--fake-in-process",
        action="store_true",
        help="run the fake Telegram server in the benchmark's process (default: its own process)",
    )
    args = parser.parse_args(argv)
    try:
        args.scales = _list(args.scales, tuple(FULL_SCALES), "--scales")
        args.databases = _list(args.databases, DATABASES, "--databases")
        args.only = _list(args.only, BENCHMARKS, "--only")
        args.latencies = [int(part) for part in args.latencies.split(",") if part.strip()]
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    return args


def _guard(results: Results, name: str, scale: str, database: str, step: Callable[[], None]) -> None:
    """Run one benchmark; a failure is recorded as an error cell and the run goes on."""
    try:
        step()
    except Exception as exc:
        log(f"{name} {scale} {database} FAILED:\n{traceback.format_exc()}")
        results.add(
            Figure(name, scale, database, None, "", f"error: {type(exc).__name__}", met=False, shortfall=str(exc))
        )


def run_scale(
    results: Results, kind: DatabaseKind, scale: Scale, sizes: Sizes, args: argparse.Namespace, workdir: Path
) -> None:
    """Build one deployment and run the scale-dependent benchmarks on it."""
    only: tuple[str, ...] = args.only
    database = create_database(kind, scale.name, workdir)
    label = f"{scale.name} ({scale.counties} {'county' if scale.counties == 1 else 'counties'})"
    try:
        settings = bench_settings(database, FIRST_COUNTY)
        runtime = open_runtime(settings)
        log(f"{kind} {label}: importing, re-syncing the calendar, binding people")
        deployment = build(runtime, scale.counties)
        log(
            f"{kind} {label}: import {deployment.import_s:.1f}s, start-up sync {deployment.calendar_s:.1f}s, "
            f"{deployment.people} people bound in {deployment.bind_s:.1f}s; {deployment.counts}"
        )
        results.deployments[f"{kind}/{scale.name}"] = {
            "counties": scale.counties,
            "schema_s": deployment.schema_s,
            "import_s": deployment.import_s,
            "import_rows": deployment.import_rows,
            "calendar_s": deployment.calendar_s,
            "calendar_rows": deployment.calendar_rows,
            "bind_s": deployment.bind_s,
            "people": deployment.people,
            "bindings": deployment.bindings,
            "rows": deployment.counts,
        }
        if "import" in only:
            rate = deployment.import_rows / deployment.import_s
            results.add(
                Figure(
                    "import",
                    scale.name,
                    kind,
                    deployment.import_s,
                    "s",
                    f"{seconds(deployment.import_s)} ({rate:,.0f} rows/s)",
                    detail={"rows": deployment.import_rows, "rows_per_s": rate, "counties": scale.counties},
                )
            )
            rate = deployment.calendar_rows / deployment.calendar_s
            results.add(
                Figure(
                    "start-up sync",
                    scale.name,
                    kind,
                    deployment.calendar_s,
                    "s",
                    f"{seconds(deployment.calendar_s)} ({rate:,.0f} rows checked/s)",
                    detail={"rows_checked": deployment.calendar_rows, "rows_per_s": rate},
                )
            )
            rate = deployment.people / deployment.bind_s
            results.add(
                Figure(
                    "bind people",
                    scale.name,
                    kind,
                    deployment.bind_s,
                    "s",
                    f"{seconds(deployment.bind_s)} ({rate:,.0f} people/s)",
                    detail={"people": deployment.people, "bindings": deployment.bindings, "people_per_s": rate},
                )
            )

        if "tick" in only:

            def do_tick() -> None:
                log(f"{kind} {label}: ticks")
                figures = tick.run(runtime, sizes.idle_repeats)
                resolution = runtime.settings.escalation.resolution.total_seconds()
                firing_met = figures.firing_s < resolution
                met = figures.idle_s < TICK_TARGET_S
                results.add(
                    Figure(
                        "tick (idle)",
                        scale.name,
                        kind,
                        figures.idle_s,
                        "s",
                        seconds(figures.idle_s),
                        target=f"< {TICK_TARGET_S:g} s",
                        met=met,
                        shortfall=""
                        if met
                        else f"{figures.idle_s:.2f} s, {figures.idle_s / TICK_TARGET_S:.1f}× the target",
                        detail=figures.as_dict(),
                    )
                )
                results.add(
                    Figure(
                        "tick (firing)",
                        scale.name,
                        kind,
                        figures.firing_s,
                        "s",
                        f"{seconds(figures.firing_s)} ({figures.queued:,} queued)",
                        target=f"< {resolution:g} s (resolution)",
                        met=firing_met,
                        shortfall="" if firing_met else f"{figures.firing_s:.1f} s > the {resolution:g} s resolution",
                        detail=figures.as_dict(),
                    )
                )
                if figures.quarter_end_s is not None:
                    quarter_met = figures.quarter_end_s < resolution
                    results.add(
                        Figure(
                            "tick (quarter end)",
                            scale.name,
                            kind,
                            figures.quarter_end_s,
                            "s",
                            f"{seconds(figures.quarter_end_s)} ({figures.quarter_end_queued:,} 通报 queued)",
                            target=f"< {resolution:g} s (resolution)",
                            met=quarter_met,
                            shortfall=""
                            if quarter_met
                            else f"{figures.quarter_end_s:.1f} s > the {resolution:g} s resolution",
                            detail=figures.as_dict(),
                        )
                    )
                if scale.name == "province" and figures.firing_s >= TICK_TARGET_S:
                    results.notes.append(
                        f"tick (firing) / province / {kind}: {figures.firing_s:.1f} s for {figures.queued:,} reminders, "
                        f"{figures.firing_s / TICK_TARGET_S:.1f}× the 1 s that the idle tick is held to"
                    )

            _guard(results, "tick (idle)", scale.name, kind, do_tick)

        if "report" in only:

            def do_report() -> None:
                log(f"{kind} {label}: seeding answers, then the notification")
                outcomes = seed_answers(runtime)
                runs = report.run(database, FIRST_COUNTY)
                baseline = runs["baseline"].peak_rss_mb
                one = runs["one"]
                results.add(
                    Figure(
                        "report (1 county)",
                        scale.name,
                        kind,
                        one.seconds,
                        "s",
                        f"{seconds(one.seconds)}, {one.peak_rss_mb:,.0f} MB",
                        detail={**one.as_dict(), "baseline_rss_mb": baseline, "answers": outcomes},
                    )
                )
                whole = runs["all"]
                target = f"< {REPORT_TARGET_S:g} s, < 1 GB (province)"
                met: bool | None = None
                shortfall = ""
                if scale.name == "province":
                    met = whole.seconds < REPORT_TARGET_S and whole.peak_rss_mb < REPORT_TARGET_MB
                    if not met:
                        shortfall = (
                            f"{whole.seconds:.1f} s ({whole.seconds / REPORT_TARGET_S:.2f}× 15 s), "
                            f"{whole.peak_rss_mb:,.0f} MB ({whole.peak_rss_mb / REPORT_TARGET_MB:.2f}× 1 GB)"
                        )
                results.add(
                    Figure(
                        "report (all)",
                        scale.name,
                        kind,
                        whole.seconds,
                        "s",
                        f"{seconds(whole.seconds)}, {whole.peak_rss_mb:,.0f} MB",
                        target=target if scale.name == "province" else "",
                        met=met,
                        shortfall=shortfall,
                        detail={**whole.as_dict(), "baseline_rss_mb": baseline},
                    )
                )

            _guard(results, "report (all)", scale.name, kind, do_report)

        if "simulate" in only:

            def do_simulate() -> None:
                log(f"{kind} {label}: simulate {simulate.SIMULATE_FROM} .. {simulate.SIMULATE_TO}")
                if "report" not in only:
                    seed_answers(runtime)
                figures = simulate.run(database, FIRST_COUNTY, scale.counties)
                met: bool | None = None
                shortfall = ""
                if scale.name == "city" and not args.quick:
                    met = figures.seconds < SIMULATE_TARGET_S
                    shortfall = (
                        "" if met else f"{figures.seconds:.1f} s ({figures.seconds / SIMULATE_TARGET_S:.2f}× 10 s)"
                    )
                results.add(
                    Figure(
                        "simulate (year)",
                        scale.name,
                        kind,
                        figures.seconds,
                        "s",
                        f"{seconds(figures.seconds)} ({seconds(figures.per_county_s)}/county), "
                        f"{figures.peak_rss_mb:,.0f} MB",
                        target=f"< {SIMULATE_TARGET_S:g} s (city), linear",
                        met=met,
                        shortfall=shortfall,
                        detail=figures.as_dict(),
                    )
                )

            _guard(results, "simulate (year)", scale.name, kind, do_simulate)

        runtime.close()
        if "inbound" in only:

            def do_inbound() -> None:
                log(f"{kind} {label}: inbound, {sizes.inbound_batches} × {sizes.inbound} reports through the service")
                figures = asyncio.run(
                    inbound.run(
                        database,
                        FIRST_COUNTY,
                        sizes.inbound,
                        batches=sizes.inbound_batches,
                        fake_in_process=args.fake_in_process,
                    )
                )
                met: bool | None = None
                shortfall = ""
                if kind == "sqlite":
                    met = figures.rate >= INBOUND_TARGET
                    shortfall = "" if met else f"{figures.rate:.0f}/s, {figures.rate / INBOUND_TARGET:.0%} of 200/s"
                results.add(
                    Figure(
                        "inbound",
                        scale.name,
                        kind,
                        figures.rate,
                        "/s",
                        f"{figures.rate:,.0f} /s ({sum(figures.seconds):.1f} s)",
                        target=f"≥ {INBOUND_TARGET:g}/s (SQLite)",
                        met=met,
                        shortfall=shortfall,
                        detail=figures.as_dict(),
                    )
                )

            _guard(results, "inbound", scale.name, kind, do_inbound)

            def do_inbound_processes() -> None:
                log(
                    f"{kind} {label}: inbound, 2 service processes (webhook), {sizes.inbound_batches} × {sizes.inbound}"
                )
                figures = asyncio.run(
                    inbound.run_processes(
                        database, FIRST_COUNTY, sizes.inbound, processes=2, batches=sizes.inbound_batches
                    )
                )
                results.add(
                    Figure(
                        "inbound 2 processes",
                        scale.name,
                        kind,
                        figures.rate,
                        "/s",
                        f"{figures.rate:,.0f} /s ({sum(figures.seconds):.1f} s)",
                        target=f"{figures.rate / INBOUND_TARGET:.0%} of {INBOUND_TARGET:g}/s",
                        detail=figures.as_dict(),
                    )
                )

            if kind == "postgresql":
                _guard(results, "inbound 2 processes", scale.name, kind, do_inbound_processes)
    finally:
        if args.keep:
            log(f"kept {database.url}")
        else:
            database.drop()


def run_fanout(
    results: Results, kind: DatabaseKind, sizes: Sizes, workdir: Path, in_process: bool, latency_ms: int
) -> None:
    scale = f"{latency_ms} ms"

    def step() -> None:
        log(f"{kind}: fan-out of {sizes.fanout} reminders, {latency_ms} ms round trip (~{sizes.fanout / 29:.0f} s)")
        figures = asyncio.run(
            fanout.run(kind, workdir, sizes.fanout, fake_in_process=in_process, latency=latency_ms / 1000)
        )
        met = figures.paced_ratio >= FANOUT_TARGET and figures.count_429 == 0
        shortfall = (
            ""
            if met
            else (
                f"{figures.paced_ratio:.1%} of {figures.configured_rate:g}/s ({figures.rate:.1f}/s), "
                f"{figures.count_429} × 429"
            )
        )
        results.add(
            Figure(
                "fanout",
                scale,
                kind,
                figures.paced_ratio,
                "ratio",
                f"{figures.paced_ratio:.1%} of {figures.configured_rate:g}/s ({figures.rate:.1f}/s = "
                f"{figures.ratio:.1%} of 30), {figures.count_429} × 429",
                target=f"≥ {FANOUT_TARGET:.0%} of {figures.configured_rate:g}/s, 0 × 429",
                met=met,
                shortfall=shortfall,
                detail=figures.as_dict(),
            )
        )

    _guard(results, "fanout", scale, kind, step)


def simulate_growth(results: Results) -> None:
    """Note how the simulation's time per county grows from the smallest scale run to each larger one."""
    runs = [f for f in results.figures if f.benchmark == "simulate (year)" and f.value is not None]
    for kind in {f.database for f in runs}:
        mine = sorted((f for f in runs if f.database == kind), key=lambda f: f.detail["counties"])
        if len(mine) < 2:
            continue
        base = mine[0]
        for figure in mine[1:]:
            ratio = figure.detail["per_county_s"] / base.detail["per_county_s"]
            results.notes.append(
                f"simulate (year) / {kind}: {figure.detail['per_county_s']:.2f} s per county at "
                f"{figure.detail['counties']} counties, {base.detail['per_county_s']:.2f} s at "
                f"{base.detail['counties']}: {ratio:.2f}× (1.00× = linear growth)"
            )


def code_version() -> dict[str, object]:
    """The project's commit and the files changed outside bench/ (the code is being edited concurrently)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
        return done.stdout

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "changed": changed}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    scales = [(QUICK_SCALES if args.quick else FULL_SCALES)[name] for name in args.scales]
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    databases: list[DatabaseKind] = list(args.databases)
    if "postgresql" in databases and (why := postgres_available()) is not None:
        print(f"PostgreSQL is not available ({why}); use --databases sqlite", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="duban-bench-"))
    version_before = code_version()
    results = Results()
    started = datetime.now(UTC)
    clock = time.perf_counter()
    scaled = [b for b in args.only if b != "fanout"]
    try:
        for kind in databases:
            if scaled:
                for scale in scales:
                    run_scale(results, kind, scale, sizes, args, workdir)
            if "fanout" in args.only:
                for latency_ms in args.latencies:
                    run_fanout(results, kind, sizes, workdir, args.fake_in_process, latency_ms)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    duration = time.perf_counter() - clock
    simulate_growth(results)
    version_after = code_version()
    if version_after != version_before:
        results.notes.append(
            f"the project changed during the run: {version_before['commit']} → {version_after['commit']}, "
            f"uncommitted {version_before['changed']} → {version_after['changed']}"
        )
    table = results.table(tuple(databases))
    print(table)
    counties = ", ".join(f"{s.name} = {s.counties}" for s in scales)
    print(
        f"\n{'quick' if args.quick else 'full'} run ({counties} counties; fan-out {sizes.fanout}, "
        f"inbound {sizes.inbound_batches} × {sizes.inbound}), {duration / 60:.1f} min; "
        f"figures in bench/results/latest.json"
    )
    results.save(
        RESULTS_DIR / "latest.json",
        {
            "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
            "quick": args.quick,
            "started": started.isoformat(),
            "duration_s": duration,
            "code": {"before": version_before, "after": version_after},
            "scales": {s.name: s.counties for s in scales},
            "sizes": asdict(sizes),
            "table": table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
