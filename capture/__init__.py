"""Capture: rigs, the played program, audio engines, knob control, the virtual rig, sessions."""
