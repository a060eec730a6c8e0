"""Exporters: finished rows -> the records of one output config (`generic`: the recipe-composable ones)."""
