"""Query strategies: the contract (:mod:`.base`) and the core's domain-agnostic ones."""
