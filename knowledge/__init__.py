"""Ingestion: loaders, glossary import, chunking, fact extraction."""
