"""Resolution: checks that must hold before mitigations are undone (`verify`).

The engine calls `verify.verify` before the undo and between the traffic steps.
"""
