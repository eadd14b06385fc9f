"""Deployment: a final model as a self-contained package, and its predictions on new scans."""
