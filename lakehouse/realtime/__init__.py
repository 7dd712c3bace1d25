"""Real time: PyFlink stream jobs over the clickstream and Apache Pinot tables that serve them."""
