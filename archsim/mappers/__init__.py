"""Mappers: how a layer's loop nest walks a datapath. Each is a plan (pure
geometry, unit-testable) and an emit step that creates the tile graph's
nodes through the tiler. A datapath (archsim/hw) picks its mapper by its
YAML (`pe_array.dataflow` for the systolic family: ws / is -> stationary,
os -> output_stationary) and keeps its own timing, actions and area."""
