"""The RPC core that gRPC and Connect share: service methods, status codes, proto codec."""
