"""The gRPC server: REAPI cache services and ByteStream."""
