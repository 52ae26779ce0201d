"""The fault suite (`make faults`): the real stack under load while its processes are killed and
its servers restarted, then checked for what must hold (tools/faults/checks.py)."""
