"""``python -m bomb_data``: the ``bomb-data`` command line, as the console script runs it."""

from bomb_data.cli import main

# The guard matters: Dask's worker processes start by spawn and import the parent's __main__ module
# under another name; the command line must run only in the process the user started.
if __name__ == "__main__":
    main(prog_name="bomb-data")
