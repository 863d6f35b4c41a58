"""Typed exceptions of the library.

Every error a user can fix by changing their input derives from :class:`VsynthInputError`; the CLI
prints its message as one line and exits with code 2.
"""


class VsynthError(Exception):
    """Base class of every error vsynth raises on purpose."""


class VsynthInputError(VsynthError):
    """The input (a name, a file, a value) is wrong; the message says what and how to fix it."""


class UnknownNameError(VsynthInputError):
    """A model, bridge or parameter name that no plugin registered."""


class InvalidParamsError(VsynthInputError):
    """Parameters that a model's or bridge's params model rejects."""


class VideoError(VsynthInputError):
    """A video that is missing, unreadable or too short for the request."""


class WeightsUnavailableError(VsynthInputError):
    """Weights that are neither a local directory nor in the local cache, with no hub to fetch them."""


class OutputExistsError(VsynthInputError):
    """The requested output folder already holds files."""


class InsufficientMemoryError(VsynthInputError):
    """The planned run's estimated peak memory exceeds the device's free memory (checked before loading)."""


class OutputWriteError(VsynthError):
    """The output folder could not be written (a full disk, a quota); nothing of it was left behind."""


class NonFiniteError(VsynthError):
    """Sampling produced NaN or infinite latents, or a model's weights hold such values."""


class VsynthWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints it as one line)."""


class PluginError(VsynthError):
    """A plugin that failed to load or to register (reported, not raised, unless strict)."""


class JobsFileError(VsynthInputError):
    """A batch jobs file that cannot be read as jobs (its jobs' own settings are checked per job)."""


class InvalidArgumentError(VsynthInputError):
    """An argument of the Python API with a type or value it does not take (``display``); the message names those it does."""


class ConfigFileError(VsynthInputError):
    """A run's --config file that cannot be read as run settings."""


class OutputFolderError(VsynthInputError):
    """An output or batch folder that cannot be made where asked: a file is in the way, or the file system refuses."""


class InvalidWeightsError(VsynthInputError):
    """Local weights whose files are damaged (a truncated config, an unreadable safetensors header) or cannot be read."""


class UntrustedPickleError(InvalidWeightsError):
    """Weights stored as a pickle (.bin, .pt, .pth, .ckpt), which can run code when loaded, given without --trust-pickles."""


class GroundTruthError(VsynthInputError):
    """A toy clip's ground-truth sidecar (NAME.json) that does not describe the clip beside it."""


class CacheError(VsynthInputError):
    """The tiny-model cache cannot be written: a full disk, a file where a folder should be; VSYNTH_CACHE moves it."""


class PluginRunError(VsynthInputError):
    """A third-party plugin raised while running: named with its distribution and version (the cause keeps its traceback).

    An input error because the fix is the user's (update the plugin, report it, or choose another model or bridge).
    """


class LoraError(InvalidWeightsError):
    """A LoRA that cannot be found, read, or applied to the model it was given for."""


class QuantizationError(VsynthInputError):
    """A --quantize scheme this machine or this install cannot run."""


class MissingExtraError(VsynthError):
    """A command that needs an optional extra (``vsynth[ray]``, ``vsynth[ui]``) that is not installed."""


def one_line(error: BaseException) -> str:
    """How an entry point that goes on (batch, the UI) reports an error: vsynth's own errors by their
    message, as the CLI prints them, anything else (a crash, out of memory) as its type and first line."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return first if isinstance(error, VsynthError) else f"{type(error).__name__}: {first}".rstrip(": ")


ECHO_LIMIT = 60


def shorten(text: object, limit: int = ECHO_LIMIT) -> str:
    """A user's string (a name, an option, a value) as an error echoes it: whole when short, else its first
    ``limit`` characters and '…', so that a 10,000-character name does not bury the message."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"
