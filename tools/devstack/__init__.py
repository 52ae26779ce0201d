"""Run the whole platform locally: `make up` (`python -m tools.devstack up`) and the `Stack` the
end-to-end tests and benchmarks start.

- `stack`: the service and gateway processes, started and stopped in order;
- `demo`: the demo merchant, its first invoice and the banner `make up` prints;
- `up`: `make up` itself (backing servers, dev chain, mail receiver, signals).
"""

from tools.devstack.demo import DEMO_ETHEREUM_XPUB
from tools.devstack.stack import ROOT, Stack, free_stack_ports, request

__all__ = ["DEMO_ETHEREUM_XPUB", "ROOT", "Stack", "free_stack_ports", "request"]
