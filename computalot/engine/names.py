"""Names of the engine's detached actors (looked up with ``ray.get_actor``)."""

DISPATCHER_NAME = "computalot-dispatcher"
HUB_NAME = "computalot-event-hub"
