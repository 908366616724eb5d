"""Plain-text summaries of the data jobs' reports, for the terminal."""

from __future__ import annotations

from cmdrec.data.dataset import EVENTS_FILE


def format_processing(report: dict, out_dir: str) -> str:
    lines = [f"== process: {report['dataset']} ({report['seconds']:.2f} s)"]
    read = report["read"]
    lines.append(
        f"read {read['rows_read']:,} rows from {read['files']} file(s); bad rows skipped: "
        f"{read['bad_rows_skipped'] or 'none'}"
    )
    catalogue = report["catalogue"]
    if report["config"]["catalogue"]["path"] is None:
        lines.append("catalogue: none given (commands have no category or description)")
    elif "commands_in_log_not_in_catalogue" in catalogue:
        lines.append(
            f"catalogue: {catalogue['commands_in_log_not_in_catalogue']} command(s) in the log not in the catalogue "
            f"({catalogue['events_with_commands_not_in_catalogue']:,} events), "
            f"{catalogue['commands_in_catalogue_never_used']} catalogue command(s) never used"
        )
    stripped = {**read.get("values_stripped", {}), **catalogue.get("values_stripped", {})}
    if stripped:
        lines.append(f"values with surrounding whitespace stripped: {stripped}")
    lines.append(f"{'step':<44}{'events removed':>16}{'sessions removed':>18}{'events left':>14}{'sessions left':>15}")
    for step in report["steps"]:
        lines.append(
            f"{step['step']:<44}{step['events_removed']:>16,}{step.get('sessions_removed', 0):>18,}"
            f"{step['events_after']:>14,}{step.get('sessions_after', 0):>15,}"
        )
        if "undos_applied" in step:
            lines.append(
                f"{'':<4}undos applied {step['undos_applied']:,}, unmatched {step['undos_unmatched']:,}; redos applied "
                f"{step['redos_applied']:,}, unmatched {step['redos_unmatched']:,}"
            )
        if step.get("sessions_truncated"):
            lines.append(f"{'':<4}sessions truncated: {step['sessions_truncated']:,}")
    for label in ("before", "after"):
        stats = report[label]
        length = stats["session_length"]
        lines.append(
            f"{label:>6}: {stats['events']:,} events, {stats['sessions']:,} sessions, {stats['users']} users, "
            f"{stats['commands']} commands; session length median {length['p50']:g}, mean {length['mean']:g}, "
            f"p90 {length['p90']:g}, max {length['max']}; repeat rate {stats['repeat_rate']:.1%}"
        )
        top = ", ".join(f"{c} {s:.1%}" for c, s in list(stats["top_commands"].items())[:5])
        ends = ", ".join(f"{c} {s:.1%}" for c, s in stats["top_session_ends"].items())
        lines.append(f"{'':>8}top commands: {top}")
        lines.append(f"{'':>8}sessions end on: {ends}")
    parts = report["partitions"]
    events = EVENTS_FILE if parts["count"] == 1 else f"events/ ({len(parts['files'])} shards)"
    if parts["count"] > 1:
        lines.append(f"processed in {parts['count']} partitions of users by the {parts['engine']} engine")
    lines.append(f"wrote {out_dir}/{events}, catalogue.parquet, processing_report.json")
    return "\n".join(lines)


def format_preprocess(report: dict, out_dir: str) -> str:
    split = report["split"]
    lines = [f"== preprocess: {report['dataset']} ({report['seconds']:.2f} s), split '{split['method']}'"]
    for name in ("train", "valid", "test"):
        part = split[name]
        oov = report["transform"][name]["oov_events"]
        oov_text = ", ".join(f"{column} {count:,}" for column, count in oov.items())
        lines.append(
            f"{name:>6}: {part['sessions']:,} sessions, {part['events']:,} events, {part['users']} users; OOV "
            f"events: {oov_text}"
        )
    if "users_too_short_for_valid_and_test" in split:
        lines.append(f"users with fewer than 3 events (train only): {split['users_too_short_for_valid_and_test']:,}")
    vocab = ", ".join(f"{name} {size}" for name, size in report["vocabulary"].items())
    lines.append(
        f"vocabulary sizes (with pad and OOV ids): {vocab}; continuous: {', '.join(report['continuous']) or 'none'}"
    )
    splits = (
        "{train,valid,test}.parquet" if report["shards"] == 1 else f"{{train,valid,test}}/ ({report['shards']} shards)"
    )
    lines.append(f"wrote {out_dir}/{splits}, schema.json, items.parquet, workflow/, preprocess_report.json")
    return "\n".join(lines)
