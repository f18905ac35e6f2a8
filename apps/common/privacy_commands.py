"""``trident privacy eval``: score the PII detector of ``core.privacy`` on a labelled JSON-lines file.

Each line of the file is ``{"text": ..., "spans": [{"start", "end", "type"}, ...]}``; the command prints
``{"recall", "precision", "f1", "per_type": {TYPE: {"recall", "n"}}, "n_spans", "messages_per_s"}``
(``core.privacy_eval`` defines the scores). A file that cannot be read (missing, empty, a line that is not JSON, a
span past the end of its text, a start not before its end, an unknown type) prints one line ``error: FILE:LINE: ...``
and exits with status 2, as every user error of ``apps/cli.py`` does; it is handled here, so that a bad file answers
before the detector's models load.
"""

from __future__ import annotations

import sys

from apps.common.output import emit
from core.privacy_eval import LabelledDataError, evaluate, read_labelled


def privacy_eval(args) -> None:
    """Score the detector on ``args.data`` (every kind, or ``args.kinds``)."""
    try:
        messages = read_labelled(args.data)
        result = evaluate(messages, kinds=args.kinds.split(",") if args.kinds else None)
    except (LabelledDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    emit(result, args.json)


def register(sub) -> None:
    """Add ``eval`` to the subcommands ``sub`` of ``trident privacy``."""
    sp = sub.add_parser("eval", help="recall, precision and speed of the PII detector on labelled JSON lines")
    sp.add_argument("--data", required=True, help='JSON lines: {"text": ..., "spans": [{"start", "end", "type"}]}')
    sp.add_argument("--kinds", help="detect only these kinds, or a kind set (customer, news), comma-separated; "
                                    "labelled spans of other kinds are not scored (default: every kind)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(fn=privacy_eval)
