"""The checkout platform's merchant client."""
