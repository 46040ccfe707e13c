"""Entry point of the ``textseg`` console script.

Each subcommand lives in its own module of this package and exposes a
``click`` command named ``command``; :data:`SUBCOMMANDS` lists them.
Errors derived from :class:`TextSegError` print one line and exit non-zero;
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import importlib
import sys

import click

from ..errors import TextSegError

#: subcommand name -> module (relative to this package) exposing ``command``.
SUBCOMMANDS: dict[str, str] = {
    "info": ".info",
    "demo": ".demo",
    "train": ".train",
    "refine": ".refine",
    "terms": ".terms",
    "segment": ".segment",
    "models": ".models",
    "serve": ".serve",
    "pacs": ".pacs",
    "batch": ".batch",
    "dicom": ".dicom",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it is used (fast ``--help``)."""

    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS:
            return None
        module = importlib.import_module(SUBCOMMANDS[name], __package__)
        return module.command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="textseg", prog_name="textseg")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """TextSeg: text-prompted segmentation of CT, MRI and PET."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="textseg", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except TextSegError as exc:
        if debug:
            raise
        click.echo(f"textseg: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # unexpected: one line, traceback with --debug
        if debug:
            raise
        click.echo(
            f"textseg: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            err=True,
        )
        return 1
    return rv if isinstance(rv, int) else 0  # click returns ctx.exit(N)'s code in this mode


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
