"""Remote and local commands: one service from a payload (or a person's request, or a rule's
decision) to an actuation and its result.

``gate`` decides whether a payload is an authentic, fresh, unique, well-formed command
(``signing``, ``replay``); ``dispatch`` carries a verified one out and answers it. What the
platform may send is the contract: docs/integrator.md and docs/contract/.
"""

from gatewayd.commands.gate import CODES, GATEWAY_ACTIONS, Command, Gate, Refused, Result

__all__ = ["CODES", "GATEWAY_ACTIONS", "Command", "Gate", "Refused", "Result"]
