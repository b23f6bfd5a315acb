"""The data exchange between neighbours: who sends what to whom, its encryption and the nodes' identities."""
