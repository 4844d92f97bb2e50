"""The preference store: labelers' rankings and ratings of model responses (SQLAlchemy; SQLite or Postgres).

The public API is store.py (`Store`, `database_url`, `StoreError`); db.py holds the tables and migrations.
"""
