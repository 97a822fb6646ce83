"""Sub-commands of the `statetrack` CLI, one module each (see statetrack.cli)."""
