"""The `isthmus` subcommands, one module per concern; isthmus/cli.py adds them to the root group."""
