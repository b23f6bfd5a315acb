"""Privacy: what the exchange and the models leak (leakage, membership inference, audit) and what hides it
(exchange mechanisms, DP-SGD, central DP)."""
