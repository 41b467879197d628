"""Rig files: how a device is wired to an audio interface, loaded from TOML and validated once.

A rig is either shipped with ampcap (``rigs/<name>.toml``, read as package data) or a path to a
user's own TOML file. Every table and key is checked here, so the rest of ampcap can trust a
:class:`Rig`: unknown keys, wrong types, impossible channel numbers and missing required keys are
refused with a :class:`~ampcap.errors.RigError` that names the key, its table and what is allowed.

The format (all channel numbers are 1-based, as printed on the interface)::

    name = "motu"
    description = "..."
    kind = "audio"                  # or "virtual"
    [audio]                         # kind = "audio" only
    device = "UltraLite"            # substring of the PortAudio device name
    host_api = ""                   # optional substring of the host API name
    sample_rate_hz = 44100
    blocksize = 1024                # frames per callback
    latency = "high"                # "low" | "high" | seconds
    output_device = 1               # output that feeds the device (reamp box)
    output_loopback = 2             # output patched straight back to an input
    input_device = 1                # input that records the device
    input_loopback = 2              # input that records the loopback
    [safety]
    max_output_dbfs = -6.0
    fade_ms = 20.0
    [virtual]                       # kind = "virtual" only: the simulated interface
    sample_rate_hz = 48000
    latency_samples = 183.37
    noise_dbfs = -96.0
    gain_db = 0.0
    drift_ppm = 0.0
    polarity = 1
    seed = 0
    [knobs.isf]                     # optional, per knob
    minimum = 0.0
    maximum = 10.0
    control = "prompt"              # "prompt" | "command" | "midi" | "virtual"
    command = "set-knob isf {value}"
    midi_port = "substring"
    midi_channel = 1
    midi_cc = 20
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from ampcap.errors import RigError

RIG_KINDS = ("audio", "virtual")
KNOB_CONTROLS = ("prompt", "command", "midi", "virtual")
LATENCY_WORDS = ("low", "high")
_MISSING = object()


@dataclass(frozen=True)
class AudioSettings:
    """The ``[audio]`` table: a real interface reached through PortAudio.

    Attributes
    ----------
    device : str
        Substring of the PortAudio device name (case-insensitive); ``--device`` overrides it.
    host_api : str
        Substring of the host API name ("JACK", "ALSA", "ASIO"...); empty matches any.
    sample_rate_hz : int
        Stream sample rate in Hz.
    blocksize : int
        Frames per audio callback.
    latency : str or float
        PortAudio's suggested latency: "low", "high", or seconds.
    output_device, output_loopback, input_device, input_loopback : int
        1-based channel numbers: the output that feeds the device, the output patched straight
        back, the input recording the device, the input recording the loopback.
    """

    device: str
    sample_rate_hz: int
    host_api: str = ""
    blocksize: int = 1024
    latency: str | float = "high"
    output_device: int = 1
    output_loopback: int = 2
    input_device: int = 1
    input_loopback: int = 2


@dataclass(frozen=True)
class SafetySettings:
    """The ``[safety]`` table: the loudest sample ever sent out, and the fade at each end."""

    max_output_dbfs: float = -6.0
    fade_ms: float = 20.0


@dataclass(frozen=True)
class VirtualSettings:
    """The ``[virtual]`` table: the simulated interface around the virtual amp.

    Attributes
    ----------
    sample_rate_hz : int
        Sample rate in Hz.
    latency_samples : float
        Round-trip latency in samples, fractional part included (both channels).
    noise_dbfs : float
        RMS level of the converters' white noise on each input, in dBFS.
    gain_db : float
        Gain of the input recording the device, in dB.
    drift_ppm : float
        Input clock against output clock; positive: the input clock runs fast, so events land
        later and later in the recording.
    polarity : int
        1, or -1 when the device return is inverted.
    seed : int
        Seed of the converter noise.
    """

    sample_rate_hz: int = 48000
    latency_samples: float = 183.37
    noise_dbfs: float = -96.0
    gain_db: float = 0.0
    drift_ppm: float = 0.0
    polarity: int = 1
    seed: int = 0


@dataclass(frozen=True)
class KnobSettings:
    """One ``[knobs.<name>]`` table: the dial's range and how ampcap sets it.

    ``command`` (control "command") is a shell-free command line with ``{value}`` (and optionally
    ``{knob}``) filled in; ``midi_port`` is a substring of the MIDI output name, ``midi_channel``
    1..16 and ``midi_cc`` 0..127 (control "midi").
    """

    name: str
    minimum: float = 0.0
    maximum: float = 10.0
    control: str = "prompt"
    command: str | None = None
    midi_port: str | None = None
    midi_channel: int = 1
    midi_cc: int | None = None


@dataclass(frozen=True)
class Rig:
    """A validated rig. ``source`` says where it came from (a path, or ``shipped:<name>``).

    Exactly one of ``audio`` (kind "audio") and ``virtual`` (kind "virtual") is set.
    """

    name: str
    description: str
    kind: str
    safety: SafetySettings
    audio: AudioSettings | None = None
    virtual: VirtualSettings | None = None
    knobs: dict[str, KnobSettings] = field(default_factory=dict)
    source: str = ""

    @property
    def sample_rate_hz(self) -> int:
        """The rate everything in a session runs at, in Hz."""
        settings = self.audio if self.audio is not None else self.virtual
        assert settings is not None  # guaranteed by parse_rig
        return settings.sample_rate_hz

    @property
    def device(self) -> str:
        """The device substring for audio rigs, "virtual" for the virtual rig."""
        return self.audio.device if self.audio is not None else "virtual"

    def with_device(self, device: str | None) -> Rig:
        """This rig with ``--device`` applied (audio rigs only; ``None`` changes nothing)."""
        if device is None:
            return self
        if self.audio is None:
            raise RigError(
                f"--device {device!r} was given but rig {self.name!r} is virtual and has no "
                "audio device. Drop --device, or use an audio rig such as 'jack'."
            )
        return replace(self, audio=replace(self.audio, device=device))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for session.json: the resolved rig, every default filled in."""
        data = asdict(self)
        data["knobs"] = {
            name: {k: v for k, v in knob.items() if k != "name"}
            for name, knob in data["knobs"].items()
        }
        return data


