"""Loading inputs into DuckDB: table exports (`tables`) and agent logs (`logs`)."""
