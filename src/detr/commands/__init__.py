"""The `detr` subcommands that have no room of their own: one module each, with
`add_parser(subparsers)` and `run(args)`, the shape of viz/, crowd/ and bench/ `command.py`."""
