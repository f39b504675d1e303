"""The outside world behind small interfaces: history stores (memory, Redis), service
discovery, the configuration service, the cluster leases, circuit breakers and metrics."""
