"""Communication topologies and gossip mixing matrices for decentralized learning.

This package sits at the bottom of the ``flower_dl`` layering: it imports nothing
from the rest of ``flower_dl``, and networkx only inside the functions that build
or inspect a graph.  Every ClientApp process imports this package to validate its
run config, and networkx would slow each one's start; so the parameter checks
(:func:`check_topology`, :func:`parse_edges`) are pure Python.

Registry
--------
:data:`BUILDERS` maps each topology name to a :class:`GraphFamily`: a small pure
builder named after the graph (``ring_graph``, ``torus_graph``,
``erdos_renyi_graph``, ...; see each one's docstring for the graph), the
function that checks its parameters, and the names of the parameters it reads
(``edges``, ``degree``, ``prob``, ``seed``).  :data:`TOPOLOGIES` is
``tuple(BUILDERS)``.  :func:`check_topology` checks a name and its parameters,
without building anything; :func:`build_graph` runs :func:`check_topology` and
then the builder, which may therefore assume valid parameters.

To add a graph family, write ``foo_graph(num_nodes, ...)`` in ``graphs.py``
returning ``_normalised_graph(num_nodes, edges)``, a ``_check_foo(num_nodes, ...)``
in ``checks.py`` if some parameter values are invalid for it, and one entry
``"foo": GraphFamily(foo_graph, _check_foo, ("degree",))`` in :data:`BUILDERS`
(and ``foo_graph`` in this package's ``__all__``); the run config's allowed
``topology`` values follow from :data:`TOPOLOGIES`.

Also here: the original study's 5-node tree as an edge list
(:data:`STUDY_EDGES`), connectivity checks (:func:`check_connected`),
doubly-stochastic (Metropolis-Hastings) and row-stochastic (uniform) mixing
matrices (:func:`mixing_matrix`) with a validator
(:func:`validate_mixing_matrix`), and :func:`spectral_gap`, :func:`neighbours`
and :func:`describe`.

Every error caused by bad input is raised as :class:`TopologyError` (a
:class:`ValueError`) whose message starts with the offending configuration key
(``topology``, ``num-nodes``, ``edges``, ``degree``, ``edge-prob``, ``seed``,
``mixing``), then the offending value and what would be allowed.

Layout
------
``checks.py``
    Pure Python (no networkx): :class:`TopologyError`, :data:`STUDY_EDGES`,
    :func:`parse_edges`, the parameter check of each graph family and the
    phrasing of disconnected graphs in messages.
``graphs.py``
    The graph builders, :class:`GraphFamily`, :data:`BUILDERS`,
    :data:`TOPOLOGIES`, :func:`check_topology` and :func:`build_graph`.
``mixing.py``
    :func:`check_connected`, :func:`mixing_matrix`,
    :func:`validate_mixing_matrix`, :data:`MIXINGS`, :func:`spectral_gap`,
    :func:`neighbours` and :func:`describe`.

Import the public names from :mod:`flower_dl.topology` itself; the submodules
are its layout, not its interface.
"""

from __future__ import annotations

from flower_dl.topology.checks import (
    STUDY_EDGES,
    TopologyError,
    parse_edges,
)
from flower_dl.topology.graphs import (
    BUILDERS,
    TOPOLOGIES,
    GraphFamily,
    build_graph,
    check_topology,
    complete_graph,
    edge_list_graph,
    erdos_renyi_graph,
    exponential_graph,
    k_regular_graph,
    path_graph,
    ring_graph,
    small_world_graph,
    star_graph,
    torus_graph,
)
from flower_dl.topology.mixing import (
    MIXINGS,
    check_connected,
    describe,
    mixing_matrix,
    neighbours,
    spectral_gap,
    validate_mixing_matrix,
)

__all__ = [
    "BUILDERS",
    "MIXINGS",
    "STUDY_EDGES",
    "TOPOLOGIES",
    "GraphFamily",
    "TopologyError",
    "build_graph",
    "check_connected",
    "check_topology",
    "complete_graph",
    "describe",
    "edge_list_graph",
    "erdos_renyi_graph",
    "exponential_graph",
    "k_regular_graph",
    "mixing_matrix",
    "neighbours",
    "parse_edges",
    "path_graph",
    "ring_graph",
    "small_world_graph",
    "spectral_gap",
    "star_graph",
    "torus_graph",
    "validate_mixing_matrix",
]
