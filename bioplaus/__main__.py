"""`python -m bioplaus ...` is the `bioplaus` command."""
from bioplaus.cli import main

main(prog_name="bioplaus")
