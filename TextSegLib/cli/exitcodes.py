"""The exit codes of ``textseg`` commands, in one place (documented in ``textseg segment --help``
and docs/cli.md), so scripts can tell a run that found nothing from one that failed.

====  ==========================================================================================
0     done: every prompt was segmented (a structure may still be reported "not found")
1     ``batch``: some cases failed; any command: an internal error (``--debug`` shows it)
2     refused before any model work: bad input, option, prompt or model (one line says why)
3     the run found none of the structures (``segment``; the stats table is still written)
4     done, but ``--skip-unknown`` skipped some prompts (the table lists them as "skipped")
130   interrupted (Ctrl-C, SIGTERM)
====  ==========================================================================================
"""
from __future__ import annotations

OK = 0
FAILED = 1
REFUSED = 2
NOTHING_FOUND = 3
SKIPPED = 4
INTERRUPTED = 130

#: one line per code, for ``--help`` texts
HELP = ("Exit codes: 0 done; 2 refused (one line says why); 3 nothing found (the --stats table is "
        "still written); 4 done, but --skip-unknown skipped some prompts; 130 interrupted.")
