//! placeholder: filled by the fetch helper
