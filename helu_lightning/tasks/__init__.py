"""LightningModules: vision classification and GLUE / text classification, each taking an activation spec."""