# --- validation ----------------------------------------------------------------------------

_TOP_KEYS = ("name", "description", "kind", "audio", "safety", "virtual", "knobs")


def _where(section: str) -> str:
    return "at the top level" if not section else f"in [{section}]"


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], section: str, origin: str) -> None:
    for key in table:
        if key not in allowed:
            raise RigError(
                f"{origin}: unknown key {key!r} {_where(section)}. Allowed keys there: "
                f"{', '.join(allowed)}. Check the spelling (rig files are case-sensitive)."
            )


def _get(
    table: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    section: str,
    origin: str,
    default: Any = _MISSING,
) -> Any:
    """``table[key]`` checked against ``kind``; a missing key without a default is an error."""
    if key not in table:
        if default is _MISSING:
            raise RigError(f"{origin}: the required key {key!r} is missing {_where(section)}.")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # TOML integers are fine where floats are wanted; booleans are never numbers here.
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(_type_name(k) for k in kinds)
        raise RigError(f"{origin}: {key} = {value!r} {_where(section)} should be {names}.")
    return value


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", dict: "a table"}.get(
        kind, kind.__name__
    )


def _require(condition: bool, origin: str, message: str) -> None:
    if not condition:
        raise RigError(f"{origin}: {message}")


def _check_rate(rate: int, section: str, origin: str) -> None:
    _require(
        8000 <= rate <= 384000,
        origin,
        f"sample_rate_hz = {rate} in [{section}] is not an audio rate; use 44100, 48000, "
        "88200 or 96000.",
    )


def _parse_audio(table: dict[str, Any], origin: str) -> AudioSettings:
    s = "audio"
    _check_keys(table, tuple(AudioSettings.__dataclass_fields__), s, origin)
    latency = _get(table, "latency", (str, float), s, origin, "high")
    if isinstance(latency, str):
        _require(
            latency in LATENCY_WORDS,
            origin,
            f'latency = {latency!r} in [audio] should be "low", "high" or seconds.',
        )
    else:
        _require(
            0 < latency <= 2,
            origin,
            f"latency = {latency} in [audio] should be between 0 and 2 seconds.",
        )
    audio = AudioSettings(
        device=_get(table, "device", str, s, origin),
        host_api=_get(table, "host_api", str, s, origin, ""),
        sample_rate_hz=_get(table, "sample_rate_hz", int, s, origin),
        blocksize=_get(table, "blocksize", int, s, origin, 1024),
        latency=latency,
        output_device=_get(table, "output_device", int, s, origin, 1),
        output_loopback=_get(table, "output_loopback", int, s, origin, 2),
        input_device=_get(table, "input_device", int, s, origin, 1),
        input_loopback=_get(table, "input_loopback", int, s, origin, 2),
    )
    _check_rate(audio.sample_rate_hz, s, origin)
    _require(
        16 <= audio.blocksize <= 16384,
        origin,
        f"blocksize = {audio.blocksize} in [audio] should be 16..16384 frames (256-2048 is usual).",
    )
    for key in ("output_device", "output_loopback", "input_device", "input_loopback"):
        channel = getattr(audio, key)
        _require(
            1 <= channel <= 64,
            origin,
            f"{key} = {channel} in [audio] is not a channel number; channels count from 1.",
        )
    _require(
        audio.output_device != audio.output_loopback,
        origin,
        f"output_device and output_loopback are both {audio.output_device} in [audio]: the "
        "device and the loopback need two different outputs.",
    )
    _require(
        audio.input_device != audio.input_loopback,
        origin,
        f"input_device and input_loopback are both {audio.input_device} in [audio]: the "
        "device and the loopback need two different inputs.",
    )
    return audio


