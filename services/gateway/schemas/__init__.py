"""The HTTP resources, each declared once as pydantic models that validate requests, render
responses and generate /openapi.json."""
