"""Database adapter: the only package that imports SQLAlchemy."""
