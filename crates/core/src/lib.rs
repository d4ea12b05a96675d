//! The sleep-time engine.
