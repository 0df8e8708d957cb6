"""The names of durable streams: ``agents/<agent>/<id>`` for an agent instance, ``runs/<id>`` for
a workflow run. One home for both spellings, below everything that writes or reads a stream."""

from __future__ import annotations


def instance_path(agent: str, instance_id: str) -> str:
    """The stream (and submission instance) of the agent instance ``<agent>/<instance_id>``."""
    return f"agents/{agent}/{instance_id}"


def split_instance(path: str) -> tuple[str, str]:
    """``agents/<agent>/<id>`` -> ``(agent, id)``."""
    _, agent, instance_id = path.split("/", 2)
    return agent, instance_id


def run_stream_path(run_id: str) -> str:
    """The stream of the workflow run ``run_id``."""
    return f"runs/{run_id}"
