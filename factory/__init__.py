"""safepref engine: recipes, steps, LLM backends, execution, writer, publisher, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("safepref")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"
