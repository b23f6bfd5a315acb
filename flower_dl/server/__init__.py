"""The server side: the ServerApp's phases, sending messages and collecting replies, the strategy rounds."""
