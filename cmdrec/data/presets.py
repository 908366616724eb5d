"""Noise presets: events that a person did not choose as a command, by application.

Visual Studio (Blaze logger), chosen from the data and `MessageList.csv`:
- `View.OnChangeCaretLine`, `View.OnChangeScrollInfo`, `Edit.ScrollLineDown`/`Up`: caret moves and
  scrolling, logged continuously while reading code (26% of all events together).
- `View.VisualStudioBgOrFg`: the IDE window gaining or losing focus; 58% of raw 30-min sessions end on it.
- `Debug.Debug Run Mode`, `Debug.Debug Break Mode`, `Debug.Enter Design Mode`: debugger state
  changes the IDE emits after a command (Start, a breakpoint hit, Stop), not commands themselves.
- `Build.BuildBegin`, `Build.BuildDone`: build events emitted around every build command.
- `View.Loading...`, `View.Source Not Available`, `View.Source Not Found`, `View.No Source Available`,
  `View.No Symbols Loaded`: windows the IDE opens by itself (while loading, or when the debugger
  stops where it has no source).
- `View.BlazeWindow`, `Tools.BlazeStats`: the logging tool's own window and statistics.
Kept on purpose: `File.Exit` (a person chooses to quit) and `View.File` (switching documents).
"""

from cmdrec.errors import InputError

NOISE_PRESETS: dict[str, tuple[str, ...]] = {
    "vs": (
        "View.OnChangeCaretLine",
        "View.OnChangeScrollInfo",
        "Edit.ScrollLineDown",
        "Edit.ScrollLineUp",
        "View.VisualStudioBgOrFg",
        "Debug.Debug Run Mode",
        "Debug.Debug Break Mode",
        "Debug.Enter Design Mode",
        "Build.BuildBegin",
        "Build.BuildDone",
        "View.Loading...",
        "View.Source Not Available",
        "View.Source Not Found",
        "View.No Source Available",
        "View.No Symbols Loaded",
        "View.BlazeWindow",
        "Tools.BlazeStats",
    ),
    # The bundled sample application logs window focus changes like the real IDE does.
    "sample": ("Window.Focus",),
}


def noise_commands(preset: str | None, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    if preset is None:
        return tuple(extra)
    if preset not in NOISE_PRESETS:
        raise InputError(f"processing.noise_preset: unknown preset {preset!r}; known: {sorted(NOISE_PRESETS)}")
    return NOISE_PRESETS[preset] + tuple(extra)
