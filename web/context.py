"""What a connection and the HTTP routes may use of the gateway, as one narrow object.

Connections and routes need the service, the configuration, the metrics, the stream registry and
two pieces of gateway state (draining, the open connections); handing them the whole ``Gateway``
gave them its server, sweeper and drain too, and tied every module to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import GatewayConfig
from .metrics import GatewayMetrics
from .streams import StreamRegistry


@dataclass
class GatewayContext:
    service: Any  # a SceneKVService (duck-typed: web/ does not import workers/)
    config: GatewayConfig
    metrics: GatewayMetrics
    registry: StreamRegistry
    connections: set = field(default_factory=set)  # the open Connections
    draining: bool = False  # go_away sent: no new sessions, questions or connections
