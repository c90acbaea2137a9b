"""A dataset's stored settings: trading calendar, gap policy and bars per year.

They live in ``<raw>/<SYMBOL>/<TIMEFRAME>/dataset.json``, written by ``himari ingest`` and read by
every later materialization, the sensor and the schedules, so the CLI and the data job always
validate with the same settings. The file's sha256 is one of ``raw_ohlcv``'s version inputs.
A dataset without the file (dropped files, synthetic markets) uses the defaults.

Gap policies: ``short`` (default) accepts gaps of up to ``max_gap_bars`` missing bars inside sessions
(default: one trading day of bars) and rejects longer ones; ``any`` accepts every gap (opt-in);
``none`` rejects every gap. Accepted gaps are listed and flagged per bar (``gap_before``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from himari_pipeline.market import calendars
from himari_pipeline.storage.atomic import atomic_write_text

SETTINGS_FILE = "dataset.json"
GAP_POLICIES: tuple[str, ...] = ("short", "any", "none")
#: Older names still accepted on input: ``report`` (keep every gap) and ``error`` (reject every gap).
_GAP_ALIASES = {"report": "any", "error": "none"}


class SettingsError(ValueError):
    """Invalid dataset settings (unknown calendar or gap policy, a malformed settings file)."""


def normalize_gap_policy(policy: str) -> str:
    """One of ``GAP_POLICIES`` (aliases resolved); :class:`SettingsError` otherwise."""
    policy = _GAP_ALIASES.get(policy, policy)
    if policy not in GAP_POLICIES:
        raise SettingsError(
            f"unknown gap policy {policy!r}: use short (accept gaps up to --max-gap-bars), any (accept "
            "every gap) or none (reject every gap)"
        )
    return policy


@dataclass(frozen=True)
class DatasetSettings:
    """How a dataset's bars are validated and annualized."""

    calendar: str = calendars.DEFAULT_CALENDAR
    gap_policy: str = "short"
    max_gap_bars: int | None = None  # None: one trading day of bars (calendars.bars_per_session_day)

    def __post_init__(self) -> None:
        try:
            calendars.validate_calendar(self.calendar)
        except calendars.CalendarError as exc:
            raise SettingsError(str(exc)) from None
        object.__setattr__(self, "gap_policy", normalize_gap_policy(self.gap_policy))
        if self.max_gap_bars is not None and (
            isinstance(self.max_gap_bars, bool)
            or not isinstance(self.max_gap_bars, int)
            or self.max_gap_bars < 0
        ):
            raise SettingsError(f"max_gap_bars must be a whole number >= 0, not {self.max_gap_bars!r}")

    def gap_limit(self, timeframe: str) -> int | None:
        """Most missing bars one accepted gap may have (None: no limit; 0: no gap accepted)."""
        if self.gap_policy == "any":
            return None
        if self.gap_policy == "none":
            return 0
        if self.max_gap_bars is not None:
            return self.max_gap_bars
        return calendars.bars_per_session_day(self.calendar, timeframe)

    def bars_per_year(self, timeframe: str) -> float:
        return calendars.bars_per_year(self.calendar, timeframe)

    def to_json(self, timeframe: str) -> str:
        """The stored form (with the derived bars per year and gap limit, for people and scripts)."""
        d = asdict(self)
        d["bars_per_year"] = self.bars_per_year(timeframe)
        d["gap_limit_bars"] = self.gap_limit(timeframe)
        return json.dumps(d, indent=2, sort_keys=True) + "\n"


def settings_path(folder: Path) -> Path:
    return Path(folder) / SETTINGS_FILE


def read_settings(folder: Path) -> DatasetSettings:
    """The settings stored in ``folder`` (defaults when there is no settings file)."""
    path = settings_path(folder)
    if not path.is_file():
        return DatasetSettings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return DatasetSettings(
            calendar=data.get("calendar", calendars.DEFAULT_CALENDAR),
            gap_policy=data.get("gap_policy", "short"),
            max_gap_bars=data.get("max_gap_bars"),
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise SettingsError(f"{path}: {exc}") from None


def write_settings(folder: Path, settings: DatasetSettings, timeframe: str) -> Path:
    """Store ``settings`` atomically in ``folder``."""
    return atomic_write_text(settings_path(folder), settings.to_json(timeframe))
