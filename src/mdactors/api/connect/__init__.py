"""Connect (and gRPC-Web) on the HTTP port over the shared RPC core."""