def _parse_safety(table: dict[str, Any], origin: str) -> SafetySettings:
    s = "safety"
    _check_keys(table, tuple(SafetySettings.__dataclass_fields__), s, origin)
    safety = SafetySettings(
        max_output_dbfs=_get(table, "max_output_dbfs", float, s, origin, -6.0),
        fade_ms=_get(table, "fade_ms", float, s, origin, 20.0),
    )
    _require(
        -60.0 <= safety.max_output_dbfs <= 0.0,
        origin,
        f"max_output_dbfs = {safety.max_output_dbfs} in [safety] should be between -60 and 0 dBFS.",
    )
    _require(
        0.0 <= safety.fade_ms <= 1000.0,
        origin,
        f"fade_ms = {safety.fade_ms} in [safety] should be between 0 and 1000 ms.",
    )
    return safety


def _parse_virtual(table: dict[str, Any], origin: str) -> VirtualSettings:
    s = "virtual"
    _check_keys(table, tuple(VirtualSettings.__dataclass_fields__), s, origin)
    d = VirtualSettings()
    virtual = VirtualSettings(
        sample_rate_hz=_get(table, "sample_rate_hz", int, s, origin, d.sample_rate_hz),
        latency_samples=_get(table, "latency_samples", float, s, origin, d.latency_samples),
        noise_dbfs=_get(table, "noise_dbfs", float, s, origin, d.noise_dbfs),
        gain_db=_get(table, "gain_db", float, s, origin, d.gain_db),
        drift_ppm=_get(table, "drift_ppm", float, s, origin, d.drift_ppm),
        polarity=_get(table, "polarity", int, s, origin, d.polarity),
        seed=_get(table, "seed", int, s, origin, d.seed),
    )
    _check_rate(virtual.sample_rate_hz, s, origin)
    _require(
        0.0 <= virtual.latency_samples <= 10 * virtual.sample_rate_hz,
        origin,
        f"latency_samples = {virtual.latency_samples} in [virtual] should be 0 or more "
        "(and under 10 seconds).",
    )
    _require(
        virtual.noise_dbfs <= 0.0,
        origin,
        f"noise_dbfs = {virtual.noise_dbfs} in [virtual] should be at most 0 dBFS.",
    )
    _require(
        abs(virtual.gain_db) <= 40.0,
        origin,
        f"gain_db = {virtual.gain_db} in [virtual] should be within +-40 dB.",
    )
    _require(
        abs(virtual.drift_ppm) <= 10000.0,
        origin,
        f"drift_ppm = {virtual.drift_ppm} in [virtual] should be within +-10000 ppm.",
    )
    _require(
        virtual.polarity in (1, -1),
        origin,
        f"polarity = {virtual.polarity} in [virtual] should be 1 or -1.",
    )
    return virtual


def _parse_knob(name: str, table: Any, origin: str, kind: str) -> KnobSettings:
    s = f"knobs.{name}"
    _require(isinstance(table, dict), origin, f"knobs.{name} should be a table ([knobs.{name}]).")
    allowed = tuple(k for k in KnobSettings.__dataclass_fields__ if k != "name")
    _check_keys(table, allowed, s, origin)
    knob = KnobSettings(
        name=name,
        minimum=_get(table, "minimum", float, s, origin, 0.0),
        maximum=_get(table, "maximum", float, s, origin, 10.0),
        control=_get(
            table, "control", str, s, origin, "virtual" if kind == "virtual" else "prompt"
        ),
        command=_get(table, "command", str, s, origin, None),
        midi_port=_get(table, "midi_port", str, s, origin, None),
        midi_channel=_get(table, "midi_channel", int, s, origin, 1),
        midi_cc=_get(table, "midi_cc", int, s, origin, None),
    )
    _require(
        all(math.isfinite(v) for v in (knob.minimum, knob.maximum)),
        origin,
        f"minimum and maximum in [{s}] must be finite numbers.",
    )
    _require(
        knob.minimum < knob.maximum,
        origin,
        f"minimum = {knob.minimum:g} is not below maximum = {knob.maximum:g} in [{s}].",
    )
    _require(
        knob.control in KNOB_CONTROLS,
        origin,
        f"control = {knob.control!r} in [{s}] should be one of {', '.join(KNOB_CONTROLS)}.",
    )
    if knob.control == "command":
        _require(
            bool(knob.command) and "{value}" in knob.command,
            origin,
            f'[{s}] has control = "command" but no command with {{value}} in it, for '
            f'example command = "set-knob {name} {{value}}".',
        )
        try:
            (knob.command or "").format(value=0, knob=name)
        except (KeyError, IndexError, ValueError) as exc:
            raise RigError(
                f"{origin}: command = {knob.command!r} in [{s}] has a placeholder other than "
                f"{{value}} and {{knob}} ({exc!r}); write a literal brace as {{{{ or }}}}."
            ) from exc
    if knob.control == "midi":
        _require(
            knob.midi_cc is not None and 0 <= knob.midi_cc <= 127,
            origin,
            f'[{s}] has control = "midi" and needs midi_cc = 0..127 (got {knob.midi_cc}).',
        )
        _require(
            1 <= knob.midi_channel <= 16,
            origin,
            f"midi_channel = {knob.midi_channel} in [{s}] should be 1..16.",
        )
    return knob


