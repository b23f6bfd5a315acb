"""The node side: the ClientApp, a node's state, its model and its local training."""
