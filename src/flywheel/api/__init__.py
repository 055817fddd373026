"""Wire models shared by the server and the client: Attic's v1 shapes and our extensions."""
