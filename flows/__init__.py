"""Prefect flows: wiring only. Every task calls one mmpipe function in the flow's process."""
