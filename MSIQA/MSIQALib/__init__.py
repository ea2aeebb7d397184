"""Helpers of the MSIQA scripted module that must work before the engine package is imported."""
