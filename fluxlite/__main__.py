import gc

# the collector stays paused while the command line and the command's modules are imported:
# cli.main freezes what they made and starts it again (see cli._import_command)
gc.disable()

from fluxlite.cli import program  # noqa: E402

program()
