"""Adapters behind the ports: AWS (boto3) and local (PGMQ on the same PostgreSQL)."""
