"""RPC commands showing the cluster (docs/cluster.md): the nodes, their heartbeats and the
dialogs each one holds, as the last watch of this worker saw them (every worker watches, so
any worker answers for the whole cluster; nothing is merged over workers).

* ``cluster.nodes``: every node with a record on Redis, alive or dead, with what it publishes
  in its heartbeats (dialogs, transactions, requests and replies received);
* ``cluster.dialogs``: the dialogs each node holds (active and early), and their total;
* ``cluster.forget <server_id>``: removes a dead node's record;
* ``dmq.list_nodes``: Kamailio's DMQ command and reply shape (host, port, proto,
  resolved_ip, status ``active``/``timeout``, last_notification, local) for the same nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .rpc import RpcError, rpc

if TYPE_CHECKING:
    from .cluster_nodes import ClusterNodes, NodeInfo


def _first_listener(addresses: tuple[str, ...]) -> tuple[str, str, str]:
    """(proto, host, port) of a node's first listener (``udp:10.0.0.1:5060``)."""
    if not addresses:
        return "", "", ""
    proto, _, rest = addresses[0].partition(":")
    host, _, port = rest.rpartition(":")
    return proto, host.strip("[]"), port


class ClusterView:
    def __init__(self, nodes: ClusterNodes) -> None:
        self.nodes = nodes

    def _all(self) -> list[NodeInfo]:
        if not self.nodes.cluster.enabled:
            raise RpcError(500, "no cluster: [cluster] redis_url is not set")
        if not self.nodes.watching:
            raise RpcError(503, "the cluster's Redis has not answered yet")
        return self.nodes.nodes()

    @rpc("cluster.nodes")
    def list_nodes(self) -> list[dict[str, Any]]:
        """Every node known on Redis: state (alive/dead), last heartbeat (unix time on Redis's
        clock) and its age, listeners, workers and the figures it publishes."""
        out = []
        for n in self._all():
            d = n.as_dict()
            d["local"] = n.server_id == self.nodes.server_id and n.token == self.nodes.token
            out.append(d)
        return out

    @rpc("cluster.dialogs")
    def dialogs(self) -> dict[str, Any]:
        """Dialogs held by each node (as its heartbeats publish them) and the total over the
        nodes alive."""
        per = []
        total = 0
        for n in self._all():
            active = n.stats.get("dialog:active_dialogs", 0)
            early = n.stats.get("dialog:early_dialogs", 0)
            per.append(
                {
                    "server_id": n.server_id,
                    "state": "alive" if n.alive else "dead",
                    "active": active,
                    "early": early,
                }
            )
            if n.alive:
                total += active + early
        return {"nodes": per, "total": total}

    @rpc("cluster.forget")
    async def forget(self, server_id: Any) -> str:
        """Remove a dead node from the cluster's records (a node taken out of service for
        good): it leaves ``cluster.nodes``, and nodes started later are not told it died."""
        self._all()
        try:
            sid = int(server_id)
        except (TypeError, ValueError):
            raise RpcError(400, "server_id: a number 0..255") from None
        try:
            got = await self.nodes.forget(sid)
        except self.nodes.cluster.redis_errors() as err:
            raise RpcError(503, f"the cluster's Redis does not answer: {err}") from None
        if got == 0:
            raise RpcError(409, f"node {sid} is alive")
        if got < 0:
            raise RpcError(404, f"node {sid} is not known")
        return "Ok."

    @rpc("dmq.list_nodes")
    def dmq_list_nodes(self) -> list[dict[str, Any]]:
        """The nodes in Kamailio's ``dmq.list_nodes`` shape."""
        out = []
        for n in self._all():
            proto, host, port = _first_listener(n.addresses)
            out.append(
                {
                    "host": host,
                    "port": port,
                    "proto": proto,
                    "resolved_ip": host,
                    "status": "active" if n.alive else "timeout",
                    "last_notification": int(n.last),
                    "local": int(n.server_id == self.nodes.server_id),
                }
            )
        return out
