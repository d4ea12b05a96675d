//! placeholder: filled by the openai helper
