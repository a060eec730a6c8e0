"""The `safepref` command: dataset (run, check, publish, ...), train and eval subcommands."""

from factory.cli.app import main

__all__ = ["main"]
