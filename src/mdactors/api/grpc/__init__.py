"""gRPC on port 50051: the service, its HTTP/2 transport and the price fan-out."""
