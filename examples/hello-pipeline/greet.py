"""Prints a greeting: the active Meltano environment and HELLO_NAME (a secret, if set)."""
import os
import sys

name = os.environ.get("HELLO_NAME", "world")
environment = os.environ.get("MELTANO_ENVIRONMENT", "(none)")
print(f"hello, {name}, from the {environment} environment")
print("greeting done", file=sys.stderr)