def parse_rig(data: dict[str, Any], origin: str = "rig") -> Rig:
    """Validate a rig table (as TOML parses it) into a :class:`Rig`.

    Parameters
    ----------
    data : dict
        The parsed TOML document.
    origin : str
        Where it came from, used in messages (a path or ``shipped:<name>``).

    Raises
    ------
    RigError
        Unknown key (named, with its table and the allowed keys), wrong type, impossible value,
        missing required key, or tables that do not fit the kind.
    """
    _check_keys(data, _TOP_KEYS, "", origin)
    kind = _get(data, "kind", str, "", origin)
    _require(kind in RIG_KINDS, origin, f'kind = {kind!r} should be "audio" or "virtual".')
    for key in ("audio", "safety", "virtual", "knobs"):
        if key in data:
            _get(data, key, dict, "", origin)
    if kind == "audio":
        _require("audio" in data, origin, 'kind = "audio" needs an [audio] table.')
        _require(
            "virtual" not in data,
            origin,
            'a [virtual] table only belongs in a rig with kind = "virtual".',
        )
    else:
        _require(
            "audio" not in data,
            origin,
            'an [audio] table only belongs in a rig with kind = "audio".',
        )
    knobs = {
        name: _parse_knob(name, table, origin, kind)
        for name, table in data.get("knobs", {}).items()
    }
    for knob in knobs.values():
        if kind == "audio":
            _require(
                knob.control != "virtual",
                origin,
                f'[knobs.{knob.name}] has control = "virtual", which only works on the '
                "virtual rig; use prompt, command or midi.",
            )
        else:
            _require(
                knob.control == "virtual",
                origin,
                f'[knobs.{knob.name}] has control = "{knob.control}", but the virtual rig\'s '
                'knobs are turned by ampcap itself: use control = "virtual" or leave it out.',
            )
    return Rig(
        name=_get(data, "name", str, "", origin),
        description=_get(data, "description", str, "", origin, ""),
        kind=kind,
        safety=_parse_safety(data.get("safety", {}), origin),
        audio=_parse_audio(data["audio"], origin) if kind == "audio" else None,
        virtual=_parse_virtual(data.get("virtual", {}), origin) if kind == "virtual" else None,
        knobs=knobs,
        source=origin,
    )


def _parse_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RigError(f"{origin} is not valid TOML ({exc}). Fix the line it names.") from exc


def loads_rig(text: str, origin: str = "rig") -> Rig:
    """Parse and validate a rig from TOML text (``origin`` names it in messages)."""
    return parse_rig(_parse_toml(text, origin), origin)


def list_rigs() -> list[str]:
    """Names of the shipped rigs, sorted."""
    folder = resources.files("ampcap.rigs")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_rig(name_or_path: str | Path) -> Rig:
    """Load a shipped rig by name (``"virtual"``, ``"motu"``...) or a rig file by path.

    Anything with a path separator or ending in ``.toml`` is a path; anything else a shipped name.

    Raises
    ------
    RigError
        Unknown name (lists the shipped rigs), unreadable file, or an invalid rig.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith(".toml"):
        path = Path(text).expanduser()
        try:
            content = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise RigError(
                f"The rig file {path} does not exist. Shipped rigs: {', '.join(list_rigs())}."
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise RigError(f"Could not read the rig file {path}: {exc}.") from exc
        return parse_rig(_parse_toml(content, str(path)), str(path))
    shipped = list_rigs()
    if text not in shipped:
        raise RigError(
            f"There is no shipped rig called {text!r}. Shipped rigs: "
            f"{', '.join(shipped)}. A rig of your own is given as a path to its "
            ".toml file (see `ampcap rigs show virtual` for the format)."
        )
    content = resources.files("ampcap.rigs").joinpath(f"{text}.toml").read_text(encoding="utf-8")
    return parse_rig(_parse_toml(content, f"shipped:{text}"), f"shipped:{text}")
