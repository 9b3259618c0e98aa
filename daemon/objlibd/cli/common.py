"""Pieces every CLI area shares: the --config option and loading the config it names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from objlibd import config as config_module

if TYPE_CHECKING:
    import argparse

    from objlibd.config import Config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add `--config PATH` to a subcommand."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $OBJLIBD_CONFIG, else the platform config dir)",
    )


def load_config(args: argparse.Namespace) -> Config:
    """Load the config the command line names (raises ConfigError, exit 2)."""
    return load_config_at(getattr(args, "config", None))


def load_config_at(explicit: str | None) -> Config:
    """Load `--config`'s file, else $OBJLIBD_CONFIG's, else the platform one (ConfigError)."""
    return config_module.load(config_module.resolve_path(explicit))


def setup_console_logging(config: Config) -> None:
    """Send one-shot commands' log events to stderr (warnings and up), never to the log file.

    Only the daemon writes the rotating JSON file; a one-shot command talks to its terminal.
    """
    import dataclasses

    from objlibd import logs

    level = "debug" if config.logs.level == "debug" else "warning"
    logs.setup(dataclasses.replace(config.logs, level=level), console=True, to_file=False)
