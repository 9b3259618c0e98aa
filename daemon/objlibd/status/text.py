"""`objlibd status` for people: the snapshot (`objlibd.status`) as one screen of text.

The last line is the verdict: "healthy" (exit 0; a note such as "waiting for the drive" may
stand above it) or "NOT HEALTHY" (exit 1), with each problem above it: what happened, since
when, and the fix. Standard builtins only (`status` is the hot command).
"""

from __future__ import annotations

from objlibd.engine import progress
from objlibd.engine.names import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LABELS = {"error": "ERROR", "warning": "WARNING", "info": "note"}


def render(snap: dict[str, Any]) -> str:
    """Return the status for people."""
    d = snap["daemon"]
    lines = [
        f"daemon:     running (pid {d['pid']}, up {duration(d['uptime_s'])}, {d['rss_mb']} MB)"
        if d["running"] else "daemon:     NOT RUNNING",
        f"volume:     {snap['volume']['state']}: {snap['volume']['reason']}",
        f"watcher:    {'alive' if snap['watcher']['alive'] else 'not watching'}",
        f"paused:     {'YES (objlibd resume to continue)' if snap['paused'] else 'no'}",
        f"hold:       {_hold_line(snap)}",
        f"queue:      {snap['queue']['pending_paths']} paths pending",
    ]  # fmt: skip
    lines += _progress_lines(snap.get("progress") or {})
    batch = snap["last_batch"]
    if batch:
        counts = (
            ", ".join(f"{v} {k}" for k, v in batch.get("counts", {}).items() if v) or "no changes"
        )
        lines.append(f"last batch: {batch.get('time')} {counts} in {batch.get('duration_s')}s")
    files = ", ".join(f"{v} {k}" for k, v in snap["files"].items() if v) or "none tracked"
    lines += [
        f"files:      {files}",
        f"duplicates: {snap['duplicates']}    orphans: {snap['orphans']}",
        "jobs:",
    ]
    for name, job in snap["jobs"].items():
        lines.append(
            f"  {name:<15} last {job['last_run'] or '-'} {job['last_result'] or ''}".rstrip()
            + f"  next {job['next_run'] or '-'}"
        )
    lines.append(_remote_line(snap["remote"]))
    if snap["remote"].get("pace"):
        lines.append(f"pace:       {progress.pace_text(snap['remote']['pace'])}")
    if rebuilt := snap.get("state_rebuilt"):
        done = "adopts the store's documents next sync" if rebuilt.get("adopted") is None else (
            f"{rebuilt['adopted']} documents adopted")  # fmt: skip
        lines.append(f"state:      rebuilt {rebuilt.get('at')} ({done}); old DB kept as "
                     f"{rebuilt.get('moved_to')}")  # fmt: skip
    for err in snap["errors"]:
        lines.append(f"  error: {printable(err['path'])}: {err['error']}")
    for held in snap["quarantined"]:
        lines.append(
            f"  quarantined: {printable(held['path'])} ({held['failures']} failures): "
            f"{held['error']}"
        )
    lines += problem_lines(snap["problems"])
    lines.append("healthy" if snap["healthy"] else "NOT HEALTHY")
    return "\n".join(lines)


def problem_lines(problems: list[dict[str, Any]]) -> list[str]:
    """Return each problem as "LEVEL code (since ...): message" with its fix under it."""
    lines = []
    for problem in problems:
        since = f" (since {problem['since']})" if problem.get("since") else ""
        label = LABELS.get(problem["severity"], problem["severity"].upper())
        lines.append(f"{label + ':':<9}{problem['code']}{since}: {problem['message']}")
        lines.append(f"{'':<9}fix: {problem['fix']}")
    return lines


def duration(seconds: float | None) -> str:
    """Return "2h 5m", "3d 4h" or "5m 12s" ("-" when unknown)."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def _hold_line(snap: dict[str, Any]) -> str:
    if not snap["hold"]:
        return "none"
    if snap.get("confirm_pending"):
        return f"{snap['hold']} (confirmed; applied once objlibd can act: resume / drive)"
    return f"{snap['hold']} (`objlibd missing` shows the files)"


def _progress_lines(info: dict[str, Any]) -> list[str]:
    lines = []
    current = info.get("current")
    if current:
        rate = progress.rate_text(current.get("rate_per_s"))
        text = f"now:        {current['phase']} {current['done']}/{current['total']}"
        text += f", {rate}" if rate else ""
        if info.get("eta"):
            text += f"; {info['eta']}"
        elif current.get("eta_s") is not None:
            text += f"; {progress.duration_text(current['eta_s'])} left"
        lines.append(text)
    limit = info.get("rate_limit")
    if limit or info.get("in_flight"):
        text = f"uploads:    {info.get('in_flight') or 0} in flight"
        if limit:
            text += (
                f"; rate limit {limit.get('tier') or ''} ({limit.get('rpm'):g}/min): "
                f"{limit.get('waiting') or 0} waiting, waited "
                f"{duration(limit.get('waited_s') or 0)} over {limit.get('calls') or 0} calls"
            )
        lines.append(text)
    return lines


def _remote_line(remote: dict[str, Any]) -> str:
    text = f'remote:     {remote["backend"]} store "{remote["store"]}"'
    text += f" (breaker {remote['breaker'] or '-'})"
    if remote.get("documents") is not None:
        text += f": {remote['documents']} documents"
        if remote.get("size_bytes") is not None:
            text += f", {size(remote['size_bytes'])}"
        if remote.get("stats_at"):
            text += f" (as of {remote['stats_at']})"
    return text


def size(count: float) -> str:
    """Return a byte count as "512 B", "1.5 MiB", "2.1 GiB"."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
