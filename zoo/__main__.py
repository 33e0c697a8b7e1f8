"""``python -m zoo train|evaluate|predict|solve [key=value ...]``: the same entries as the
scripts of a checkout (train.py, ...) and the console scripts of an installed zoo
(zoo-train, ...), with the configs shipped inside the package."""

from __future__ import annotations

import sys

COMMANDS = ("train", "evaluate", "predict", "solve", "export")
USAGE = ("usage: python -m zoo {train,evaluate,predict,solve,export} [key=value ...]\n"
         "       python -m zoo COMMAND --help   lists the keys and configs of each")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; valid commands: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    if command == "export":
        from zoo.export.__main__ import main as export_main

        return export_main(rest)
    from zoo import cli

    return getattr(cli, f"{command}_main")(rest)


if __name__ == "__main__":
    sys.exit(main())
