"""Plugins: modules outside vaelab that register parts (an encoder, a decoder, ...) when they are imported.

A plugin comes in one of three ways:

- named by the user: `vaelab --import MODULE` on the command line (`import_plugin`), a plain import in Python;
- installed: an entry point in the group `vaelab.plugins` of an installed package, whose value names the
  module. They are imported lazily, all of them once per process, the first time a registry is asked for a
  name it does not hold (`load_entry_points`): a run of built-in parts never imports third-party code, a
  broken plugin costs nothing to commands that do not need it, and `vaelab.load` in Python finds them too;
- recorded: a run's config lists the modules that registered its custom parts (`RunConfig.plugins`), and
  loading the run imports them where one of its parts is not registered (`models.registry.require_parts`).

A plugin that fails to import is one line naming it and the error, never a traceback.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points
from pathlib import Path

from .errors import VaelabError

GROUP = "vaelab.plugins"

SCRIPT = "__main__"
"""What a part registered in a script or a notebook records as its module: no other process can import it."""

_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NOT_FOUND = "no module named"
_WHERE = "install it, or put the folder holding it on PYTHONPATH"

_entry_points_loaded = False
_entry_point_failures: list[str] = []


def is_module_name(text: str) -> bool:
    """A dotted Python module name (mynets, mypackage.nets)."""
    return _MODULE_NAME.fullmatch(text) is not None


def import_plugin(module: str) -> None:
    """Import `module` so that its registrations run; any failure is a one-line VaelabError naming it."""
    if not is_module_name(module) or module.endswith(".py"):
        hint = (
            f" (for the file {module}: --import {Path(module).stem}, run from its folder or with the folder on "
            f"PYTHONPATH)"
            if module.endswith(".py")
            else ""
        )
        raise VaelabError(f"--import takes a module name such as mynets or mypackage.nets, not {module!r}{hint}")
    if module == SCRIPT:
        raise VaelabError(
            f"cannot import {SCRIPT}: parts registered in a script or notebook must move into a module to be imported"
        )
    failure = try_import(module)
    if failure is not None:
        where = f" ({_WHERE})" if failure.startswith(_NOT_FOUND) else ""
        raise VaelabError(f"cannot import plugin module {module!r}: {failure}{where}")


def try_import(module: str) -> str | None:
    """Import `module`; None when it worked, else why not, in one line."""
    if not is_module_name(module):
        return "not a module name"
    try:
        importlib.import_module(module)
    except Exception as e:  # whatever the plugin's own code raises: it is the plugin's error, told in one line
        return describe_import_error(module, e)
    return None


def describe_import_error(module: str, e: BaseException) -> str:
    """One line: the module itself missing, or the error its import raised (a missing dependency included)."""
    if isinstance(e, ModuleNotFoundError) and e.name and (module == e.name or module.startswith(e.name + ".")):
        return f"{_NOT_FOUND} {e.name!r}"
    return " ".join(f"{type(e).__name__}: {e}".split())  # a multi-line message on one line


def load_entry_points() -> None:
    """Import every installed `vaelab.plugins` entry point, once per process; later calls do nothing.

    A plugin that fails is remembered, not raised: it may have nothing to do
    with the name being looked up. `failures_note` adds it to the error of a
    name that stays unknown.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True  # first: a plugin that looks a name up while it loads does not start this again
    for point in entry_points(group=GROUP):
        try:
            point.load()
        except Exception as e:
            module = point.value.partition(":")[0].strip()
            _entry_point_failures.append(
                f"the {GROUP} entry point {point.name!r} (module {module!r}) failed to "
                f"load: {describe_import_error(module, e)}"
            )


def failures_note() -> str:
    """'; the vaelab.plugins entry point ... failed to load: ...' for each plugin that failed, else ''."""
    return "".join(f"; {failure}" for failure in _entry_point_failures)


def is_builtin(module: str | None) -> bool:
    return module is not None and (module == "vaelab" or module.startswith("vaelab."))


def missing_hint(kind: str, recorded: tuple[str, ...], failures: dict[str, str]) -> str:
    """What to import for a run's `kind` of part that is not registered, given the modules the run recorded
    and, for each of those that failed to import, why."""
    if not recorded:
        return (
            f"if a plugin registers this {kind}, pass --import MODULE naming it (in Python: import it first) "
            f"or install the plugin"
        )
    modules = [m for m in recorded if m != SCRIPT]
    hints = []
    if SCRIPT in recorded:
        subject = "a part of this run" if modules else f"this run's {kind}"
        hints.append(
            f"{subject} was registered in a script or notebook ({SCRIPT}), which cannot be imported: "
            f"import the module that registers it with --import MODULE (in Python: run the registration "
            f"first)"
        )
    if modules:
        source = f"module {modules[0]!r}" if len(modules) == 1 else f"the modules {', '.join(map(repr, modules))}"
        broken = [failures[m] if len(modules) == 1 else f"{m}: {failures[m]}" for m in modules if m in failures]
        state = (
            f", which cannot be imported here ({'; '.join(broken)})"
            if broken
            else f", which {'registers' if len(modules) == 1 else 'register'} no {kind} of that name now"
        )
        subject = f"this run's {kind}" if SCRIPT not in recorded else "its other custom parts"
        imports = " ".join(f"--import {m}" for m in modules)
        hints.append(f"{subject} came from {source}{state}: pass {imports} ({_WHERE})")
    return "; ".join(hints)
