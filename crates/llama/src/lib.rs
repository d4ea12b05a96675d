//! The embedded llama.cpp backend (being written).
