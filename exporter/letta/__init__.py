"""Reading Letta: typed models and a read-only client for the Runs API."""
